"""线索管理: the workbench's pages of the lead register, under ``/ui/leads``.

The queues by kind and status with overdue leads highlighted, one lead with its evidence
(the model's reasons, the rules' facts, the data sources 数据来源), the transition form and
the history. Each page calls the same service functions as ``/v1/leads`` with the signed-in
key as the caller, so the key's scope limits the pages exactly as it limits the API; the
form carries the session's CSRF token like the review form (:mod:`serving.pages`).
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from features.contract import FIELD_BY_NAME, rule_zh
from serving import data_sources, formats, lead_service
from serving.deps import State
from serving.errors import ContractViolation
from serving.lead_schemas import LeadFilters, LeadOut, TransitionIn
from serving.leads import (
    CLOSED,
    DEPARTMENT_FAILURE,
    DEPARTMENTS,
    KIND_ZH,
    MODEL_KINDS,
    OVERDUE_ZH,
    STATUS_ZH,
    STATUSES,
    kind_family,
)
from serving.pages import PREFIX, Form, FormVisitor, PageVisitor, render

router = APIRouter(prefix=PREFIX, include_in_schema=False)
LEADS = f"{PREFIX}/leads"
PAGE_SIZE = 50
ACTIVE = "leads"
KINDS = (*MODEL_KINDS, DEPARTMENT_FAILURE)
"""The queues' kinds (every department-failure rule in one queue)."""
TRANSITION_ZH = {
    "transferred": "流转",
    "verified": "反馈核实",
    "aided": "办结：已救助",
    "referred": "办结：已移送",
    "dismissed": "办结：不予救助",
    "new": "重新打开（退回待流转）",
}
ACTION_ZH = {
    "created": "登记",
    "updated": "更新评分",
    "transition": "状态变更",
    "assigned": "指定承办人",
    "reopened": "重新打开",
}
REASON_ZH: dict[str, tuple[str, Callable[[Any], str]]] = {
    "probability": ("模型概率", formats.percent),
    "threshold": ("标记阈值", formats.percent),
    "reference_amount_yuan": ("参考金额", formats.yuan),
    "ceiling_yuan": ("法定救助上限", formats.yuan),
    "rule": ("规则编号", str),
    "rule_zh": ("规则", str),
    "act_department_zh": ("应履职部门", str),
    "rules_version": ("规则版本", str),
    "eligibility_status": ("资格判断", str),
    "contribution_unit": ("贡献单位", str),
}
"""The plain facts a lead's reasons may carry: their Chinese name and how they are shown."""
SOURCE_ZH = {data_sources.CASE_SYSTEM_SOURCE: data_sources.CASE_CARD_ZH, **DEPARTMENTS}
"""Departments a source may name, in Chinese (a registry's own ``department_zh`` wins)."""
FILTER_HINTS_ZH = {
    "kind": "不是可选的线索类型",
    "status": "不是可选的状态",
    "province_code": "不是有效的省份代码",
    "assignee": "承办人最长 64 个字符",
    "overdue": "不是可选的逾期条件",
    "page": "页码超出范围",
}


def lead_context() -> dict[str, Any]:
    """The names every lead page shows in Chinese."""
    return {
        "kind_zh": KIND_ZH,
        "kinds": KINDS,
        "status_zh": STATUS_ZH,
        "statuses": STATUSES,
        "departments": DEPARTMENTS,
        "overdue_zh": OVERDUE_ZH,
        "transition_zh": TRANSITION_ZH,
        "action_zh": ACTION_ZH,
        "closed": CLOSED,
    }


def filters_from_query(query: Mapping[str, str]) -> tuple[LeadFilters | None, dict[str, str]]:
    """The list's form as the API's filters, or the errors by form field."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in ("kind", "status", "province_code", "assignee"):
        text = query.get(name, "").strip()
        if text:
            values[name] = text
    if (
        values.get("kind")
        and values["kind"] not in KINDS
        and not values["kind"].startswith(f"{DEPARTMENT_FAILURE}:")
    ):
        errors["kind"] = FILTER_HINTS_ZH["kind"]
    overdue = query.get("overdue", "").strip()
    if overdue:
        if overdue in ("yes", "no"):
            values["overdue"] = overdue == "yes"
        else:
            errors["overdue"] = FILTER_HINTS_ZH["overdue"]
    page_text = query.get("page", "").strip() or "1"
    if page_text.isdigit() and int(page_text) >= 1:
        values["offset"] = (int(page_text) - 1) * PAGE_SIZE
        values["limit"] = PAGE_SIZE
    else:
        errors["page"] = f"页码应为正整数，而不是 {page_text!r} (a page number)"
    try:
        filters = LeadFilters.model_validate(values)
    except ValidationError as exc:
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "form"
            field = "page" if name in ("offset", "limit") else name
            hint = FILTER_HINTS_ZH.get(field) or rule_zh(str(error["type"]))
            errors.setdefault(field, f"{hint}（{error['msg']}）")
        return None, errors
    return (None, errors) if errors else (filters, {})


def queues(by_queue: Mapping[str, Mapping[str, int]]) -> list[dict[str, Any]]:
    """One row per kind: its count in each status (the queues), linked from the page."""
    return [
        {
            "kind": kind,
            "zh": KIND_ZH[kind],
            "counts": [(status, by_queue[kind][status]) for status in STATUSES],
            "total": sum(by_queue[kind].values()),
        }
        for kind in KINDS
    ]


def transition_from_form(form: Mapping[str, str]) -> tuple[TransitionIn | None, dict[str, str]]:
    """The transition form as the API's request, or the errors by form field."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in ("to", "department", "reason", "assignee", "note"):
        text = form.get(name, "").strip()
        if text:
            values[name] = text
    amount_text = form.get("amount_yuan", "").replace(",", "").replace("，", "").strip()
    amount_text = amount_text.removesuffix("元").strip()
    if amount_text:
        try:
            amount = float(amount_text)
            if not math.isfinite(amount):
                raise ValueError(amount_text)
            values["amount_yuan"] = amount
        except ValueError:
            errors["amount_yuan"] = f"金额应为数字（元），而不是 {amount_text!r} (a number)"
    if "to" not in values:
        errors["to"] = "请选择要变更到的状态 (choose the next step)"
    if errors:
        return None, errors
    try:
        return TransitionIn.model_validate(values), {}
    except ValidationError as exc:
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "form"
            errors.setdefault(name, f"{rule_zh(str(error['type']))}：{error['msg']}")
        return None, errors


