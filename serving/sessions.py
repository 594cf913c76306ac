"""Signed session cookies and CSRF tokens for the pages.

A person signs in once with their API key; the server answers with a cookie that holds the
key's NAME, an expiry and a random nonce, signed with HMAC-SHA256 — never the key itself.
Every request re-reads the key by name from the key ring, so a key removed from the ring
ends its sessions at once and the role and scope shown are always the current ones.

A visitor who has not signed in gets an anonymous session (no name) so that the sign-in
form, too, carries a CSRF token: each form's hidden token is an HMAC of the session's nonce,
and a POST whose token does not match its cookie's nonce is refused. Signing in starts a
new session (new nonce); signing out ends the old one in this process (a copy of its cookie
replayed later is refused until the process restarts; it expires by itself in any case).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from aidrec.settings import Settings
from serving.security import ADMIN, REVIEWER

COOKIE = "aidrec_session"
COOKIE_PATH = "/ui"
CSRF_FIELD = "csrf_token"
PAGE_ROLES = (REVIEWER, ADMIN)  # a case-system key is for machines: it may not sign in


class SessionSecretError(RuntimeError):
    """The secret that signs sessions is unusable."""


@dataclass(frozen=True)
class Session:
    """What a session cookie says: whose key (empty before sign-in), until when, which nonce."""

    key_name: str
    expires: int
    nonce: str

    @property
    def signed_in(self) -> bool:
        """Whether a key signed this session in."""
        return bool(self.key_name)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_secret(settings: Settings) -> bytes:
    """The signing secret: ``AIDREC_SESSION_SECRET``, or a random one kept in the data dir.

    The file is created once with mode 600, so sessions survive a restart.
    """
    if settings.session_secret is not None:
        secret = settings.session_secret.get_secret_value().encode("utf-8")
        if len(secret) < 32:
            raise SessionSecretError("AIDREC_SESSION_SECRET must be at least 32 characters")
        return secret
    path: Path = settings.session_secret_path
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first: read theirs
        else:
            with os.fdopen(descriptor, "w", encoding="ascii") as handle:
                handle.write(secrets.token_hex(32))
    secret = path.read_text(encoding="ascii").strip().encode("ascii")
    if len(secret) < 32:
        raise SessionSecretError(f"{path}: the session secret must be at least 32 characters")
    return secret


class SessionSigner:
    """Issues and reads signed session cookies, and makes and checks CSRF tokens."""

    def __init__(self, secret: bytes, lifetime_seconds: int) -> None:
        self._secret = secret
        self.lifetime = lifetime_seconds
        self._ended: dict[str, int] = {}  # nonce -> expiry, of sessions signed out
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionSigner:
        """A signer with the configured secret and session lifetime."""
        return cls(load_secret(settings), int(settings.session_hours * 3600))

    def _mac(self, purpose: bytes, data: bytes) -> bytes:
        return hmac.new(self._secret, purpose + b":" + data, hashlib.sha256).digest()

    def issue(self, key_name: str = "", now: float | None = None) -> tuple[Session, str]:
        """A new session (new nonce) for ``key_name`` ("" = anonymous) and its cookie value."""
        moment = time.time() if now is None else now
        session = Session(key_name, int(moment) + self.lifetime, secrets.token_urlsafe(18))
        body = _b64(json.dumps([session.key_name, session.expires, session.nonce]).encode())
        return session, f"{body}.{_b64(self._mac(b'session', body.encode()))}"

    def read(self, value: str | None, now: float | None = None) -> Session | None:
        """The session a cookie holds, or None when it is forged, expired or signed out."""
        if not value or value.count(".") != 1:
            return None
        body, signature = value.split(".")
        try:
            if not hmac.compare_digest(_unb64(signature), self._mac(b"session", body.encode())):
                return None
            name, expires, nonce = json.loads(_unb64(body))
        except (ValueError, TypeError):
            return None
        if not (isinstance(name, str) and isinstance(expires, int) and isinstance(nonce, str)):
            return None
        moment = time.time() if now is None else now
        if expires <= moment:
            return None
        with self._lock:
            if nonce in self._ended:
                return None
        return Session(name, expires, nonce)

    def end(self, session: Session, now: float | None = None) -> None:
        """Sign a session out: its cookie is refused from now on (in this process)."""
        moment = time.time() if now is None else now
        with self._lock:
            self._ended = {n: e for n, e in self._ended.items() if e > moment}
            self._ended[session.nonce] = session.expires

    def csrf_token(self, session: Session) -> str:
        """The token every form of this session carries."""
        return _b64(self._mac(b"csrf", session.nonce.encode()))

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        """Whether a posted token belongs to this session."""
        return bool(token) and hmac.compare_digest(str(token), self.csrf_token(session))
