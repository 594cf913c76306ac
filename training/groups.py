"""The groups the evaluation reports on separately: those the procuratorates aid deliberately.

Minors (the 2018 opinion on judicial aid for minors), women (the 2022 special action with the
Women's Federation), the elderly, rural households, 低保 families and veterans' families
(../shared/data/README.md, "Priority groups in practice"). Each is a mask over case records;
the evaluation writes each group's figures as flat metrics ``group_<id>_<figure>`` (what
MLflow logs and the model card carries) and :func:`groups_from_metrics` reads them back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.rules import ADULT_AGE

ELDERLY_AGE = 60
"""Victims of this age or older count as elderly (老年人权益保障法 Art. 2: 60 and over)."""

GROUP_METRIC_PREFIX = "group_"

GROUP_FIGURES_ZH = {
    "cases": "留出检验案件数",
    "aided": "其中获救助",
    "lead_recall": "线索召回率（标记阈值）",
    "oracle_lead_recall": "最优可能召回率",
    "amount_mae_yuan": "金额平均绝对误差（元）",
    "amount_mae_ratio_to_oracle": "误差与最优可能之比",
    "amount_median_ratio_to_oracle": "参考金额与最优可能之比（中位数）",
}
"""The figures reported for each group, in the order the model page shows them."""


@dataclass(frozen=True)
class Group:
    """One group: an id, its Chinese name and which records belong to it."""

    id: str
    zh: str
    members: Callable[[pd.DataFrame], np.ndarray]


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    return frame[name].to_numpy() if name in frame.columns else np.full(len(frame), np.nan)


def _age(frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(_column(frame, "victim_age"), dtype=float)


def _registered(frame: pd.DataFrame, flag: str) -> np.ndarray:
    flags = frame["registry_flags"].fillna("").astype(str) if "registry_flags" in frame else None
    if flags is None:
        return np.zeros(len(frame), dtype=bool)
    return np.asarray(flags.str.split("|").apply(lambda tokens: flag in tokens), dtype=bool)


GROUPS: tuple[Group, ...] = (
    Group("minors", "未成年人", lambda f: _age(f) < ADULT_AGE),
    Group("women", "妇女", lambda f: np.asarray(_column(f, "victim_sex") == "female", dtype=bool)),
    Group("elderly", "老年人（60岁以上）", lambda f: _age(f) >= ELDERLY_AGE),
    Group(
        "rural",
        "农村户籍",
        lambda f: np.asarray(_column(f, "rural_hukou"), dtype=float) == 1.0,
    ),
    Group(
        "dibao",
        "低保家庭",
        lambda f: np.asarray(_column(f, "low_income_status") == "dibao", dtype=bool),
    ),
    Group("veteran_family", "退役军人及军属", lambda f: _registered(f, "veteran_family")),
)
GROUP_BY_ID = {group.id: group for group in GROUPS}


def metric_name(group: str, figure: str) -> str:
    """The flat metric holding ``figure`` of ``group`` (``all`` for every holdout case)."""
    return f"{GROUP_METRIC_PREFIX}{group}_{figure}"


def groups_from_metrics(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    """The per-group figures (``all`` first, then GROUPS' order) from the flat metrics."""
    out: dict[str, dict[str, float]] = {}
    for group in ("all", *GROUP_BY_ID):
        figures = {
            figure: metrics[metric_name(group, figure)]
            for figure in GROUP_FIGURES_ZH
            if metric_name(group, figure) in metrics
        }
        if figures:
            out[group] = figures
    return out
