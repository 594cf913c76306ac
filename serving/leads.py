"""The lead register (线索管理): every lead found, where it went, and what became of it.

A lead is one (case, kind) pair found by a screening run (``aidrec screen``) or by a live
answer whose lead was flagged. Registering is idempotent on (case_id, kind): the same lead
found again creates nothing new; while it is still ``new`` its score, reasons and sources
are refreshed, afterwards it is left as the office handled it.

Its lifecycle (登记 → 流转 → 反馈 → 归档)::

    new ──transfer──▶ transferred ──feedback──▶ verified ──▶ aided | referred | dismissed
     └──────────────────────────── dismissed (with a reason)
    aided | referred | dismissed ──reopen (with a reason)──▶ the step it was closed from

:func:`allowed_next` is the one home of these rules; a refused transition names the allowed
ones. Every registration and every transition is in the audit chain and in ``lead_events``,
written in the same transaction, so a lead's history and the chain never disagree: a
screening's registration and every transition are records of their own (kind ``lead``); a
live answer's registration is covered by the answer's own record (its prediction id is the
lead's origin and the event's ``audit_record_id``), so answers add no second chain append.
The tables live in the audit store's database (SQLite or PostgreSQL).

Deadlines come from the policy (``lead_deadlines``): a ``new`` lead not transferred within
``transfer_days`` of its discovery, and a ``transferred`` one without feedback within
``feedback_days`` of its transfer, are overdue (督办). Times come from an injected clock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from features.contract import PROVINCE_CODES
from serving.audit import AuditEntry, AuditError, AuditStore
from serving.scopes import NATIONAL, Scope
from serving.sqltypes import UTCDateTime
from training.policy import LeadDeadlines

log = logging.getLogger(__name__)

LEAD = "lead"
"""The audit chain's record kind for a lead registered, updated or moved on."""

MODEL_KINDS = ("judicial_aid", "social_assistance", "civil_support")
DEPARTMENT_FAILURE = "department_failure"
KIND_ZH = {
    "judicial_aid": "司法救助线索",
    "social_assistance": "社会救助线索",
    "civil_support": "支持起诉线索",
    DEPARTMENT_FAILURE: "部门履职线索",
}

NEW, TRANSFERRED, VERIFIED = "new", "transferred", "verified"
AIDED, REFERRED, DISMISSED = "aided", "referred", "dismissed"
STATUSES = (NEW, TRANSFERRED, VERIFIED, AIDED, REFERRED, DISMISSED)
CLOSED = (AIDED, REFERRED, DISMISSED)
STATUS_ZH = {
    NEW: "待流转",
    TRANSFERRED: "已流转",
    VERIFIED: "已核实",
    AIDED: "已救助",
    REFERRED: "已移送",
    DISMISSED: "不予救助",
}

DEPARTMENTS = {
    "procuratorate_victim_aid": "检察院控申部门（司法救助）",
    "procuratorate_civil": "检察院民事检察部门",
    "procuratorate_public_interest": "检察院公益诉讼部门",
    "disabled_persons_federation": "残联",
    "civil_affairs": "民政局",
    "womens_federation": "妇联",
    "veterans_affairs": "退役军人事务局",
    "human_resources": "人社局",
    "village_committee": "村（居）委会",
}
"""Where a lead may be transferred: the procuratorate's own departments and outside ones."""

OVERDUE_TRANSFER, OVERDUE_FEEDBACK = "transfer", "feedback"
OVERDUE_ZH = {OVERDUE_TRANSFER: "逾期未流转", OVERDUE_FEEDBACK: "逾期未反馈"}

BATCH = 500
"""Candidates registered per transaction (a bound on one transaction and one lookup)."""


class LeadError(ValueError):
    """A candidate or a transition that is refused; the message names the field and rule.

    Messages start with the field they are about (``"reason: ..."``).
    """

    @property
    def field(self) -> str:
        """The field the message names first."""
        return str(self).split(":", 1)[0].split(" ", 1)[0]


