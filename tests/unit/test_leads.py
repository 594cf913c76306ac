"""The lead register: idempotent registration, the lifecycle, deadlines, scope, the chain."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.audit import AuditStore, verify_chain
from serving.leads import (
    AIDED,
    CLOSED,
    DEPARTMENTS,
    DISMISSED,
    LEAD,
    NEW,
    REFERRED,
    STATUSES,
    TRANSFERRED,
    VERIFIED,
    LeadCandidate,
    LeadError,
    LeadQuery,
    LeadStore,
    TransitionRefused,
    TransitionRequest,
    allowed_next,
)
from serving.scopes import Scope
from tests.audit_payloads import make_secrets
from tests.postgres import fresh_database
from training.policy import LeadDeadlines

START = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, days: float) -> None:
        self.now += dt.timedelta(days=days)


def candidate(case_id: str = "C1", kind: str = "judicial_aid", **changes: object) -> LeadCandidate:
    base = LeadCandidate(
        kind=kind,
        case_id=case_id,
        person_key="pk-" + case_id,
        province_code="33",
        office_code="330100",
        score=None if kind.startswith("department_failure") else 0.8,
        reasons={"top": [{"feature": "harm_outcome", "contribution": 0.4}], "ceiling_yuan": 9e4},
        sources=[{"department": "disability", "snapshot": "2026-01-31", "field": "grade"}],
        origin="screening:run-1",
        policy_version="2026.1",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture()
def clock() -> Clock:
    return Clock()


def _store(url: str, folder: Path, clock: Clock, batch: int = 500) -> LeadStore:
    audit = AuditStore.open(url, make_secrets(folder))
    return LeadStore(audit, LeadDeadlines(transfer_days=7, feedback_days=30), clock, batch)


@pytest.fixture()
def store(tmp_path: Path, clock: Clock) -> Iterator[LeadStore]:
    made = _store(f"sqlite:///{tmp_path / 'audit.db'}", tmp_path, clock, batch=3)
    yield made
    made.engine.dispose()


def move(store: LeadStore, lead_id: str, to: str, **fields: object) -> str:
    return store.transition(lead_id, TransitionRequest(to=to, **fields), "reviewer-1").status  # type: ignore[arg-type]


def test_registration_is_idempotent_and_refreshes_only_new_leads(store: LeadStore) -> None:
    first = store.register([candidate("C1"), candidate("C2"), candidate("C3"), candidate("C4")])
    assert (first.created, first.updated, first.unchanged) == (4, 0, 0)
    again = store.register([candidate("C1"), candidate("C2"), candidate("C3"), candidate("C4")])
    assert (again.created, again.updated, again.unchanged) == (0, 0, 4)
    assert store.search(LeadQuery())[1] == 4
    lead = store.find("C2", "judicial_aid")
    assert lead is not None
    move(store, lead.id, TRANSFERRED, department="civil_affairs")
    rescored = store.register([candidate("C1", score=0.9), candidate("C2", score=0.95)])
    assert (rescored.created, rescored.updated, rescored.unchanged) == (0, 1, 1)
    assert store.find("C1", "judicial_aid").score == 0.9  # type: ignore[union-attr]
    assert store.find("C2", "judicial_aid").score == 0.8  # type: ignore[union-attr]
    other_kind = store.register([candidate("C1", kind="civil_support")])
    assert other_kind.created == 1


def test_a_bad_candidate_is_refused_before_its_batch_is_written(store: LeadStore) -> None:
    with pytest.raises(LeadError, match=r"candidate 1 .*kind 'aid'"):
        store.register([candidate("C1"), candidate("C2", kind="aid")])
    assert store.search(LeadQuery())[1] == 0
    with pytest.raises(LeadError, match="province_code"):
        store.register([candidate("C1", province_code="99")])
    with pytest.raises(LeadError, match="department-failure lead none"):
        store.register([candidate("C1", kind="department_failure:no_certificate", score=0.4)])
    store.register([candidate("C9", kind="department_failure:no_certificate")])
    assert store.search(LeadQuery(kind="department_failure"))[1] == 1


def test_every_registration_and_transition_is_in_the_chain_and_the_history(
    store: LeadStore,
) -> None:
    store.register([candidate("C1")])
    lead = store.find("C1", "judicial_aid")
    assert lead is not None
    move(store, lead.id, TRANSFERRED, department="disabled_persons_federation", assignee="li")
    found = store.get(lead.id)
    assert found is not None
    assert [(e.action, e.from_status, e.to_status) for e in found.history] == [
        ("created", None, NEW),
        ("transition", NEW, TRANSFERRED),
    ]
    assert found.assignee == "li" and found.department == "disabled_persons_federation"
    with store.engine.connect() as connection:
        from sqlalchemy import select

        from serving.audit import records

        chain = connection.execute(
            select(records.c.record_id, records.c.payload).where(records.c.kind == LEAD)
        ).all()
    assert {row.record_id for row in chain} == {e.audit_record_id for e in found.history}
    assert verify_chain(store.engine, store.audit.secrets).ok


def test_a_lead_moved_on_while_it_is_registered_again_is_left_alone(
    store: LeadStore, tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.register([candidate("C1")])
    lead = store.find("C1", "judicial_aid")
    assert lead is not None
    other = _store(f"sqlite:///{tmp_path / 'audit.db'}", tmp_path, clock)  # another replica
    original = store.audit.append_many
    calls = []

    def racing(entries: object, alongside: object = None) -> object:
        if not calls:  # the other replica transfers the lead between the read and the write
            move(other, lead.id, TRANSFERRED, department="civil_affairs")
        calls.append(1)
        return original(entries, alongside)  # type: ignore[arg-type]

    monkeypatch.setattr(store.audit, "append_many", racing)
    summary = store.register([candidate("C1", score=0.99)])
    assert (summary.created, summary.updated, summary.unchanged) == (0, 0, 1)
    found = store.get(lead.id)
    assert found is not None and found.status == TRANSFERRED and found.score == 0.8
    assert [e.action for e in found.history] == ["created", "transition"]
    assert verify_chain(store.engine, store.audit.secrets).ok
    other.engine.dispose()


def test_a_live_answers_registration_is_covered_by_the_answers_own_record(
    store: LeadStore,
) -> None:
    from sqlalchemy import func, select

    from serving.audit import records

    store.register([candidate("C1", origin="answer:p-1"), candidate("C2", origin="answer:p-2")])
    store.register([candidate("C1", origin="answer:p-3", score=0.9)])
    with store.engine.connect() as connection:
        chained = connection.execute(
            select(func.count()).select_from(records).where(records.c.kind == LEAD)
        ).scalar()
    assert chained == 0
    lead = store.find("C1", "judicial_aid")
    assert lead is not None and lead.origin == "answer:p-3" and lead.score == 0.9
    assert [e.audit_record_id for e in lead.history] == ["p-1", "p-3"]


@pytest.mark.parametrize("start", STATUSES)
def test_each_status_allows_exactly_its_next_steps(store: LeadStore, start: str) -> None:
    allowed = set(allowed_next(start, was_verified=True))
    for to in STATUSES:
        if to == start:
            continue
        store.register([candidate(f"{start}-{to}")])
        lead = store.find(f"{start}-{to}", "judicial_aid")
        assert lead is not None
        _bring_to(store, lead.id, start)
        fields = _fields(to, reopen=start in CLOSED)
        if to in allowed:
            assert move(store, lead.id, to, **fields) == to
        else:
            with pytest.raises(TransitionRefused) as refused:
                move(store, lead.id, to, **fields)
            assert set(refused.value.allowed) == allowed
            assert store.get(lead.id).status == start  # type: ignore[union-attr]


def _fields(to: str, reopen: bool = False) -> dict[str, object]:
    if reopen:
        return {"reason": "new evidence"}
    return {
        TRANSFERRED: {"department": "civil_affairs"},
        AIDED: {"amount_yuan": 20_000.0},
        DISMISSED: {"reason": "not eligible"},
    }.get(to, {})


def _bring_to(store: LeadStore, lead_id: str, status: str) -> None:
    path = {
        NEW: [],
        TRANSFERRED: [TRANSFERRED],
        VERIFIED: [TRANSFERRED, VERIFIED],
        AIDED: [TRANSFERRED, VERIFIED, AIDED],
        REFERRED: [TRANSFERRED, VERIFIED, REFERRED],
        DISMISSED: [TRANSFERRED, VERIFIED, DISMISSED],
    }[status]
    for step in path:
        move(store, lead_id, step, **_fields(step))


def test_required_fields_of_each_step(store: LeadStore) -> None:
    store.register([candidate("C1"), candidate("C2")])
    lead = store.find("C1", "judicial_aid")
    assert lead is not None
    with pytest.raises(LeadError, match="department"):
        move(store, lead.id, TRANSFERRED)
    with pytest.raises(LeadError, match="department"):
        move(store, lead.id, TRANSFERRED, department="police")
    assert set(DEPARTMENTS) >= {"civil_affairs", "village_committee"}
    with pytest.raises(LeadError, match="reason"):
        move(store, lead.id, DISMISSED)
    move(store, lead.id, TRANSFERRED, department="womens_federation")
    move(store, lead.id, VERIFIED)
    with pytest.raises(LeadError, match="amount_yuan"):
        move(store, lead.id, AIDED)
    with pytest.raises(LeadError, match="statutory ceiling"):
        move(store, lead.id, AIDED, amount_yuan=90_001.0)
    with pytest.raises(LeadError, match="only an aided"):
        move(store, lead.id, REFERRED, amount_yuan=10.0)
    assert move(store, lead.id, AIDED, amount_yuan=90_000.0) == AIDED
    assert store.get(lead.id).amount_yuan == 90_000.0  # type: ignore[union-attr]
    other = store.find("C2", "judicial_aid")
    assert other is not None
    assert move(store, other.id, DISMISSED, reason="already aided elsewhere") == DISMISSED


def test_reopening_needs_a_reason_and_goes_back_one_step(store: LeadStore, clock: Clock) -> None:
    store.register([candidate("C1"), candidate("C2")])
    verified = store.find("C1", "judicial_aid")
    early = store.find("C2", "judicial_aid")
    assert verified is not None and early is not None
    _bring_to(store, verified.id, REFERRED)
    move(store, early.id, DISMISSED, reason="duplicate")
    with pytest.raises(LeadError, match="reopening"):
        move(store, verified.id, VERIFIED)
    with pytest.raises(TransitionRefused):
        move(store, verified.id, NEW, reason="x")
    assert move(store, verified.id, VERIFIED, reason="the family wrote again") == VERIFIED
    reopened = store.get(verified.id)
    assert reopened is not None and reopened.closed_at is None
    assert reopened.history[-1].action == "reopened"
    clock.advance(10)
    assert move(store, early.id, NEW, reason="not a duplicate after all") == NEW
    again = store.get(early.id)
    assert again is not None and again.overdue is None  # the transfer deadline restarts


def test_assignee_alone_changes_without_a_status(store: LeadStore) -> None:
    store.register([candidate("C1")])
    lead = store.find("C1", "judicial_aid")
    assert lead is not None
    assert move(store, lead.id, NEW, assignee="wang") == NEW
    assert store.search(LeadQuery(assignee="wang"))[1] == 1
    with pytest.raises(TransitionRefused):
        move(store, lead.id, NEW)


def test_overdue_leads_are_flagged_on_both_deadlines(store: LeadStore, clock: Clock) -> None:
    store.register([candidate("C1"), candidate("C2"), candidate("C3")])
    ids = {c: store.find(c, "judicial_aid").id for c in ("C1", "C2", "C3")}  # type: ignore[union-attr]
    clock.advance(7)
    assert store.search(LeadQuery(overdue=True))[1] == 0  # exactly at the deadline: in time
    assert store.get(ids["C1"]).due_at == START + dt.timedelta(days=7)  # type: ignore[union-attr]
    move(store, ids["C2"], TRANSFERRED, department="civil_affairs")
    clock.advance(0.01)
    late = store.get(ids["C1"])
    assert late is not None and late.overdue == "transfer"
    assert store.get(ids["C2"]).overdue is None  # type: ignore[union-attr]
    assert {lead.case_id for lead in store.search(LeadQuery(overdue=True))[0]} == {"C1", "C3"}
    clock.advance(30)
    assert store.get(ids["C2"]).overdue == "feedback"  # type: ignore[union-attr]
    move(store, ids["C2"], VERIFIED)
    assert store.get(ids["C2"]).overdue is None  # type: ignore[union-attr]
    report = store.report()
    assert report["overdue"] == {"transfer": 2, "feedback": 0}
    assert report["by_status"][VERIFIED] == 1 and report["by_department"] == {"civil_affairs": 1}
    assert {lead.case_id for lead in store.search(LeadQuery(overdue=False))[0]} == {"C2"}


def test_a_lead_outside_the_scope_does_not_exist(store: LeadStore) -> None:
    store.register([candidate("C1"), candidate("C2", province_code="11", office_code="110105")])
    zhejiang = Scope("33")
    assert [lead.case_id for lead in store.search(LeadQuery(scope=zhejiang))[0]] == ["C1"]
    beijing_lead = store.find("C2", "judicial_aid")
    assert beijing_lead is not None
    assert store.get(beijing_lead.id, zhejiang) is None
    assert store.get(beijing_lead.id, Scope("110105")) is not None
    with pytest.raises(KeyError):
        store.transition(
            beijing_lead.id, TransitionRequest(to=DISMISSED, reason="x"), "r", zhejiang
        )
    assert store.report(zhejiang)["total"] == 1


def test_postgres_register_and_transition(tmp_path: Path, clock: Clock) -> None:
    with fresh_database() as url:
        store = _store(url, tmp_path, clock)
        other = _store(url, tmp_path, clock)  # another replica on the same database
        try:
            store.register([candidate("C1"), candidate("C2")])
            summary = other.register([candidate("C1", score=0.7), candidate("C3")])
            assert (summary.created, summary.updated, summary.unchanged) == (1, 1, 0)
            lead = other.find("C1", "judicial_aid")
            assert lead is not None and lead.score == 0.7
            move(store, lead.id, TRANSFERRED, department="human_resources")
            with pytest.raises(TransitionRefused):
                move(other, lead.id, AIDED, amount_yuan=1.0)
            assert other.search(LeadQuery(status=TRANSFERRED))[1] == 1
            assert len(store.get(lead.id).history) == 3  # type: ignore[union-attr]
            assert verify_chain(store.engine, store.audit.secrets).ok
        finally:
            store.engine.dispose()
            other.engine.dispose()
