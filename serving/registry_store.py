"""The departments' registries, stored as dated snapshots through SQLAlchemy (数据管理).

Each import of a department's extract is one snapshot (its ``as_of`` date, when it was
imported, its row count and digest) written with its rows in one transaction: a reader sees
the whole extract or none of it. A newer extract becomes the department's current snapshot;
earlier ones are kept, so :meth:`RegistryStore.as_of` says what was known on any date. The
store lives in the audit store's database by default (SQLite; PostgreSQL in production).

The store also keeps a fingerprint of the person-key secret the first import used: an import
under another secret would join nobody, so it is refused before anything is written.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    exists,
    func,
    insert,
    inspect,
    or_,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from features.registries import RowTable
from serving.audit import make_engine

log = logging.getLogger(__name__)
INSERT_BATCH = 20_000
"""Rows per INSERT statement (bounded memory and statement size)."""

metadata = MetaData()
snapshots = Table(
    "registry_snapshots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("department", String(40), nullable=False, index=True),
    Column("as_of", Date, nullable=False),
    Column("imported_at", DateTime(timezone=True), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("source_name", String(255), nullable=False),
    Column("config_version", String(40), nullable=False),
)
rows = Table(
    "registry_rows",
    metadata,
    Column("snapshot_id", Integer, ForeignKey("registry_snapshots.id"), nullable=False, index=True),
    Column("person_key", String(64), nullable=False),
    Column("status", String(40), nullable=False),
    Column("valid_from", String(10), nullable=False),
    Column("valid_to", String(10)),
    Column("attributes", Text, nullable=False),
)
PERSON_INDEX = Index("ix_registry_rows_snapshot_person", rows.c.snapshot_id, rows.c.person_key)
"""The live join's lookup (one person in the current snapshots); created on databases made
before it too (:meth:`RegistryStore.open`), without touching their rows."""
meta = Table(
    "registry_meta",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("value", String(128), nullable=False),
)
SECRET_CHECK = "person_key_secret_check"
ROW_COLUMNS = ("person_key", "status", "valid_from", "valid_to", "attributes")
"""A snapshot row's canonical columns (``features.registries.validate_extract``)."""


class RegistryStoreError(RuntimeError):
    """The store refused an import or cannot be reached."""


@dataclass(frozen=True)
class Snapshot:
    """One imported extract."""

    id: int
    department: str
    as_of: dt.date
    imported_at: dt.datetime
    rows: int
    digest: str
    source_name: str
    config_version: str


@dataclass(frozen=True)
class ImportResult:
    """What an import did: a new snapshot, or nothing when the same extract was there."""

    snapshot: Snapshot
    created: bool


@dataclass
class RegistryView:
    """What the registries held on a date: each department's snapshot and its rows."""

    on: dt.date
    snapshots: dict[str, Snapshot]
    tables: Mapping[str, RowTable]
    """Department → its rows: a DataFrame (:meth:`RegistryStore.as_of`) or, for the few rows
    of :meth:`RegistryStore.persons`, the same columns as arrays."""

    @property
    def rows(self) -> dict[str, pd.DataFrame]:
        """Department → its rows as a DataFrame (:data:`ROW_COLUMNS`)."""
        return {
            kind: table
            if isinstance(table, pd.DataFrame)
            else pd.DataFrame({name: table[name] for name in ROW_COLUMNS})
            for kind, table in self.tables.items()
        }

    @property
    def snapshot_dates(self) -> dict[str, str]:
        """Department → the ISO date of the snapshot used (数据来源)."""
        return {kind: s.as_of.isoformat() for kind, s in self.snapshots.items()}


def _ensure_person_index(engine: Engine) -> None:
    """Create :data:`PERSON_INDEX` on a store made before it (rows untouched).

    Two processes opening the same old store at once may race to create it: the loser's
    error is harmless once the index is there.
    """
    try:
        PERSON_INDEX.create(engine, checkfirst=True)
    except SQLAlchemyError as exc:
        names = {i["name"] for i in inspect(engine).get_indexes(rows.name)}
        if PERSON_INDEX.name not in names:
            raise RegistryStoreError(f"the registry store cannot be indexed: {exc}") from exc


