"""API keys with roles. Keys are stored as SHA-256 hashes, never in clear.

Roles: ``case_system`` scores, ``reviewer`` reads predictions and adds reviews, ``admin``
reloads the model (and may do everything else). Each key also has a scope (national, a
province, a city or an office; ``serving.scopes``) that limits what it may read. The embedded
default creates one national key per role on first start, in ``data_dir/api_keys.json``
(mode 600), and returns them once for the command line to print; a deployment writes its own
file of ``{name, role, sha256, scope}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from serving.scopes import NATIONAL, Scope

CASE_SYSTEM, REVIEWER, ADMIN = "case_system", "reviewer", "admin"
ROLES = (CASE_SYSTEM, REVIEWER, ADMIN)
HEADER = "X-API-Key"


class KeyFileError(ValueError):
    """The key file is unusable."""


def key_hash(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """One configured key (its hash), its role and the part of the country it may read."""

    name: str
    role: str
    sha256: str
    scope: Scope = NATIONAL


class KeyRing:
    """The configured keys; looks a presented key up by its hash in constant time."""

    def __init__(self, keys: list[ApiKey]) -> None:
        for key in keys:
            if key.role not in ROLES:
                raise KeyFileError(f"key {key.name!r}: unknown role {key.role!r} (one of {ROLES})")
            if len(key.sha256) != 64:
                raise KeyFileError(f"key {key.name!r}: sha256 must be 64 hex characters")
        self.keys = keys

    @classmethod
    def from_entries(cls, entries: list[dict[str, str]]) -> KeyRing:
        """Keys from ``{name, role, sha256, scope}`` entries (scope optional: national)."""
        return cls(
            [
                ApiKey(e["name"], e["role"], e["sha256"].lower(), Scope.parse(e.get("scope")))
                for e in entries
            ]
        )

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        """Read a key file."""
        try:
            return cls.from_entries(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyFileError(f"{path}: cannot read the API keys: {exc}") from exc

    def identify(self, presented: str | None) -> ApiKey | None:
        """The key a caller presented, or None."""
        if not presented:
            return None
        digest = key_hash(presented)
        found = None
        for key in self.keys:
            if hmac.compare_digest(key.sha256, digest):
                found = key
        return found

    def named(self, name: str) -> ApiKey | None:
        """The key called ``name`` (a page session remembers the name, never the key)."""
        return next((key for key in self.keys if key.name == name), None)


def ensure_keys(path: Path) -> dict[str, str] | None:
    """Create one key per role when no key file exists; return them (the only time)."""
    if path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = {role: f"aidrec_{role}_{secrets.token_urlsafe(24)}" for role in ROLES}
    entries = [
        {"name": f"default-{role}", "role": role, "sha256": key_hash(key)}
        for role, key in plain.items()
    ]
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(entries, handle, indent=2)
    return plain