class TransitionRefused(LeadError):
    """A transition the lifecycle does not allow from the lead's status (HTTP 409)."""

    def __init__(self, status: str, wanted: str, allowed: Sequence[str]) -> None:
        self.status, self.wanted, self.allowed = status, wanted, tuple(allowed)
        names = ", ".join(allowed) or "none"
        super().__init__(f"a {status} lead cannot become {wanted}: allowed are {names}")


@dataclass(frozen=True)
class LeadCandidate:
    """A lead found by a screening run or a live answer, before it is registered."""

    kind: str  # judicial_aid | social_assistance | civil_support | department_failure:<rule_id>
    case_id: str
    person_key: str | None
    province_code: str
    office_code: str | None
    score: float | None  # model probability; None for a department-failure rule
    reasons: dict[str, Any]  # JSON-able: top contributions, rule facts
    sources: list[dict[str, Any]]  # 数据来源: [{"department", "snapshot": "YYYY-MM-DD", "field"}]
    origin: str  # "screening:<run_id>" or "answer:<prediction_id>"
    policy_version: str


@dataclass(frozen=True)
class RegisterSummary:
    """What one registration did."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    lead_ids: tuple[str, ...] = ()

    def __add__(self, other: RegisterSummary) -> RegisterSummary:
        return RegisterSummary(
            self.created + other.created,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
            self.lead_ids + other.lead_ids,
        )


@dataclass(frozen=True)
class LeadEvent:
    """One step of a lead's history."""

    at: dt.datetime
    actor: str
    action: str  # created | updated | transition | assigned
    from_status: str | None
    to_status: str
    details: dict[str, Any]
    audit_record_id: str


@dataclass(frozen=True)
class Lead:
    """One registered lead, as stored."""

    id: str
    kind: str
    case_id: str
    person_key: str | None
    province_code: str
    office_code: str | None
    score: float | None
    reasons: dict[str, Any]
    sources: list[dict[str, Any]]
    origin: str
    policy_version: str
    status: str
    department: str | None
    assignee: str | None
    amount_yuan: float | None
    reason: str | None
    discovered_at: dt.datetime
    updated_at: dt.datetime
    transferred_at: dt.datetime | None
    verified_at: dt.datetime | None
    closed_at: dt.datetime | None
    overdue: str | None = None
    due_at: dt.datetime | None = None
    history: tuple[LeadEvent, ...] = field(default=())

    @property
    def kind_zh(self) -> str:
        """The kind in Chinese (a department-failure rule by its family name)."""
        return KIND_ZH.get(self.kind.split(":", 1)[0], self.kind)

    @property
    def allowed(self) -> tuple[str, ...]:
        """The statuses this lead may move to now."""
        return allowed_next(self.status, self.verified_at is not None)


@dataclass(frozen=True)
class TransitionRequest:
    """A move of a lead to another status (or a change of assignee only, ``to`` = status)."""

    to: str
    department: str | None = None
    amount_yuan: float | None = None
    reason: str | None = None
    assignee: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class LeadQuery:
    """Filters of a list of leads; always limited to a scope."""

    scope: Scope = NATIONAL
    kind: str | None = None
    status: str | None = None
    province_code: str | None = None
    overdue: bool | None = None
    assignee: str | None = None
    department: str | None = None
    case_id: str | None = None


def allowed_next(status: str, was_verified: bool = False) -> tuple[str, ...]:
    """The statuses a lead may move to from ``status`` (reopening goes back one step)."""
    if status == NEW:
        return (TRANSFERRED, DISMISSED)
    if status == TRANSFERRED:
        return (VERIFIED,)
    if status == VERIFIED:
        return (AIDED, REFERRED, DISMISSED)
    if status in CLOSED:
        return (VERIFIED,) if was_verified else (NEW,)
    return ()


def answer_of(origin: str) -> str | None:
    """The prediction id of an ``answer:<prediction_id>`` origin, else None."""
    prefix, _, prediction_id = origin.partition(":")
    return prediction_id if prefix == "answer" and prediction_id else None


