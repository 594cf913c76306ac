"""The model bundle: everything one registered version needs to answer for a case.

One :class:`ModelBundle` holds the fitted case-vector pipeline, the amount model (median and
the two interval quantiles, conformalised), the calibrated lead models, the similar-case
index, the training config and the metadata it was promoted on. It is persisted with
joblib, logged to MLflow as a pyfunc (``training.pyfunc``) and used directly by the API.

Scoring is vectorised: :meth:`ModelBundle.score` takes a canonical frame (or one record)
and returns every number of the answer as arrays, with one model call per booster.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression

from features.rules import RuleResults
from features.vectors import (
    CATEGORICAL_FIELDS,
    FEATURE_LABELS_ZH,
    CaseVectorizer,
    CaseVectors,
    WageLookup,
    columns_from_frame,
)
from training.config import TrainingConfig
from training.grades import GradedCases
from training.groups import groups_from_metrics
from training.policy import Policy
from training.shapes import MonotoneShape, booster_start, shape_contributions

REFERENCE_AMOUNT = "reference_amount"
"""The name of the amount target, beside the lead names."""

SMALL_INPUT_ROWS = 256
"""Below this many rows LightGBM predicts on one thread: waking an OpenMP team costs more
than it saves on a single case (measured: p50 13.5 ms vs 23.8 ms per answer)."""


def predict(booster: lgb.Booster, x: np.ndarray, **kwargs: Any) -> np.ndarray:
    """``booster.predict`` with the thread count chosen by input size."""
    if len(x) < SMALL_INPUT_ROWS:
        kwargs["num_threads"] = 1
    return np.asarray(booster.predict(x, **kwargs))


def logit(probability: np.ndarray) -> np.ndarray:
    """Log-odds of probabilities, clipped away from 0 and 1 so that they stay finite."""
    p = np.clip(np.asarray(probability, dtype=float), 1e-12, 1 - 1e-12)
    return np.asarray(np.log(p / (1 - p)))


EMBED_LIMIT = 1e4
"""Standardised values beyond ± this many standard deviations are clipped in the index."""

SIMILAR_CASE_COLUMNS = (
    "case_id",
    "decision_year",
    "province_code",
    "crime_type",
    "harm_outcome",
    "aid_amount_yuan",
    "amount_months",
)


@dataclass
class AmountModel:
    """Reference amount in months of the base: the median and an 80 % interval.

    The boosters work on log(months): the median model is an L2 fit with monotone
    constraints (LightGBM allows none with L1 or quantile objectives), whose exp is the
    conditional median when the noise is symmetric in log space; it starts from the monotone
    features' shapes (``training.shapes``: ``intercept`` plus each shape), so its log output
    is that start plus the booster's. The interval's quantile models are widened by a
    split-conformal margin (in log months) fitted on validation.
    """

    features: tuple[str, ...]
    columns: np.ndarray  # positions of ``features`` in the full case vector
    median: lgb.Booster
    low: lgb.Booster
    high: lgb.Booster
    conformal_margin: float  # log-months added on both sides
    coverage: float
    shapes: tuple[MonotoneShape, ...] = ()
    intercept: float = 0.0

    def predict(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(median, low, high) in months, before the ceiling; low ≤ median ≤ high."""
        x = matrix[:, self.columns]
        log_median = self.start(x) + predict(self.median, x)
        return (np.exp(log_median), *self.interval(matrix, log_median))

    def start(self, x: np.ndarray) -> np.ndarray:
        """Where the median booster starts, in log months: the intercept and the shapes."""
        return booster_start(self.shapes, self.intercept, x)

    def interval(self, matrix: np.ndarray, log_median: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The conformalised interval in months around a median given in log months."""
        x = matrix[:, self.columns]
        log_low = predict(self.low, x) - self.conformal_margin
        log_high = predict(self.high, x) + self.conformal_margin
        return (
            np.exp(np.minimum(log_low, log_median)),
            np.exp(np.maximum(log_high, log_median)),
        )

    def with_shapes(self, x: np.ndarray, phi: np.ndarray) -> np.ndarray:
        """The median booster's TreeSHAP values ``phi`` (last column φ₀) with the start added.

        Each feature's shape joins its TreeSHAP value and the intercept joins φ₀, so the row
        still adds up to the log median.
        """
        phi = np.array(phi, dtype=float)
        phi[:, :-1] += shape_contributions(self.shapes, x)
        phi[:, -1] += self.intercept
        return phi

    def contributions_in_months(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature contributions in months and the base value, adding up to the median."""
        x = matrix[:, self.columns]
        return self.months_of(self.with_shapes(x, predict(self.median, x, pred_contrib=True)))

    @staticmethod
    def months_of(phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Contributions in months and the base value from exact TreeSHAP in log months.

        Exact TreeSHAP gives additive contributions φ in log months (f = φ₀ + Σφ, the last
        column is φ₀). They are rescaled by (e^f − e^φ₀)/(f − φ₀), which keeps every sign and
        ranking and makes e^φ₀ + Σ φ·ratio equal the median in months exactly.
        """
        f, f0 = phi.sum(axis=1), phi[:, -1]
        gap = f - f0
        safe = np.where(np.abs(gap) > 1e-12, gap, 1.0)
        ratio = np.where(np.abs(gap) > 1e-12, (np.exp(f) - np.exp(f0)) / safe, np.exp(f0))
        return phi[:, :-1] * ratio[:, None], np.exp(f0)


@dataclass
class Calibrator:
    """Maps a booster's probability to a calibrated one: identity, Platt or isotonic.

    Which one is chosen on the validation years (see ``training.train.choose_calibrator``);
    LightGBM's log-loss already calibrates well, so identity is a legitimate outcome.
    """

    kind: str
    platt: tuple[float, float] = (1.0, 0.0)
    isotonic: IsotonicRegression | None = None

    def predict(self, probability: np.ndarray) -> np.ndarray:
        """Calibrated probabilities."""
        p = np.asarray(probability, dtype=float)
        if self.kind == "platt":
            a, b = self.platt
            return np.asarray(1.0 / (1.0 + np.exp(-(a * logit(p) + b))))
        if self.kind == "isotonic" and self.isotonic is not None:
            return np.asarray(self.isotonic.predict(p))
        return p


@dataclass
class LeadModel:
    """A lead: a booster (log-odds) and the calibrator chosen on the validation years."""

    name: str
    features: tuple[str, ...]
    columns: np.ndarray
    booster: lgb.Booster
    calibrator: Calibrator

    def raw_probability(self, matrix: np.ndarray) -> np.ndarray:
        """The booster's own probability."""
        return predict(self.booster, matrix[:, self.columns])

    def probability(self, matrix: np.ndarray) -> np.ndarray:
        """The calibrated probability."""
        return np.asarray(self.calibrator.predict(self.raw_probability(matrix)))

    def probability_of(self, log_odds: np.ndarray) -> np.ndarray:
        """The calibrated probability of a raw score (what the contributions add up to)."""
        return np.asarray(self.calibrator.predict(expit(log_odds)))


@dataclass
class SimilarCaseIndex:
    """Historical aided cases as weighted vectors; euclidean distance, similarity 1/(1+d).

    Numeric features are standardised and weighted by the amount model's mean absolute
    contribution (so "similar" means similar in what drives the amount); a categorical
    mismatch costs the feature's weight. Unknown values are imputed with the history's
    median, so a case identical to a historical one is at distance 0. Cases are kept in
    blocks of the same harm (severity and whether it was a property loss), the first thing a
    clerk compares; a query scans its own block (all cases if the block has fewer than k),
    which keeps the memory-bound scan short as the history grows.
    """

    features: tuple[str, ...]
    columns: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    categorical: np.ndarray  # bool per feature
    levels: list[np.ndarray]  # per categorical feature: its codes
    embedded: np.ndarray  # float32 (n, m), rows sorted by block
    norms: np.ndarray
    cases: pd.DataFrame  # same order as embedded
    block_columns: np.ndarray  # positions of the blocking features in ``features``
    blocks: dict[tuple[float, ...], tuple[int, int]]  # block key → (start, end) rows
    _columns: dict[str, np.ndarray] | None = field(default=None, init=False, repr=False)

    def embed(self, matrix: np.ndarray) -> np.ndarray:
        """Case vectors → the index's weighted space."""
        x = matrix[:, self.columns]
        parts = []
        level_iter = iter(self.levels)
        for j in range(x.shape[1]):
            column = np.where(np.isnan(x[:, j]), self.center[j], x[:, j])
            if self.categorical[j]:
                codes = next(level_iter)
                onehot = (column[:, None] == codes[None, :]).astype(np.float64)
                parts.append(onehot * np.sqrt(self.weights[j] / 2.0))
            else:
                # clipped: a valid but absurd amount (1e300 yuan) must not overflow float32
                standard = np.clip(
                    (column - self.center[j]) / self.scale[j], -EMBED_LIMIT, EMBED_LIMIT
                )
                parts.append((standard * np.sqrt(self.weights[j]))[:, None])
        return np.hstack(parts).astype(np.float32)

    def block_of(self, row: np.ndarray) -> tuple[int, int]:
        """The (start, end) rows a case vector's block spans; all rows when unknown or small."""
        key = tuple(float(v) for v in row[self.columns][self.block_columns])
        return self.blocks.get(key, (0, len(self.embedded)))

    def query(self, matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices into :attr:`cases` and similarities of the k nearest, per row."""
        q = self.embed(matrix)
        nearest_rows, similarity_rows = [], []
        for i in range(len(q)):
            start, end = self.block_of(matrix[i])
            if end - start < k:
                start, end = 0, len(self.embedded)
            block = self.embedded[start:end]
            squared = float(q[i] @ q[i]) - 2.0 * (block @ q[i]) + self.norms[start:end]
            squared = np.maximum(squared, 0.0)
            kk = min(k, len(squared))
            nearest = np.argpartition(squared, kk - 1)[:kk]
            # the shortcut above cancels in float32; the k distances are recomputed exactly
            exact = np.sqrt(((block[nearest].astype(np.float64) - q[i]) ** 2).sum(axis=1))
            order = np.lexsort((nearest, exact))
            nearest_rows.append(nearest[order] + start)
            similarity_rows.append(1.0 / (1.0 + exact[order]))
        return np.vstack(nearest_rows), np.vstack(similarity_rows)

    def similar(self, matrix: np.ndarray, k: int) -> list[list[SimilarCase]]:
        """The k most similar historical aided cases of each row, most similar first."""
        nearest, similarity = self.query(matrix, k)
        cases = self._case_columns()
        return [
            [
                SimilarCase(
                    case_id=str(cases["case_id"][j]),
                    decision_year=int(cases["decision_year"][j]),
                    province_code=str(cases["province_code"][j]),
                    crime_type=str(cases["crime_type"][j]),
                    harm_outcome=str(cases["harm_outcome"][j]),
                    amount_yuan=float(cases["aid_amount_yuan"][j]),
                    months_of_wage=float(cases["amount_months"][j]),
                    similarity=float(s),
                )
                for j, s in zip(row, row_similarity, strict=True)
            ]
            for row, row_similarity in zip(nearest, similarity, strict=True)
        ]

    def _case_columns(self) -> dict[str, np.ndarray]:
        # plain arrays, made once: reading five rows of a DataFrame per answer costs ~1.5 ms
        if self._columns is None:
            self._columns = {c: self.cases[c].to_numpy(dtype=object) for c in self.cases.columns}
        return self._columns


@dataclass(frozen=True)
class SimilarCase:
    """A historical aided case near the one scored, with what it received."""

    case_id: str
    decision_year: int
    province_code: str
    crime_type: str
    harm_outcome: str
    amount_yuan: float
    months_of_wage: float
    similarity: float


@dataclass
class Scores:
    """Every number of the answer for each scored row (arrays aligned with the input)."""

    case_id: np.ndarray
    matrix: np.ndarray
    columns: dict[str, np.ndarray]
    rules: RuleResults
    wage: WageLookup
    ceiling_yuan: np.ndarray
    model_months: np.ndarray  # the model's median before the ceiling
    months_of_wage: np.ndarray  # after the ceiling
    reference_amount_yuan: np.ndarray
    interval_low_yuan: np.ndarray
    interval_high_yuan: np.ndarray
    ceiling_bound: np.ndarray
    lead_probability: dict[str, np.ndarray]
    lead_flagged: dict[str, np.ndarray]
    aid_grade: GradedCases
    grade_labels: dict[int, str]  # the policy's label of each grade (一级...)

    @property
    def base_monthly_wage(self) -> np.ndarray:
        """The monthly wage base of each row."""
        return self.wage.monthly

    def wage_note(self, row: int) -> str | None:
        """What a reviewer should know about the base of ``row``.

        None when it is the previous year's figure, as the rules want.
        """
        return self.wage.note(row)

    def table(self) -> pd.DataFrame:
        """One row per case in the columns ``score-file`` writes."""
        hits = [";".join(self.rules.rule_ids(i)) for i in range(len(self.case_id))]
        return pd.DataFrame(
            {
                "case_id": self.case_id,
                "reference_amount_yuan": np.round(self.reference_amount_yuan, 2),
                "interval_low_yuan": np.round(self.interval_low_yuan, 2),
                "interval_high_yuan": np.round(self.interval_high_yuan, 2),
                "months_of_wage": np.round(self.months_of_wage, 4),
                "base_monthly_wage_yuan": np.round(self.base_monthly_wage, 2),
                "p_judicial_aid": self.lead_probability.get("judicial_aid"),
                "p_social_assistance": self.lead_probability.get("social_assistance"),
                "p_civil_support": self.lead_probability.get("civil_support"),
                "eligibility_status": self.rules.status,
                "rule_hits": hits,
                "aid_grade": self.aid_grade.grade,
                "aid_grade_zh": [self.grade_labels[int(g)] for g in self.aid_grade.grade],
            }
        )


@dataclass(frozen=True)
class Contributions:
    """Exact TreeSHAP contributions of one model output for a matrix of cases.

    ``values[i] @ 1 + base[i]`` is the output for row ``i``: months of the base for the
    reference amount (see :meth:`AmountModel.contributions_in_months`), log-odds for a lead.
    """

    target: str
    unit: str
    features: tuple[str, ...]
    columns: np.ndarray  # positions of ``features`` in the full case vector
    values: np.ndarray  # n × len(features)
    base: np.ndarray  # n


@dataclass
class ModelBundle:
    """One consistent set of pipeline, models, index and metadata (one registered version).

    Serving uses only the public methods: :meth:`score_columns`, :meth:`contributions`,
    :meth:`decode`, :meth:`label_zh`, :meth:`similar_cases`, :meth:`unseen_levels` and
    :meth:`card`.
    """

    vectorizer: CaseVectorizer
    config: TrainingConfig
    policy: Policy
    amount: AmountModel
    leads: dict[str, LeadModel]
    index: SimilarCaseIndex
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def lead_thresholds(self) -> dict[str, float]:
        """At or above these calibrated probabilities a lead is flagged (the policy's)."""
        return {name: self.policy.lead_thresholds[name] for name in self.leads}

    def with_policy(self, policy: Policy) -> ModelBundle:
        """The same boosters, index and pipeline answering under another policy.

        The policy's reading of the rules reaches the case vectors too (the rule features),
        so the new bundle must pass the promotion gate like any other challenger.
        """
        vectorizer = copy.deepcopy(self.vectorizer).set_params(rule_constants=policy.rules)
        metadata = {**self.metadata, "policy": policy.summary()}
        return replace(self, vectorizer=vectorizer, policy=policy, metadata=metadata)

    @property
    def feature_names(self) -> list[str]:
        """Names of the full case vector."""
        return [str(n) for n in self.vectorizer.get_feature_names_out()]

    @property
    def targets(self) -> list[str]:
        """Every explained output: the reference amount, then the leads."""
        return [REFERENCE_AMOUNT, *self.leads]

    def score(self, frame: pd.DataFrame) -> Scores:
        """Score a canonical frame (outcome and unknown columns are ignored)."""
        return self.score_columns(columns_from_frame(frame))

    def score_columns(self, columns: dict[str, np.ndarray]) -> Scores:
        """Score canonical columns (one array per contract input field)."""
        vectors = self.vectorizer.vectors(columns)
        median, low, high = self.amount.predict(vectors.matrix)
        probability = {name: lead.probability(vectors.matrix) for name, lead in self.leads.items()}
        return self._scores(columns, vectors, median, low, high, probability)

    def explained(
        self, columns: dict[str, np.ndarray], run: Callable[..., Future[np.ndarray]] | None = None
    ) -> tuple[Scores, dict[str, Contributions]]:
        """Scores and every target's contributions from one TreeSHAP pass per model.

        The contributions add up to each model's raw output, so the median amount and the
        lead probabilities are derived from them instead of predicting a second time (the
        same numbers as :meth:`score_columns` to rounding; a test checks it). ``run`` submits
        work to an executor (``executor.submit``) so that the passes, which release the GIL,
        use several cores; without it they run one after the other.
        """
        vectors = self.vectorizer.vectors(columns)
        matrix = vectors.matrix
        models = {REFERENCE_AMOUNT: (self.amount.median, self.amount.columns)}
        models |= {name: (lead.booster, lead.columns) for name, lead in self.leads.items()}

        def shap(booster: lgb.Booster, positions: np.ndarray) -> np.ndarray:
            return predict(booster, matrix[:, positions], pred_contrib=True)

        if run is None:
            raw = {target: shap(*model) for target, model in models.items()}
        else:
            futures = {target: run(shap, *model) for target, model in models.items()}
            raw = {target: future.result() for target, future in futures.items()}
        raw[REFERENCE_AMOUNT] = self.amount.with_shapes(
            matrix[:, self.amount.columns], raw[REFERENCE_AMOUNT]
        )
        log_median = raw[REFERENCE_AMOUNT].sum(axis=1)
        low, high = self.amount.interval(matrix, log_median)
        probability = {
            name: lead.probability_of(raw[name].sum(axis=1)) for name, lead in self.leads.items()
        }
        scores = self._scores(columns, vectors, np.exp(log_median), low, high, probability)
        values, base = self.amount.months_of(raw[REFERENCE_AMOUNT])
        found = {
            REFERENCE_AMOUNT: Contributions(
                REFERENCE_AMOUNT, "months", self.amount.features, self.amount.columns, values, base
            )
        }
        for name, lead in self.leads.items():
            phi = raw[name]
            found[name] = Contributions(
                name, "log-odds", lead.features, lead.columns, phi[:, :-1], phi[:, -1]
            )
        return scores, found

    def _scores(
        self,
        columns: dict[str, np.ndarray],
        vectors: CaseVectors,
        median: np.ndarray,
        low: np.ndarray,
        high: np.ndarray,
        probability: dict[str, np.ndarray],
    ) -> Scores:
        rules, base = vectors.rules, vectors.wage.monthly
        ceiling_months = rules.ceiling_yuan / base
        months = np.minimum(median, ceiling_months)
        thresholds = self.lead_thresholds
        flagged = {name: probability[name] >= thresholds[name] for name in self.leads}
        grades = self.policy.aid_grades
        return Scores(
            case_id=np.asarray(columns["case_id"], dtype=object),
            matrix=vectors.matrix,
            columns=columns,
            rules=rules,
            wage=vectors.wage,
            ceiling_yuan=rules.ceiling_yuan,
            model_months=median,
            months_of_wage=months,
            reference_amount_yuan=months * base,
            interval_low_yuan=np.minimum(low, ceiling_months) * base,
            interval_high_yuan=np.minimum(high, ceiling_months) * base,
            ceiling_bound=median > ceiling_months,
            lead_probability=probability,
            lead_flagged=flagged,
            aid_grade=grades.assign(months, columns),
            grade_labels={band.grade: band.label for band in grades.bands},
        )

    def contributions(self, target: str, matrix: np.ndarray) -> Contributions:
        """Exact TreeSHAP contributions (LightGBM ``pred_contrib``) of ``target``.

        The reference amount's are in months of the base, a lead's in log-odds.
        """
        if target == REFERENCE_AMOUNT:
            values, base = self.amount.contributions_in_months(matrix)
            return Contributions(
                target, "months", self.amount.features, self.amount.columns, values, base
            )
        lead = self.leads[target]
        raw = predict(lead.booster, matrix[:, lead.columns], pred_contrib=True)
        return Contributions(
            target, "log-odds", lead.features, lead.columns, raw[:, :-1], raw[:, -1]
        )

    def decode(self, feature: str, value: float) -> Any:
        """A vector value as a reviewer reads it: the category's token, None for unknown."""
        if math.isnan(value):
            return None
        if feature in CATEGORICAL_FIELDS:
            levels = self.vectorizer.categories_[feature]
            code = int(value)
            return levels[code] if 0 <= code < len(levels) else None
        return round(float(value), 6)

    def label_zh(self, feature: str) -> str:
        """The Chinese label a reviewer reads for a feature."""
        return FEATURE_LABELS_ZH.get(feature, feature)

    def similar_cases(self, matrix: np.ndarray, k: int) -> list[list[SimilarCase]]:
        """The k most similar historical aided cases of each row."""
        return self.index.similar(matrix, k)

    def unseen_levels(self, columns: Mapping[str, np.ndarray], row: int) -> dict[str, str]:
        """Categorical values of a row the training history never showed (treated as unknown)."""
        return self.vectorizer.unseen_levels({name: columns[name][row] for name in columns})

    def card(self) -> dict[str, Any]:
        """What a reviewer needs to know of this version.

        Its training data, the evaluation it was promoted on (overall and by group), the
        features of each model, the monotone constraints (and which of them the median starts
        from as shapes) and the thresholds.
        """
        meta = self.metadata
        return {
            "trained_at": meta.get("trained_at"),
            "training_data": {
                key: meta.get(key)
                for key in ("rows", "rows_by_part", "years", "wage_table_version", "config_version")
            },
            "evaluation": meta.get("evaluation", {}),
            "evaluation_by_group": groups_from_metrics(meta.get("evaluation", {})),
            "features": {
                REFERENCE_AMOUNT: list(self.amount.features),
                **{name: list(lead.features) for name, lead in self.leads.items()},
            },
            "monotone_constraints": dict(self.config.amount.monotone),
            "monotone_shapes": [shape.feature for shape in self.amount.shapes],
            "flag_thresholds": self.lead_thresholds,
            "policy": self.policy.summary(),
        }
