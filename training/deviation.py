"""同案不同救: how far granted amounts deviate from the reference of similar cases, by group.

The reference amount comes from a model that never sees the province or the office, so the
ratio granted ÷ reference of a decision says how generous its office was compared with the
national practice for similar cases. Grouped by province, office, year, crime type or harm,
the figures are: the number of decisions, the median and quartiles of the ratio, the share
of decisions outside the 80 % interval and the share at the statutory ceiling. A group is
flagged (偏高 / 偏低) when it has at least ``min_cases`` decisions and its median ratio
differs from its parent's by more than ``tolerance`` (×(1 + tolerance) or ÷(1 + tolerance)):
an office's parent is its province (the usual practice of its province), every other
group's parent is all the decisions reported.

:func:`group_figures` computes the figures from any table of decisions (the history here,
the served answers in ``serving``); :func:`history_deviation` scores a history with a
bundle, in chunks so that a million cases fit in memory, and adds the largest deviations
with their similar cases.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals
from tqdm import tqdm

from features.contract import (
    CRIME_TYPES_ZH,
    HARM_OUTCOMES_ZH,
    ContractError,
    ParsedRecords,
    parse_records,
)
from features.wages import province_names
from training.bundle import ModelBundle, SimilarCase

log = logging.getLogger(__name__)

GROUP_COLUMNS = {
    "province": "province_code",
    "office": "office_code",
    "year": "decision_year",
    "crime_type": "crime_type",
    "harm_outcome": "harm_outcome",
}
"""What a report can group by, and the field of the case record each group is."""
GROUP_BY = tuple(GROUP_COLUMNS)
GROUP_BY_ZH = {
    "province": "省份",
    "office": "办案检察院",
    "year": "决定年度",
    "crime_type": "案由",
    "harm_outcome": "损害后果",
}
AT_CEILING_SHARE = 0.99
"""A granted amount at or above this share of the statutory ceiling is at the ceiling
(amounts are rounded to 100 yuan)."""
DEFAULT_TOLERANCE = 0.25
DEFAULT_MIN_CASES = 30
DEFAULT_LARGEST = 20
GENEROUS, STINGY = "generous", "stingy"
FLAGS_ZH = {GENEROUS: "偏高", STINGY: "偏低"}
UNKNOWN_GROUP = ""
"""The key of decisions whose record leaves the grouping field empty (e.g. no office)."""
FIGURE_COLUMNS = ("ratio", "outside_interval", "at_ceiling")


class ReportError(ValueError):
    """A report that cannot be made as asked (unknown grouping, no decisions...)."""


def deviation_of(
    granted: np.ndarray, reference: np.ndarray, low: np.ndarray, high: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The ratio granted ÷ reference (0 where the reference is 0) and whether it is outside."""
    granted = np.asarray(granted, dtype=float)
    reference = np.asarray(reference, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(reference > 0, granted / np.where(reference > 0, reference, 1.0), 0.0)
    ratio = np.where(np.isfinite(ratio), ratio, 0.0)
    outside = (granted < np.asarray(low, dtype=float)) | (granted > np.asarray(high, dtype=float))
    return ratio, outside


def at_ceiling(granted: np.ndarray, ceiling: np.ndarray) -> np.ndarray:
    """Whether each granted amount reached the statutory ceiling."""
    return np.asarray(granted, dtype=float) >= AT_CEILING_SHARE * np.asarray(ceiling, dtype=float)


def group_label(group_by: str, key: str) -> str:
    """A group's name as a reviewer reads it (江苏, 故意伤害, 2023年, an office's code)."""
    if key == UNKNOWN_GROUP:
        return "（未填写）"
    if group_by == "province":
        return province_names().get(key, key)
    if group_by == "crime_type":
        return CRIME_TYPES_ZH.get(key, key)
    if group_by == "harm_outcome":
        return HARM_OUTCOMES_ZH.get(key, key)
    if group_by == "year":
        return f"{key}年"
    return key


def _keys(decisions: pd.DataFrame, column: str) -> pd.Series:
    values = decisions[column]
    if column == "decision_year":
        numbers = pd.to_numeric(values.astype(object), errors="coerce")
        return numbers.map(lambda v: UNKNOWN_GROUP if pd.isna(v) else str(int(v)))
    return values.astype(object).where(values.notna(), UNKNOWN_GROUP).astype(str)


def figures(decisions: pd.DataFrame) -> dict[str, float]:
    """Count, quartiles of the ratio, shares outside the interval and at the ceiling."""
    ratio = decisions["ratio"].to_numpy(dtype=float)
    if len(ratio) == 0:
        return {"count": 0}
    q1, median, q3 = np.quantile(ratio, [0.25, 0.5, 0.75])
    return {
        "count": len(ratio),
        "ratio_q1": float(q1),
        "ratio_median": float(median),
        "ratio_q3": float(q3),
        "share_outside_interval": float(decisions["outside_interval"].to_numpy(bool).mean()),
        "share_at_ceiling": float(decisions["at_ceiling"].to_numpy(bool).mean()),
    }


def group_figures(
    decisions: pd.DataFrame,
    group_by: str,
    tolerance: float = DEFAULT_TOLERANCE,
    min_cases: int = DEFAULT_MIN_CASES,
) -> pd.DataFrame:
    """The figures of each group of ``decisions``, most decisions first.

    ``decisions`` has the grouping fields (``GROUP_COLUMNS``) and ``ratio``,
    ``outside_interval`` and ``at_ceiling``. Each group's row also names its parent (its
    province for an office, ``all`` otherwise), the parent's median ratio, the group's median
    relative to it and its flag (``generous``, ``stingy`` or empty; see the module docstring).
    """
    if group_by not in GROUP_COLUMNS:
        raise ReportError(f"cannot group by {group_by!r}; one of {', '.join(GROUP_BY)}")
    columns = [
        "group",
        "label_zh",
        "count",
        "ratio_q1",
        "ratio_median",
        "ratio_q3",
        "share_outside_interval",
        "share_at_ceiling",
        "parent",
        "parent_median",
        "relative_to_parent",
        "flag",
        "flag_zh",
    ]
    if decisions.empty:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(
        {
            "group": _keys(decisions, GROUP_COLUMNS[group_by]).to_numpy(),
            "ratio": decisions["ratio"].to_numpy(dtype=float),
            "outside_interval": decisions["outside_interval"].to_numpy(dtype=bool),
            "at_ceiling": decisions["at_ceiling"].to_numpy(dtype=bool),
        }
    )
    if group_by == "office":
        frame["parent"] = _keys(decisions, "province_code").to_numpy()
    else:
        frame["parent"] = "all"
    grouped = frame.groupby("group", sort=False)
    table = pd.DataFrame(
        {
            "count": grouped.size(),
            "ratio_q1": grouped["ratio"].quantile(0.25),
            "ratio_median": grouped["ratio"].median(),
            "ratio_q3": grouped["ratio"].quantile(0.75),
            "share_outside_interval": grouped["outside_interval"].mean(),
            "share_at_ceiling": grouped["at_ceiling"].mean(),
            "parent": grouped["parent"].first(),
        }
    )
    parent_median = frame.groupby("parent")["ratio"].median()
    table["parent_median"] = table["parent"].map(parent_median).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = table["ratio_median"] / table["parent_median"].where(table["parent_median"] > 0)
    table["relative_to_parent"] = relative
    enough = table["count"] >= min_cases
    flag = np.where(
        enough & (relative > 1 + tolerance),
        GENEROUS,
        np.where(enough & (relative < 1 / (1 + tolerance)), STINGY, ""),
    )
    table["flag"] = flag
    table["flag_zh"] = [FLAGS_ZH.get(f, "") for f in flag]
    table = table.reset_index()
    table["label_zh"] = [group_label(group_by, str(key)) for key in table["group"]]
    order = np.lexsort((table["group"].to_numpy(dtype=str), -table["count"].to_numpy()))
    return table.iloc[order][columns].reset_index(drop=True)


@dataclass(frozen=True)
class LargestDeviation:
    """One decision far from its reference, with the similar past cases a reviewer compares."""

    case_id: str
    province_code: str
    office_code: str | None
    decision_year: int
    crime_type: str
    harm_outcome: str
    granted_yuan: float
    reference_yuan: float
    interval_low_yuan: float
    interval_high_yuan: float
    ratio_to_reference: float
    outside_interval: bool
    similar: list[SimilarCase] = field(default_factory=list)


@dataclass
class DeviationReport:
    """A history's deviation report: what was read, the figures, the largest deviations."""

    group_by: str
    years: tuple[int, int] | None
    model: dict[str, str]
    rows_read: int
    rows_refused: int
    decisions: pd.DataFrame  # one row per granted decision: grouping fields and figures
    overall: dict[str, float]
    groups: pd.DataFrame
    largest: list[LargestDeviation]
    tolerance: float
    min_cases: int


def _categorical(parts: list[pd.DataFrame], column: str) -> pd.Categorical:
    return union_categoricals([part[column] for part in parts], ignore_order=True)


@dataclass
class _Collected:
    """What the chunks leave behind: compact decisions and the candidates for the largest."""

    parts: list[pd.DataFrame] = field(default_factory=list)
    candidates: list[pd.DataFrame] = field(default_factory=list)
    rows_read: int = 0
    rows_refused: int = 0


def _refused_rows(parsed: ParsedRecords, offset: int, drop_invalid: bool) -> int:
    if not parsed.violations:
        return 0
    if not drop_invalid:
        first = "; ".join(
            f"row {v.row + offset} (case_id {v.case_id!r}): {v.field}: {v.rule}"
            for v in parsed.violations[:3]
        )
        raise ContractError(
            f"{int(parsed.invalid_rows.sum())} invalid row(s) in rows {offset + 1}-"
            f"{offset + len(parsed.invalid_rows)}, e.g. {first}; pass --drop-invalid to "
            "report on the valid rows only"
        )
    return int(parsed.invalid_rows.sum())


def _decisions_of_chunk(
    bundle: ModelBundle, frame: pd.DataFrame, keep: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score granted decisions; their compact figures and the ``keep`` farthest in full."""
    granted = frame["aid_amount_yuan"].to_numpy(dtype=float)
    scores = bundle.score(frame)
    ratio, outside = deviation_of(
        granted,
        scores.reference_amount_yuan,
        scores.interval_low_yuan,
        scores.interval_high_yuan,
    )
    part = pd.DataFrame(
        {
            column: frame[column].astype("category")
            for column in GROUP_COLUMNS.values()
            if column != "decision_year"
        }
    )
    part["decision_year"] = frame["decision_year"].to_numpy(dtype=float).astype(np.int16)
    part["ratio"] = ratio
    part["outside_interval"] = outside
    part["at_ceiling"] = at_ceiling(granted, scores.ceiling_yuan)
    with np.errstate(divide="ignore"):
        distance = np.abs(np.log(np.maximum(ratio, 1e-12)))
    farthest = np.argsort(-distance, kind="stable")[:keep]
    candidates = frame.iloc[farthest].reset_index(drop=True)
    candidates["_distance"] = distance[farthest]
    return part, candidates


def score_history(
    bundle: ModelBundle,
    chunks: Iterable[pd.DataFrame],
    years: tuple[int, int] | None = None,
    drop_invalid: bool = False,
    keep: int = DEFAULT_LARGEST,
) -> tuple[pd.DataFrame, pd.DataFrame, int, int]:
    """Score a history's granted decisions chunk by chunk.

    Returns the compact decisions (grouping fields, ratio, outside_interval, at_ceiling),
    the ``keep`` decisions farthest from their reference (canonical rows), the rows read and
    the rows refused (invalid, with ``drop_invalid``; without it an invalid row refuses the
    history with its row, field and rule).
    """
    collected = _Collected()
    with tqdm(desc="scoring the history", unit="case") as bar:
        for raw in chunks:
            parsed = parse_records(raw.reset_index(drop=True))
            collected.rows_refused += _refused_rows(parsed, collected.rows_read, drop_invalid)
            collected.rows_read += len(raw)
            bar.update(len(raw))
            frame = parsed.frame.loc[~parsed.invalid_rows]
            chosen = (frame["aid_granted"] == 1.0) & frame["aid_amount_yuan"].notna()
            if years is not None:
                chosen &= frame["decision_year"].between(years[0], years[1])
            frame = frame.loc[chosen].reset_index(drop=True)
            if frame.empty:
                continue
            part, candidates = _decisions_of_chunk(bundle, frame, keep)
            collected.parts.append(part)
            collected.candidates.append(candidates)
    if not collected.parts:
        return pd.DataFrame(), pd.DataFrame(), collected.rows_read, collected.rows_refused
    parts = collected.parts
    decisions = pd.DataFrame(
        {
            column: (
                np.concatenate([p[column].to_numpy() for p in parts])
                if column in ("decision_year", *FIGURE_COLUMNS)
                else _categorical(parts, column)
            )
            for column in parts[0].columns
        }
    )
    candidates = pd.concat(collected.candidates, ignore_index=True)
    candidates = candidates.sort_values("_distance", ascending=False, kind="stable").head(keep)
    return (
        decisions,
        candidates.drop(columns="_distance").reset_index(drop=True),
        collected.rows_read,
        collected.rows_refused,
    )


def largest_deviations(
    bundle: ModelBundle, candidates: pd.DataFrame, similar_k: int
) -> list[LargestDeviation]:
    """The decisions farthest from their reference, each with its ``similar_k`` similar cases.

    A case that is itself in the similar-case index is not listed as its own similar case.
    """
    if candidates.empty:
        return []
    scores = bundle.score(candidates)
    granted = candidates["aid_amount_yuan"].to_numpy(dtype=float)
    ratio, outside = deviation_of(
        granted, scores.reference_amount_yuan, scores.interval_low_yuan, scores.interval_high_yuan
    )
    similar = bundle.similar_cases(scores.matrix, similar_k + 1)
    out = []
    for i, row in enumerate(candidates.to_dict("records")):
        office = row.get("office_code")
        out.append(
            LargestDeviation(
                case_id=str(row["case_id"]),
                province_code=str(row["province_code"]),
                office_code=None if office is None or pd.isna(office) else str(office),
                decision_year=int(row["decision_year"]),
                crime_type=str(row["crime_type"]),
                harm_outcome=str(row["harm_outcome"]),
                granted_yuan=float(granted[i]),
                reference_yuan=float(scores.reference_amount_yuan[i]),
                interval_low_yuan=float(scores.interval_low_yuan[i]),
                interval_high_yuan=float(scores.interval_high_yuan[i]),
                ratio_to_reference=float(ratio[i]),
                outside_interval=bool(outside[i]),
                similar=[c for c in similar[i] if c.case_id != str(row["case_id"])][:similar_k],
            )
        )
    return out


def history_deviation(
    bundle: ModelBundle,
    chunks: Iterable[pd.DataFrame],
    group_by: str,
    years: tuple[int, int] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    min_cases: int = DEFAULT_MIN_CASES,
    largest: int = DEFAULT_LARGEST,
    similar_k: int = 5,
    drop_invalid: bool = False,
    model: dict[str, str] | None = None,
) -> DeviationReport:
    """The deviation report of a history's granted decisions, scored with ``bundle``."""
    if group_by not in GROUP_COLUMNS:
        raise ReportError(f"cannot group by {group_by!r}; one of {', '.join(GROUP_BY)}")
    decisions, candidates, read, refused = score_history(
        bundle, chunks, years, drop_invalid, largest
    )
    if decisions.empty:
        span = f" in {years[0]}-{years[1]}" if years else ""
        raise ReportError(f"the history has no granted decision with an amount{span}")
    log.info("%d granted decisions scored out of %d rows", len(decisions), read)
    return DeviationReport(
        group_by=group_by,
        years=years,
        model=dict(model or {}) | {"policy_version": bundle.policy.version},
        rows_read=read,
        rows_refused=refused,
        decisions=decisions,
        overall=figures(decisions),
        groups=group_figures(decisions, group_by, tolerance, min_cases),
        largest=largest_deviations(bundle, candidates, similar_k),
        tolerance=tolerance,
        min_cases=min_cases,
    )


def parse_years(text: str | None) -> tuple[int, int] | None:
    """``2021-2025`` (or one year, ``2024``) as an inclusive span; None for all years."""
    if not text:
        return None
    found = re.fullmatch(r"\s*(\d{4})\s*(?:-\s*(\d{4})\s*)?", text)
    if found is None:
        raise ReportError(f"--years {text!r}: write a span like 2021-2025, or one year")
    span = (int(found.group(1)), int(found.group(2) or found.group(1)))
    if span[0] > span[1]:
        raise ReportError(f"--years {text!r}: the first year is after the last")
    return span
