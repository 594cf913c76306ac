"""Signed sessions and CSRF tokens: what a cookie may say, for how long, and the secret."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from aidrec.settings import Settings
from serving.sessions import SessionSecretError, SessionSigner, load_secret

SECRET = b"s" * 64


def test_a_session_reads_back_until_it_expires() -> None:
    signer = SessionSigner(SECRET, 3600)
    session, value = signer.issue("default-reviewer", now=1_000_000)
    assert "default-reviewer" not in value  # encoded, and signed
    assert signer.read(value, now=1_000_000 + 3599) == session
    assert signer.read(value, now=1_000_000 + 3600) is None
    assert session.signed_in and not signer.issue(now=1_000_000)[0].signed_in


def test_a_changed_or_foreign_cookie_is_no_session() -> None:
    signer = SessionSigner(SECRET, 3600)
    _, value = signer.issue("default-reviewer", now=1_000_000)
    body, signature = value.split(".")
    other = SessionSigner(b"t" * 64, 3600).issue("default-admin", now=1_000_000)[1]
    changed = f"{other.split('.')[0]}.{signature}"  # someone else's body, our signature
    for bad in (other, changed, f"{body}.", f"{body}.{signature}x", "a.b.c", "", None):
        assert signer.read(bad, now=1_000_000) is None


def test_every_session_gets_its_own_nonce_and_csrf_token() -> None:
    signer = SessionSigner(SECRET, 3600)
    first, _ = signer.issue("k")
    second, _ = signer.issue("k")
    assert first.nonce != second.nonce
    token = signer.csrf_token(first)
    assert signer.csrf_ok(first, token)
    assert not signer.csrf_ok(second, token)
    assert not signer.csrf_ok(first, None) and not signer.csrf_ok(first, "")
    assert not SessionSigner(b"t" * 64, 3600).csrf_ok(first, token)


def test_an_ended_session_is_refused_and_others_are_not() -> None:
    signer = SessionSigner(SECRET, 3600)
    ended, ended_value = signer.issue("k")
    kept, kept_value = signer.issue("k")
    signer.end(ended)
    assert signer.read(ended_value) is None
    assert signer.read(kept_value) == kept


def test_the_secret_is_made_once_with_mode_600_and_reused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first = load_secret(settings)
    path = settings.session_secret_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret(settings) == first and len(first) >= 32
    # a cookie signed before a restart still reads after it
    _, value = SessionSigner(first, 3600).issue("k")
    assert SessionSigner(load_secret(settings), 3600).read(value) is not None


def test_a_configured_secret_wins_and_must_be_long_enough(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, session_secret="x" * 40)
    assert load_secret(settings) == b"x" * 40
    assert not settings.session_secret_path.exists()
    with pytest.raises(SessionSecretError):
        load_secret(Settings(data_dir=tmp_path, session_secret="short"))
    settings.session_secret_path.write_text("tiny")
    with pytest.raises(SessionSecretError):
        load_secret(Settings(data_dir=tmp_path))


def test_the_lifetime_follows_the_setting(tmp_path: Path) -> None:
    signer = SessionSigner.from_settings(Settings(data_dir=tmp_path, session_hours=0.5))
    assert signer.lifetime == 1800
