"""What reviewers and supervisors search stored answers by: an index beside the audit chain.

The chain (``serving.audit``) keeps every answer and review as it was written. The index
holds facts derived from each stored answer (office, year, crime, harm, amounts, deviation,
each lead's probability and flag) and the latest review decision, in plain columns that can
be filtered, sorted and grouped. It is written in the same transaction as the chain, is
never the record of anything, and can be rebuilt from the chain at any time
(:func:`rebuild`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    Connection,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    and_,
    delete,
    exists,
    insert,
    inspect,
    select,
    update,
)

from serving.scopes import NATIONAL, Scope
from serving.sqltypes import UTCDateTime

UNREVIEWED = "unreviewed"
REVIEW_STATUSES = (UNREVIEWED, "accepted", "adjusted", "rejected")


def define_tables(metadata: MetaData) -> tuple[Table, Table]:
    """The index tables, on the audit store's metadata."""
    answers = Table(
        "answer_index",
        metadata,
        Column("prediction_id", String(36), primary_key=True),
        Column("seq", Integer, nullable=False, index=True),
        Column("created_at", UTCDateTime, nullable=False, index=True),
        Column("case_id", String(64), nullable=False, index=True),
        Column("province_code", String(2), nullable=False, index=True),
        Column("office_code", String(6), nullable=True, index=True),
        Column("decision_year", Integer, nullable=True),
        Column("crime_type", String(32), nullable=True),
        Column("harm_outcome", String(32), nullable=True),
        Column("model_version", String(32), nullable=False),
        Column("reference_yuan", Float, nullable=False),
        Column("interval_low_yuan", Float, nullable=False),
        Column("interval_high_yuan", Float, nullable=False),
        Column("ceiling_yuan", Float, nullable=False),
        Column("ceiling_bound", Boolean, nullable=False),
        Column("granted_yuan", Float, nullable=True),
        Column("ratio_to_reference", Float, nullable=True),
        Column("outside_interval", Boolean, nullable=True, index=True),
        Column("aid_grade", Integer, nullable=True, index=True),
        Column("review_status", String(16), nullable=False, index=True),
        Column("reviewed_at", UTCDateTime, nullable=True),
    )
    leads = Table(
        "answer_index_leads",
        metadata,
        Column(
            "prediction_id",
            String(36),
            ForeignKey("answer_index.prediction_id"),
            primary_key=True,
        ),
        Column("lead", String(32), primary_key=True),
        Column("probability", Float, nullable=False),
        Column("flagged", Boolean, nullable=False),
    )
    return answers, leads


@dataclass(frozen=True)
class AnswerQuery:
    """Which stored answers to list, in what order (every filter optional)."""

    scope: Scope = NATIONAL
    case_id: str | None = None
    province_code: str | None = None
    office_code: str | None = None
    flagged: bool | None = None  # any lead flagged
    lead_flagged: str | None = None  # this lead flagged
    outside_interval: bool | None = None
    review_status: str | None = None
    decision_year: int | None = None
    crime_type: str | None = None
    harm_outcome: str | None = None
    aid_grade: int | None = None
    granted: bool | None = None  # the answer carries a granted amount
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    order_by_lead: str | None = None  # highest probability of this lead first; else newest


@dataclass(frozen=True)
class IndexedAnswer:
    """The searchable facts of one stored answer."""

    prediction_id: str
    seq: int
    created_at: dt.datetime
    case_id: str
    province_code: str
    office_code: str | None
    decision_year: int | None
    crime_type: str | None
    harm_outcome: str | None
    model_version: str
    reference_yuan: float
    interval_low_yuan: float
    interval_high_yuan: float
    ceiling_yuan: float
    ceiling_bound: bool
    granted_yuan: float | None
    ratio_to_reference: float | None
    outside_interval: bool | None
    aid_grade: int | None
    review_status: str
    reviewed_at: dt.datetime | None
    leads: dict[str, tuple[float, bool]] = field(default_factory=dict)


def facts_of(row: Mapping[str, Any], payload: Mapping[str, Any]) -> dict[str, Any]:
    """The index row of a stored prediction (``row``: the chain record, ``payload`` decoded)."""
    record = payload["request"]["record"]
    answer = payload["response"]
    amount = answer["reference_amount"]
    deviation = answer.get("deviation") or {}
    low, high = amount["interval_80_yuan"]
    return {
        "prediction_id": row["record_id"],
        "seq": row["seq"],
        "created_at": row["created_at"],
        "case_id": row["case_id"],
        "province_code": row["province_code"],
        "office_code": record.get("office_code"),
        "decision_year": record.get("decision_year"),
        "crime_type": record.get("crime_type"),
        "harm_outcome": record.get("harm_outcome"),
        "model_version": row["model_version"],
        "reference_yuan": amount["yuan"],
        "interval_low_yuan": low,
        "interval_high_yuan": high,
        "ceiling_yuan": amount["ceiling_yuan"],
        "ceiling_bound": amount["ceiling_bound"],
        "granted_yuan": deviation.get("granted_amount_yuan"),
        "ratio_to_reference": deviation.get("ratio_to_reference"),
        "outside_interval": deviation.get("outside_interval"),
        "aid_grade": (answer.get("aid_grade") or {}).get("grade"),
        "review_status": UNREVIEWED,
        "reviewed_at": None,
    }


