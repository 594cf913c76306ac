"""Aid grades (救助等级): versioned bands over the reference amount, raised by urgency facts.

A grade says how grave and how pressing a case's aid is, for the reviewer's queue and the
supervisor's report: 一级 is the gravest. The policy file (``training.policy``) holds the
bands (``[min_months, max_months)`` of the wage base, together covering every amount with no
overlap) and the urgency facts (``features.urgency``) that raise a grade one step (never
above grade 1). :meth:`AidGrades.assign` grades a batch of scored cases.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from features.urgency import URGENCY_FACTS


@dataclass(frozen=True)
class GradeBand:
    """One grade and the months of the wage base it covers: ``[min_months, max_months)``."""

    grade: int
    label: str
    min_months: float = 0.0
    max_months: float = math.inf

    def summary(self) -> dict[str, Any]:
        """The band as plain values (an open upper end is None)."""
        top = None if math.isinf(self.max_months) else self.max_months
        return {
            "grade": self.grade,
            "label": self.label,
            "min_months": self.min_months,
            "max_months": top,
        }


@dataclass(frozen=True)
class GradedCases:
    """The grade of each case, the grade its amount alone gives, and the facts that hold."""

    grade: np.ndarray  # int
    band_grade: np.ndarray  # int: before any urgency fact
    facts: dict[str, np.ndarray]  # each raising fact: True where it holds

    def raised_by(self, row: int) -> list[str]:
        """The names of the raising facts that hold for ``row`` (empty when not raised)."""
        if self.grade[row] == self.band_grade[row]:
            return []
        return [name for name, holds in self.facts.items() if holds[row]]


@dataclass(frozen=True)
class AidGrades:
    """The bands, gravest (grade 1, most months) last in months, and the raising facts."""

    bands: tuple[GradeBand, ...]
    raise_when: tuple[str, ...] = ()

    def band(self, grade: int) -> GradeBand:
        """The band of a grade."""
        return next(b for b in self.bands if b.grade == grade)

    def label(self, grade: int) -> str:
        """The Chinese label of a grade (一级...)."""
        return self.band(grade).label

    def assign(self, months: np.ndarray, columns: Mapping[str, np.ndarray]) -> GradedCases:
        """Grade each case from its reference amount in months and its urgency facts.

        Any raising fact that holds moves the grade one step graver (a smaller number),
        never past grade 1.
        """
        months = np.asarray(months, dtype=float)
        ordered = sorted(self.bands, key=lambda b: b.min_months)
        edges = np.array([b.min_months for b in ordered[1:]], dtype=float)
        grades = np.array([b.grade for b in ordered], dtype=np.int64)
        band_grade = grades[np.searchsorted(edges, months, side="right")]
        facts = {name: URGENCY_FACTS[name].holds(columns) for name in self.raise_when}
        raised = np.zeros(len(months), dtype=bool)
        for holds in facts.values():
            raised |= holds
        grade = np.where(raised, np.maximum(band_grade - 1, 1), band_grade)
        return GradedCases(grade=grade, band_grade=band_grade, facts=facts)

    def summary(self) -> dict[str, Any]:
        """The grades as plain values, for the model card and the policy's record."""
        return {
            "bands": [b.summary() for b in sorted(self.bands, key=lambda b: b.grade)],
            "raise_when": list(self.raise_when),
        }


DEFAULT_AID_GRADES = AidGrades(
    bands=(
        GradeBand(1, "一级", min_months=3.0),
        GradeBand(2, "二级", min_months=1.0, max_months=3.0),
        GradeBand(3, "三级", max_months=1.0),
    ),
    raise_when=("urgent_medical_need", "death_with_dependants"),
)
"""The grades of a policy file that names none (the shipped file states the same)."""