def _snapshot(values: Sequence[Any]) -> Snapshot:
    """A snapshot from a row of its table's columns, in their order."""
    id_, department, as_of, imported_at, count, digest, source_name, version = values
    return Snapshot(
        int(id_),
        str(department),
        as_of,
        imported_at,
        int(count),
        str(digest),
        str(source_name),
        str(version),
    )


def _arrays(found: list[tuple[object, ...]]) -> dict[str, np.ndarray]:
    """Rows read as tuples (in :data:`ROW_COLUMNS` order) → column → object array."""
    return {
        name: np.array([row[i] for row in found], dtype=object)
        for i, name in enumerate(ROW_COLUMNS)
    }


def _persons_query(chosen: ColumnElement[bool]) -> Select[Any]:
    """The chosen snapshots (all listed), each with its rows of the ``keys`` parameter.

    Built once (module level): a live answer pays only the execution, not the construction.
    """
    joined = snapshots.outerjoin(
        rows,
        and_(
            rows.c.snapshot_id == snapshots.c.id,
            rows.c.person_key.in_(bindparam("keys", expanding=True)),
        ),
    )
    return (
        select(*snapshots.c, *(rows.c[name] for name in ROW_COLUMNS))
        .select_from(joined)
        .where(chosen)
        .order_by(snapshots.c.department, snapshots.c.id)
    )


_later = snapshots.alias("later")
_on = bindparam("on", type_=Date)
_CURRENT_PERSONS = _persons_query(
    and_(
        snapshots.c.as_of <= _on,
        ~exists().where(
            and_(
                _later.c.department == snapshots.c.department,
                _later.c.as_of <= _on,
                or_(
                    _later.c.as_of > snapshots.c.as_of,
                    and_(_later.c.as_of == snapshots.c.as_of, _later.c.id > snapshots.c.id),
                ),
            )
        ),
    )
)
"""Each department's current snapshot on ``on`` (the latest ``as_of``, then the latest id)."""
_PINNED_PERSONS = _persons_query(snapshots.c.id.in_(bindparam("ids", expanding=True)))
"""Exactly the snapshots ``ids`` (a replay)."""


