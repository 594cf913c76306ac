"""The audit trail: every answer, review and reload, append-only and tamper-evident.

One table holds one chain: each record (an answer, a review, a reload, a change to the API
keys) stores the hash of the record before it, and its own
hash: an HMAC-SHA256, under a key held outside the database, over its content and that
link. Signed checkpoints outside the database anchor the chain's length and head
(``serving.checkpoints``). :func:`verify_chain` walks the chain and names the first record
changed, inserted or removed, and a chain truncated, rolled back or emptied behind a
checkpoint. Appends are serialised by a one-row ``audit_head`` table updated in the same
transaction with a compare-and-set on the previous hash, so two writers (threads,
processes, or replicas on one PostgreSQL) can never fork the chain; every wait for the
store is bounded, so a stuck store gives a refusal, not a hang.

Times are stored and hashed in UTC on every backend (SQLite keeps no zone), so the verdict
is the same under any ``TZ``. SQLite runs in WAL mode; any SQLAlchemy URL works.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from serving.answer_index import AnswerIndex, AnswerQuery, IndexedAnswer, define_tables, rebuild
from serving.checkpoints import AuditKeyError, AuditSecrets
from serving.sqltypes import UTCDateTime

log = logging.getLogger(__name__)

GENESIS = "0" * 64
PREDICTION = "prediction"
REVIEW = "review"
RELOAD = "reload"
KEYED_SCHEME = "hmac-sha256-v2"
LEGACY_SCHEME = "sha256-v1"

KEY_CHANGE = "key"
"""A key created, imported or revoked (``serving.keys``): in the chain, not in the index."""
INDEXED_KINDS = (PREDICTION, REVIEW)
"""The kinds of record the answer index reads; every other kind lives in the chain only."""


metadata = MetaData()
records = Table(
    "audit_records",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("kind", String(16), nullable=False),
    Column("record_id", String(36), nullable=False, unique=True),
    Column("prediction_id", String(36), nullable=False, index=True),
    Column("created_at", UTCDateTime, nullable=False, index=True),
    Column("caller", String(64), nullable=False),
    Column("case_id", String(64), nullable=False, index=True),
    Column("province_code", String(2), nullable=False, index=True),
    Column("flagged", Boolean, nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("payload", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
)
meta = Table(
    "audit_meta",
    metadata,
    Column("key", String(32), primary_key=True),
    Column("value", String(128), nullable=False),
)
index = AnswerIndex(*define_tables(metadata))


class AuditError(RuntimeError):
    """The audit store could not record or read: the caller must not answer unaudited."""


def canonical_json(value: Any) -> str:
    """The one serialisation of a payload: sorted keys, no spaces, non-finite numbers refused."""
    return json.dumps(
        value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    )


def utc_text(moment: dt.datetime) -> str:
    """A moment as the text the hash covers: UTC, microseconds, no zone suffix."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)  # a value read back from SQLite is UTC
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def _content(row: dict[str, Any]) -> bytes:
    created = row["created_at"]
    content = {
        "seq": row["seq"],
        "kind": row["kind"],
        "record_id": row["record_id"],
        "prediction_id": row["prediction_id"],
        "created_at": utc_text(created) if isinstance(created, dt.datetime) else created,
        "caller": row["caller"],
        "case_id": row["case_id"],
        "province_code": row["province_code"],
        "flagged": bool(row["flagged"]),
        "model_version": row["model_version"],
        # the stored payload text enters through its own digest: re-escaping ~20 KB of JSON
        # inside the content would double the cost of every append
        "payload_sha256": hashlib.sha256(row["payload"].encode("utf-8")).hexdigest(),
        "prev_hash": row["prev_hash"],
    }
    return canonical_json(content).encode("utf-8")


def record_hash(row: dict[str, Any], chain_key: bytes) -> str:
    """The keyed hash of a record's content and its link to the previous record."""
    return hmac.new(chain_key, _content(row), hashlib.sha256).hexdigest()


def legacy_hash(row: dict[str, Any]) -> str:
    """The unkeyed hash of stores written before the keyed chain (for ``audit migrate``)."""
    return hashlib.sha256(_content(row)).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    """What a caller appends (the store adds the sequence, time and hashes)."""

    kind: str
    prediction_id: str
    caller: str
    case_id: str
    province_code: str
    flagged: bool
    model_version: str
    payload: dict[str, Any]
    record_id: str | None = None


@dataclass(frozen=True)
class AuditRecord:
    """One stored record, payload decoded."""

    seq: int
    kind: str
    record_id: str
    prediction_id: str
    created_at: dt.datetime
    caller: str
    case_id: str
    province_code: str
    flagged: bool
    model_version: str
    payload: dict[str, Any]


