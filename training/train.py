"""Training every target of the config into one :class:`~training.bundle.ModelBundle`.

The split is by time, as a deployment lives: the oldest years train, the next validate
(early stopping, the choice and fit of each lead's calibrator, the interval's conformal
margin) and the newest are held out for evaluation only. The amount is learned on granted
cases as log(months of the base) with an L2 objective (LightGBM allows monotone constraints
with neither L1 nor quantile objectives), so that exp of the prediction is the conditional
median when the noise is symmetric in log space; the constraints hold where the law is
monotone. Its 80 % interval comes from the 10 % and 90 % quantile models, widened by a
split-conformal margin so that the validation years are covered as promised. Each lead's
calibrator is identity, Platt or isotonic, whichever has the lowest 2-fold Brier score on
the validation years.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from features.vectors import CATEGORICAL_FIELDS, CaseVectorizer
from training.bundle import (
    REFERENCE_AMOUNT,
    SIMILAR_CASE_COLUMNS,
    AmountModel,
    Calibrator,
    LeadModel,
    ModelBundle,
    SimilarCaseIndex,
    logit,
)
from training.config import TargetConfig, TrainingConfig
from training.policy import Policy, load_policy
from training.shapes import MonotoneShape, booster_start, fit_monotone_shapes

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
CALIBRATORS = ("identity", "platt", "isotonic")  # simplest first
SIMILAR_CASE_BLOCKS = ("harm_severity", "property_harm")


class TrainingError(ValueError):
    """The history cannot train the configured models (too few years, no granted cases...)."""


@dataclass(frozen=True)
class TimeSplit:
    """Row masks of the three parts and the years each covers."""

    train: np.ndarray
    validation: np.ndarray
    holdout: np.ndarray
    years: dict[str, list[int]]


def split_by_time(history: pd.DataFrame, config: TrainingConfig) -> TimeSplit:
    """Oldest years train, then validation years, newest years are held out."""
    years = sorted(int(y) for y in pd.unique(history["decision_year"].dropna()))
    needed = config.validation_years + config.holdout_years + 1
    if len(years) < needed:
        raise TrainingError(
            f"the history covers {len(years)} decision year(s) {years}; a split by time needs "
            f"at least {needed} (train, {config.validation_years} validation, "
            f"{config.holdout_years} holdout)"
        )
    holdout_years = years[-config.holdout_years :]
    validation_years = years[-needed + 1 : -config.holdout_years]
    train_years = years[: -needed + 1]
    year = history["decision_year"].to_numpy()
    return TimeSplit(
        train=np.isin(year, train_years),
        validation=np.isin(year, validation_years),
        holdout=np.isin(year, holdout_years),
        years={"train": train_years, "validation": validation_years, "holdout": holdout_years},
    )


def label_of(history: pd.DataFrame, target: TargetConfig, base: np.ndarray) -> np.ndarray:
    """The training label of a target (months of the base for the amount)."""
    if target.label == "aid_amount_months":
        return history["aid_amount_yuan"].to_numpy(dtype=float) / base
    return history[target.label].to_numpy(dtype=float)


def _dataset(x: np.ndarray, y: np.ndarray, target: TargetConfig, **kw: Any) -> lgb.Dataset:
    categorical = [i for i, f in enumerate(target.features) if f in CATEGORICAL_FIELDS]
    return lgb.Dataset(
        x,
        label=y,
        feature_name=list(target.features),
        categorical_feature=categorical,
        free_raw_data=False,
        **kw,
    )


def _fit_booster(
    target: TargetConfig,
    objective: dict[str, Any],
    config: TrainingConfig,
    train: tuple[np.ndarray, np.ndarray],
    valid: tuple[np.ndarray, np.ndarray],
    start: Callable[[np.ndarray], np.ndarray] | None = None,
) -> lgb.Booster:
    """A booster early-stopped on ``valid``, starting from ``start(x)`` when given."""
    params = {**target.params, **objective}
    if target.monotone:
        params["monotone_constraints"] = target.monotone_constraints()
        # "advanced" breaks its own constraints on this data (LightGBM issues #5358, #6155,
        # still open); "intermediate" holds them at the same holdout MAE (measured: 1.0148
        # vs 1.0146 of the oracle's), and tests/model/test_behaviour.py checks it
        params["monotone_constraints_method"] = "intermediate"
    train_set = _dataset(*train, target, **_init_score(start, train[0]))
    valid_set = _dataset(*valid, target, reference=train_set, **_init_score(start, valid[0]))
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=config.num_boost_round,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )
    log.info(
        "%s %s: %d trees (best iteration %d)",
        target.name,
        objective.get("objective"),
        booster.num_trees(),
        booster.best_iteration,
    )
    return booster


def _init_score(start: Callable[[np.ndarray], np.ndarray] | None, x: np.ndarray) -> dict[str, Any]:
    return {} if start is None else {"init_score": start(x)}


def fit_shapes(
    target: TargetConfig,
    config: TrainingConfig,
    train: tuple[np.ndarray, np.ndarray],
    valid: tuple[np.ndarray, np.ndarray],
) -> tuple[tuple[MonotoneShape, ...], float]:
    """The monotone features' shapes and the intercept (``training.shapes``), or none."""
    spec = target.shapes
    if not spec:
        return (), 0.0
    shallow = {"num_leaves": spec["num_leaves"], "max_depth": spec["max_depth"]}
    free = replace(
        target, name=f"{target.name} (shapes)", monotone={}, params={**target.params, **shallow}
    )
    booster = _fit_booster(free, {"objective": target.objective}, config, train, valid)
    x = train[0]
    sample = x[np.unique(np.linspace(0, len(x) - 1, min(len(x), spec["sample_rows"])).astype(int))]
    shapes, intercept = fit_monotone_shapes(
        booster, sample, target.features, target.monotone_constraints(), spec["knots"]
    )
    log.info(
        "%s: monotone shapes of %s from %d shallow trees",
        target.name,
        [shape.feature for shape in shapes],
        booster.num_trees(),
    )
    return shapes, intercept


