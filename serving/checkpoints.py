"""The audit trail's anchors outside its database: the chain key and signed checkpoints.

Whoever can write to the audit database could otherwise recompute every hash after editing
a record, delete the newest records and roll the head back, or empty the table. Two secrets
held outside the database stop that:

- the **chain key**: each record's hash is an HMAC-SHA256 under it, so a record changed
  without the key no longer matches its hash;
- the **signing key** (Ed25519): every N records or minutes, and when the service stops, a
  checkpoint (store id, sequence number, head hash, time) is signed and appended to a file
  outside the database. A chain that ends before a checkpoint's sequence, or whose record at
  that sequence has another hash, was truncated, rolled back, emptied or rewritten.

Both keys are created with mode 600 on a store's first start and are required afterwards:
a store that holds records but whose key is missing or different is refused.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

log = logging.getLogger(__name__)

KEY_CHECK_MESSAGE = b"aidrec audit chain key check"


class AuditKeyError(RuntimeError):
    """A chain or signing key that is missing, unreadable or not the store's."""


def _write_secret(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement that the chain of ``store_id`` had ``seq`` records ending in ``head``."""

    store_id: str
    seq: int
    head: str
    at: str  # ISO time, UTC
    signature: str  # base64 Ed25519 over the other fields

    def message(self) -> bytes:
        """The bytes the signature covers."""
        return f"{self.store_id}|{self.seq}|{self.head}|{self.at}".encode()


@dataclass(frozen=True)
class AuditSecrets:
    """The chain key, the signing key and where the checkpoints of one store are kept."""

    chain_key: bytes
    signing_key: Ed25519PrivateKey | None  # None: verify only (no checkpoints written)
    public_key: Ed25519PublicKey
    checkpoint_file: Path

    @classmethod
    def load(
        cls,
        chain_key: bytes | None,
        chain_key_file: Path,
        signing_key_file: Path,
        checkpoint_file: Path,
        create: bool,
    ) -> AuditSecrets:
        """The store's secrets; with ``create``, missing key files are made (mode 600).

        ``chain_key`` (e.g. from ``AIDREC_AUDIT_KEY``) takes precedence over the file.
        """
        if chain_key is None:
            if not chain_key_file.exists() and create:
                _write_secret(chain_key_file, secrets.token_hex(32).encode())
                log.warning("created the audit chain key %s: keep a copy apart", chain_key_file)
            try:
                chain_key = chain_key_file.read_bytes().strip()
            except OSError as exc:
                raise AuditKeyError(
                    f"the audit chain key is missing ({chain_key_file}; or set AIDREC_AUDIT_KEY)"
                ) from exc
        if len(chain_key) < 32:
            raise AuditKeyError("the audit chain key must be at least 32 characters")
        if not signing_key_file.exists() and create:
            private = Ed25519PrivateKey.generate()
            pem = private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            _write_secret(signing_key_file, pem)
            public = private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            signing_key_file.with_suffix(".pub").write_bytes(public)
        try:
            loaded = serialization.load_pem_private_key(signing_key_file.read_bytes(), None)
        except (OSError, ValueError) as exc:
            raise AuditKeyError(
                f"the audit signing key is missing or unreadable ({signing_key_file})"
            ) from exc
        if not isinstance(loaded, Ed25519PrivateKey):
            raise AuditKeyError(f"{signing_key_file} is not an Ed25519 private key")
        return cls(chain_key, loaded, loaded.public_key(), checkpoint_file)

    def key_check(self) -> str:
        """A value that shows a key is the store's own without revealing it."""
        return hmac.new(self.chain_key, KEY_CHECK_MESSAGE, hashlib.sha256).hexdigest()

    def sign(self, store_id: str, seq: int, head: str) -> Checkpoint:
        """A signed checkpoint of the chain as it is now."""
        if self.signing_key is None:
            raise AuditKeyError("no signing key: this process may verify but not checkpoint")
        at = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        unsigned = Checkpoint(store_id, seq, head, at, "")
        signature = base64.b64encode(self.signing_key.sign(unsigned.message())).decode()
        return Checkpoint(store_id, seq, head, at, signature)

    def write(self, checkpoint: Checkpoint) -> None:
        """Append a checkpoint to the file (one line, one write: appends do not interleave)."""
        line = json.dumps(vars(checkpoint), separators=(",", ":")) + "\n"
        self.checkpoint_file.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.checkpoint_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(descriptor, line.encode())
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def checkpoints(self) -> Iterator[tuple[int, Checkpoint | None, str]]:
        """Each line of the file: (line number, the checkpoint or None, what is wrong with it)."""
        if not self.checkpoint_file.exists():
            return
        with self.checkpoint_file.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    checkpoint = Checkpoint(**json.loads(line))
                    signature = base64.b64decode(checkpoint.signature)
                    self.public_key.verify(signature, checkpoint.message())
                except (ValueError, TypeError, InvalidSignature):
                    yield number, None, "its signature does not verify (the file was altered)"
                    continue
                yield number, checkpoint, ""