def kind_family(kind: str) -> str:
    """``department_failure`` for ``department_failure:<rule>``, else the kind itself."""
    return kind.split(":", 1)[0]


def check_kind(kind: str) -> str | None:
    """Why ``kind`` is not a lead kind, or None."""
    if kind in MODEL_KINDS:
        return None
    family, _, rule = kind.partition(":")
    if family == DEPARTMENT_FAILURE and rule and len(kind) <= 64:
        return None
    return (
        f"kind {kind!r}: one of {', '.join(MODEL_KINDS)} or "
        f"{DEPARTMENT_FAILURE}:<rule id> (at most 64 characters)"
    )


def overdue_state(
    status: str,
    discovered_at: dt.datetime,
    transferred_at: dt.datetime | None,
    deadlines: LeadDeadlines,
    now: dt.datetime,
) -> tuple[str | None, dt.datetime | None]:
    """(why the lead is overdue or None, when its current step is due or None)."""
    if status == NEW:
        due = discovered_at + dt.timedelta(days=deadlines.transfer_days)
        return (OVERDUE_TRANSFER if now > due else None), due
    if status == TRANSFERRED and transferred_at is not None:
        due = transferred_at + dt.timedelta(days=deadlines.feedback_days)
        return (OVERDUE_FEEDBACK if now > due else None), due
    return None, None