class RegistryStore:
    """Snapshots of the departments' registries in one SQL database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, timeout_s: float = 30.0) -> RegistryStore:
        """Open (and create the tables of) the store at ``url``."""
        engine = make_engine(url, timeout_s)
        try:
            metadata.create_all(engine)
        except SQLAlchemyError as exc:
            raise RegistryStoreError(f"the registry store cannot be opened: {exc}") from exc
        _ensure_person_index(engine)
        return cls(engine)

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()

    def check_secret(self, fingerprint: str) -> None:
        """Refuse a person-key secret other than the one the store's keys were made under."""
        with self.engine.begin() as connection:
            stored = connection.execute(
                select(meta.c.value).where(meta.c.name == SECRET_CHECK)
            ).scalar_one_or_none()
            if stored is None:
                connection.execute(insert(meta).values(name=SECRET_CHECK, value=fingerprint))
            elif stored != fingerprint:
                raise RegistryStoreError(
                    "the person-key secret differs from the one the stored registries were "
                    "pseudonymised with; nothing imported (假名化密钥不一致)"
                )

    def import_extract(
        self,
        department: str,
        as_of: dt.date,
        canonical: pd.DataFrame,
        digest: str,
        source_name: str,
        config_version: str,
    ) -> ImportResult:
        """Store a validated extract as a new snapshot, atomically (all rows or none).

        Re-importing the same extract (same department, date and digest) changes nothing.
        """
        with self.engine.begin() as connection:
            same = connection.execute(
                select(snapshots).where(
                    and_(
                        snapshots.c.department == department,
                        snapshots.c.as_of == as_of,
                        snapshots.c.digest == digest,
                    )
                )
            ).first()
            if same is not None:
                return ImportResult(_snapshot(same), created=False)
            now = dt.datetime.now(dt.UTC)
            inserted = connection.execute(
                insert(snapshots).values(
                    department=department,
                    as_of=as_of,
                    imported_at=now,
                    rows=len(canonical),
                    digest=digest,
                    source_name=source_name[:255],
                    config_version=config_version,
                )
            ).inserted_primary_key
            assert inserted is not None
            snapshot_id = inserted[0]
            for start in range(0, len(canonical), INSERT_BATCH):
                part = canonical.iloc[start : start + INSERT_BATCH].astype(object)
                part = part.where(part.notna(), None)
                records = [
                    {str(k): v for k, v in r.items()}
                    for r in part.assign(snapshot_id=snapshot_id).to_dict("records")
                ]
                connection.execute(insert(rows), records)
            stored = connection.execute(
                select(snapshots).where(snapshots.c.id == snapshot_id)
            ).one()
        log.info("registry %s as of %s: %d rows stored", department, as_of, len(canonical))
        return ImportResult(_snapshot(stored), created=True)

    def snapshots(self, department: str | None = None) -> list[Snapshot]:
        """Every snapshot (of one department), oldest first."""
        query = select(snapshots).order_by(
            snapshots.c.department, snapshots.c.as_of, snapshots.c.id
        )
        if department is not None:
            query = query.where(snapshots.c.department == department)
        with self.engine.connect() as connection:
            return [_snapshot(r) for r in connection.execute(query)]

    def current(self, on: dt.date) -> dict[str, Snapshot]:
        """Each department's snapshot known on ``on``: the latest ``as_of`` ≤ ``on``.

        Among extracts of the same date the later import wins (it replaced the earlier).
        """
        latest: dict[str, Snapshot] = {}
        for snapshot in self.snapshots():
            if snapshot.as_of <= on:
                latest[snapshot.department] = snapshot  # ordered by as_of, then id
        return latest

    def rows_of(self, snapshot_id: int) -> pd.DataFrame:
        """The canonical rows of one snapshot."""
        query = select(*(rows.c[name] for name in ROW_COLUMNS)).where(
            rows.c.snapshot_id == snapshot_id
        )
        with self.engine.connect() as connection:
            result = connection.execute(query)
            return pd.DataFrame(result.fetchall(), columns=list(result.keys()))

    def as_of(self, on: dt.date) -> RegistryView:
        """What every department's registry said on ``on`` (its snapshot and rows)."""
        known = self.current(on)
        return RegistryView(on, known, {k: self.rows_of(s.id) for k, s in known.items()})

    def persons(
        self,
        person_keys: Collection[str],
        on: dt.date,
        snapshot_ids: Collection[int] | None = None,
    ) -> RegistryView:
        """What the registries held on ``on`` about a few persons, in one indexed query.

        The snapshots are each department's current one on ``on`` (as :meth:`current`), or,
        with ``snapshot_ids``, exactly those (a replay pins what its answer read). Every
        snapshot is listed even where it holds none of the persons (it then says "not
        covered"); its rows are only those of ``person_keys``, as arrays (the live join
        reads them without building a DataFrame).
        """
        values: dict[str, object] = {"keys": sorted(set(person_keys))}
        if snapshot_ids is None:
            query, values["on"] = _CURRENT_PERSONS, on
        else:
            query, values["ids"] = _PINNED_PERSONS, sorted(set(snapshot_ids))
        known: dict[str, Snapshot] = {}
        found: dict[str, list[tuple[object, ...]]] = {}
        width = len(snapshots.c)
        with self.engine.connect() as connection:
            for row in connection.execute(query, values):
                snapshot = _snapshot(row[:width])
                known[snapshot.department] = snapshot
                held = found.setdefault(snapshot.department, [])
                if row[width] is not None:
                    held.append(tuple(row[width:]))
        return RegistryView(on, known, {kind: _arrays(found[kind]) for kind in known})

    def counts(self) -> Iterator[tuple[str, int, int]]:
        """(department, snapshots, rows of the current snapshot) for every department."""
        with self.engine.connect() as connection:
            per = connection.execute(
                select(snapshots.c.department, func.count()).group_by(snapshots.c.department)
            ).all()
        current = self.current(dt.date.max)
        for department, count in sorted(per):
            yield str(department), int(count), current[department].rows
