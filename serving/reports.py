"""Reports over the served answers: how granted amounts deviate from the reference (同案不同救).

One function per report, called by the API route and (later) the workbench page with the
caller's key: a report reads only answers inside the caller's scope, and its filters narrow
that scope, never widen it. The figures are computed by the same functions as the report
over a history (``training.deviation``), from the answer index (``serving.answer_index``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from fastapi import HTTPException

from serving import schemas
from serving.answer_index import AnswerQuery
from serving.audit import AuditError
from serving.security import ApiKey
from serving.state import ServiceState
from training.deviation import (
    GROUP_BY_ZH,
    GROUP_COLUMNS,
    UNKNOWN_GROUP,
    at_ceiling,
    figures,
    group_figures,
)

ANSWER_COLUMNS = (
    "prediction_id",
    "created_at",
    "case_id",
    "province_code",
    "office_code",
    "decision_year",
    "crime_type",
    "harm_outcome",
    "granted_yuan",
    "reference_yuan",
    "interval_low_yuan",
    "interval_high_yuan",
    "ceiling_yuan",
    "ratio_to_reference",
    "outside_interval",
    "aid_grade",
)
"""What the deviation report reads of each answer in the index."""


def _optional(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else value


def _answers_query(
    query: schemas.DeviationQuery, group_by: str, key: str
) -> dict[str, str | int | bool] | None:
    """The /v1/predictions query listing one group's answers (the drill-down), if any."""
    if key == UNKNOWN_GROUP:
        return None
    found: dict[str, str | int | bool] = {"granted": True}
    for name, value in (
        ("province_code", query.province_code),
        ("office_code", query.office_code),
        ("aid_grade", query.aid_grade),
        ("from", query.since.isoformat() if query.since else None),
        ("to", query.until.isoformat() if query.until else None),
    ):
        if value is not None:
            found[name] = value
    column = GROUP_COLUMNS[group_by]
    found[column] = int(key) if column == "decision_year" else key
    return found


def _figures(values: dict[str, float]) -> schemas.DeviationFigures:
    return schemas.DeviationFigures(**{k: _optional(v) for k, v in values.items()})


def _largest(answers: pd.DataFrame, limit: int) -> list[schemas.DeviationAnswer]:
    ratio = answers["ratio_to_reference"].to_numpy(dtype=float)
    with np.errstate(divide="ignore"):
        distance = np.abs(np.log(np.maximum(ratio, 1e-12)))
    out = []
    for i in np.argsort(-distance, kind="stable")[:limit]:
        row = answers.iloc[int(i)]
        year = _optional(row["decision_year"])
        grade = _optional(row["aid_grade"])
        out.append(
            schemas.DeviationAnswer(
                prediction_id=row["prediction_id"],
                created_at=row["created_at"],
                case_id=row["case_id"],
                province_code=row["province_code"],
                office_code=_optional(row["office_code"]),
                decision_year=None if year is None else int(year),
                crime_type=_optional(row["crime_type"]),
                harm_outcome=_optional(row["harm_outcome"]),
                granted_yuan=float(row["granted_yuan"]),
                reference_yuan=float(row["reference_yuan"]),
                interval_80_yuan=(
                    float(row["interval_low_yuan"]),
                    float(row["interval_high_yuan"]),
                ),
                ratio_to_reference=float(row["ratio_to_reference"]),
                outside_interval=bool(row["outside_interval"]),
                aid_grade=None if grade is None else int(grade),
            )
        )
    return out


def deviation(
    state: ServiceState, caller: ApiKey, query: schemas.DeviationQuery
) -> schemas.DeviationReportOut:
    """The deviation report over the served answers with a granted amount in the caller's scope."""
    selection = AnswerQuery(
        scope=caller.scope,
        province_code=query.province_code,
        office_code=query.office_code,
        aid_grade=query.aid_grade,
        since=query.since,
        until=query.until,
        granted=True,
    )
    try:
        rows = state.audit.indexed_columns(selection, ANSWER_COLUMNS)
    except AuditError as exc:
        raise HTTPException(503, f"the stored answers cannot be read: {exc}") from exc
    answers = pd.DataFrame(rows, columns=list(ANSWER_COLUMNS))
    decisions = pd.DataFrame(
        {
            **{column: answers[column] for column in GROUP_COLUMNS.values()},
            "ratio": answers["ratio_to_reference"].astype(float),
            "outside_interval": answers["outside_interval"].astype(bool),
            "at_ceiling": at_ceiling(
                answers["granted_yuan"].to_numpy(dtype=float),
                answers["ceiling_yuan"].to_numpy(dtype=float),
            ),
        }
    )
    table = group_figures(decisions, query.group_by, query.tolerance, query.min_cases)
    groups = [
        schemas.DeviationGroup(
            group=str(row["group"]),
            label_zh=str(row["label_zh"]),
            count=int(row["count"]),
            ratio_q1=_optional(row["ratio_q1"]),
            ratio_median=_optional(row["ratio_median"]),
            ratio_q3=_optional(row["ratio_q3"]),
            share_outside_interval=_optional(row["share_outside_interval"]),
            share_at_ceiling=_optional(row["share_at_ceiling"]),
            parent=str(row["parent"]),
            parent_median=_optional(row["parent_median"]),
            relative_to_parent=_optional(row["relative_to_parent"]),
            flag=row["flag"] or None,
            flag_zh=str(row["flag_zh"]),
            answers=_answers_query(query, query.group_by, str(row["group"])),
        )
        for _, row in table.iterrows()
    ]
    return schemas.DeviationReportOut(
        group_by=query.group_by,
        group_by_zh=GROUP_BY_ZH[query.group_by],
        scope=str(caller.scope),
        since=query.since,
        until=query.until,
        tolerance=query.tolerance,
        min_cases=query.min_cases,
        overall=_figures(figures(decisions)),
        groups=groups,
        largest=_largest(answers, query.largest),
    )
