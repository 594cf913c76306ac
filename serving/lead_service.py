"""What the service does with the lead register, one function per use.

Register the flagged leads of live answers, list leads, read one, move one on, count them.
Routes and pages validate the request, call one of these and return what it returns.

A live answer's leads are registered right after the answer is audited, in a transaction of
their own (one batch for all the answers of a request). The answer never waits on them
beyond that write and is never withheld for them: if the register refuses, the failure is
logged and counted (``aidrec_lead_register_failures_total``) and the answer is returned,
since its audited record holds every flagged lead; ``aidrec leads sync`` registers the
flagged leads of stored answers again (idempotent), so nothing is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import HTTPException

from serving import schemas
from serving.audit import AuditError
from serving.data_sources import lead_sources
from serving.errors import ContractViolation, Unavailable, problem
from serving.lead_schemas import LeadFilters, LeadOut, LeadPage, LeadReport, TransitionIn
from serving.leads import (
    LeadCandidate,
    LeadError,
    LeadQuery,
    LeadStore,
    RegisterSummary,
    TransitionRefused,
    TransitionRequest,
)
from serving.security import ApiKey
from serving.state import ServiceState

log = logging.getLogger(__name__)


def _store(state: ServiceState) -> LeadStore:
    if state.leads is None:
        raise Unavailable("the lead register is not open (线索库不可用)", "no lead store")
    return state.leads


def answer_candidates(record: dict[str, Any], answer: dict[str, Any]) -> list[LeadCandidate]:
    """The flagged leads of one answer as candidates (``origin`` = the answer).

    ``record`` and ``answer`` are the JSON forms the audit trail stores, so that a stored
    answer gives exactly the candidates its live registration gave.
    """
    flagged = {n: lead for n, lead in answer["leads"].items() if lead["flagged"]}
    if not flagged:
        return []
    hits = answer["eligibility"]["rule_hits"]
    amount = answer["reference_amount"]
    sources = lead_sources(record, answer)
    candidates = []
    for name, lead in flagged.items():
        explanation = answer["explanations"].get(name) or {}
        reasons = {
            "probability": lead["probability"],
            "threshold": lead["threshold"],
            "top": [
                {k: c[k] for k in ("feature", "label_zh", "value", "contribution")}
                for c in explanation.get("top", [])
            ],
            "rule_hits": [{k: h[k] for k in ("id", "zh", "facts")} for h in hits],
            "reference_amount_yuan": amount["yuan"],
            "ceiling_yuan": amount["ceiling_yuan"],
        }
        candidates.append(
            LeadCandidate(
                kind=name,
                case_id=answer["case_id"],
                person_key=record.get("person_key"),
                province_code=record["province_code"],
                office_code=record.get("office_code"),
                score=float(lead["probability"]),
                reasons=reasons,
                sources=list(sources),
                origin=f"answer:{answer['prediction_id']}",
                policy_version=answer["model"]["policy_version"],
            )
        )
    return candidates


def register_answers(
    state: ServiceState,
    caller: ApiKey,
    requests: Sequence[schemas.ScoreRequest],
    answers: Sequence[schemas.ScoreResponse],
) -> RegisterSummary | None:
    """Register the flagged leads of audited answers; a failure is logged, never raised."""
    if state.leads is None:
        return None
    found: list[LeadCandidate] = []
    for request, answer in zip(requests, answers, strict=True):
        if any(lead.flagged for lead in answer.leads.values()):
            found += answer_candidates(
                request.record.model_dump(mode="json"), answer.model_dump(mode="json")
            )
    if not found:
        return None
    try:
        return state.leads.register(found, actor=caller.name)
    except (AuditError, LeadError) as exc:
        state.metrics.lead_register_failures.inc()
        log.error(
            "the leads of %d answer(s) were not registered (the answers stand; "
            "`aidrec leads sync` registers them again): %s",
            len(answers),
            exc,
        )
        return None


def sync_answers(
    audit_answers: Iterable[tuple[dict[str, Any], dict[str, Any]]], store: LeadStore
) -> RegisterSummary:
    """Register the flagged leads of stored answers ((record, answer) pairs); idempotent."""
    candidates = (
        candidate
        for record, answer in audit_answers
        for candidate in answer_candidates(record, answer)
    )
    return store.register(candidates, actor="aidrec leads sync")


def _query(caller: ApiKey, filters: LeadFilters) -> LeadQuery:
    return LeadQuery(
        scope=caller.scope,
        kind=filters.kind,
        status=filters.status,
        province_code=filters.province_code,
        overdue=filters.overdue,
        assignee=filters.assignee,
        department=filters.department,
        case_id=filters.case_id,
    )


def lead_page(state: ServiceState, caller: ApiKey, filters: LeadFilters) -> LeadPage:
    """A page of leads inside the caller's scope, newest first."""
    try:
        found, total = _store(state).search(_query(caller, filters), filters.limit, filters.offset)
    except AuditError as exc:
        raise Unavailable("the lead register cannot be read (线索库不可用)", str(exc)) from exc
    return LeadPage(
        total=total,
        limit=filters.limit,
        offset=filters.offset,
        items=[LeadOut.of(lead) for lead in found],
    )


def not_found(lead_id: str) -> HTTPException:
    """The 404 of a lead unknown or outside the caller's scope (the same answer)."""
    return HTTPException(404, f"no lead {lead_id!r} (未找到该线索)")


def lead(state: ServiceState, caller: ApiKey, lead_id: str) -> LeadOut:
    """One lead with its history, or 404 (outside the caller's scope too)."""
    try:
        found = _store(state).get(lead_id, caller.scope)
    except AuditError as exc:
        raise Unavailable("the lead register cannot be read (线索库不可用)", str(exc)) from exc
    if found is None:
        raise not_found(lead_id)
    return LeadOut.of(found)


def transition(state: ServiceState, caller: ApiKey, lead_id: str, body: TransitionIn) -> LeadOut:
    """Move a lead on: 404 outside the scope, 409 a step not allowed, 422 a missing field."""
    request = TransitionRequest(**body.model_dump())
    try:
        moved = _store(state).transition(lead_id, request, caller.name, caller.scope)
    except KeyError:
        raise not_found(lead_id) from None
    except TransitionRefused as exc:
        allowed = "、".join(exc.allowed) or "无"
        raise HTTPException(409, f"{exc} (不允许的状态变更；可变更为：{allowed})") from exc
    except LeadError as exc:
        raise ContractViolation(
            [problem(["body", exc.field], str(exc), "线索状态变更缺少或填错必要信息")]
        ) from exc
    except AuditError as exc:
        state.metrics.audit_failures.inc()
        raise Unavailable(
            "the transition could not be stored (线索变更写入失败)", str(exc)
        ) from exc
    return LeadOut.of(moved)


def report(state: ServiceState, caller: ApiKey) -> LeadReport:
    """Counts by kind, status, department and overdue inside the caller's scope."""
    try:
        return LeadReport(**_store(state).report(caller.scope))
    except AuditError as exc:
        raise Unavailable("the lead register cannot be read (线索库不可用)", str(exc)) from exc