def _row_to_record(row: Any) -> AuditRecord:
    created = row.created_at
    if created.tzinfo is None:
        created = created.replace(tzinfo=dt.UTC)
    return AuditRecord(
        row.seq,
        row.kind,
        row.record_id,
        row.prediction_id,
        created,
        row.caller,
        row.case_id,
        row.province_code,
        bool(row.flagged),
        row.model_version,
        json.loads(row.payload),
    )


def make_engine(url: str, timeout_s: float = 2.0) -> Engine:
    """An engine for the audit store whose every wait is bounded by ``timeout_s``.

    SQLite gets WAL and a busy timeout; PostgreSQL a connect, lock and statement timeout;
    both a bounded wait for a pooled connection.
    """
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": timeout_s, "check_same_thread": False},
            pool_timeout=timeout_s,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    milliseconds = max(1, int(timeout_s * 1000))
    options = f"-c lock_timeout={milliseconds} -c statement_timeout={milliseconds * 5}"
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_timeout=timeout_s,
        connect_args={"connect_timeout": max(1, int(timeout_s)), "options": options},
    )


@dataclass(frozen=True)
class CheckpointPolicy:
    """How often a store anchors its chain outside the database."""

    every_records: int = 100
    every_seconds: float = 60.0


class AuditStore:
    """Append and read audit records."""

    def __init__(
        self,
        engine: Engine,
        secrets: AuditSecrets,
        store_id: str = "",
        timeout_s: float = 2.0,
        checkpoints: CheckpointPolicy | None = None,
    ) -> None:
        self.engine = engine
        self.secrets = secrets
        self.store_id = store_id
        self.timeout_s = timeout_s
        self.checkpoint_policy = checkpoints or CheckpointPolicy()
        self._lock = threading.Lock()  # fewer compare-and-set retries inside one process
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()

    @classmethod
    def open(
        cls,
        url: str,
        secrets: AuditSecrets,
        timeout_s: float = 2.0,
        checkpoints: CheckpointPolicy | None = None,
    ) -> AuditStore:
        """Open (and create if needed) the store at ``url``, keyed by ``secrets``.

        A new store records its id, the chain scheme and a check of the key. An existing
        store must be keyed with the same key; one written before the keyed chain must be
        migrated first (``aidrec audit migrate``).
        """
        engine = make_engine(url, timeout_s)
        try:
            metadata.create_all(engine)
            store_id = _initialised(engine, secrets)
            store = cls(engine, secrets, store_id, timeout_s, checkpoints)
            with engine.connect() as connection:
                stored = connection.execute(
                    select(func.count()).where(records.c.kind == PREDICTION)
                ).scalar()
                indexed = connection.execute(
                    select(func.count()).select_from(index.answers)
                ).scalar()
                current = index.matches(connection)
                if not current:  # written by older code: the index is derived, so remake it
                    index.recreate(connection)
            if stored != indexed or not current:  # a store from before the index, or by hand
                log.info("indexing %d stored predictions (%d indexed)", stored, indexed)
                store.reindex()
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot open the audit store: {_plain_error(exc)}") from exc
        return store

    def append(self, entry: AuditEntry) -> AuditRecord:
        """Append one record to the chain; raises AuditError when it cannot be stored."""
        return self.append_many([entry])[0]

    def append_many(
        self,
        entries: Sequence[AuditEntry],
        alongside: Callable[[Connection], object] | None = None,
    ) -> list[AuditRecord]:
        """Append records in one transaction, chained in order (all or none are stored).

        Payloads are serialised first: one that cannot be (a non-finite number) is refused
        before anything is written. Every wait is bounded by the store's timeout.
        ``alongside`` runs in the same transaction (e.g. the key change a record describes),
        so that the change and its record are stored together or not at all.
        """
        try:
            rows: list[dict[str, Any]] = [
                {
                    "kind": e.kind,
                    "record_id": e.record_id
                    or (e.prediction_id if e.kind == PREDICTION else str(uuid.uuid4())),
                    "prediction_id": e.prediction_id,
                    "caller": e.caller,
                    "case_id": e.case_id,
                    "province_code": e.province_code,
                    "flagged": bool(e.flagged),
                    "model_version": e.model_version,
                    "payload": canonical_json(e.payload),
                }
                for e in entries
            ]
        except ValueError as exc:
            raise AuditError(f"a record cannot be serialised: {exc}") from exc
        if not rows:
            return []
        if not self._lock.acquire(timeout=self.timeout_s):
            raise AuditError(f"the audit store stayed busy for {self.timeout_s:g} s")
        try:
            stored = self._append(rows, entries, alongside)
        except SQLAlchemyError as exc:
            raise AuditError(f"the audit store refused the record: {_plain_error(exc)}") from exc
        finally:
            self._lock.release()
        self._maybe_checkpoint(len(stored))
        return stored

    def _append(
        self,
        rows: list[dict[str, Any]],
        entries: Sequence[AuditEntry],
        alongside: Callable[[Connection], object] | None,
    ) -> list[AuditRecord]:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            with self.engine.begin() as connection:
                current = connection.execute(select(head.c.seq, head.c.hash)).one()
                seq, previous = current.seq, current.hash
                now = dt.datetime.now(dt.UTC)
                for row in rows:
                    seq += 1
                    row.update(seq=seq, prev_hash=previous, created_at=now)
                    row["hash"] = previous = record_hash(row, self.secrets.chain_key)
                moved = connection.execute(
                    update(head)
                    .where(head.c.id == 1, head.c.hash == current.hash)
                    .values(seq=seq, hash=previous)
                ).rowcount
                if moved != 1:
                    continue  # another writer appended first: retry on the new head
                connection.execute(insert(records), rows)
                for row, entry in zip(rows, entries, strict=True):
                    if entry.kind == PREDICTION:
                        index.record_prediction(connection, row, entry.payload)
                    elif entry.kind == REVIEW:
                        index.record_review(connection, row, entry.payload)
                if alongside is not None:
                    alongside(connection)
                return [_row_to_record(_Row(row)) for row in rows]
        raise AuditError(f"the audit chain stayed busy for {self.timeout_s:g} s")

    def _maybe_checkpoint(self, appended: int) -> None:
        self._since_checkpoint += appended
        policy = self.checkpoint_policy
        due = self._since_checkpoint >= policy.every_records or (
            time.monotonic() - self._last_checkpoint >= policy.every_seconds
        )
        if due:
            try:
                self.checkpoint()
            except (AuditError, OSError) as exc:  # the record is stored; the anchor comes later
                log.error("audit checkpoint failed (the next append retries): %s", exc)

    def checkpoint(self) -> None:
        """Sign the chain's current length and head and append it outside the database."""
        try:
            with self.engine.connect() as connection:
                state = connection.execute(select(head.c.seq, head.c.hash)).one()
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot read the chain head: {_plain_error(exc)}") from exc
        self.secrets.write(self.secrets.sign(self.store_id, state.seq, state.hash))
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        log.info("audit checkpoint: %d records, head %s", state.seq, state.hash[:12])

    def writable(self) -> str | None:
        """None when the store accepts a write now, else why not.

        A bounded no-op write on the head row that every append takes, rolled back.
        """
        try:
            with self.engine.connect() as connection:
                transaction = connection.begin()
                connection.execute(update(head).where(head.c.id == 1).values(seq=head.c.seq))
                transaction.rollback()
        except SQLAlchemyError as exc:
            return _plain_error(exc)
        return None

    def prediction(self, prediction_id: str) -> AuditRecord | None:
        """One stored prediction."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(records).where(
                    records.c.record_id == prediction_id, records.c.kind == PREDICTION
                )
            ).first()
        return _row_to_record(row) if row else None

    def reviews(self, prediction_id: str) -> list[AuditRecord]:
        """Reviews of one prediction, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(records)
                .where(records.c.prediction_id == prediction_id, records.c.kind == REVIEW)
                .order_by(records.c.seq)
            ).all()
        return [_row_to_record(r) for r in rows]

    def predictions(
        self, query: AnswerQuery, limit: int = 50, offset: int = 0
    ) -> tuple[list[AuditRecord], int]:
        """A page of stored predictions that match ``query`` and the total that match."""
        matching = index.select_ids(query)
        with self.engine.connect() as connection:
            total = connection.execute(select(func.count()).select_from(matching.subquery()))
            ids = [
                row.prediction_id
                for row in connection.execute(matching.limit(limit).offset(offset))
            ]
            rows = connection.execute(select(records).where(records.c.record_id.in_(ids))).all()
            count = int(total.scalar() or 0)
        by_id = {row.record_id: _row_to_record(row) for row in rows}
        return [by_id[i] for i in ids if i in by_id], count

    def indexed(self, prediction_ids: Sequence[str]) -> dict[str, IndexedAnswer]:
        """The searchable facts of some stored predictions (office, deviation, leads...)."""
        with self.engine.connect() as connection:
            return index.facts(connection, prediction_ids)

    def indexed_columns(self, query: AnswerQuery, names: Sequence[str]) -> list[tuple[Any, ...]]:
        """Some indexed columns of every answer that matches ``query`` (for reports)."""
        try:
            with self.engine.connect() as connection:
                result = connection.execute(index.select_columns(query, names))
                return [tuple(row) for row in result]
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot read the stored answers: {exc}") from exc

    def reindex(self) -> int:
        """Rebuild the answer index from the chain; returns the predictions indexed."""
        with self.engine.begin() as connection:
            chain = connection.execute(
                select(records).where(records.c.kind.in_(INDEXED_KINDS)).order_by(records.c.seq)
            )
            pairs = ((dict(row._mapping), json.loads(row.payload)) for row in chain.all())
            return rebuild(index, connection, pairs)

    def reviewed_predictions(self) -> Iterator[tuple[AuditRecord, AuditRecord]]:
        """(prediction, its latest review) for every reviewed prediction, in chain order."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(records).where(records.c.kind == REVIEW).order_by(records.c.seq)
            ).all()
        latest: dict[str, AuditRecord] = {}
        for row in rows:
            review = _row_to_record(row)
            latest[review.prediction_id] = review
        for prediction_id, review in latest.items():
            prediction = self.prediction(prediction_id)
            if prediction is not None:
                yield prediction, review


class _Row:
    """Attribute access over a dict, to build an AuditRecord from a row being inserted."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def _plain_error(exc: SQLAlchemyError) -> str:
    """The driver's complaint without the statement and its parameters (they hold data)."""
    original = getattr(exc, "orig", None)
    return f"{type(original or exc).__name__}: {str(original or exc).splitlines()[0][:200]}"


