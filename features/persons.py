"""Person keys: 身份证号 replaced by a keyed hash, so ID numbers never reach aidrec.

A person key is HMAC-SHA256 of the upper-cased 18-character ID number (GB 11643) under the
deployment's secret, written as 64 lowercase hex characters (the contract's ``person_key``).
Case cards and the departments' registries are pseudonymised with the same secret, so they
join on the key; without the secret nobody can go back from a key to the ID number.

Every ID is checked before anything is hashed: 17 digits and a check character computed by
GB 11643-1999 (weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2, sum mod 11 indexes
``10X98765432``). A file with any bad ID is refused whole, naming the rows (never the IDs),
so that a partly pseudonymised file that silently drops people is never written.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

GB11643_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
"""The weights of the first 17 characters (GB 11643-1999, ISO 7064 MOD 11-2)."""
GB11643_CHECK_CODES = "10X98765432"
"""The check character for each value of the weighted sum mod 11."""
PERSON_KEY_COLUMN = "person_key"
MIN_SECRET_BYTES = 32
"""A shorter secret could be guessed; refused like the audit chain's key."""
SECRET_CHECK_MESSAGE = b"aidrec person-key secret check v1"
"""Hashed under the secret to recognise it later (the registry store keeps the result)."""


class PersonKeyError(ValueError):
    """The secret is missing or unusable, or the column is absent."""


@dataclass(frozen=True)
class BadIdentifier:
    """One refused ID: ``row`` is 1-based (the data row, header not counted)."""

    row: int
    problem: str

    def describe(self) -> str:
        """One line a clerk can read; never contains the ID itself."""
        return f"row {self.row}: {self.problem}"


class BadIdentifiersError(ValueError):
    """Some IDs are not valid GB 11643 numbers; nothing was pseudonymised."""

    def __init__(self, problems: Sequence[BadIdentifier]) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} row(s) with an invalid ID number")


def check_character(first17: str) -> str:
    """The GB 11643 check character of the first 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, GB11643_WEIGHTS, strict=True))
    return GB11643_CHECK_CODES[total % 11]


def id_problem(value: object) -> str | None:
    """What is wrong with one ID number (None when it is valid); never repeats the ID."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "the ID number is missing"
    text = str(value).strip().upper()
    if len(text) != 18:
        return f"an ID number has 18 characters (got {len(text)})"
    if not text[:17].isdigit() or not (text[17].isdigit() or text[17] == "X"):
        return "an ID number is 17 digits and a digit or X"
    if check_character(text[:17]) != text[17]:
        return "the check character does not match (GB 11643)"
    return None


def secret_check(secret: bytes) -> str:
    """A fingerprint of the secret: recognises it without revealing it."""
    return hmac.new(secret, SECRET_CHECK_MESSAGE, hashlib.sha256).hexdigest()


def load_secret(value: str | None, path: Path | None) -> bytes:
    """The deployment secret from its value, else from a file.

    Raises:
        PersonKeyError: neither is given, the file is missing, or the secret is too short.
    """
    if value:
        secret = value.encode("utf-8")
    elif path is not None and path.is_file():
        secret = path.read_bytes().strip()
    else:
        where = f" or the file {path}" if path is not None else ""
        raise PersonKeyError(
            "no person-key secret: set AIDREC_PERSON_KEY_SECRET" + where + " (未配置假名化密钥)"
        )
    if len(secret) < MIN_SECRET_BYTES:
        raise PersonKeyError(
            f"the person-key secret must have at least {MIN_SECRET_BYTES} bytes (密钥过短)"
        )
    return secret


def person_keys(ids: Sequence[str], secret: bytes) -> np.ndarray:
    """The person key of each (valid) ID number: HMAC-SHA256 hex of the upper-cased ID."""
    return np.array(
        [
            hmac.new(secret, str(i).strip().upper().encode("ascii"), hashlib.sha256).hexdigest()
            for i in ids
        ],
        dtype=object,
    )


def pseudonymise(frame: pd.DataFrame, column: str, secret: bytes) -> pd.DataFrame:
    """Replace the ID-number ``column`` by ``person_key`` (same position), all or nothing.

    Raises:
        PersonKeyError: the column is absent.
        BadIdentifiersError: at least one ID is invalid (every bad row is named).
    """
    if column not in frame.columns:
        raise PersonKeyError(f"no column {column!r} in the input")
    values = frame[column].tolist()
    problems = [
        BadIdentifier(i + 1, problem)
        for i, value in enumerate(values)
        if (problem := id_problem(value)) is not None
    ]
    if problems:
        raise BadIdentifiersError(problems)
    keys = person_keys([str(v) for v in values], secret)
    out = frame.copy()
    position = list(out.columns).index(column)
    out = out.drop(columns=[column])
    if PERSON_KEY_COLUMN in out.columns:
        out = out.drop(columns=[PERSON_KEY_COLUMN])
        position = min(position, len(out.columns))
    out.insert(position, PERSON_KEY_COLUMN, keys)
    return out


def create_secret_file(path: Path) -> bool:
    """Create a random secret file (mode 600) unless one exists; True when created.

    Only the demonstration job uses this: a deployment provides its own secret, shared with
    the departments that pseudonymise their registries.
    """
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(secrets.token_hex(32))
    return True
