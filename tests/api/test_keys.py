"""API keys in the database: created, listed and revoked while the service runs, all audited."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from aidrec.cli import app
from serving.audit import KEY_CHANGE, PREDICTION, AuditStore, index, records, verify_chain
from serving.keys import KeyStore, KeyStoreError, api_keys
from serving.scopes import Scope
from serving.security import HEADER, ApiKey, key_hash
from tests.audit_payloads import make_secrets

runner = CliRunner()


def _cli(api: dict[str, Any], *args: str) -> Any:
    """The real `aidrec` command against the running service's database."""
    settings = api["settings"]
    env = {
        "AIDREC_DATA_DIR": str(settings.data_dir),
        "AIDREC_AUDIT_URL": settings.audit_database_url,
        "AIDREC_API_KEYS_FILE": str(settings.api_keys_path),
    }
    return runner.invoke(app, list(args), env=env)


def _key_from(output: str) -> str:
    return next(line.strip() for line in output.splitlines() if line.startswith("  aidrec_"))


def _model_card(api: dict[str, Any], key: str) -> int:
    return int(api["client"].get("/v1/model", headers={HEADER: key}).status_code)


def test_a_key_made_while_serving_works_at_once_and_revoking_it_refuses_it_at_once(
    api: dict[str, Any],
) -> None:
    made = _cli(api, "keys", "create", "--name", "cs-jiangsu", "--role", "case_system")
    assert made.exit_code == 0, made.output
    key = _key_from(made.output)
    assert _model_card(api, key) == 200  # no restart, no reload
    listed = _cli(api, "keys", "list")
    assert listed.exit_code == 0 and "cs-jiangsu" in listed.output
    assert key not in listed.output  # the key is printed once, never listed
    revoked = _cli(api, "keys", "revoke", "cs-jiangsu")
    assert revoked.exit_code == 0, revoked.output
    assert _model_card(api, key) == 401  # the very next request
    again = _cli(api, "keys", "revoke", "cs-jiangsu")
    assert again.exit_code == 2 and "already revoked" in again.output


def test_keys_list_shows_role_scope_and_use(api: dict[str, Any]) -> None:
    made = _cli(
        api, "keys", "create", "--name", "rv-nanjing", "--role", "reviewer", "--scope", "3201"
    )
    assert made.exit_code == 0 and "3201" in made.output
    assert _model_card(api, _key_from(made.output)) == 200
    row = next(
        line.split()
        for line in _cli(api, "keys", "list").output.splitlines()
        if "rv-nanjing" in line
    )
    assert row[1:3] == ["reviewer", "3201"]
    assert row[-1] == "-" and len(row) == 8  # created and last used (date, time), not revoked
    info = next(k for k in api["app"].state.service.keys.entries() if k.name == "rv-nanjing")
    assert info.last_used_at is not None and info.revoked_at is None


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--name", "default-reviewer", "--role", "reviewer"], "already exists"),
        (["--name", "bad name!", "--role", "reviewer"], "a name is"),
        (["--name", "x1", "--role", "judge"], "unknown role 'judge'"),
        (["--name", "x2", "--role", "reviewer", "--scope", "99"], "not a province code"),
        (["--name", "x3", "--role", "reviewer", "--scope", "321"], "is not a scope"),
    ],
)
def test_a_bad_key_is_refused_with_what_is_wrong(
    api: dict[str, Any], args: list[str], words: str
) -> None:
    result = _cli(api, "keys", "create", *args)
    assert result.exit_code == 2 and words in result.output, result.output


def test_a_revoked_name_is_never_reused_and_a_hash_never_twice(api: dict[str, Any]) -> None:
    store = api["app"].state.service.keys
    store.add(ApiKey("once", "reviewer", key_hash("k-once")), "test")
    with pytest.raises(KeyStoreError, match="already registered, as 'once'"):
        store.add(ApiKey("twice", "reviewer", key_hash("k-once")), "test")
    store.revoke("once", "test")
    with pytest.raises(KeyStoreError, match="revoked; names are never reused"):
        store.add(ApiKey("once", "reviewer", key_hash("k-once-more")), "test")
    with pytest.raises(KeyStoreError, match="no key named 'nobody'"):
        store.revoke("nobody", "test")