def is_new_store(url: str) -> bool:
    """Whether the store at ``url`` holds nothing yet (its keys may then be made)."""
    engine = make_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        if "audit_records" not in tables:
            return True
        with engine.connect() as connection:
            return not connection.execute(select(records.c.seq).limit(1)).first() and not (
                "audit_meta" in tables and connection.execute(select(meta.c.key)).first()
            )
    except SQLAlchemyError as exc:
        raise AuditError(f"cannot open the audit store: {_plain_error(exc)}") from exc
    finally:
        engine.dispose()


def _initialised(engine: Engine, secrets: AuditSecrets) -> str:
    """The store's id, after making a new store keyed, or checking an existing one's key."""
    with engine.begin() as connection:
        if connection.execute(select(head.c.id)).first() is None:
            connection.execute(insert(head).values(id=1, seq=0, hash=GENESIS))
        known = dict(connection.execute(select(meta.c.key, meta.c.value)).all())
        count = connection.execute(select(func.count()).select_from(records)).scalar() or 0
        if not known:
            if count:
                raise AuditError(
                    f"the audit store holds {count} records written before the keyed chain: "
                    "run `aidrec audit migrate` (see the README) before serving"
                )
            known = {
                "store_id": str(uuid.uuid4()),
                "scheme": KEYED_SCHEME,
                "key_check": secrets.key_check(),
            }
            connection.execute(insert(meta), [{"key": k, "value": v} for k, v in known.items()])
    if known.get("scheme") != KEYED_SCHEME:
        raise AuditError(f"unknown audit chain scheme {known.get('scheme')!r}")
    if not hmac.compare_digest(known["key_check"], secrets.key_check()):
        raise AuditKeyError("the audit chain key is not this store's key: refusing to open it")
    return known["store_id"]