metadata = MetaData()
leads = Table(
    "leads",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("kind", String(64), nullable=False, index=True),
    Column("case_id", String(64), nullable=False),
    Column("person_key", String(128), nullable=True),
    Column("province_code", String(2), nullable=False, index=True),
    Column("office_code", String(6), nullable=True, index=True),
    Column("score", Float, nullable=True),
    Column("reasons", Text, nullable=False),
    Column("sources", Text, nullable=False),
    Column("origin", String(80), nullable=False),
    Column("policy_version", String(32), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("department", String(40), nullable=True),
    Column("assignee", String(64), nullable=True, index=True),
    Column("amount_yuan", Float, nullable=True),
    Column("reason", Text, nullable=True),
    Column("discovered_at", UTCDateTime, nullable=False, index=True),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("transferred_at", UTCDateTime, nullable=True),
    Column("verified_at", UTCDateTime, nullable=True),
    Column("closed_at", UTCDateTime, nullable=True),
    UniqueConstraint("case_id", "kind", name="uq_leads_case_kind"),
)
lead_events = Table(
    "lead_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("lead_id", String(36), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(16), nullable=False),
    Column("from_status", String(16), nullable=True),
    Column("to_status", String(16), nullable=False),
    Column("details", Text, nullable=False),
    Column("audit_record_id", String(36), nullable=False),
    Index("ix_lead_events_lead", "lead_id", "id"),
)


def _json(value: Any, where: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise LeadError(f"{where}: not JSON-able: {exc}") from exc


def _checked(candidate: LeadCandidate, where: str) -> None:
    problem = check_kind(candidate.kind)
    if problem:
        raise LeadError(f"{where}: {problem}")
    if not candidate.case_id or len(candidate.case_id) > 64:
        raise LeadError(f"{where}: case_id must be 1 to 64 characters")
    if candidate.province_code not in PROVINCE_CODES:
        raise LeadError(f"{where}: province_code {candidate.province_code!r} is not a province")
    office = candidate.office_code
    if office is not None and not (len(office) == 6 and office.isdigit()):
        raise LeadError(f"{where}: office_code {office!r} must be 6 digits")
    score = candidate.score
    if score is not None and not (math.isfinite(score) and 0.0 <= score <= 1.0):
        raise LeadError(f"{where}: score {score!r} must be a probability in [0, 1]")
    if (score is None) != (kind_family(candidate.kind) == DEPARTMENT_FAILURE):
        raise LeadError(f"{where}: a model lead has a score, a department-failure lead none")
    if not candidate.origin or len(candidate.origin) > 80:
        raise LeadError(f"{where}: origin must be 1 to 80 characters")
    if len(candidate.policy_version) > 32:
        raise LeadError(f"{where}: policy_version is at most 32 characters")
    if candidate.person_key is not None and len(candidate.person_key) > 128:
        raise LeadError(f"{where}: person_key is at most 128 characters")


def _chunks(items: Iterable[LeadCandidate], size: int) -> Iterator[list[LeadCandidate]]:
    batch: list[LeadCandidate] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LeadStore:
    """The leads of one audit store's database, with their events and chain records."""

    def __init__(
        self,
        audit: AuditStore,
        deadlines: LeadDeadlines | Callable[[], LeadDeadlines] | None = None,
        clock: Callable[[], dt.datetime] = _utcnow,
        batch_size: int = BATCH,
    ) -> None:
        self.audit = audit
        self.engine = audit.engine
        self._deadlines = deadlines or LeadDeadlines()
        self.clock = clock
        self.batch_size = batch_size
        try:
            metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot open the lead register: {exc}") from exc

    @property
    def deadlines(self) -> LeadDeadlines:
        """The deadlines in force (the serving model's policy when given as a callable)."""
        found = self._deadlines
        return found if isinstance(found, LeadDeadlines) else found()

    # registration -------------------------------------------------------------------------

    def register(
        self, candidates: Iterable[LeadCandidate], actor: str = "aidrec"
    ) -> RegisterSummary:
        """Register leads in bounded batches, one transaction each; returns the counts.

        A (case_id, kind) already registered is not duplicated: while ``new`` it takes the
        candidate's score, reasons, sources and origin (counted ``updated`` when any differ),
        otherwise it is left alone (``unchanged``). Every batch is validated before it is
        written; a bad candidate raises :class:`LeadError` naming its position.

        Raises:
            LeadError: a candidate breaks a rule (nothing of its batch is written).
            AuditError: the store refused the batch.
        """
        total = RegisterSummary()
        offset = 0
        for batch in _chunks(candidates, self.batch_size):
            for i, candidate in enumerate(batch):
                _checked(candidate, f"candidate {offset + i} (case {candidate.case_id!r})")
            total = total + self._register_batch(self._deduplicated(batch), actor)
            offset += len(batch)
        return total

    @staticmethod
    def _deduplicated(batch: list[LeadCandidate]) -> list[LeadCandidate]:
        """One candidate per (case, kind) in a batch: the last one wins."""
        latest = {(c.case_id, c.kind): c for c in batch}
        return list(latest.values())

    def _register_batch(self, batch: list[LeadCandidate], actor: str) -> RegisterSummary:
        for attempt in (1, 2):
            try:
                return self._write_batch(batch, actor)
            except _Moved:  # a lead left `new` meanwhile: the batch was rolled back whole
                if attempt == 2:
                    raise AuditError("leads kept changing while they were registered") from None
                log.info("a reviewer moved some of these leads meanwhile; retrying")
            except AuditError as exc:
                cause = exc.__cause__
                if attempt == 2 or not isinstance(cause, IntegrityError):
                    raise
                log.info("a concurrent writer registered some of these leads; retrying")
        raise AssertionError("unreachable")

    def _write_batch(self, batch: list[LeadCandidate], actor: str) -> RegisterSummary:
        keys = [(c.case_id, c.kind) for c in batch]
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(
                    leads.c.id,
                    leads.c.case_id,
                    leads.c.kind,
                    leads.c.status,
                    leads.c.score,
                    leads.c.reasons,
                    leads.c.sources,
                    leads.c.origin,
                ).where(tuple_(leads.c.case_id, leads.c.kind).in_(keys))
            ).all()
        existing = {(r.case_id, r.kind): r for r in rows}
        now = self.clock()
        created: list[dict[str, Any]] = []
        updated: list[dict[str, Any]] = []
        entries: list[AuditEntry] = []
        events: list[dict[str, Any]] = []
        unchanged = 0
        ids: list[str] = []
        for candidate in batch:
            reasons = _json(candidate.reasons, f"case {candidate.case_id!r}: reasons")
            sources = _json(candidate.sources, f"case {candidate.case_id!r}: sources")
            row = existing.get((candidate.case_id, candidate.kind))
            if row is None:
                lead_id = str(uuid.uuid4())
                action = "created"
                created.append(
                    {
                        "id": lead_id,
                        "kind": candidate.kind,
                        "case_id": candidate.case_id,
                        "person_key": candidate.person_key,
                        "province_code": candidate.province_code,
                        "office_code": candidate.office_code,
                        "score": candidate.score,
                        "reasons": reasons,
                        "sources": sources,
                        "origin": candidate.origin,
                        "policy_version": candidate.policy_version,
                        "status": NEW,
                        "discovered_at": now,
                        "updated_at": now,
                    }
                )
            else:
                lead_id = row.id
                ids.append(lead_id)
                same = (row.score, row.reasons, row.sources, row.origin) == (
                    candidate.score,
                    reasons,
                    sources,
                    candidate.origin,
                )
                if row.status != NEW or same:
                    unchanged += 1
                    continue
                action = "updated"
                updated.append(
                    {
                        "lead_id": lead_id,
                        "score": candidate.score,
                        "reasons": reasons,
                        "sources": sources,
                        "origin": candidate.origin,
                        "policy_version": candidate.policy_version,
                        "updated_at": now,
                    }
                )
            if row is None:
                ids.append(lead_id)
            answered = answer_of(candidate.origin)
            if answered is not None:  # the answer's own record in the chain covers it
                record_id = answered
            else:
                record_id = str(uuid.uuid4())
                details = {
                    "lead_id": lead_id,
                    "action": action,
                    "kind": candidate.kind,
                    "origin": candidate.origin,
                    "score": candidate.score,
                    "policy_version": candidate.policy_version,
                }
                entries.append(
                    _entry(record_id, actor, candidate.case_id, candidate.province_code, details)
                )
            events.append(
                {
                    "lead_id": lead_id,
                    "at": now,
                    "actor": actor[:64],
                    "action": action,
                    "from_status": None if row is None else NEW,
                    "to_status": NEW,
                    "details": _json(
                        {"origin": candidate.origin, "score": candidate.score}, "event"
                    ),
                    "audit_record_id": record_id,
                }
            )

        def write(connection: Connection) -> None:
            if created:
                connection.execute(insert(leads), created)
            for values in updated:
                changes = {k: v for k, v in values.items() if k != "lead_id"}
                moved = connection.execute(
                    update(leads)
                    .where(leads.c.id == values["lead_id"], leads.c.status == NEW)
                    .values(**changes)
                ).rowcount
                if moved != 1:  # no longer new: its event and record must not be written
                    raise _Moved()
            if events:
                connection.execute(insert(lead_events), events)

        if entries:
            self.audit.append_many(entries, alongside=write)
        elif events:
            try:
                with self.engine.begin() as connection:
                    write(connection)
            except SQLAlchemyError as exc:
                raise AuditError(f"the lead register refused the batch: {exc}") from exc
        return RegisterSummary(len(created), len(updated), unchanged, tuple(ids))

    # transitions --------------------------------------------------------------------------

    def transition(
        self,
        lead_id: str,
        request: TransitionRequest,
        actor: str,
        scope: Scope = NATIONAL,
        ceiling_yuan: float | None = None,
    ) -> Lead:
        """Move a lead on (validated), append the step to the chain and the history.

        ``to`` equal to the lead's status with an assignee changes the assignee only.
        ``ceiling_yuan`` bounds an ``aided`` amount (the case's statutory ceiling, when known;
        else the one in the lead's reasons, if any).

        Raises:
            KeyError: no such lead inside ``scope``.
            TransitionRefused: the lifecycle does not allow it (HTTP 409).
            LeadError: a required field is missing or wrong (HTTP 422).
            AuditError: the store refused it.
        """
        lead = self.get(lead_id, scope, history=False)
        if lead is None:
            raise KeyError(lead_id)
        values, details, action = self._planned(lead, request, ceiling_yuan)
        now = self.clock()
        values["updated_at"] = now
        record_id = str(uuid.uuid4())
        details = {"lead_id": lead.id, "action": action, "from": lead.status, **details}
        entry = _entry(record_id, actor, lead.case_id, lead.province_code, details)
        event = {
            "lead_id": lead.id,
            "at": now,
            "actor": actor[:64],
            "action": action,
            "from_status": lead.status,
            "to_status": request.to,
            "details": _json(details, "transition"),
            "audit_record_id": record_id,
        }
        for stamp in ("transferred_at", "verified_at", "closed_at", "discovered_at"):
            if values.get(stamp) is _NOW:
                values[stamp] = now

        def write(connection: Connection) -> None:
            moved = connection.execute(
                update(leads)
                .where(leads.c.id == lead.id, leads.c.status == lead.status)
                .values(**values)
            ).rowcount
            if moved != 1:  # another reviewer moved it first: roll the record back too
                raise _Moved()
            connection.execute(insert(lead_events), [event])

        try:
            self.audit.append_many([entry], alongside=write)
        except _Moved:
            fresh = self.get(lead_id, scope, history=False)
            status = fresh.status if fresh else lead.status
            raise TransitionRefused(status, request.to, fresh.allowed if fresh else ()) from None
        found = self.get(lead_id, scope)
        assert found is not None
        return found

    def _planned(
        self, lead: Lead, request: TransitionRequest, ceiling_yuan: float | None
    ) -> tuple[dict[str, Any], dict[str, Any], str]:
        """(the columns to set, the facts recorded, the action) of a valid request."""
        to = request.to
        assignee = _text(request.assignee, "assignee", 64)
        note = _text(request.note, "note", 2000)
        reason = _text(request.reason, "reason", 2000)
        details: dict[str, Any] = {"to": to}
        if note:
            details["note"] = note
        if to == lead.status:
            if not assignee:
                raise TransitionRefused(lead.status, to, lead.allowed)
            return {"assignee": assignee}, {**details, "assignee": assignee}, "assigned"
        if to not in STATUSES:
            raise LeadError(f"to: unknown status {to!r}; one of {', '.join(STATUSES)}")
        if to not in lead.allowed:
            raise TransitionRefused(lead.status, to, lead.allowed)
        values: dict[str, Any] = {"status": to}
        if assignee:
            values["assignee"] = details["assignee"] = assignee
        reopening = lead.status in CLOSED
        if reopening:
            if not reason:
                raise LeadError("reason: reopening a closed lead requires a reason")
            values.update(closed_at=None, amount_yuan=None, reason=None)
            details["reason"] = reason
            if to == NEW:
                values.update(transferred_at=None, department=None, discovered_at=_NOW)
            return values, details, "reopened"
        if to == TRANSFERRED:
            if request.department not in DEPARTMENTS:
                raise LeadError(
                    f"department: {request.department!r} is not a department; one of "
                    f"{', '.join(DEPARTMENTS)}"
                )
            values.update(department=request.department, transferred_at=_NOW)
            details["department"] = request.department
        elif request.department is not None:
            raise LeadError("department: only a transfer names a department")
        if to == VERIFIED:
            values["verified_at"] = _NOW
        if to in CLOSED:
            values["closed_at"] = _NOW
        if to == AIDED:
            amount = request.amount_yuan
            ceiling = ceiling_yuan if ceiling_yuan is not None else _ceiling(lead.reasons)
            if amount is None or not math.isfinite(amount) or amount <= 0:
                raise LeadError("amount_yuan: an aided lead requires the amount granted (> 0)")
            if ceiling is not None and amount > ceiling:
                raise LeadError(
                    f"amount_yuan: {amount:,.2f} is above this case's statutory ceiling of "
                    f"{ceiling:,.0f} yuan"
                )
            values["amount_yuan"] = details["amount_yuan"] = float(amount)
        elif request.amount_yuan is not None:
            raise LeadError("amount_yuan: only an aided lead has an amount")
        if to == DISMISSED and not reason:
            raise LeadError("reason: dismissing a lead requires a reason")
        if reason:
            values["reason"] = details["reason"] = reason
        return values, details, "transition"

    @staticmethod
    @contextlib.contextmanager
    def _reading() -> Iterator[None]:
        """Database failures while reading become :class:`AuditError` (the service's 503)."""
        try:
            yield
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot read the lead register: {type(exc).__name__}") from exc

    # reading ------------------------------------------------------------------------------

    def get(self, lead_id: str, scope: Scope = NATIONAL, history: bool = True) -> Lead | None:
        """One lead inside ``scope`` (None outside it or unknown), with its history."""
        with self._reading(), self.engine.connect() as connection:
            row = connection.execute(
                select(leads).where(
                    leads.c.id == lead_id, scope.where(leads.c.province_code, leads.c.office_code)
                )
            ).first()
            if row is None:
                return None
            events: tuple[LeadEvent, ...] = ()
            if history:
                found = connection.execute(
                    select(lead_events)
                    .where(lead_events.c.lead_id == lead_id)
                    .order_by(lead_events.c.id)
                ).all()
                events = tuple(_event(e) for e in found)
        return self._lead(row, events)

    def find(self, case_id: str, kind: str) -> Lead | None:
        """The lead of one (case, kind), if registered."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(leads.c.id).where(leads.c.case_id == case_id, leads.c.kind == kind)
            ).first()
        return self.get(row.id) if row else None

    def _where(self, query: LeadQuery) -> ColumnElement[bool]:
        conditions: list[ColumnElement[bool]] = [
            query.scope.where(leads.c.province_code, leads.c.office_code)
        ]
        if query.kind:
            if query.kind == DEPARTMENT_FAILURE:
                conditions.append(leads.c.kind.like(f"{DEPARTMENT_FAILURE}:%"))
            else:
                conditions.append(leads.c.kind == query.kind)
        if query.status:
            conditions.append(leads.c.status == query.status)
        if query.province_code:
            conditions.append(leads.c.province_code == query.province_code)
        if query.assignee:
            conditions.append(leads.c.assignee == query.assignee)
        if query.department:
            conditions.append(leads.c.department == query.department)
        if query.case_id:
            conditions.append(leads.c.case_id == query.case_id)
        if query.overdue is not None:
            late = or_(*self._late().values())
            conditions.append(late if query.overdue else ~late)
        return and_(*conditions)

    def _late(self) -> dict[str, ColumnElement[bool]]:
        """The SQL of each overdue reason now (the same test as :func:`overdue_state`)."""
        now, deadlines = self.clock(), self.deadlines
        transfer = now - dt.timedelta(days=deadlines.transfer_days)
        feedback = now - dt.timedelta(days=deadlines.feedback_days)
        return {
            OVERDUE_TRANSFER: and_(leads.c.status == NEW, leads.c.discovered_at < transfer),
            OVERDUE_FEEDBACK: and_(
                leads.c.status == TRANSFERRED, leads.c.transferred_at < feedback
            ),
        }

    def search(self, query: LeadQuery, limit: int = 50, offset: int = 0) -> tuple[list[Lead], int]:
        """A page of leads matching ``query`` (overdue first, then newest) and the total."""
        where = self._where(query)
        with self._reading(), self.engine.connect() as connection:
            total = connection.execute(select(func.count()).select_from(leads).where(where))
            rows = connection.execute(
                select(leads)
                .where(where)
                .order_by(leads.c.discovered_at.desc(), leads.c.id)
                .limit(limit)
                .offset(offset)
            ).all()
            count = int(total.scalar() or 0)
        return [self._lead(row, ()) for row in rows], count

    def report(self, scope: Scope = NATIONAL) -> dict[str, Any]:
        """Counts by kind, status, department and overdue (``aidrec leads report``)."""
        where = self._where(LeadQuery(scope=scope))
        now, deadlines = self.clock(), self.deadlines
        count = func.count().label("n")
        with self._reading(), self.engine.connect() as connection:
            groups = connection.execute(
                select(leads.c.kind, leads.c.status, leads.c.department, count)
                .where(where)
                .group_by(leads.c.kind, leads.c.status, leads.c.department)
            ).all()
            overdue = {
                reason: int(
                    connection.execute(
                        select(func.count()).select_from(leads).where(where, late)
                    ).scalar()
                    or 0
                )
                for reason, late in self._late().items()
            }
        by_kind: dict[str, int] = {}
        by_queue: dict[str, dict[str, int]] = {
            family: {s: 0 for s in STATUSES} for family in (*MODEL_KINDS, DEPARTMENT_FAILURE)
        }
        by_status: dict[str, int] = {s: 0 for s in STATUSES}
        by_department: dict[str, int] = {}
        for row in groups:
            by_kind[row.kind] = by_kind.get(row.kind, 0) + row.n
            by_status[row.status] = by_status.get(row.status, 0) + row.n
            by_queue[kind_family(row.kind)][row.status] += row.n
            if row.department:
                by_department[row.department] = by_department.get(row.department, 0) + row.n
        return {
            "as_of": now.isoformat(timespec="seconds"),
            "scope": str(scope),
            "total": sum(row.n for row in groups),
            "by_kind": dict(sorted(by_kind.items())),
            "by_status": by_status,
            "by_department": dict(sorted(by_department.items())),
            "by_queue": by_queue,
            "overdue": overdue,
            "deadlines": {
                "transfer_days": deadlines.transfer_days,
                "feedback_days": deadlines.feedback_days,
            },
        }

    def _lead(self, row: Any, events: tuple[LeadEvent, ...]) -> Lead:
        late, due = overdue_state(
            row.status, row.discovered_at, row.transferred_at, self.deadlines, self.clock()
        )
        return Lead(
            id=row.id,
            kind=row.kind,
            case_id=row.case_id,
            person_key=row.person_key,
            province_code=row.province_code,
            office_code=row.office_code,
            score=row.score,
            reasons=json.loads(row.reasons),
            sources=json.loads(row.sources),
            origin=row.origin,
            policy_version=row.policy_version,
            status=row.status,
            department=row.department,
            assignee=row.assignee,
            amount_yuan=row.amount_yuan,
            reason=row.reason,
            discovered_at=row.discovered_at,
            updated_at=row.updated_at,
            transferred_at=row.transferred_at,
            verified_at=row.verified_at,
            closed_at=row.closed_at,
            overdue=late,
            due_at=due,
            history=events,
        )


class _Moved(Exception):
    """The lead changed status between the read and the write (rolls the append back)."""


_NOW = object()
"""A placeholder for the transition's time in the planned column values."""


def _text(value: str | None, name: str, limit: int) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if len(value) > limit:
        raise LeadError(f"{name}: at most {limit} characters")
    return value or None


def _ceiling(reasons: dict[str, Any]) -> float | None:
    value = reasons.get("ceiling_yuan")
    return float(value) if isinstance(value, int | float) else None


def _entry(
    record_id: str, actor: str, case_id: str, province_code: str, details: dict[str, Any]
) -> AuditEntry:
    return AuditEntry(
        kind=LEAD,
        prediction_id=record_id,
        caller=actor[:64],
        case_id=case_id,
        province_code=province_code,
        flagged=False,
        model_version="",
        payload=details,
        record_id=record_id,
    )


def _event(row: Any) -> LeadEvent:
    return LeadEvent(
        at=row.at,
        actor=row.actor,
        action=row.action,
        from_status=row.from_status,
        to_status=row.to_status,
        details=json.loads(row.details),
        audit_record_id=row.audit_record_id,
    )