def _columns(vectorizer: CaseVectorizer, features: tuple[str, ...]) -> np.ndarray:
    names = list(vectorizer.get_feature_names_out())
    return np.asarray([names.index(f) for f in features], dtype=int)


def train_amount(
    target: TargetConfig,
    config: TrainingConfig,
    matrix: np.ndarray,
    months: np.ndarray,
    split: TimeSplit,
    columns: np.ndarray,
) -> AmountModel:
    """The median and the conformalised 80 % interval, learned on log(months)."""
    granted = ~np.isnan(months) & (months > 0)
    tr, va = split.train & granted, split.validation & granted
    if tr.sum() < 100 or va.sum() < 30:
        raise TrainingError(
            f"too few granted cases to learn the amount: {int(tr.sum())} in the training years, "
            f"{int(va.sum())} in the validation years"
        )
    x, y = matrix[:, columns], np.log(np.where(granted, months, 1.0))
    train, valid = (x[tr], y[tr]), (x[va], y[va])
    shapes, intercept = fit_shapes(target, config, train, valid)
    median = _fit_booster(
        target,
        {"objective": target.objective},
        config,
        train,
        valid,
        start=partial(booster_start, shapes, intercept),
    )
    coverage = float(target.interval or 0.8)
    tail = (1.0 - coverage) / 2.0
    free = replace(target, monotone={})  # LightGBM: no monotone constraints with quantiles
    low = _fit_booster(free, {"objective": "quantile", "alpha": tail}, config, train, valid)
    high = _fit_booster(free, {"objective": "quantile", "alpha": 1 - tail}, config, train, valid)
    # split-conformal (CQR): widen both sides by the coverage quantile of the misses
    miss = np.maximum(low.predict(x[va]) - y[va], y[va] - high.predict(x[va]))
    rank = min(1.0, np.ceil((va.sum() + 1) * coverage) / va.sum())
    margin = float(np.quantile(miss, rank, method="higher"))
    log.info("amount interval: conformal margin %.3f log-months on %d cases", margin, va.sum())
    return AmountModel(
        target.features, columns, median, low, high, margin, coverage, shapes, intercept
    )


