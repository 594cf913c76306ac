"""Urgency facts: what makes a case's aid more pressing than its amount alone says.

The aid grade (救助等级, ``training.grades``) starts from the reference amount in months of
the wage base; a policy may name some of these facts to raise the grade one step. Each fact
is a vectorised test over canonical columns (``features.contract``); unknown counts as not
shown, as a clerk reads a case card.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from features.rules import SEVERE_LOW_INCOME, among

Columns = Mapping[str, np.ndarray]


def _number(columns: Columns, name: str) -> np.ndarray:
    return np.nan_to_num(np.asarray(columns[name], dtype=float), nan=0.0)


@dataclass(frozen=True)
class UrgencyFact:
    """One fact a policy may let raise the aid grade."""

    name: str
    zh: str
    test: Callable[[Columns], np.ndarray]

    def holds(self, columns: Columns) -> np.ndarray:
        """True where the record shows the fact."""
        return np.asarray(self.test(columns), dtype=bool)


URGENCY_FACTS: dict[str, UrgencyFact] = {
    fact.name: fact
    for fact in (
        UrgencyFact(
            "urgent_medical_need",
            "急需救治",
            lambda c: np.asarray(c["urgent_medical_need"], dtype=float) == 1.0,
        ),
        UrgencyFact(
            "death_with_dependants",
            "被害人死亡且遗有被扶养人",
            lambda c: (
                among(np.asarray(c["harm_outcome"], dtype=object), ("death",))
                & (_number(c, "dependants") >= 1)
            ),
        ),
        UrgencyFact(
            "minor_dependants",
            "有未成年被扶养人",
            lambda c: _number(c, "minor_dependants") >= 1,
        ),
        UrgencyFact(
            "severe_low_income",
            "低保或特困",
            lambda c: among(np.asarray(c["low_income_status"], dtype=object), SEVERE_LOW_INCOME),
        ),
    )
}
"""Every urgency fact a policy may name, by name."""