@dataclass(frozen=True)
class ChainReport:
    """The result of walking the chain and comparing it with the signed checkpoints."""

    ok: bool
    records: int
    message: str
    first_bad_seq: int | None = None
    checkpoints: int = 0


def _walk(engine: Engine, hash_of: Any) -> tuple[ChainReport | None, int, str, dict[int, str]]:
    """Walk the chain: (the first problem or None, records, last hash, hash by seq)."""
    previous_hash, expected_seq, count = GENESIS, 1, 0
    hashes: dict[int, str] = {}
    with engine.connect() as connection:
        result = connection.execution_options(stream_results=True).execute(
            select(records).order_by(records.c.seq)
        )
        for row in result:
            values = dict(row._mapping)
            count += 1
            seq = values["seq"]
            if seq != expected_seq:
                message = f"record {expected_seq} is missing (removed): the chain jumps to {seq}"
                return ChainReport(False, count, message, expected_seq), count, "", hashes
            if values["prev_hash"] != previous_hash:
                message = (
                    f"record {seq} does not link to the record before it (removed or replaced)"
                )
                return ChainReport(False, count, message, seq), count, "", hashes
            if not hmac.compare_digest(hash_of(values), values["hash"]):
                message = (
                    f"record {seq} ({values['kind']} {values['record_id']}) was changed after "
                    "it was written (its keyed hash does not match)"
                )
                return ChainReport(False, count, message, seq), count, "", hashes
            hashes[seq] = values["hash"]
            previous_hash, expected_seq = values["hash"], expected_seq + 1
        state = connection.execute(select(head.c.seq, head.c.hash)).first()
    if state is not None and (state.seq != count or state.hash != previous_hash):
        message = (
            f"the chain ends at record {count} but its head says {state.seq} were written: "
            "the newest record(s) were removed"
        )
        return ChainReport(False, count, message, count + 1), count, previous_hash, hashes
    return None, count, previous_hash, hashes


