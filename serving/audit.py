"""The audit trail: every answer and every review, append-only and tamper-evident.

One table holds one hash chain: each record (a prediction, a review, or a change to the API
keys) stores the hash of the record before it, and its own hash over its content and that
link. :func:`verify_chain` walks the chain and names the first record that was changed,
inserted or removed. Appends
are serialised by a one-row ``audit_head`` table updated in the same transaction with a
compare-and-set on the previous hash, so two writers (threads, processes, or replicas on
one PostgreSQL) can never fork the chain. SQLite runs in WAL mode; any SQLAlchemy URL works.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
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
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from serving.answer_index import AnswerIndex, AnswerQuery, IndexedAnswer, define_tables, rebuild

log = logging.getLogger(__name__)

GENESIS = "0" * 64
PREDICTION = "prediction"
REVIEW = "review"
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
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
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
index = AnswerIndex(*define_tables(metadata))


class AuditError(RuntimeError):
    """The audit store could not record or read: the caller must not answer unaudited."""


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def record_hash(row: dict[str, Any]) -> str:
    """The hash of a record's content and its link to the previous record."""
    created = row["created_at"]
    if isinstance(created, dt.datetime):
        created = created.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds")
    content = {
        "seq": row["seq"],
        "kind": row["kind"],
        "record_id": row["record_id"],
        "prediction_id": row["prediction_id"],
        "created_at": created,
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
    return hashlib.sha256(_canonical(content).encode("utf-8")).hexdigest()


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


def make_engine(url: str) -> Engine:
    """An engine for the audit store; SQLite gets WAL and a busy timeout."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


class AuditStore:
    """Append and read audit records."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()  # fewer compare-and-set retries inside one process

    @classmethod
    def open(cls, url: str) -> AuditStore:
        """Open (and create if needed) the store at ``url``."""
        store = cls(make_engine(url))
        try:
            metadata.create_all(store.engine)
            with store.engine.begin() as connection:
                if connection.execute(select(head.c.id)).first() is None:
                    connection.execute(insert(head).values(id=1, seq=0, hash=GENESIS))
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
            raise AuditError(f"cannot open the audit store: {exc}") from exc
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

        ``alongside`` runs in the same transaction (e.g. the key change a record describes),
        so that the change and its record are stored together or not at all.
        """
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
                "payload": _canonical(e.payload),
            }
            for e in entries
        ]
        if not rows:
            return []
        try:
            with self._lock:
                for _ in range(50):
                    with self.engine.begin() as connection:
                        current = connection.execute(select(head.c.seq, head.c.hash)).one()
                        seq, previous = current.seq, current.hash
                        now = dt.datetime.now(dt.UTC)
                        for row in rows:
                            seq += 1
                            row.update(seq=seq, prev_hash=previous, created_at=now)
                            row["hash"] = previous = record_hash(row)
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
        except SQLAlchemyError as exc:
            raise AuditError(f"the audit store refused the record: {exc}") from exc
        raise AuditError("the audit chain was busy: could not append after 50 attempts")

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


@dataclass(frozen=True)
class ChainReport:
    """The result of walking the chain."""

    ok: bool
    records: int
    message: str
    first_bad_seq: int | None = None


def verify_chain(engine: Engine) -> ChainReport:
    """Walk every record in order; report the first one changed, inserted or removed."""
    previous_hash, expected_seq, count = GENESIS, 1, 0
    with engine.connect() as connection:
        result = connection.execution_options(stream_results=True).execute(
            select(records).order_by(records.c.seq)
        )
        for row in result:
            values = dict(row._mapping)
            count += 1
            if values["seq"] != expected_seq:
                return ChainReport(
                    False,
                    count,
                    f"record {expected_seq} is missing (removed): "
                    f"the chain jumps to {values['seq']}",
                    expected_seq,
                )
            if values["prev_hash"] != previous_hash:
                return ChainReport(
                    False,
                    count,
                    f"record {values['seq']} does not link to the "
                    "record before it (removed or replaced)",
                    values["seq"],
                )
            if record_hash(values) != values["hash"]:
                return ChainReport(
                    False,
                    count,
                    f"record {values['seq']} "
                    f"({values['kind']} {values['record_id']}) was changed "
                    "after it was written",
                    values["seq"],
                )
            previous_hash, expected_seq = values["hash"], expected_seq + 1
        state = connection.execute(select(head.c.seq, head.c.hash)).first()
    if state is not None and (state.seq != expected_seq - 1 or state.hash != previous_hash):
        return ChainReport(
            False,
            count,
            f"the chain ends at record {expected_seq - 1} but "
            f"{state.seq} were written: the newest record(s) were removed",
            expected_seq,
        )
    return ChainReport(True, count, f"all {count} records intact")
