"""Thin HTTP routes of the lead register (线索管理): list, read, move on.

Reviewers (and admins) only, inside their key's scope: a lead outside it is a 404, exactly
as if it did not exist.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from serving import lead_service, schemas
from serving.deps import Reviewer, State
from serving.deps import json_body as require_json
from serving.guards import StrictJSONRoute
from serving.lead_schemas import LeadFilters, LeadOut, LeadPage, LeadReport, TransitionIn
from serving.routes import ERRORS, NOT_FOUND

router = APIRouter(route_class=StrictJSONRoute, tags=["leads"])
REFUSED: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    409: {
        "model": schemas.ErrorResponse,
        "description": "the lifecycle does not allow this step from the lead's status; the "
        "message names the allowed ones",
    },
}


@router.get(
    "/v1/leads",
    response_model=LeadPage,
    responses=ERRORS,
    summary="Registered leads, newest first (线索查询)",
)
def list_leads(
    state: State, caller: Reviewer, filters: Annotated[LeadFilters, Query()]
) -> LeadPage:
    """Filter by kind, status, province, overdue, assignee, department and case."""
    return lead_service.lead_page(state, caller, filters)


@router.get(
    "/v1/leads/report",
    response_model=LeadReport,
    responses=ERRORS,
    summary="Counts by kind, status, department and overdue (线索统计)",
)
def lead_report(state: State, caller: Reviewer) -> LeadReport:
    """The register inside the caller's scope, counted (as ``aidrec leads report``)."""
    return lead_service.report(state, caller)


@router.get(
    "/v1/leads/{lead_id}",
    response_model=LeadOut,
    responses=NOT_FOUND,
    summary="One lead with its evidence, deadline and history (线索详情)",
)
def get_lead(lead_id: str, state: State, caller: Reviewer) -> LeadOut:
    """Reasons, data sources (数据来源), status, deadline, allowed next steps and history."""
    return lead_service.lead(state, caller, lead_id)


@router.post(
    "/v1/leads/{lead_id}/transitions",
    response_model=LeadOut,
    status_code=201,
    dependencies=[Depends(require_json)],
    responses=REFUSED,
    summary="Move a lead on: transfer, verify, close, reopen, assign (线索流转)",
)
def add_transition(lead_id: str, body: TransitionIn, state: State, caller: Reviewer) -> LeadOut:
    """Steps: new → transferred → verified → aided, referred or dismissed; reopen with a reason."""
    return lead_service.transition(state, caller, lead_id, body)