def evidence(lead: LeadOut) -> dict[str, Any]:
    """What the lead's page shows as its evidence: reasons, rule facts, data sources."""
    reasons = dict(lead.reasons)
    top = reasons.pop("top", [])
    hits = reasons.pop("rule_hits", [])
    facts = reasons.pop("facts", None)
    return {
        "top": [
            {
                "label": item.get("label_zh") or item.get("feature", ""),
                "value": formats.feature_value(item["feature"], item.get("value"))
                if "feature" in item
                else item.get("value"),
                "contribution": item.get("contribution"),
            }
            for item in top
        ],
        "rule_hits": hits,
        "facts": [
            (FIELD_BY_NAME[name].zh if name in FIELD_BY_NAME else name, name, value)
            for name, value in (facts.items() if isinstance(facts, Mapping) else ())
        ],
        "other": [
            (REASON_ZH[k][0], REASON_ZH[k][1](v)) if k in REASON_ZH else (k, v)
            for k, v in reasons.items()
            if not isinstance(v, dict | list) and v is not None
        ],
        "sources": [
            {
                "department": source.get("department_zh")
                or SOURCE_ZH.get(str(source.get("department")), source.get("department", "")),
                "snapshot": source.get("snapshot") or "—",
                "field": FIELD_BY_NAME[source["field"]].zh
                if source.get("field") in FIELD_BY_NAME
                else source.get("field", ""),
                "code": source.get("field", ""),
                "snapshot_id": source.get("snapshot_id"),
                "conflict": (
                    f"办案系统填报 {formats.field_value(source['field'], source.get('card'))}，"
                    f"部门登记 {formats.field_value(source['field'], source.get('registry'))}"
                    if source.get("conflict")
                    else None
                ),
            }
            for source in lead.sources
        ],
        "prediction_id": lead.origin.split(":", 1)[1]
        if lead.origin.startswith("answer:")
        else None,
    }


@router.get("/leads", response_class=HTMLResponse)
def leads_page(request: Request, state: State, visitor: PageVisitor) -> HTMLResponse:
    """线索管理: the queues by kind and status, and the filtered list (overdue highlighted)."""
    assert visitor.key is not None
    query = {name: request.query_params.get(name, "") for name in request.query_params}
    filters, errors = filters_from_query(query)
    page = lead_service.lead_page(state, visitor.key, filters) if filters is not None else None
    report = lead_service.report(state, visitor.key)
    kept = {k: v for k, v in query.items() if v and k != "page"}
    context = {
        **lead_context(),
        "query": query,
        "errors": errors,
        "page": page,
        "report": report,
        "queues": queues(report.by_queue),
        "base_query": urllib.parse.urlencode(kept),
        "family": kind_family,
    }
    return render(request, "leads.html", visitor, context, 422 if errors else 200, ACTIVE)


def _lead_page(
    request: Request, visitor: Any, lead: LeadOut, status: int = 200, **extra: Any
) -> HTMLResponse:
    context = {
        **lead_context(),
        "lead": lead,
        "evidence": evidence(lead),
        "form": {},
        "form_errors": {},
        "saved": request.query_params.get("saved") == "1",
        **extra,
    }
    return render(request, "lead.html", visitor, context, status, ACTIVE)


@router.get("/leads/{lead_id}", response_class=HTMLResponse)
def lead_page(lead_id: str, request: Request, state: State, visitor: PageVisitor) -> HTMLResponse:
    """One lead: its evidence, deadline, the transition form and the history."""
    assert visitor.key is not None
    return _lead_page(request, visitor, lead_service.lead(state, visitor.key, lead_id))


@router.post("/leads/{lead_id}/transitions", response_class=HTMLResponse)
def transition_submit(
    lead_id: str, request: Request, state: State, form: Form, visitor: FormVisitor
) -> Response:
    """Move the lead on through the API's own audited path; a refused form is shown, not stored."""
    assert visitor.key is not None
    current = lead_service.lead(state, visitor.key, lead_id)  # 404 outside the scope first
    body, errors = transition_from_form(form)
    status = 422
    if body is not None:
        try:
            lead_service.transition(state, visitor.key, lead_id, body)
        except ContractViolation as exc:
            errors = {p.field: f"{p.rule_zh}：{p.rule}" for p in exc.problems}
        except HTTPException as exc:
            if exc.status_code != 409:
                raise
            allowed = "、".join(TRANSITION_ZH.get(s, s) for s in current.allowed) or "无"
            errors = {"to": f"当前状态不能这样变更，可选：{allowed}（{exc.detail}）"}
            status = 409
        else:
            return RedirectResponse(f"{LEADS}/{lead_id}?saved=1#history", status_code=303)
    fresh = lead_service.lead(state, visitor.key, lead_id)
    return _lead_page(request, visitor, fresh, status, form=dict(form), form_errors=errors)