def train_lead(
    target: TargetConfig,
    config: TrainingConfig,
    matrix: np.ndarray,
    label: np.ndarray,
    split: TimeSplit,
    columns: np.ndarray,
) -> LeadModel:
    """A lead booster and its calibrator, chosen and fitted on the validation years."""
    known = ~np.isnan(label)
    tr, va = split.train & known, split.validation & known
    for part, mask in (("training", tr), ("validation", va)):
        if len(np.unique(label[mask])) < 2:
            raise TrainingError(f"{target.name}: the {part} years hold only one class")
    x = matrix[:, columns]
    booster = _fit_booster(
        target, {"objective": target.objective}, config, (x[tr], label[tr]), (x[va], label[va])
    )
    calibrator, briers = choose_calibrator(np.asarray(booster.predict(x[va])), label[va])
    log.info(
        "%s: calibrator %s (2-fold Brier on validation %s)",
        target.name,
        calibrator.kind,
        {k: round(v, 5) for k, v in briers.items()},
    )
    return LeadModel(target.name, target.features, columns, booster, calibrator)


def _fit_calibrator(kind: str, raw: np.ndarray, label: np.ndarray) -> Calibrator:
    if kind == "platt":
        model = LogisticRegression(C=1e6).fit(logit(raw)[:, None], label)
        return Calibrator("platt", platt=(float(model.coef_[0, 0]), float(model.intercept_[0])))
    if kind == "isotonic":
        isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, label)
        return Calibrator("isotonic", isotonic=isotonic)
    return Calibrator("identity")


def choose_calibrator(
    raw: np.ndarray, label: np.ndarray, tolerance: float = 1e-5
) -> tuple[Calibrator, dict[str, float]]:
    """Identity, Platt or isotonic, by 2-fold Brier score on the validation years.

    A more flexible map must beat a simpler one by ``tolerance`` to be chosen, so noise in
    one year of data does not buy a calibrator that makes the holdout worse.
    """
    fold = np.random.default_rng(0).random(len(raw)) < 0.5
    briers: dict[str, float] = {}
    for kind in CALIBRATORS:
        losses = []
        for fit_part in (fold, ~fold):
            calibrator = _fit_calibrator(kind, raw[fit_part], label[fit_part])
            predicted = calibrator.predict(raw[~fit_part])
            losses.append(float(np.mean((predicted - label[~fit_part]) ** 2)))
        briers[kind] = float(np.mean(losses))
    chosen = CALIBRATORS[0]
    for kind in CALIBRATORS[1:]:
        if briers[kind] < briers[chosen] - tolerance:
            chosen = kind
    return _fit_calibrator(chosen, raw, label), briers


