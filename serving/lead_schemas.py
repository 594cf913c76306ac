"""Request and response models of the lead register's API (``/v1/leads``).

Kept beside :mod:`serving.schemas` (the scoring API's models) so that the register's models
evolve with :mod:`serving.leads`, which holds the statuses, kinds and departments they name.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from serving.leads import (
    DEPARTMENT_FAILURE,
    DEPARTMENTS,
    OVERDUE_ZH,
    STATUS_ZH,
    STATUSES,
    Lead,
    LeadEvent,
    check_kind,
)
from serving.schemas import ProvinceCode

if TYPE_CHECKING:
    Status = str
    Department = str
else:
    Status = Literal.__getitem__(STATUSES)
    Department = Literal.__getitem__(tuple(DEPARTMENTS))


class LeadFilters(BaseModel):
    """What leads can be filtered by (the API's query and the page's form).

    Every filter narrows the caller's scope; none widens it.
    """

    model_config = ConfigDict(extra="forbid")

    kind: str | None = Field(
        None,
        max_length=64,
        description="judicial_aid, social_assistance, civil_support, department_failure (every "
        "rule) or department_failure:<rule> (线索类型)",
    )
    status: Status | None = Field(None, description="状态: " + ", ".join(STATUSES))
    province_code: ProvinceCode | None = Field(None, description="省份代码")
    overdue: bool | None = Field(None, description="past its transfer or feedback deadline (逾期)")
    assignee: str | None = Field(None, max_length=64, description="承办人")
    department: Department | None = Field(None, description="流转部门")
    case_id: str | None = Field(None, max_length=64, description="案件编号")
    limit: int = Field(50, ge=1, le=200)
    offset: int = Field(0, ge=0, le=10_000_000)

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str | None) -> str | None:
        if value is None or value == DEPARTMENT_FAILURE:
            return value
        problem = check_kind(value)
        if problem:
            raise ValueError(problem)
        return value


class LeadEventOut(BaseModel):
    """One step of a lead's history (each is also a record of the audit chain)."""

    at: dt.datetime
    actor: str
    action: Literal["created", "updated", "transition", "assigned", "reopened"]
    from_status: str | None
    to_status: str
    details: dict[str, Any]
    audit_record_id: str = Field(description="the record of the audit chain for this step")

    @classmethod
    def of(cls, event: LeadEvent) -> LeadEventOut:
        """The API's view of a stored event."""
        return cls.model_validate(event, from_attributes=True)


class LeadOut(BaseModel):
    """One lead of the register, with its deadline and (for one lead) its history."""

    id: str
    kind: str = Field(
        description="judicial_aid | social_assistance | civil_support | department_failure:<rule>"
    )
    kind_zh: str
    case_id: str
    person_key: str | None
    province_code: str
    office_code: str | None
    score: float | None = Field(description="the model's probability; null for a rule's lead")
    reasons: dict[str, Any] = Field(description="top contributions, rule facts (线索依据)")
    sources: list[dict[str, Any]] = Field(description="数据来源: department, snapshot, field")
    origin: str = Field(description="screening:<run_id> or answer:<prediction_id>")
    policy_version: str
    status: Status
    status_zh: str
    department: str | None = Field(description="where it was transferred (流转部门)")
    department_zh: str | None
    assignee: str | None
    amount_yuan: float | None = Field(description="the aid granted (aided only)")
    reason: str | None = Field(description="why it was dismissed, or a closing note")
    discovered_at: dt.datetime
    updated_at: dt.datetime
    transferred_at: dt.datetime | None
    verified_at: dt.datetime | None
    closed_at: dt.datetime | None
    overdue: Literal["transfer", "feedback"] | None = Field(
        description="逾期未流转 (transfer) or 逾期未反馈 (feedback), from the policy's deadlines"
    )
    overdue_zh: str | None
    due_at: dt.datetime | None = Field(description="when the current step is due")
    allowed: list[str] = Field(description="the statuses it may move to now")
    history: list[LeadEventOut] = []

    @classmethod
    def of(cls, lead: Lead) -> LeadOut:
        """The API's view of a stored lead."""
        return cls(
            id=lead.id,
            kind=lead.kind,
            kind_zh=lead.kind_zh,
            case_id=lead.case_id,
            person_key=lead.person_key,
            province_code=lead.province_code,
            office_code=lead.office_code,
            score=lead.score,
            reasons=lead.reasons,
            sources=lead.sources,
            origin=lead.origin,
            policy_version=lead.policy_version,
            status=lead.status,
            status_zh=STATUS_ZH[lead.status],
            department=lead.department,
            department_zh=DEPARTMENTS.get(lead.department or ""),
            assignee=lead.assignee,
            amount_yuan=lead.amount_yuan,
            reason=lead.reason,
            discovered_at=lead.discovered_at,
            updated_at=lead.updated_at,
            transferred_at=lead.transferred_at,
            verified_at=lead.verified_at,
            closed_at=lead.closed_at,
            overdue=lead.overdue,
            overdue_zh=OVERDUE_ZH.get(lead.overdue or ""),
            due_at=lead.due_at,
            allowed=list(lead.allowed),
            history=[LeadEventOut.of(event) for event in lead.history],
        )


class LeadPage(BaseModel):
    """A page of leads, newest first."""

    total: int
    limit: int
    offset: int
    items: list[LeadOut]


class TransitionIn(BaseModel):
    """Move a lead on: to a status (with what that step needs), or assign it (``to`` = status).

    ``transferred`` needs a department; ``aided`` the amount (at most the case's statutory
    ceiling when known); ``dismissed`` and reopening a closed lead a reason.
    """

    model_config = ConfigDict(extra="forbid")

    to: Status = Field(description="the new status (the current one to change the assignee only)")
    department: Department | None = Field(None, description="流转部门 (transferred only)")
    amount_yuan: float | None = Field(None, gt=0, description="救助金额 (aided only)")
    reason: str | None = Field(
        None, max_length=2000, description="理由 (dismissed and reopening: required)"
    )
    assignee: str | None = Field(None, max_length=64, description="承办人")
    note: str | None = Field(None, max_length=2000, description="备注")


class LeadReport(BaseModel):
    """Counts of the register inside a scope (``aidrec leads report``)."""

    as_of: str
    scope: str
    total: int
    by_kind: dict[str, int]
    by_status: dict[str, int]
    by_department: dict[str, int]
    by_queue: dict[str, dict[str, int]] = Field(
        description="the queues: each kind (department_failure: every rule) by status"
    )
    overdue: dict[str, int]
    deadlines: dict[str, int]
