"""Answers for case records: the numbers, the reasons, the similar cases, the deviation.

Pure functions over a loaded :class:`LoadedModel`. A batch is one vectorised model call per
booster (a single case is a batch of one), with no pandas on the way; each part of an answer
has its own builder, and :func:`build_answers` wires them together.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from features.rules import rule_hits
from serving import schemas
from serving.explain import Explanation, explained
from training.bundle import REFERENCE_AMOUNT, ModelBundle, Scores
from training.deviation import deviation_of

CANARY_RECORD: dict[str, Any] = {
    "case_id": "CANARY-0001",
    "province_code": "11",
    "decision_year": 2025,
    "crime_type": "intentional_injury",
    "applicant_role": "victim",
    "harm_outcome": "severe_injury",
    "offender_status": "unable_to_pay",
    "victim_age": 40,
    "victim_sex": "female",
    "registry_flags": [],
}


@dataclass
class LoadedModel:
    """A bundle with the registry coordinates it came from."""

    bundle: ModelBundle
    name: str
    version: str
    run_id: str
    loaded_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    explainers: ThreadPoolExecutor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # TreeSHAP runs in C without the GIL: the four explanations of a case use both cores
        self.explainers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="explain")

    @property
    def ref(self) -> schemas.ModelRef:
        """Which registered version this is, for answers and the audit trail."""
        return schemas.ModelRef(
            name=self.name,
            version=self.version,
            run_id=self.run_id,
            policy_version=self.bundle.policy.version,
        )

    def card(self) -> schemas.ModelCard:
        """The model card of this version."""
        return schemas.ModelCard(model=self.ref, loaded_at=self.loaded_at, **self.bundle.card())


def _reference_amount(scores: Scores, i: int) -> schemas.ReferenceAmount:
    wage = scores.wage
    return schemas.ReferenceAmount(
        yuan=float(scores.reference_amount_yuan[i]),
        months_of_wage=float(scores.months_of_wage[i]),
        wage_base=schemas.WageBaseOut(
            base_monthly_wage_yuan=float(wage.monthly[i]),
            wage_year=int(wage.wage_year[i]),
            estimated=bool(wage.estimated[i]),
        ),
        interval_80_yuan=(float(scores.interval_low_yuan[i]), float(scores.interval_high_yuan[i])),
        ceiling_yuan=float(scores.ceiling_yuan[i]),
        ceiling_bound=bool(scores.ceiling_bound[i]),
    )


def _eligibility(scores: Scores, i: int) -> schemas.Eligibility:
    hits = rule_hits(scores.columns, scores.rules, i)
    return schemas.Eligibility(
        status=str(scores.rules.status[i]),
        rule_hits=[
            schemas.RuleHitOut(id=h.id, kind=h.kind, zh=h.zh, en=h.en, facts=h.facts) for h in hits
        ],
    )


def _leads(bundle: ModelBundle, scores: Scores, i: int) -> dict[str, schemas.Lead]:
    return {
        name: schemas.Lead(
            probability=float(scores.lead_probability[name][i]),
            flagged=bool(scores.lead_flagged[name][i]),
            threshold=threshold,
        )
        for name, threshold in bundle.lead_thresholds.items()
    }


def _explanation(
    explanation: Explanation, top_k: int, base_yuan: float | None
) -> schemas.ExplanationOut:
    return schemas.ExplanationOut(
        unit=explanation.unit,
        base_value=explanation.base_value,
        output=explanation.output,
        top=[
            schemas.ContributionOut(
                feature=c.feature,
                label_zh=c.label_zh,
                value=c.value,
                contribution=c.contribution,
                contribution_yuan=None if base_yuan is None else c.contribution * base_yuan,
            )
            for c in explanation.top(top_k)
        ],
        rest=explanation.rest,
    )


def _deviation(granted: float | None, amount: schemas.ReferenceAmount) -> schemas.Deviation | None:
    if granted is None:
        return None
    low, high = amount.interval_80_yuan
    ratio, outside = deviation_of(
        np.array([granted]), np.array([amount.yuan]), np.array([low]), np.array([high])
    )
    return schemas.Deviation(
        granted_amount_yuan=granted,
        ratio_to_reference=float(ratio[0]),
        outside_interval=bool(outside[0]),
    )


def _aid_grade(bundle: ModelBundle, scores: Scores, i: int) -> schemas.AidGrade:
    grade = int(scores.aid_grade.grade[i])
    band = bundle.policy.aid_grades.band(int(scores.aid_grade.band_grade[i]))
    top = None if math.isinf(band.max_months) else band.max_months
    return schemas.AidGrade(
        grade=grade,
        label_zh=scores.grade_labels[grade],
        band_months=(band.min_months, top),
        raised_by=scores.aid_grade.raised_by(i),
        policy_version=bundle.policy.version,
    )


def _notes(bundle: ModelBundle, scores: Scores, i: int) -> list[str]:
    notes = []
    wage_note = scores.wage_note(i)
    if wage_note is not None:
        notes.append(wage_note)
    for name, value in bundle.unseen_levels(scores.columns, i).items():
        notes.append(
            f"{name}={value!r} never occurred in the training history; "
            "the models treated it as unknown"
        )
    if scores.ceiling_bound[i]:
        notes.append("the model's amount was above the statutory ceiling and was cut to it")
    return notes


def build_answers(
    model: LoadedModel,
    columns: dict[str, np.ndarray],
    granted: Sequence[float | None],
    similar_k: int,
    top_k: int,
    explain: bool = True,
) -> list[schemas.ScoreResponse]:
    """The full answer for each row of canonical columns (already validated).

    With ``explain`` (the default) every number comes with its reasons, from one TreeSHAP
    pass per model on the explainers' threads; without, the models only predict (for case
    systems that only screen) and ``explanations`` is empty.
    """
    bundle = model.bundle
    if explain:
        scores, found = bundle.explained(columns, model.explainers.submit)
        explanations = {
            target: explained(bundle, contributions, scores.matrix, top_k)
            for target, contributions in found.items()
        }
    else:
        scores, explanations = bundle.score_columns(columns), {}
    similar = bundle.similar_cases(scores.matrix, similar_k)
    now = dt.datetime.now(dt.UTC)
    answers = []
    for i in range(len(scores.case_id)):
        amount = _reference_amount(scores, i)
        base = amount.wage_base.base_monthly_wage_yuan
        answers.append(
            schemas.ScoreResponse(
                prediction_id=str(uuid.uuid4()),
                case_id=str(scores.case_id[i]),
                created_at=now,
                model=model.ref,
                reference_amount=amount,
                eligibility=_eligibility(scores, i),
                leads=_leads(bundle, scores, i),
                explanations={
                    target: _explanation(
                        values[i], top_k, base if target == REFERENCE_AMOUNT else None
                    )
                    for target, values in explanations.items()
                },
                similar_cases=[schemas.SimilarCase(**vars(case)) for case in similar[i]],
                aid_grade=_aid_grade(bundle, scores, i),
                deviation=_deviation(granted[i], amount),
                notes=_notes(bundle, scores, i),
            )
        )
    return answers


def is_flagged(answer: schemas.ScoreResponse) -> bool:
    """Whether any lead of an answer is flagged (what reviewers filter on)."""
    return any(lead.flagged for lead in answer.leads.values())


def comparable(answer: Mapping[str, Any]) -> dict[str, Any]:
    """An answer without what differs between two scorings of the same input."""
    return {k: v for k, v in answer.items() if k not in ("prediction_id", "created_at")}


def differences(stored: Any, fresh: Any, path: str = "") -> list[str]:
    """Paths where two JSON values differ (floats compared exactly, as stored)."""
    if isinstance(stored, dict) and isinstance(fresh, dict):
        out = []
        for key in sorted(set(stored) | set(fresh)):
            out += differences(stored.get(key), fresh.get(key), f"{path}.{key}" if path else key)
        return out
    if isinstance(stored, list) and isinstance(fresh, list):
        if len(stored) != len(fresh):
            return [f"{path}: {len(stored)} items stored, {len(fresh)} now"]
        out = []
        for i, (a, b) in enumerate(zip(stored, fresh, strict=True)):
            out += differences(a, b, f"{path}[{i}]")
        return out
    if isinstance(stored, float | int) and isinstance(fresh, float | int):
        same = stored == fresh or (np.isnan(stored) and np.isnan(fresh))
        return [] if same else [f"{path}: {stored!r} stored, {fresh!r} now"]
    return [] if stored == fresh else [f"{path}: {stored!r} stored, {fresh!r} now"]
