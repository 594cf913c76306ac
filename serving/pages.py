"""The workbench: Chinese pages for reviewers and supervisors, served under ``/ui``.

Server-rendered with Jinja2 (autoescape on), one small route per page, each calling the same
service functions as the API with the signed-in key as the caller: its role and scope limit a
page exactly as they limit the API, and nothing a page shows or stores goes round them.
Charts are inline SVG from :mod:`serving.charts`; the CSS ships in ``serving/static``; no
page needs JavaScript. Adding a page is a template, a route and an entry in :data:`NAV`.

Sign-in: a person pastes their API key once and gets a signed session cookie
(:mod:`serving.sessions`); every form carries a CSRF token, and a POST without a valid one,
with an expired session or from a role that may not, is refused with 403 and stores nothing.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from features.contract import (
    CRIME_TYPES_ZH,
    HARM_OUTCOMES_ZH,
    INPUT_FIELDS,
    PROVINCE_NAMES_ZH,
    rule_zh,
)
from features.urgency import URGENCY_FACTS
from serving import charts, formats, schemas, service
from serving.audit import AuditRecord
from serving.deps import State, current_model, visible_prediction
from serving.errors import ContractViolation, describe_error, http_handler
from serving.scopes import LEVELS_ZH
from serving.security import ApiKey
from serving.sessions import COOKIE, COOKIE_PATH, CSRF_FIELD, PAGE_ROLES, Session, SessionSigner
from serving.state import ServiceState
from training.bundle import REFERENCE_AMOUNT
from training.grades import DEFAULT_AID_GRADES

log = logging.getLogger(__name__)

PREFIX = "/ui"
HOME = f"{PREFIX}/predictions"
PAGE_SIZE = 50


@dataclass(frozen=True)
class NavItem:
    """One entry of the pages' navigation."""

    key: str
    path: str
    label: str


NAV: tuple[NavItem, ...] = (
    NavItem("predictions", f"{PREFIX}/predictions", "评分记录"),
    NavItem("leads", f"{PREFIX}/leads", "线索管理"),
    NavItem("deviation", f"{PREFIX}/deviation", "同案不同救监督"),
    NavItem("model", f"{PREFIX}/model", "模型"),
)

router = APIRouter(prefix=PREFIX, include_in_schema=False)
home = APIRouter(include_in_schema=False)


# ---------------------------------------------------------------------------- rendering


@functools.cache
def templates() -> Jinja2Templates:
    """The pages' templates (built on first use: nothing touches disk at import time)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        nav=NAV,
        fmt=formats,
        csrf_field=CSRF_FIELD,
        lead_zh=formats.LEAD_ZH,
        decision_zh=formats.DECISION_ZH,
        review_status_zh=formats.REVIEW_STATUS_ZH,
        provinces=PROVINCE_NAMES_ZH,
        crime_types_zh=CRIME_TYPES_ZH,
        harm_outcomes_zh=HARM_OUTCOMES_ZH,
        urgency_zh={name: fact.zh for name, fact in URGENCY_FACTS.items()},
    )
    env.filters.update(
        yuan=formats.yuan,
        percent=formats.percent,
        local_time=formats.local_time,
        province=formats.province,
        number=formats.number,
    )
    return Jinja2Templates(env=env)


@dataclass(frozen=True)
class Visitor:
    """Who is looking at a page: the session, its CSRF token, and the key (None: signed out)."""

    session: Session
    csrf: str
    key: ApiKey | None = None

    @property
    def scope_zh(self) -> str:
        """The key's scope as a reviewer reads it (全国, 省级 江苏 32...)."""
        if self.key is None:
            return ""
        scope = self.key.scope
        if not scope.code:
            return LEVELS_ZH["national"]
        name = PROVINCE_NAMES_ZH.get(scope.code[:2], "")
        return f"{LEVELS_ZH[scope.level]} {name} {scope.code}".replace("  ", " ")

    @property
    def role_zh(self) -> str:
        """The key's role in Chinese."""
        return "" if self.key is None else formats.ROLE_ZH.get(self.key.role, self.key.role)


