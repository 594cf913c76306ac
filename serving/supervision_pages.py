"""同案不同救监督: the deviation report over the served answers as a workbench page.

The page shows what ``GET /v1/reports/deviation`` answers (:func:`serving.reports.deviation`,
called with the signed-in key, so its scope limits the page exactly as it limits the API):
the figures of every group, a chart of the groups on one axis, the groups the report flags,
and the largest deviations. Each group links to the list of its answers (the 评分记录 page
filtered to the group, inside the same scope) and each answer to its page. The form's dates
are Beijing days, as on the list page, and a drill-down carries them unchanged.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup
from pydantic import ValidationError

from features.contract import rule_zh
from serving import charts, reports, schemas
from serving.deps import State
from serving.pages import (
    FILTER_HINTS_ZH,
    FORM_FIELD_OF,
    PREFIX,
    PageVisitor,
    day_range,
    grade_choices,
    render,
)
from training.deviation import (
    DEFAULT_LARGEST,
    DEFAULT_MIN_CASES,
    DEFAULT_TOLERANCE,
    GROUP_BY_ZH,
    GROUP_COLUMNS,
)

log = logging.getLogger(__name__)

PAGE = f"{PREFIX}/deviation"
CHART_GROUPS = 40
"""The most groups the chart draws (the flagged ones first); the table lists them all."""
FORM_NAMES = ("group_by", "province_code", "office_code", "aid_grade", "tolerance", "min_cases")
"""The form's fields besides the dates, as named in the report's query."""
DEVIATION_HINTS_ZH = {
    **FILTER_HINTS_ZH,
    "group_by": "不是可选的分组方式（" + "、".join(GROUP_BY_ZH.values()) + "）",
    "tolerance": "偏离容差应为可选范围内的正数，如 0.25",
    "min_cases": "标记所需最少案件数应为可选范围内的正整数",
}
OFFICE_OUTSIDE_PROVINCE_ZH = (
    "检察院代码的前两位应与所选省份代码一致（office_code 与 province_code 不符）"
)

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def query_from_form(
    query: Mapping[str, str],
) -> tuple[schemas.DeviationQuery | None, dict[str, str]]:
    """The page's form as the report's query, or the errors by form field (in Chinese)."""
    values: dict[str, Any] = {"largest": DEFAULT_LARGEST}
    for name in FORM_NAMES:
        text = query.get(name, "").strip()
        if text:
            values[name] = text
    days, errors = day_range(query)
    values.update(days)
    try:
        report_query = schemas.DeviationQuery.model_validate(values)
    except ValidationError as exc:
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "form"
            field = FORM_FIELD_OF.get(name, name)
            if field == "office_code" and error["type"] == "value_error":
                hint = OFFICE_OUTSIDE_PROVINCE_ZH
            else:
                hint = DEVIATION_HINTS_ZH.get(field) or rule_zh(str(error["type"]))
            errors.setdefault(field, f"{hint}（{error['msg']}）")
        return None, errors
    return (None, errors) if errors else (report_query, {})


def drill_down(
    query: Mapping[str, str], report_query: schemas.DeviationQuery, group: schemas.DeviationGroup
) -> str | None:
    """The 评分记录 page listing a group's answers: the form's filters and the group's key.

    None for the group of answers that left the grouping field empty (the list cannot ask
    for an empty field), exactly where the report's own drill-down query is null.
    """
    if group.answers is None:
        return None
    kept = {
        name: query.get(name, "").strip()
        for name in ("province_code", "office_code", "aid_grade", "from", "to")
    }
    kept = {name: value for name, value in kept.items() if value}
    kept[GROUP_COLUMNS[report_query.group_by]] = group.group
    return f"{PREFIX}/predictions?" + urllib.parse.urlencode({"granted": "yes", **kept})


def chart_rows(groups: list[schemas.DeviationGroup]) -> list[charts.RatioRow]:
    """The groups the chart draws, in the table's order: the flagged first, then the largest."""
    drawn = [g for g in groups if g.ratio_median is not None]
    flagged_first = sorted(range(len(drawn)), key=lambda i: (not drawn[i].flag, i))
    return [
        charts.RatioRow(
            label=g.label_zh,
            count=g.count,
            q1=float(g.ratio_q1 or 0.0),
            median=float(g.ratio_median or 0.0),
            q3=float(g.ratio_q3 or 0.0),
            parent_median=g.parent_median,
            flag=g.flag or "",
            flag_zh=g.flag_zh,
        )
        for g in (drawn[i] for i in sorted(flagged_first[:CHART_GROUPS]))
    ]


def deviation_view(
    query: Mapping[str, str],
    report_query: schemas.DeviationQuery | None,
    report: schemas.DeviationReportOut | None,
    grades: Mapping[int, str],
) -> dict[str, Any]:
    """Everything the page shows: the form, the figures, the chart and the links."""
    view: dict[str, Any] = {
        "query": query,
        "report": report,
        "groups": [],
        "chart": None,
        "charted": 0,
        "largest": [],
        "upper": None,
        "group_by_zh": GROUP_BY_ZH,
        "grades": grades,
        "defaults": {"tolerance": DEFAULT_TOLERANCE, "min_cases": DEFAULT_MIN_CASES},
    }
    if report is None or report_query is None:
        return view
    view["groups"] = [
        {"group": g, "link": drill_down(query, report_query, g)} for g in report.groups
    ]
    rows = chart_rows(report.groups)
    if rows:
        title = f"按{report.group_by_zh}：实际（拟）救助 ÷ 参考金额"

        def draw(ident: str, width: int) -> Markup:
            return charts.ratio_rows(ident, title, rows, width)

        view["chart"] = charts.responsive(draw, "deviation-groups")
        view["charted"] = len(rows)
    view["largest"] = [
        {
            "answer": answer,
            "grade": None if answer.aid_grade is None else grades.get(answer.aid_grade),
        }
        for answer in report.largest
    ]
    view["upper"] = 1 + report.tolerance
    return view


@router.get("/deviation", response_class=HTMLResponse)
def deviation_page(request: Request, state: State, visitor: PageVisitor) -> HTMLResponse:
    """同案不同救监督: granted amounts against the reference, by group, in the visitor's scope."""
    assert visitor.key is not None
    query = {name: request.query_params.get(name, "") for name in request.query_params}
    report_query, errors = query_from_form(query)
    report = (
        reports.deviation(state, visitor.key, report_query) if report_query is not None else None
    )
    context = {
        "errors": errors,
        **deviation_view(query, report_query, report, grade_choices(state)),
    }
    return render(request, "deviation.html", visitor, context, 422 if errors else 200, "deviation")
