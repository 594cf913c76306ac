"""Answers for case records: the numbers, the reasons, the similar cases, the deviation.

Pure functions over a loaded :class:`LoadedModel`; the HTTP layer only validates, audits
and returns what :func:`answer_batch` builds. One batch is one vectorised model call per
booster (a single case is a batch of one), with no pandas on the way.
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

from features.contract import canonical_from_typed, cross_field_problems
from features.rules import rule_hits
from features.vectors import columns_from_records
from training.bundle import ModelBundle
from training.explain import explain

CANARY_RECORD: dict[str, Any] = {
    "case_id": "CANARY-0001", "province_code": "11", "decision_year": 2025,
    "crime_type": "intentional_injury", "applicant_role": "victim",
    "harm_outcome": "severe_injury", "offender_status": "unable_to_pay", "victim_age": 40,
    "victim_sex": "female", "registry_flags": [],
}  # fmt: skip


@dataclass
class LoadedModel:
    """A bundle with the registry coordinates it came from."""

    bundle: ModelBundle
    name: str
    version: str
    run_id: str
    loaded_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    similar_columns: dict[str, np.ndarray] = field(init=False, repr=False)
    explainers: ThreadPoolExecutor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # TreeSHAP runs in C without the GIL: the four explanations of a case use both cores
        self.explainers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="explain")
        # plain arrays: reading five rows of a DataFrame per answer costs ~1.5 ms
        cases = self.bundle.index.cases
        self.similar_columns = {c: cases[c].to_numpy(dtype=object) for c in cases.columns}

    @property
    def ref(self) -> dict[str, str]:
        """``{name, version, run_id}`` for answers and the audit trail."""
        return {"name": self.name, "version": self.version, "run_id": self.run_id}


@dataclass(frozen=True)
class Problem:
    """Something wrong with one record beyond its types (a cross-field rule)."""

    field: str
    rule: str
    rule_zh: str = "字段之间相互矛盾"


def cross_field_errors(records: Sequence[Mapping[str, Any]]) -> list[list[Problem]]:
    """The contract's cross-field rules for canonical records, per record."""
    out: list[list[Problem]] = [[] for _ in records]
    if records:
        for row, name, rule in cross_field_problems(columns_from_records(records), history=False):
            out[row].append(Problem(name, rule))
    return out


def _finite(value: float) -> float:
    return float(value) if math.isfinite(value) else 0.0


def _explanation_out(explanation: Any, top_k: int, base_yuan: float | None) -> dict[str, Any]:
    top = explanation.top(top_k)
    rest = explanation.rest
    return {
        "unit": explanation.unit,
        "base_value": explanation.base_value,
        "output": explanation.output,
        "top": [
            {
                "feature": c.feature,
                "label_zh": c.label_zh,
                "value": c.value,
                "contribution": c.contribution,
                "contribution_yuan": None if base_yuan is None else c.contribution * base_yuan,
            }
            for c in top
        ],
        "rest": rest,
    }


def answer_batch(
    model: LoadedModel,
    typed_records: Sequence[Mapping[str, Any]],
    granted: Sequence[float | None],
    similar_k: int,
    top_k: int,
) -> list[dict[str, Any]]:
    """The full answer for each record (already validated by type and cross-field rules)."""
    bundle = model.bundle
    canonical = [canonical_from_typed(r) for r in typed_records]
    columns = columns_from_records(canonical)
    scores = bundle.score_columns(columns)
    targets = ["reference_amount", *bundle.leads]
    futures = [model.explainers.submit(explain, bundle, t, scores.matrix, top_k) for t in targets]
    explanations = {t: f.result() for t, f in zip(targets, futures, strict=True)}
    nearest, similarity = bundle.index.query(scores.matrix, similar_k)
    cases = model.similar_columns
    now = dt.datetime.now(dt.UTC)
    answers = []
    for i, record in enumerate(typed_records):
        base = float(scores.base_monthly_wage[i])
        reference = float(scores.reference_amount_yuan[i])
        low, high = float(scores.interval_low_yuan[i]), float(scores.interval_high_yuan[i])
        notes = []
        if scores.wage_estimated[i]:
            notes.append(bundle.vectorizer.wage_table_.lookup(
                str(record["province_code"]), int(record["decision_year"])).note)  # fmt: skip
        unseen = bundle.vectorizer.unseen_levels(canonical[i])
        for name, value in unseen.items():
            notes.append(f"{name}={value!r} never occurred in the training history; "
                         "the models treated it as unknown")  # fmt: skip
        if scores.ceiling_bound[i]:
            notes.append("the model's amount was above the statutory ceiling and was cut to it")
        similar = []
        for j, s in zip(nearest[i], similarity[i], strict=True):
            similar.append({
                "case_id": str(cases["case_id"][j]),
                "decision_year": int(cases["decision_year"][j]),
                "province_code": str(cases["province_code"][j]),
                "crime_type": str(cases["crime_type"][j]),
                "harm_outcome": str(cases["harm_outcome"][j]),
                "amount_yuan": float(cases["aid_amount_yuan"][j]),
                "months_of_wage": float(cases["amount_months"][j]), "similarity": float(s),
            })  # fmt: skip
        deviation = None
        if granted[i] is not None:
            amount = float(granted[i])  # type: ignore[arg-type]
            deviation = {
                "granted_amount_yuan": amount,
                "ratio_to_reference": _finite(amount / reference) if reference > 0 else 0.0,
                "outside_interval": bool(amount < low or amount > high),
            }
        answers.append(
            {
                "prediction_id": str(uuid.uuid4()),
                "case_id": str(record["case_id"]),
                "created_at": now.isoformat(),
                "model": model.ref,
                "reference_amount": {
                    "yuan": reference,
                    "months_of_wage": float(scores.months_of_wage[i]),
                    "wage_base": {
                        "base_monthly_wage_yuan": base,
                        "wage_year": int(scores.wage_year[i]),
                        "estimated": bool(scores.wage_estimated[i]),
                    },
                    "interval_80_yuan": [low, high],
                    "ceiling_yuan": float(scores.ceiling_yuan[i]),
                    "ceiling_bound": bool(scores.ceiling_bound[i]),
                },
                "eligibility": {
                    "status": str(scores.rules.status[i]),
                    "rule_hits": [h.as_dict() for h in rule_hits(columns, scores.rules, i)],
                },
                "leads": {
                    name: {
                        "probability": float(scores.lead_probability[name][i]),
                        "flagged": bool(scores.lead_flagged[name][i]),
                        "threshold": lead.threshold,
                    }
                    for name, lead in bundle.leads.items()
                },
                "explanations": {
                    name: _explanation_out(
                        values[i], top_k, base if name == "reference_amount" else None
                    )
                    for name, values in explanations.items()
                },
                "similar_cases": similar,
                "deviation": deviation,
                "notes": notes,
            }
        )
    return answers


def is_flagged(answer: Mapping[str, Any]) -> bool:
    """Whether any lead of an answer is flagged (what reviewers filter on)."""
    return any(lead["flagged"] for lead in answer["leads"].values())


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