def verify_chain(engine: Engine, secrets: AuditSecrets) -> ChainReport:
    """Walk every record and check the signed checkpoints; report the first problem.

    Names a record changed, inserted or removed; a chain rewritten with another key; newest
    records removed with the head rolled back (the chain ends before a checkpoint); a
    chain emptied; and a checkpoint file that was altered or belongs to another store.
    """
    with engine.connect() as connection:
        known = dict(connection.execute(select(meta.c.key, meta.c.value)).all())
    if known and not hmac.compare_digest(known.get("key_check", ""), secrets.key_check()):
        return ChainReport(False, 0, "the store was keyed with another chain key", 1)
    problem, count, _, hashes = _walk(engine, lambda row: record_hash(row, secrets.chain_key))
    if problem is not None:
        return problem
    store_id = known.get("store_id")
    seen = 0
    for line, checkpoint, wrong in secrets.checkpoints():
        seen += 1
        if checkpoint is None:
            return ChainReport(False, count, f"checkpoint line {line}: {wrong}", None, seen)
        if checkpoint.store_id != store_id:
            return ChainReport(
                False,
                count,
                f"checkpoint line {line} was signed for store {checkpoint.store_id}, but the "
                f"database is store {store_id}: the store was replaced or emptied and re-made",
                1,
                seen,
            )
        if checkpoint.seq > count:
            what = "emptied" if count == 0 else "truncated and its head rolled back"
            return ChainReport(
                False,
                count,
                f"a checkpoint signed at {checkpoint.at} saw {checkpoint.seq} records, but the "
                f"chain holds {count}: it was {what}",
                count + 1,
                seen,
            )
        if checkpoint.seq and hashes.get(checkpoint.seq) != checkpoint.head:
            return ChainReport(
                False,
                count,
                f"record {checkpoint.seq} is not the one the checkpoint signed at "
                f"{checkpoint.at} saw: the chain was rewritten",
                checkpoint.seq,
                seen,
            )
    return ChainReport(
        True, count, f"all {count} records intact; {seen} checkpoints agree", None, seen
    )


def migrate(url: str, secrets: AuditSecrets) -> tuple[ChainReport, ChainReport]:
    """Key a store written before the keyed chain; returns the verdicts before and after.

    The old (unkeyed) chain is verified first and nothing is changed unless it is intact;
    then, in one transaction, every hash is recomputed under the chain key, the store is
    marked keyed, and a first checkpoint is signed.
    """
    engine = make_engine(url, timeout_s=30.0)
    metadata.create_all(engine)
    with engine.connect() as connection:
        if connection.execute(select(meta.c.value).where(meta.c.key == "scheme")).first():
            report = verify_chain(engine, secrets)
            return report, report
    problem, count, _, _ = _walk(engine, legacy_hash)
    before = problem or ChainReport(True, count, f"all {count} records intact (unkeyed chain)")
    if not before.ok:
        return before, before
    store_id = str(uuid.uuid4())
    with engine.begin() as connection:
        previous = GENESIS
        rows = connection.execute(select(records).order_by(records.c.seq)).all()
        for row in rows:
            values = dict(row._mapping)
            values["prev_hash"] = previous
            values["hash"] = previous = record_hash(values, secrets.chain_key)
            connection.execute(
                update(records)
                .where(records.c.seq == values["seq"])
                .values(prev_hash=values["prev_hash"], hash=values["hash"])
            )
        if connection.execute(select(head.c.id)).first() is None:
            connection.execute(insert(head).values(id=1, seq=0, hash=GENESIS))
        connection.execute(update(head).where(head.c.id == 1).values(seq=len(rows), hash=previous))
        connection.execute(
            insert(meta),
            [
                {"key": "store_id", "value": store_id},
                {"key": "scheme", "value": KEYED_SCHEME},
                {"key": "key_check", "value": secrets.key_check()},
            ],
        )
    secrets.write(secrets.sign(store_id, len(rows), previous))
    after = verify_chain(engine, secrets)
    engine.dispose()
    return before, after
