"""Reasons behind the numbers: per-feature contributions in the reviewer's terms.

For the amount, contributions are in months of the wage base (and yuan = months × base) and
add up, with the base value, to the model's median before the ceiling. For a lead, they are
in log-odds and add up to the booster's raw score; the calibrated probability is a
monotone map of that score. The numbers come from :meth:`ModelBundle.contributions`; this
module orders them and names them for a reviewer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from training.bundle import Contributions, ModelBundle


@dataclass(frozen=True)
class Contribution:
    """One feature's share of one model output for one case."""

    feature: str
    label_zh: str
    value: Any
    contribution: float


@dataclass(frozen=True)
class Explanation:
    """The contributions of one model output for one case, largest first.

    With ``top_k`` only the largest are kept and ``rest`` holds the sum of the others, so
    that base_value + Σ contributions + rest = output exactly either way.
    """

    target: str
    unit: str
    base_value: float
    output: float
    contributions: list[Contribution]
    rest: float = 0.0

    def top(self, k: int) -> list[Contribution]:
        """The k largest contributions by absolute size."""
        return self.contributions[:k]


def explain(
    bundle: ModelBundle, target: str, matrix: np.ndarray, top_k: int | None = None
) -> list[Explanation]:
    """Explanations of ``target`` (``reference_amount`` or a lead name) for each matrix row.

    All contributions, or the ``top_k`` largest and the rest as one sum.
    """
    return explained(bundle, bundle.contributions(target, matrix), matrix, top_k)


def explained(
    bundle: ModelBundle, found: Contributions, matrix: np.ndarray, top_k: int | None = None
) -> list[Explanation]:
    """Explanations of contributions already computed (see :meth:`ModelBundle.explained`)."""
    target, features, values, base = found.target, found.features, found.values, found.base
    out = []
    for i in range(len(matrix)):
        order = np.argsort(-np.abs(values[i]), kind="stable")
        kept, left = (order, order[:0]) if top_k is None else (order[:top_k], order[top_k:])
        contributions = [
            Contribution(
                features[j],
                bundle.label_zh(features[j]),
                bundle.decode(features[j], float(matrix[i, found.columns[j]])),
                float(values[i, j]),
            )
            for j in kept
        ]
        output = float(base[i] + values[i].sum())
        rest = float(values[i][left].sum())
        out.append(Explanation(target, found.unit, float(base[i]), output, contributions, rest))
    return out