def render(
    request: Request,
    name: str,
    visitor: Visitor | None,
    context: dict[str, Any],
    status: int = 200,
    active: str = "",
) -> HTMLResponse:
    """A page from its template, with what every page shows (navigation, who, sign-out)."""
    response = templates().TemplateResponse(
        request,
        name,
        {"visitor": visitor, "active": active, **context},
        status_code=status,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


# ---------------------------------------------------------------------------- sessions


class SignInRequired(Exception):
    """A page was asked for without a live session: the browser is sent to sign in."""

    def __init__(self, next_path: str) -> None:
        super().__init__("sign in first")
        self.next_path = next_path


def signer_of(state: ServiceState) -> SessionSigner:
    """The state's session signer (503 when the app was built without pages)."""
    if state.sessions is None:
        raise HTTPException(503, "the pages are not configured (页面未启用)")
    return state.sessions


def set_session_cookie(
    request: Request, response: Response, signer: SessionSigner, value: str
) -> None:
    """Set the session cookie: HttpOnly, SameSite=Strict, Secure over HTTPS, expiring."""
    response.set_cookie(
        COOKIE,
        value,
        max_age=signer.lifetime,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _signed_in_key(state: ServiceState, session: Session | None) -> ApiKey | None:
    """The current key of a signed-in session, looked up by name (None: gone or signed out)."""
    if session is None or not session.signed_in:
        return None
    return state.keys.named(session.key_name)


def page_visitor(request: Request, state: State) -> Visitor:
    """The signed-in reviewer or admin a page is for; others are sent to sign in (GET pages)."""
    signer = signer_of(state)
    session = signer.read(request.cookies.get(COOKIE))
    key = _signed_in_key(state, session)
    if session is None or key is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    if key.role not in PAGE_ROLES:
        raise HTTPException(403, f"角色 {key.role} 不能使用页面 (role may not use the pages)")
    return Visitor(session, signer.csrf_token(session), key)


async def form_fields(request: Request) -> dict[str, str]:
    """A posted HTML form's fields (the first value of each); {} for any other body."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return {}
    body = (await request.body()).decode("utf-8", "replace")
    try:
        parsed = urllib.parse.parse_qs(body, keep_blank_values=True, max_num_fields=50)
    except ValueError:
        return {}
    return {name: values[0] for name, values in parsed.items()}


Form = Annotated[dict[str, str], Depends(form_fields)]


def form_visitor(request: Request, state: State, form: Form) -> Visitor:
    """The signed-in reviewer or admin who posted a form with its session's CSRF token, or 403.

    Refused before anything is read or stored: an expired or signed-out session, a missing or
    wrong token, a key no longer in the ring, or a role that may not use the pages.
    """
    signer = signer_of(state)
    session = signer.read(request.cookies.get(COOKIE))
    if session is None or not session.signed_in:
        raise HTTPException(403, "会话已过期或未登录，请重新登录 (session expired or signed out)")
    if not signer.csrf_ok(session, form.get(CSRF_FIELD)):
        raise HTTPException(
            403, "表单校验码无效，请刷新页面后重新提交 (missing or invalid CSRF token)"
        )
    key = _signed_in_key(state, session)
    if key is None or key.role not in PAGE_ROLES:
        raise HTTPException(403, "该密钥不能使用页面或已被撤销 (this key may not use the pages)")
    return Visitor(session, signer.csrf_token(session), key)


PageVisitor = Annotated[Visitor, Depends(page_visitor)]
FormVisitor = Annotated[Visitor, Depends(form_visitor)]


def page_prediction(prediction_id: str, state: State, visitor: PageVisitor) -> AuditRecord:
    """The stored prediction a page names, inside the visitor's scope, or 404 (as the API)."""
    assert visitor.key is not None
    return visible_prediction(state, visitor.key, prediction_id)


def form_prediction(prediction_id: str, state: State, visitor: FormVisitor) -> AuditRecord:
    """The stored prediction a form posts to, inside the visitor's scope, or 404."""
    assert visitor.key is not None
    return visible_prediction(state, visitor.key, prediction_id)


PagePrediction = Annotated[AuditRecord, Depends(page_prediction)]
FormPrediction = Annotated[AuditRecord, Depends(form_prediction)]


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of the pages only (no other site, no scheme)."""
    if (
        not target
        or not target.startswith(PREFIX)
        or target.startswith("//")
        or "\\" in target
        or target.startswith(f"{PREFIX}/login")
    ):
        return HOME
    return target


# ---------------------------------------------------------------------------- forms


LEAD_CHOICES: dict[str, tuple[str, Any]] = {
    "any": ("flagged", True),
    "none": ("flagged", False),
    **{name: ("lead", name) for name in formats.LEAD_ZH},
}
DEVIATION_CHOICES = {"outside": True, "inside": False}
GRANTED_CHOICES = {"yes": True, "no": False}
FORM_FIELD_OF = {
    "flagged": "lead",
    "outside_interval": "deviation",
    "offset": "page",
    "since": "from",
    "until": "to",
}
FILTER_HINTS_ZH = {
    "case_id": "案件编号最长 64 个字符",
    "province_code": "不是有效的省份代码",
    "office_code": "检察院代码应为 6 位数字，如 320104",
    "review_status": "不是可选的复核状态",
    "order": "不是可选的排序方式",
    "order_lead": "不是可选的线索类型",
    "limit": "每页条数应在 1 到 200 之间",
    "page": "页码超出范围",
    "aid_grade": "不是可选的救助等级",
    "decision_year": "决定年度应为可选范围内的四位年份",
    "crime_type": "不是可选的案由",
    "harm_outcome": "不是可选的损害后果",
}


def _message(problem: schemas.ProblemDetail) -> str:
    return f"{problem.rule_zh}：{problem.rule}"


def day_range(query: Mapping[str, str]) -> tuple[dict[str, dt.datetime], dict[str, str]]:
    """A form's ``from`` and ``to`` Beijing days as moments, or the errors by form field.

    ``from`` is the start of its day, ``to`` the end of its day (the next day's start).
    """
    values: dict[str, dt.datetime] = {}
    errors: dict[str, str] = {}
    for name, days in (("from", 0), ("to", 1)):
        text = query.get(name, "").strip()
        if not text:
            continue
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            errors[name] = f"日期应写作 2025-03-04，而不是 {text!r} (a date: YYYY-MM-DD)"
            continue
        values[name] = dt.datetime.combine(
            day + dt.timedelta(days=days), dt.time(), formats.BEIJING
        )
    if "from" in values and "to" in values and values["from"] >= values["to"]:
        errors["to"] = "结束日期早于开始日期 (the end is before the start)"
    return values, errors


def grade_choices(state: ServiceState) -> dict[int, str]:
    """The aid grades a form offers: the serving policy's bands (the default's before a load)."""
    grades = DEFAULT_AID_GRADES if state.model is None else state.model.bundle.policy.aid_grades
    return {band.grade: band.label for band in sorted(grades.bands, key=lambda b: b.grade)}


def filters_from_form(
    query: Mapping[str, str],
) -> tuple[schemas.PredictionFilters | None, dict[str, str]]:
    """The list page's form as the API's filters, or the errors by form field.

    Dates are Beijing days: ``from`` is the start of its day, ``to`` the end of its day.
    """
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    names = (
        "case_id",
        "province_code",
        "office_code",
        "review_status",
        "order",
        "aid_grade",
        "decision_year",
        "crime_type",
        "harm_outcome",
    )
    for name in names:
        text = query.get(name, "").strip()
        if text:
            values[name] = text
    if query.get("order") == "lead_probability" and query.get("order_lead", "").strip():
        values["order_lead"] = query["order_lead"].strip()
    lead = query.get("lead", "").strip()
    if lead:
        if lead in LEAD_CHOICES:
            key, value = LEAD_CHOICES[lead]
            values[key] = value
        else:
            errors["lead"] = "不是可选的线索条件 (not a lead choice)"
    deviation = query.get("deviation", "").strip()
    if deviation:
        if deviation in DEVIATION_CHOICES:
            values["outside_interval"] = DEVIATION_CHOICES[deviation]
        else:
            errors["deviation"] = "不是可选的偏离条件 (not a deviation choice)"
    granted = query.get("granted", "").strip()
    if granted:
        if granted in GRANTED_CHOICES:
            values["granted"] = GRANTED_CHOICES[granted]
        else:
            errors["granted"] = "不是可选的实际金额条件 (not a granted-amount choice)"
    days, day_errors = day_range(query)
    values.update(days)
    errors.update(day_errors)
    page = 1
    page_text = query.get("page", "").strip() or "1"
    try:
        page = int(page_text)
        if page < 1:
            raise ValueError(page_text)
    except ValueError:
        errors["page"] = f"页码应为正整数，而不是 {page_text!r} (a page number)"
    limit_text = query.get("limit", "").strip() or str(PAGE_SIZE)
    try:
        values["limit"] = int(limit_text)
    except ValueError:
        errors["limit"] = f"每页条数应为整数，而不是 {limit_text!r}"
    if "page" not in errors and "limit" not in errors:
        values["offset"] = (page - 1) * values["limit"]
    try:
        filters = schemas.PredictionFilters.model_validate(values)
    except ValidationError as exc:
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "form"
            field = FORM_FIELD_OF.get(name, name)
            hint = FILTER_HINTS_ZH.get(field) or rule_zh(str(error["type"]))
            errors.setdefault(field, f"{hint}（{error['msg']}）")
        return None, errors
    return (None, errors) if errors else (filters, {})


def review_from_form(
    form: Mapping[str, str],
) -> tuple[schemas.ReviewRequest | None, dict[str, str]]:
    """The review form as the API's review request, or the errors by form field."""
    errors: dict[str, str] = {}
    decision = form.get("decision", "").strip()
    if decision not in formats.DECISION_ZH:
        errors["decision"] = "请选择复核决定：采纳、调整或不采纳 (choose a decision)"
    amount: float | None = None
    amount_text = form.get("amount_yuan", "").replace(",", "").replace("，", "").strip()
    amount_text = amount_text.removesuffix("元").strip()
    if amount_text:
        try:
            amount = float(amount_text)
            if not math.isfinite(amount):
                raise ValueError(amount_text)
        except ValueError:
            errors["amount_yuan"] = f"金额应为数字（元），而不是 {amount_text!r} (a number)"
    reason = form.get("reason", "").strip()
    if not reason:
        errors["reason"] = "请填写理由 (a reason is required)"
    if errors:
        return None, errors
    try:
        return schemas.ReviewRequest(decision=decision, amount_yuan=amount, reason=reason), {}
    except ValidationError as exc:
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "form"
            errors.setdefault(name, _message(describe_error(dict(error))))
        return None, errors


# ---------------------------------------------------------------------------- views


def list_rows(page: schemas.PredictionPage) -> list[dict[str, Any]]:
    """What each row of the list shows, from the API's page of stored answers."""
    rows = []
    for item in page.items:
        answer = item.response
        deviation = answer.get("deviation") or {}
        grade = answer.get("aid_grade") or {}
        leads = answer["leads"]
        rows.append(
            {
                "id": item.prediction_id,
                "case_id": item.case_id,
                "created_at": item.created_at,
                "province_code": item.province_code,
                "office_code": item.office_code,
                "reference": answer["reference_amount"]["yuan"],
                "granted": deviation.get("granted_amount_yuan"),
                "ratio": deviation.get("ratio_to_reference"),
                "outside": deviation.get("outside_interval"),
                "grade": grade.get("label_zh"),
                "leads": [
                    (
                        name,
                        formats.LEAD_SHORT_ZH.get(name, name),
                        leads[name]["probability"],
                        leads[name]["flagged"],
                    )
                    for name in formats.in_lead_order(leads)
                ],
                "review_status": item.review_status,
            }
        )
    return rows


def _steps(explanation: Mapping[str, Any], scale: float, yuan: bool) -> list[charts.Step]:
    steps = []
    for item in explanation["top"]:
        delta = item["contribution_yuan"] if yuan else item["contribution"]
        label = f"{item['label_zh']} = {formats.feature_value(item['feature'], item['value'])}"
        steps.append(charts.Step(label, float(delta)))
    steps.append(charts.Step("其余特征合计", float(explanation["rest"]) * scale))
    return steps


def _amount_reasons(answer: Mapping[str, Any]) -> dict[str, Any]:
    explanation = answer["explanations"][REFERENCE_AMOUNT]
    wage = answer["reference_amount"]["wage_base"]["base_monthly_wage_yuan"]
    steps = _steps(explanation, wage, yuan=True)

    def draw(ident: str, width: int) -> Markup:
        return charts.waterfall(
            ident,
            "参考金额的理由（各特征贡献，元）",
            "基准值（全体案件平均）",
            explanation["base_value"] * wage,
            steps,
            "本案模型金额（封顶前）",
            formats.yuan,
            formats.signed_yuan,
            width,
        )

    return {
        "target": REFERENCE_AMOUNT,
        "title": f"参考金额 {formats.yuan(answer['reference_amount']['yuan'])}",
        "unit": "元（月工资倍数 × 月平均工资）",
        "chart": charts.responsive(draw, f"reasons-{REFERENCE_AMOUNT}"),
        "steps": steps,
    }


def _lead_reasons(answer: Mapping[str, Any], name: str) -> dict[str, Any]:
    explanation = answer["explanations"][name]
    lead = answer["leads"][name]
    zh = formats.LEAD_ZH.get(name, name)
    steps = _steps(explanation, 1.0, yuan=False)

    def draw(ident: str, width: int) -> Markup:
        return charts.waterfall(
            ident,
            f"{zh}的理由（各特征贡献，对数几率）",
            "基准值（对数几率）",
            explanation["base_value"],
            steps,
            "本案得分（对数几率）",
            formats.log_odds,
            formats.signed,
            width,
        )

    return {
        "target": name,
        "title": f"{zh}：概率 {formats.percent(lead['probability'])}",
        "unit": "对数几率（正值提高概率、负值降低概率；得分经校准后为概率）",
        "chart": charts.responsive(draw, f"reasons-{name}"),
        "steps": steps,
    }


def reasons_view(answer: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One waterfall per number: the amount in yuan, then each lead in log-odds."""
    views = []
    if REFERENCE_AMOUNT in answer["explanations"]:
        views.append(_amount_reasons(answer))
    for name in formats.in_lead_order(answer["leads"]):
        if name in answer["explanations"]:
            views.append(_lead_reasons(answer, name))
    return views


def _lead_view(name: str, lead: Mapping[str, Any]) -> dict[str, Any]:
    zh = formats.LEAD_ZH.get(name, name)
    # the gauges sit three abreast on a wide screen: the narrow drawing fits both
    chart = charts.lead_gauge(
        f"lead-{name}", zh, lead["probability"], lead["threshold"], charts.NARROW
    )
    return {"name": name, "zh": zh, **lead, "chart": chart}


def answer_view(record: schemas.PredictionRecord) -> dict[str, Any]:
    """Everything the answer page shows, from the API's stored answer."""
    answer = record.response
    amount = answer["reference_amount"]
    deviation = answer.get("deviation")
    low, high = amount["interval_80_yuan"]
    granted = deviation["granted_amount_yuan"] if deviation else None
    stored = record.request["record"]

    def draw_amount(ident: str, width: int) -> Markup:
        return charts.amount_axis(
            ident, amount["yuan"], (low, high), amount["ceiling_yuan"], granted, width
        )

    return {
        "record": record,
        "answer": answer,
        "amount": amount,
        "deviation": deviation,
        "amount_chart": charts.responsive(draw_amount, "amount"),
        "leads": [
            _lead_view(name, answer["leads"][name])
            for name in formats.in_lead_order(answer["leads"])
        ],
        "reasons": reasons_view(answer),
        "input_rows": [
            (spec.zh, spec.name, formats.field_value(spec.name, stored.get(spec.name)))
            for spec in INPUT_FIELDS
            if spec.name in stored
        ],
        "granted_input": record.request.get("granted_amount_yuan"),
        "sources": answer.get("data_sources"),
    }


# ---------------------------------------------------------------------------- routes


@home.get("/", response_class=HTMLResponse)
def landing(request: Request) -> HTMLResponse:
    """The service's front door: the pages and the API documentation."""
    return render(request, "index.html", None, {})


@router.get("")
def pages_home() -> RedirectResponse:
    """The pages start at the list of stored answers."""
    return RedirectResponse(HOME, status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, state: State) -> HTMLResponse:
    """The sign-in form (a fresh anonymous session carries its CSRF token)."""
    signer = signer_of(state)
    session = signer.read(request.cookies.get(COOKIE))
    fresh = None
    if session is None:
        session, fresh = signer.issue()
    key = _signed_in_key(state, session)
    visitor = Visitor(session, signer.csrf_token(session), key)
    context = {
        "next": safe_next(request.query_params.get("next")),
        "error": None,
        "signed_out": request.query_params.get("signed_out") == "1",
    }
    response = render(request, "login.html", visitor, context)
    if fresh is not None:
        set_session_cookie(request, response, signer, fresh)
    return response


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, state: State, form: Form) -> Response:
    """Check the pasted key; a reviewer's or admin's starts a session, any other is refused."""
    signer = signer_of(state)
    session = signer.read(request.cookies.get(COOKIE))
    target = safe_next(form.get("next"))
    error, status = None, 200
    key = None
    if session is None or not signer.csrf_ok(session, form.get(CSRF_FIELD)):
        error, status = "表单已过期或校验码无效，请重新登录 (the form expired: sign in again)", 403
    else:
        key = state.keys.identify(form.get("api_key", "").strip())
        if key is None:
            error, status = "密钥无效：请粘贴复核人员或管理员的 API 密钥 (unknown key)", 401
        elif key.role not in PAGE_ROLES:
            error, status = (
                f"{formats.ROLE_ZH.get(key.role, key.role)}密钥供系统对接使用，不能登录页面；"
                "请使用复核人员或管理员的密钥 (a case-system key may not sign in)",
                403,
            )
    if error is not None or key is None or session is None:
        log.info("page sign-in refused (%d)", status)
        fresh_session, fresh = signer.issue()
        visitor = Visitor(fresh_session, signer.csrf_token(fresh_session))
        context = {"next": target, "error": error, "signed_out": False}
        response: Response = render(request, "login.html", visitor, context, status=status)
        set_session_cookie(request, response, signer, fresh)
        return response
    signer.end(session)
    _, value = signer.issue(key.name)
    log.info("page sign-in: key %s (%s, scope %s)", key.name, key.role, key.scope)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(request, response, signer, value)
    return response


@router.post("/logout")
def logout(state: State, visitor: FormVisitor) -> RedirectResponse:
    """End the session: its cookie is cleared and refused from now on."""
    signer_of(state).end(visitor.session)
    response = RedirectResponse(f"{PREFIX}/login?signed_out=1", status_code=303)
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
    return response


@router.get("/predictions", response_class=HTMLResponse)
def predictions_page(request: Request, state: State, visitor: PageVisitor) -> HTMLResponse:
    """评分记录: the stored answers in the visitor's scope, filtered, paged, sortable."""
    query = {name: request.query_params.get(name, "") for name in request.query_params}
    filters, errors = filters_from_form(query)
    assert visitor.key is not None
    page = service.predictions(state, visitor.key, filters) if filters is not None else None
    kept = {k: v for k, v in query.items() if v and k != "page"}
    context = {
        "query": query,
        "errors": errors,
        "page": page,
        "rows": list_rows(page) if page is not None else [],
        "base_query": urllib.parse.urlencode(kept),
        "grades": grade_choices(state),
    }
    return render(
        request, "predictions.html", visitor, context, 422 if errors else 200, "predictions"
    )


def _answer_page(
    request: Request,
    visitor: Visitor,
    record: schemas.PredictionRecord,
    status: int = 200,
    **extra: Any,
) -> HTMLResponse:
    context = {
        **answer_view(record),
        "review_errors": {},
        "review_form": {},
        "replay": None,
        "saved": request.query_params.get("saved") == "review",
        **extra,
    }
    return render(request, "answer.html", visitor, context, status, "predictions")


@router.get("/predictions/{prediction_id}", response_class=HTMLResponse)
def answer_page(
    request: Request, state: State, visitor: PageVisitor, stored: PagePrediction
) -> HTMLResponse:
    """One stored answer: amount, eligibility, leads, reasons, similar cases, reviews."""
    return _answer_page(request, visitor, service.prediction(state, stored))


@router.post("/predictions/{prediction_id}/reviews", response_class=HTMLResponse)
def review_submit(
    request: Request, state: State, form: Form, visitor: FormVisitor, stored: FormPrediction
) -> Response:
    """Append a review through the API's own audited path; a bad form is shown, not stored."""
    assert visitor.key is not None
    body, errors = review_from_form(form)
    if body is not None:
        try:
            service.review(state, stored, body, visitor.key)
        except ContractViolation as exc:
            errors = {p.field: _message(p) for p in exc.problems}
        else:
            target = f"{PREFIX}/predictions/{stored.record_id}?saved=review#reviews"
            return RedirectResponse(target, status_code=303)
    record = service.prediction(state, stored)
    return _answer_page(request, visitor, record, 422, review_errors=errors, review_form=dict(form))


@router.post("/predictions/{prediction_id}/replay", response_class=HTMLResponse)
def replay_submit(
    request: Request, state: State, visitor: FormVisitor, stored: FormPrediction
) -> HTMLResponse:
    """复现: re-score the stored input with its stored version and say what differs."""
    replayed = service.replay(state, stored)
    return _answer_page(request, visitor, service.prediction(state, stored), replay=replayed)


@router.get("/model", response_class=HTMLResponse)
def model_page(request: Request, state: State, visitor: PageVisitor) -> HTMLResponse:
    """模型: the serving version's card and plots, and the registry's versions."""
    overview = service.model_overview(current_model(state))
    return render(request, "model.html", visitor, {"overview": overview}, active="model")


@router.get("/model/plots/{name}")
def model_plot(name: str, state: State, visitor: PageVisitor) -> Response:
    """A plot the serving version's run logged."""
    return Response(
        service.model_plot(current_model(state), name),
        media_type="image/png",
        headers={"Cache-Control": "private, max-age=3600"},
    )


# ---------------------------------------------------------------------------- wiring


def _known_visitor(request: Request) -> Visitor | None:
    """The signed-in reviewer or admin behind a request, if any (for the error page's header)."""
    state: ServiceState | None = getattr(request.app.state, "service", None)
    if state is None or state.sessions is None:
        return None
    session = state.sessions.read(request.cookies.get(COOKIE))
    key = _signed_in_key(state, session)
    if session is None or key is None or key.role not in PAGE_ROLES:
        return None
    return Visitor(session, state.sessions.csrf_token(session), key)


async def http_error(request: Request, exc: Exception) -> Response:
    """Errors of the pages as a page; those of the API as the API's JSON, unchanged."""
    assert isinstance(exc, StarletteHTTPException)
    if not request.url.path.startswith(PREFIX):
        return await http_handler(request, exc)
    detail = exc.detail if exc.status_code != 404 or exc.detail != "Not Found" else "页面不存在"
    response = templates().TemplateResponse(
        request,
        "error.html",
        {
            "visitor": _known_visitor(request),
            "active": "",
            "status": exc.status_code,
            "detail": str(detail),
        },
        status_code=exc.status_code,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


async def sign_in_first(request: Request, exc: Exception) -> Response:
    """Send a visitor without a session to the sign-in page, to come back afterwards."""
    assert isinstance(exc, SignInRequired)
    query = urllib.parse.urlencode({"next": exc.next_path})
    return RedirectResponse(f"{PREFIX}/login?{query}", status_code=303)


def install(app: FastAPI) -> None:
    """Add the pages to an app: the routes, the CSS, and errors shown as pages under /ui.

    The HTTP error handler replaces :func:`serving.errors.http_handler`, which it calls for
    every path outside /ui (the API's answers are unchanged).
    """
    # imported here: these pages build on this module's rendering and sessions
    from serving.lead_pages import router as lead_router
    from serving.supervision_pages import router as supervision_router

    app.include_router(home)
    app.include_router(router)
    app.include_router(lead_router)
    app.include_router(supervision_router)
    app.mount(
        f"{PREFIX}/static",
        StaticFiles(directory=Path(__file__).with_name("static"), check_dir=False),
        name="static",
    )
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(SignInRequired, sign_in_first)