def test_every_key_change_is_a_record_of_its_own_in_the_chain(api: dict[str, Any]) -> None:
    store = api["app"].state.service.keys
    store.add(ApiKey("audited", "admin", key_hash("k-audited"), Scope("44")), "test-admin")
    store.revoke("audited", "test-admin")
    with store.engine.connect() as connection:
        changes = [
            json.loads(row.payload) | {"caller": row.caller}
            for row in connection.execute(
                select(records.c.payload, records.c.caller)
                .where(records.c.kind == KEY_CHANGE)
                .order_by(records.c.seq)
            )
        ]
    mine = [c for c in changes if c["name"] == "audited"]
    assert [c["action"] for c in mine] == ["created", "revoked"]
    assert mine[0] | {"action": None} == {
        "action": None,
        "name": "audited",
        "role": "admin",
        "scope": "44",
        "fingerprint": key_hash("k-audited")[:12],
        "caller": "test-admin",
    }
    assert {c["name"] for c in changes} >= {"default-case_system", "default-reviewer"}
    assert all("k-audited" not in json.dumps(c) for c in changes)  # never the key itself
    assert verify_chain(store.engine, store.audit.secrets).ok
    with store.engine.connect() as connection:  # the answer index holds answers only
        answers = connection.execute(
            select(func.count()).select_from(records).where(records.c.kind == PREDICTION)
        ).scalar()
        assert connection.execute(select(func.count()).select_from(index.answers)).scalar() == (
            answers
        )


def test_a_key_file_is_imported_once_and_cannot_revive_a_revoked_key(tmp_path: Path) -> None:
    path = tmp_path / "api_keys.json"
    entries = [
        {"name": "cs", "role": "case_system", "sha256": key_hash("k-cs")},
        {"name": "rv", "role": "reviewer", "sha256": key_hash("k-rv").upper(), "scope": "3201"},
    ]
    path.write_text(json.dumps(entries), encoding="utf-8")
    audit = AuditStore.open(f"sqlite:///{tmp_path / 'audit.db'}", make_secrets(tmp_path))
    store = KeyStore(audit)
    assert store.import_file(path, "test") == ["cs", "rv"]
    found = store.identify("k-rv")
    assert found is not None and found.scope == Scope("3201") and found.role == "reviewer"
    store.revoke("cs", "test")
    assert store.import_file(path, "test") == []  # already imported: the store wins
    assert store.identify("k-cs") is None
    with store.engine.connect() as connection:
        assert len(connection.execute(select(api_keys)).all()) == 2


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "cannot read the API keys"),
        ('{"name": "x"}', "a JSON list"),
        ('[{"name": "x", "role": "judge", "sha256": "' + "a" * 64 + '"}]', "unknown role"),
        ('[{"name": "x", "role": "admin", "sha256": "abc"}]', "64 lowercase hex"),
        ('[{"role": "admin", "sha256": "' + "a" * 64 + '"}]', "'name'"),
    ],
)
def test_a_bad_key_file_is_refused_and_nothing_is_imported(
    tmp_path: Path, content: str, words: str
) -> None:
    path = tmp_path / "api_keys.json"
    path.write_text(content, encoding="utf-8")
    store = KeyStore(AuditStore.open(f"sqlite:///{tmp_path / 'audit.db'}", make_secrets(tmp_path)))
    with pytest.raises(KeyStoreError, match=words):
        store.import_file(path, "test")
    assert store.count() == 0


@pytest.mark.postgres
def test_keys_on_postgres_as_production_keeps_them(tmp_path: Path) -> None:
    from tests.postgres import fresh_database

    secrets = make_secrets(tmp_path)
    with fresh_database() as url:
        store = KeyStore(AuditStore.open(url, secrets))
        other = KeyStore(AuditStore.open(url, secrets))  # another replica on the same database
        plain = store.create("pg-reviewer", "reviewer", Scope("3201"), "test")
        found = other.identify(plain)
        assert found is not None and found.scope == Scope("3201")
        with pytest.raises(KeyStoreError, match="already exists"):
            other.add(ApiKey("pg-reviewer", "admin", key_hash("k-other")), "test")
        other.revoke("pg-reviewer", "test")
        assert store.identify(plain) is None  # at once, on the other replica too
        assert verify_chain(store.engine, store.audit.secrets).ok
        for each in (store, other):
            each.engine.dispose()