def build_index(
    amount: AmountModel,
    history: pd.DataFrame,
    matrix: np.ndarray,
    months: np.ndarray,
) -> SimilarCaseIndex:
    """The historical aided cases, weighted by what drives the amount."""
    granted = ~np.isnan(months)
    x = matrix[granted][:, amount.columns]
    sample = matrix[granted][:: max(1, int(granted.sum()) // 5000)]
    contributions, _ = amount.contributions_in_months(sample)
    weights = np.abs(contributions).mean(axis=0)
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(weights), 1.0)
    center = np.nanmedian(x, axis=0)
    center = np.where(np.isnan(center), 0.0, center)
    scale = np.nanstd(x, axis=0)
    scale = np.where(~(scale > 0), 1.0, scale)
    categorical = np.array([f in CATEGORICAL_FIELDS for f in amount.features])
    levels = [np.unique(x[:, j][~np.isnan(x[:, j])]) for j in np.flatnonzero(categorical)]
    block_columns = np.asarray(
        [amount.features.index(f) for f in SIMILAR_CASE_BLOCKS if f in amount.features], dtype=int
    )
    keys = np.nan_to_num(x[:, block_columns], nan=-1.0)
    order = np.lexsort(keys.T[::-1]) if len(block_columns) else np.arange(len(x))
    cases = history.loc[granted, list(SIMILAR_CASE_COLUMNS[:-1])].reset_index(drop=True)
    cases["amount_months"] = months[granted]
    cases = cases.iloc[order].reset_index(drop=True)
    blocks: dict[tuple[float, ...], tuple[int, int]] = {}
    sorted_keys = keys[order]
    for start in range(len(sorted_keys)):
        key = tuple(float(v) for v in sorted_keys[start])
        first, _ = blocks.get(key, (start, start))
        blocks[key] = (first, start + 1)
    index = SimilarCaseIndex(
        features=amount.features,
        columns=amount.columns,
        center=center,
        scale=scale,
        weights=weights,
        categorical=categorical,
        levels=levels,
        embedded=np.zeros((0, 0), np.float32),
        norms=np.zeros(0, np.float32),
        cases=cases,
        block_columns=block_columns,
        blocks=blocks,
    )
    index.embedded = index.embed(matrix[granted][order])
    index.norms = (index.embedded * index.embedded).sum(axis=1)
    return index


def train_bundle(
    history: pd.DataFrame,
    config: TrainingConfig,
    policy: Policy | None = None,
    wage_table_path: str | None = None,
    progress: Progress | None = None,
) -> tuple[ModelBundle, TimeSplit]:
    """Train every target on a canonical history; returns the bundle and the split used.

    ``policy`` (default: the shipped one) sets the lead thresholds and the reading of the
    rules the case vectors use; it travels in the bundle.
    """
    policy = policy or load_policy()
    step = progress or (lambda message: log.info(message))
    split = split_by_time(history, config)
    step(f"split by time: {split.years}")
    vectorizer = CaseVectorizer(wage_table_path, policy.rules).fit(history.loc[split.train])
    matrix = vectorizer.transform(history)
    base = matrix[:, list(vectorizer.get_feature_names_out()).index("base_monthly_wage")]
    amount_target = config.amount
    months = label_of(history, amount_target, base)
    step("training the reference amount (median and interval)")
    amount = train_amount(
        amount_target, config, matrix, months, split, _columns(vectorizer, amount_target.features)
    )
    leads = {}
    for target in config.leads:
        step(f"training the {target.name} lead")
        label = label_of(history, target, base)
        leads[target.name] = train_lead(
            target, config, matrix, label, split, _columns(vectorizer, target.features)
        )
    step("building the similar-case index")
    index = build_index(amount, history, matrix, months)
    metadata = {
        "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "rows": len(history),
        "rows_by_part": {
            "train": int(split.train.sum()),
            "validation": int(split.validation.sum()),
            "holdout": int(split.holdout.sum()),
        },
        "years": split.years,
        "granted_cases_in_index": len(index.cases),
        "config_version": config.version,
        "config_digest": config.digest,
        "wage_table_source": vectorizer.wage_table_.source,
        "wage_table_version": vectorizer.wage_table_.version,
        "best_iterations": {
            REFERENCE_AMOUNT: amount.median.best_iteration,
            f"{REFERENCE_AMOUNT}_low": amount.low.best_iteration,
            f"{REFERENCE_AMOUNT}_high": amount.high.best_iteration,
            **{name: lead.booster.best_iteration for name, lead in leads.items()},
        },
        "interval_conformal_margin_log_months": amount.conformal_margin,
        "calibrators": {name: lead.calibrator.kind for name, lead in leads.items()},
    }
    metadata["policy"] = policy.summary()
    bundle = ModelBundle(vectorizer, config, policy, amount, leads, index, metadata)
    return bundle, split
