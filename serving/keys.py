"""The API keys, in the audit store's database: created, listed and revoked while serving.

Keys are stored as SHA-256 hashes with a name, a role and a scope (``serving.security``,
``serving.scopes``). Each request looks the presented key's hash up in the table (an
indexed read of one row: about 0.5 ms measured on SQLite, beside the ~28 ms of an answer),
with no cache: a key revoked by ``aidrec keys revoke`` in another process is refused from the very
next request, on every replica that shares the database. ``last_used_at`` is written at most
once a minute per key and process, so reading keys never becomes a write per request.

Every change (a key created, imported from a key file, revoked) is a record of its own kind
in the audit chain, written in the same transaction as the change. Names and hashes are
unique for ever: a revoked key keeps its row (so its name in the audit trail stays
unambiguous and a key file cannot bring it back).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from aidrec.settings import Settings
from serving.audit import KEY_CHANGE, AuditEntry, AuditError, AuditStore
from serving.scopes import NATIONAL, Scope, ScopeError
from serving.security import ROLES, ApiKey, key_hash
from serving.sqltypes import UTCDateTime
from serving.stores import open_audit_store

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NAME_RULE = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
LAST_USED_EVERY_S = 60.0
"""``last_used_at`` is written at most this often per key and process."""
STARTUP = "aidrec serve (first start)"
"""Who created the default keys, as the audit trail names it."""

metadata = MetaData()
api_keys = Table(
    "api_keys",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("scope", String(6), nullable=False),  # "" = national
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
)


class KeyStoreError(ValueError):
    """A key change that is refused (duplicate name or key, unknown name, bad role...)."""


@dataclass(frozen=True)
class KeyInfo:
    """What ``aidrec keys list`` shows of a key: never the key itself."""

    name: str
    role: str
    scope: Scope
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment


def _checked(name: str, role: str, sha256: str) -> None:
    if not NAME_PATTERN.match(name or ""):
        raise KeyStoreError(f"key name {name!r}: a name is {NAME_RULE}")
    if role not in ROLES:
        raise KeyStoreError(f"key {name!r}: unknown role {role!r}; one of {', '.join(ROLES)}")
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise KeyStoreError(f"key {name!r}: sha256 must be 64 lowercase hex characters")


class KeyStore:
    """The keys of one audit store's database."""

    def __init__(self, audit: AuditStore) -> None:
        self.audit = audit
        self.engine = audit.engine
        metadata.create_all(self.engine)
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()

    def identify(self, presented: str | None) -> ApiKey | None:
        """The active key a caller presented, or None (unknown or revoked).

        Raises:
            AuditError: the database cannot be read (the caller answers 503).
        """
        if not presented:
            return None
        digest = key_hash(presented)
        try:
            with self.engine.connect() as connection:
                row = connection.execute(
                    select(api_keys.c.name, api_keys.c.role, api_keys.c.scope).where(
                        api_keys.c.sha256 == digest, api_keys.c.revoked_at.is_(None)
                    )
                ).first()
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot read the API keys: {exc}") from exc
        if row is None:
            return None
        self._touch(row.name)
        return ApiKey(row.name, row.role, digest, Scope(row.scope))

    def named(self, name: str) -> ApiKey | None:
        """The active key called ``name``, or None (a page session remembers the name only).

        Raises:
            AuditError: the database cannot be read (the caller answers 503).
        """
        try:
            with self.engine.connect() as connection:
                row = connection.execute(
                    select(
                        api_keys.c.name, api_keys.c.role, api_keys.c.sha256, api_keys.c.scope
                    ).where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
                ).first()
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot read the API keys: {exc}") from exc
        if row is None:
            return None
        self._touch(row.name)
        return ApiKey(row.name, row.role, row.sha256, Scope(row.scope))

    def _touch(self, name: str) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._touched.get(name)
            if last is not None and now - last < LAST_USED_EVERY_S:
                return
            self._touched[name] = now
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    update(api_keys)
                    .where(api_keys.c.name == name)
                    .values(last_used_at=dt.datetime.now(dt.UTC))
                )
        except SQLAlchemyError as exc:  # never refuse a request for its bookkeeping
            log.warning("could not record that key %r was used: %s", name, exc)

    def entries(self) -> list[KeyInfo]:
        """Every key ever created, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(api_keys).order_by(api_keys.c.created_at)).all()
        return [
            KeyInfo(
                row.name,
                row.role,
                Scope(row.scope),
                _aware(row.created_at) or dt.datetime.now(dt.UTC),
                _aware(row.last_used_at),
                _aware(row.revoked_at),
            )
            for row in rows
        ]

    def count(self) -> int:
        """How many keys were ever created (revoked ones included)."""
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(api_keys)).scalar() or 0)

    def _record(
        self,
        action: str,
        actor: str,
        key: ApiKey,
        change: Callable[[Connection], object],
    ) -> None:
        """Make a change and append its record to the audit chain, in one transaction."""
        record_id = str(uuid.uuid4())
        entry = AuditEntry(
            kind=KEY_CHANGE,
            prediction_id=record_id,
            caller=actor[:64],
            case_id="",
            province_code="",
            flagged=False,
            model_version="",
            payload={
                "action": action,
                "name": key.name,
                "role": key.role,
                "scope": str(key.scope),
                "fingerprint": key.sha256[:12],
            },
            record_id=record_id,
        )
        self.audit.append_many([entry], alongside=change)

    def _refuse_duplicates(self, name: str, sha256: str) -> None:
        with self.engine.connect() as connection:
            by_name = connection.execute(
                select(api_keys.c.revoked_at).where(api_keys.c.name == name)
            ).first()
            by_hash = connection.execute(
                select(api_keys.c.name).where(api_keys.c.sha256 == sha256)
            ).first()
        if by_name is not None:
            state = " (revoked; names are never reused)" if by_name.revoked_at else ""
            raise KeyStoreError(f"a key named {name!r} already exists{state}")
        if by_hash is not None:
            raise KeyStoreError(f"this key is already registered, as {by_hash.name!r}")

    def add(self, key: ApiKey, actor: str, action: str = "created") -> None:
        """Store a key (its hash) and record the change; refused if its name or hash exists."""
        _checked(key.name, key.role, key.sha256)
        self._refuse_duplicates(key.name, key.sha256)
        row = {
            "name": key.name,
            "role": key.role,
            "sha256": key.sha256,
            "scope": key.scope.code,
            "created_at": dt.datetime.now(dt.UTC),
        }
        try:
            self._record(action, actor, key, lambda c: c.execute(insert(api_keys).values(**row)))
        except AuditError as exc:  # a concurrent writer took the name or the key first
            self._refuse_duplicates(key.name, key.sha256)
            raise exc

    def create(self, name: str, role: str, scope: Scope, actor: str) -> str:
        """A new key: stored as a hash, returned in clear (the only time it is shown)."""
        plain = f"aidrec_{role}_{secrets.token_urlsafe(24)}"
        self.add(ApiKey(name, role, key_hash(plain), scope), actor)
        return plain

    def revoke(self, name: str, actor: str) -> dt.datetime:
        """Revoke a key (from the next request on); returns when."""
        with self.engine.connect() as connection:
            row = connection.execute(select(api_keys).where(api_keys.c.name == name)).first()
        if row is None:
            raise KeyStoreError(f"no key named {name!r}")
        if row.revoked_at is not None:
            raise KeyStoreError(f"key {name!r} was already revoked on {_aware(row.revoked_at)}")
        now = dt.datetime.now(dt.UTC)
        key = ApiKey(row.name, row.role, row.sha256, Scope(row.scope))
        self._record(
            "revoked",
            actor,
            key,
            lambda c: c.execute(
                update(api_keys)
                .where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            ),
        )
        return now

    def import_file(self, path: Path, actor: str) -> list[str]:
        """Import the keys of a key file (``{name, role, sha256, scope}``) not yet stored.

        A name already stored keeps its stored key (a revoked key stays revoked); an entry
        whose hash is stored under another name is skipped. Returns the names imported.

        Raises:
            KeyStoreError: the file cannot be read, or an entry is malformed.
        """
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(entries, list):
                raise ValueError("the file must hold a JSON list of keys")
            keys = [self._entry(entry) for entry in entries]
        except (OSError, ValueError, KeyError, TypeError, ScopeError) as exc:
            raise KeyStoreError(f"{path}: cannot read the API keys: {exc}") from exc
        with self.engine.connect() as connection:
            stored = {
                row.name: row.sha256
                for row in connection.execute(select(api_keys.c.name, api_keys.c.sha256))
            }
        hashes = {sha: name for name, sha in stored.items()}
        imported = []
        for key in keys:
            if key.name in stored:
                if stored[key.name] != key.sha256:
                    log.warning("%s: key %r differs from the stored one; kept", path, key.name)
                continue
            if key.sha256 in hashes:
                log.warning(
                    "%s: key %r is stored as %r; skipped", path, key.name, hashes[key.sha256]
                )
                continue
            self.add(key, actor, action="imported")
            stored[key.name], hashes[key.sha256] = key.sha256, key.name
            imported.append(key.name)
        if imported:
            log.info("imported %d API key(s) from %s", len(imported), path)
        return imported

    @staticmethod
    def _entry(entry: Any) -> ApiKey:
        key = ApiKey(
            str(entry["name"]),
            str(entry["role"]),
            str(entry["sha256"]).lower(),
            Scope.parse(entry.get("scope")),
        )
        try:
            _checked(key.name, key.role, key.sha256)
        except KeyStoreError as exc:
            raise ValueError(str(exc)) from None
        return key


def open_keys(settings: Settings, actor: str) -> KeyStore:
    """The key store of these settings, with the key file (if any) imported."""
    store = KeyStore(open_audit_store(settings))
    if settings.api_keys_path.is_file():
        store.import_file(settings.api_keys_path, actor)
    return store


def ensure_keys(settings: Settings) -> dict[str, str] | None:
    """Import the key file; when no key was ever created, make one national key per role.

    Returns the new keys in clear (the only time they are shown), else None.
    """
    store = open_keys(settings, STARTUP)
    try:
        if store.count():
            return None
        return {role: store.create(f"default-{role}", role, NATIONAL, STARTUP) for role in ROLES}
    finally:
        store.engine.dispose()
