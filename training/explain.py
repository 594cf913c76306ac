"""Reasons behind the numbers: per-feature contributions in the reviewer's terms.

For the amount, contributions are in months of the wage base (and yuan = months × base) and
add up, with the base value, to the model's median before the ceiling. For a lead, they are
in log-odds and add up to the booster's raw score; the calibrated probability is a
monotone map of that score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.bundle import ModelBundle


@dataclass(frozen=True)
class Contribution:
    """One feature's share of one model output for one case."""

    feature: str
    label_zh: str
    value: Any
    contribution: float


@dataclass(frozen=True)
class Explanation:
    """The contributions of one model output for one case (sorted by size). With ``top_k``
    only the largest are kept and ``rest`` holds the sum of the others, so that
    base_value + Σ contributions + rest = output exactly either way."""

    target: str
    unit: str
    base_value: float
    output: float
    contributions: list[Contribution]
    rest: float = 0.0

    def top(self, k: int) -> list[Contribution]:
        """The k largest contributions by absolute size."""
        return self.contributions[:k]


def feature_value(bundle: ModelBundle, feature: str, value: float) -> Any:
    """A vector value as a reviewer reads it: the category's token, None for unknown."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if bundle.is_categorical(feature):
        levels = bundle.vectorizer.categories_[feature]
        code = int(value)
        return levels[code] if 0 <= code < len(levels) else None
    return round(float(value), 6)


def explain(
    bundle: ModelBundle, target: str, matrix: np.ndarray, top_k: int | None = None
) -> list[Explanation]:
    """Explanations of ``target`` (``reference_amount`` or a lead name) for each matrix row;
    all contributions, or the ``top_k`` largest and the rest as one sum."""
    if target == "reference_amount":
        values, base = bundle.amount.contributions_in_months(matrix)
        features = list(bundle.amount.features)
        columns = bundle.amount.columns
        unit = "months"
    else:
        features, raw = bundle.contributions(target, matrix)
        values, base = raw[:, :-1], raw[:, -1]
        columns = bundle.leads[target].columns
        unit = "log-odds"
    out = []
    for i in range(len(matrix)):
        order = np.argsort(-np.abs(values[i]), kind="stable")
        kept, left = (order, order[:0]) if top_k is None else (order[:top_k], order[top_k:])
        contributions = [
            Contribution(
                features[j],
                bundle.label_zh(features[j]),
                feature_value(bundle, features[j], float(matrix[i, columns[j]])),
                float(values[i, j]),
            )
            for j in kept
        ]
        output = float(base[i] + values[i].sum())
        rest = float(values[i][left].sum())
        out.append(Explanation(target, unit, float(base[i]), output, contributions, rest))
    return out
