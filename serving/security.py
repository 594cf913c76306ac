"""API keys: roles, scopes and the stored form of a key (its SHA-256 hash, never the key).

Roles: ``case_system`` scores, ``reviewer`` reads predictions and reports and adds reviews,
``admin`` reloads the model (and may do everything else). Each key also has a scope
(national, a province, a city or an office; ``serving.scopes``) that limits what it may
read. The keys themselves live in the audit store's database (``serving.keys``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from serving.scopes import NATIONAL, Scope

CASE_SYSTEM, REVIEWER, ADMIN = "case_system", "reviewer", "admin"
ROLES = (CASE_SYSTEM, REVIEWER, ADMIN)
HEADER = "X-API-Key"


def key_hash(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """One key (its hash), its role and the part of the country it may read."""

    name: str
    role: str
    sha256: str
    scope: Scope = NATIONAL