def lead_rows(prediction_id: str, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per lead of a stored prediction."""
    return [
        {
            "prediction_id": prediction_id,
            "lead": name,
            "probability": lead["probability"],
            "flagged": lead["flagged"],
        }
        for name, lead in payload["response"]["leads"].items()
    ]


class AnswerIndex:
    """Writes and reads the index tables inside the audit store's transactions."""

    def __init__(self, answers: Table, leads: Table) -> None:
        self.answers, self.leads = answers, leads

    def record_prediction(
        self, connection: Connection, row: Mapping[str, Any], payload: Mapping[str, Any]
    ) -> None:
        """Index a prediction just appended to the chain (same transaction)."""
        connection.execute(insert(self.answers), [facts_of(row, payload)])
        connection.execute(insert(self.leads), lead_rows(row["record_id"], payload))

    def record_review(
        self, connection: Connection, row: Mapping[str, Any], payload: Mapping[str, Any]
    ) -> None:
        """The prediction's review status is its latest review's decision."""
        connection.execute(
            update(self.answers)
            .where(self.answers.c.prediction_id == row["prediction_id"])
            .values(review_status=payload["decision"], reviewed_at=row["created_at"])
        )

    def conditions(self, query: AnswerQuery) -> list[ColumnElement[bool]]:
        """The SQL conditions of a query, the caller's scope first (filters only narrow it)."""
        a, leads = self.answers, self.leads
        conditions = [query.scope.where(a.c.province_code, a.c.office_code)]
        equal = {
            "case_id": query.case_id,
            "province_code": query.province_code,
            "office_code": query.office_code,
            "outside_interval": query.outside_interval,
            "review_status": query.review_status,
            "decision_year": query.decision_year,
            "crime_type": query.crime_type,
            "harm_outcome": query.harm_outcome,
            "aid_grade": query.aid_grade,
        }
        conditions += [a.c[name] == value for name, value in equal.items() if value is not None]
        if query.granted is not None:
            known = a.c.granted_yuan.is_not(None)
            conditions.append(known if query.granted else ~known)
        if query.since is not None:
            conditions.append(a.c.created_at >= query.since)
        if query.until is not None:
            conditions.append(a.c.created_at < query.until)
        if query.flagged is not None:
            any_flag = exists().where(
                leads.c.prediction_id == a.c.prediction_id, leads.c.flagged.is_(True)
            )
            conditions.append(any_flag if query.flagged else ~any_flag)
        if query.lead_flagged is not None:
            conditions.append(
                exists().where(
                    leads.c.prediction_id == a.c.prediction_id,
                    leads.c.lead == query.lead_flagged,
                    leads.c.flagged.is_(True),
                )
            )
        return conditions

    def select_ids(self, query: AnswerQuery) -> Select[Any]:
        """prediction_id and seq of the answers that match, in the query's order."""
        a, leads = self.answers, self.leads
        statement = select(a.c.prediction_id, a.c.seq).where(and_(*self.conditions(query)))
        if query.order_by_lead is None:
            return statement.order_by(a.c.seq.desc())
        ranked = leads.alias("ranked")
        return statement.join(
            ranked,
            and_(ranked.c.prediction_id == a.c.prediction_id, ranked.c.lead == query.order_by_lead),
        ).order_by(ranked.c.probability.desc(), a.c.seq.desc())

    def select_columns(self, query: AnswerQuery, names: Sequence[str]) -> Select[Any]:
        """Some columns of every answer that matches (for reports), oldest first."""
        a = self.answers
        return (
            select(*[a.c[name] for name in names])
            .where(and_(*self.conditions(query)))
            .order_by(a.c.seq)
        )

    def matches(self, connection: Connection) -> bool:
        """Whether the stored index tables have this code's columns (else rebuild them)."""
        found = inspect(connection)
        for table in (self.answers, self.leads):
            if not found.has_table(table.name):
                return False
            stored = {column["name"] for column in found.get_columns(table.name)}
            if stored != set(table.columns.keys()):
                return False
        return True

    def recreate(self, connection: Connection) -> None:
        """Drop and create the index tables (a store written by older code)."""
        self.leads.drop(connection, checkfirst=True)
        self.answers.drop(connection, checkfirst=True)
        self.answers.create(connection)
        self.leads.create(connection)

    def facts(self, connection: Connection, ids: Sequence[str]) -> dict[str, IndexedAnswer]:
        """The indexed facts of some answers, by prediction id."""
        if not ids:
            return {}
        rows = connection.execute(
            select(self.answers).where(self.answers.c.prediction_id.in_(list(ids)))
        ).all()
        found = {
            row.prediction_id: IndexedAnswer(**{k: _aware(v) for k, v in row._mapping.items()})
            for row in rows
        }
        for lead in connection.execute(
            select(self.leads).where(self.leads.c.prediction_id.in_(list(ids)))
        ):
            found[lead.prediction_id].leads[lead.lead] = (lead.probability, lead.flagged)
        return found

    def clear(self, connection: Connection) -> None:
        """Empty the index (before a rebuild)."""
        connection.execute(delete(self.leads))
        connection.execute(delete(self.answers))


def _aware(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def rebuild(
    index: AnswerIndex,
    connection: Connection,
    chain: Iterable[tuple[Mapping[str, Any], Mapping[str, Any]]],
) -> int:
    """Rebuild the index from the chain's (row, decoded payload) pairs, oldest first."""
    index.clear(connection)
    count = 0
    for row, payload in chain:
        if row["kind"] == "prediction":
            index.record_prediction(connection, row, payload)
            count += 1
        else:
            index.record_review(connection, row, payload)
    return count
