"""Evaluation of a bundle on the holdout years: the report a model owner reads.

Everything is measured on the same held-out rows: the amount against three baselines (the
flat rule, the clerk's "similar cases" median, a linear model) and against the oracle; the
leads by discrimination, calibration and recall at a review budget against the rule-based
screen offices use today; fairness (sex never moves the amount; deviation of actual amounts
from the reference by province, the 同案不同救 picture); and the same figures for each of the
groups the procuratorates aid deliberately (``training.groups``), beside the overall, with a
warning in the log for a group served markedly worse. The flat ``metrics`` dict is what
MLflow logs and the promotion gate reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from features.rules import (
    LOW_INCOME_RECOGNISED,
    NO_COMPENSATION_OBTAINABLE,
    RuleConstants,
    compensation_in_hand,
)
from features.vectors import CATEGORICAL_FIELDS, columns_from_frame
from training.bundle import REFERENCE_AMOUNT, ModelBundle, Scores
from training.groups import GROUPS, metric_name

log = logging.getLogger(__name__)

REVIEW_BUDGETS = (0.05, 0.10)
GROUP_LEAD = "judicial_aid"
"""The lead whose recall at the flagging threshold is reported per group."""
GROUP_MIN_AIDED = 100
"""A group is judged only with at least this many aided holdout cases (fewer: too noisy)."""
GROUP_RECALL_SHORTFALL = 0.05
"""A group is served markedly worse when the model's lead recall falls short of the oracle's
by this much more than it does overall (recall at the flagging threshold, absolute)."""
GROUP_MAE_RATIO_EXCESS = 0.05
"""... or when its amount MAE ratio to the oracle exceeds the overall ratio by this much ..."""
GROUP_MEDIAN_RATIO_BAND = (0.9, 1.1)
"""... or when the median of its reference amounts over the oracle's leaves this band."""


@dataclass
class Evaluation:
    """The metrics (flat, for MLflow and the gate), the report (nested JSON) and plot data."""

    metrics: dict[str, float]
    report: dict[str, Any]
    curves: dict[str, Any] = field(default_factory=dict)


def probability_bins(probability: np.ndarray, bins: int = 10) -> list[np.ndarray]:
    """Row masks of equal-width probability bins, lowest first."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probability, edges[1:-1]), 0, bins - 1)
    return [which == b for b in range(bins)]


def expected_calibration_error(label: np.ndarray, probability: np.ndarray, bins: int = 10) -> float:
    """Weighted mean |observed rate − mean probability| over equal-width probability bins."""
    error = 0.0
    for mask in probability_bins(probability, bins):
        if mask.any():
            error += mask.mean() * abs(label[mask].mean() - probability[mask].mean())
    return float(error)


def recall_at_budget(label: np.ndarray, score: np.ndarray, budget: float) -> float:
    """Share of true leads among the top ``budget`` share of cases by score (ties at random)."""
    k = max(1, round(budget * len(label)))
    order = np.lexsort((np.random.default_rng(0).random(len(score)), -score))
    return float(label[order[:k]].sum() / max(label.sum(), 1))


def rule_screen(
    history: pd.DataFrame, base: np.ndarray, constants: RuleConstants | None = None
) -> dict[str, np.ndarray]:
    """The fixed filters offices use today, one per lead kind (1 = flagged)."""
    columns = columns_from_frame(history)
    harm = history["harm_outcome"].to_numpy(dtype=object)
    offender = history["offender_status"].to_numpy(dtype=object)
    income = history["monthly_household_income_yuan"].to_numpy(dtype=float)
    size = np.nan_to_num(history["household_size"].to_numpy(dtype=float), nan=1.0)
    low_status = np.isin(history["low_income_status"].to_numpy(dtype=object), LOW_INCOME_RECOGNISED)
    with np.errstate(invalid="ignore"):
        share = (constants or RuleConstants()).hardship_income_share
        low_income = low_status | (income / size < share * base)
    severe = np.isin(harm, ("death", "severe_injury"))
    uncompensated = np.isin(offender, NO_COMPENSATION_OBTAINABLE) | (
        compensation_in_hand(columns) == 0
    )
    age = history["victim_age"].to_numpy(dtype=float)
    crime = history["crime_type"].to_numpy(dtype=object)
    return {
        "judicial_aid": (severe & uncompensated & low_income).astype(float),
        "social_assistance": low_status.astype(float),
        "civil_support": (
            (offender == "able_to_pay")
            & (np.isin(crime, ("wage_arrears", "abuse_abandonment")) | (age < 18) | (age >= 65))
        ).astype(float),
    }


def _amount_frame(bundle: ModelBundle, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    matrix = bundle.vectorizer.transform(frame)
    base = matrix[:, bundle.feature_names.index("base_monthly_wage")]
    return matrix, base


def amount_baselines(
    bundle: ModelBundle, train: pd.DataFrame, holdout: pd.DataFrame
) -> dict[str, np.ndarray]:
    """Predictions in months of three baselines for the holdout's rows, fitted on train."""
    train = train[train["aid_granted"] == 1.0]
    train_matrix, train_base = _amount_frame(bundle, train)
    months = train["aid_amount_yuan"].to_numpy(dtype=float) / train_base
    hold_matrix, _ = _amount_frame(bundle, holdout)
    overall = float(np.median(months))
    by_harm = pd.Series(months).groupby(train["harm_outcome"].to_numpy()).median()
    flat = holdout["harm_outcome"].map(by_harm).fillna(overall).to_numpy(dtype=float)
    keys = ["crime_type", "harm_outcome"]
    grouped = pd.Series(months, index=pd.MultiIndex.from_frame(train[keys])).groupby(level=[0, 1])
    clerk_table = grouped.median()
    hold_keys = pd.MultiIndex.from_frame(holdout[keys])
    clerk = clerk_table.reindex(hold_keys).to_numpy(dtype=float)
    clerk = np.where(np.isnan(clerk), flat, clerk)
    features = list(bundle.amount.features)
    categorical = [i for i, f in enumerate(features) if f in CATEGORICAL_FIELDS]
    numeric = [i for i in range(len(features)) if i not in categorical]
    linear = make_pipeline(
        ColumnTransformer(
            [
                (
                    "numeric",
                    make_pipeline(
                        SimpleImputer(strategy="median", add_indicator=True), StandardScaler()
                    ),
                    numeric,
                ),
                (
                    "categorical",
                    make_pipeline(
                        SimpleImputer(strategy="constant", fill_value=-1),
                        OneHotEncoder(handle_unknown="ignore"),
                    ),
                    categorical,
                ),
            ]
        ),
        Ridge(alpha=1.0),
    )
    x_train = train_matrix[:, bundle.amount.columns]
    linear.fit(x_train, np.log(months))
    linear_months = np.exp(linear.predict(hold_matrix[:, bundle.amount.columns]))
    return {"flat_rule": flat, "similar_cases_median": clerk, "linear": linear_months}


def evaluate_amount(
    bundle: ModelBundle,
    scores: Scores,
    holdout: pd.DataFrame,
    baselines: dict[str, np.ndarray] | None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Amount metrics on the holdout's granted cases (yuan and months)."""
    granted = holdout["aid_granted"].to_numpy(dtype=float) == 1.0
    actual = holdout["aid_amount_yuan"].to_numpy(dtype=float)[granted]
    base = scores.base_monthly_wage[granted]
    predicted = scores.reference_amount_yuan[granted]
    low, high = scores.interval_low_yuan[granted], scores.interval_high_yuan[granted]
    metrics = {
        "amount_mae_yuan": float(np.mean(np.abs(predicted - actual))),
        "amount_rmse_yuan": float(np.sqrt(np.mean((predicted - actual) ** 2))),
        "amount_mae_months": float(np.mean(np.abs(predicted - actual) / base)),
        "amount_rmse_months": float(np.sqrt(np.mean(((predicted - actual) / base) ** 2))),
        "amount_interval_coverage": float(np.mean((actual >= low) & (actual <= high))),
        "amount_interval_mean_width_yuan": float(np.mean(high - low)),
        "amount_interval_median_width_months": float(np.median((high - low) / base)),
        "amount_holdout_cases": float(granted.sum()),
    }
    detail: dict[str, Any] = {}
    # the oracle that knows each province's own practice shows what one national standard costs
    for column, key in (
        (bundle.config.amount.oracle, "oracle"),
        ("oracle_amount_months_local", "oracle_with_local_practice"),
    ):
        if column in holdout.columns:
            oracle = holdout[column].to_numpy(dtype=float)[granted] * base
            metrics[f"amount_{key}_mae_yuan"] = float(np.mean(np.abs(oracle - actual)))
    if "amount_oracle_mae_yuan" in metrics:
        metrics["amount_mae_ratio_to_oracle"] = (
            metrics["amount_mae_yuan"] / metrics["amount_oracle_mae_yuan"]
        )
    for name, months in (baselines or {}).items():
        guess = np.minimum(months[granted], scores.ceiling_yuan[granted] / base) * base
        metrics[f"amount_baseline_{name}_mae_yuan"] = float(np.mean(np.abs(guess - actual)))
    sample = np.random.default_rng(0).permutation(len(actual))[:4000]
    detail["predicted_vs_actual"] = {
        "predicted_yuan": predicted[sample].round(0).tolist(),
        "actual_yuan": actual[sample].round(0).tolist(),
    }
    return metrics, detail


def evaluate_leads(
    bundle: ModelBundle, scores: Scores, holdout: pd.DataFrame
) -> tuple[dict[str, float], dict[str, Any]]:
    """Discrimination, calibration (raw and calibrated) and recall at a review budget."""
    metrics: dict[str, float] = {}
    curves: dict[str, Any] = {}
    screens = rule_screen(holdout, scores.base_monthly_wage, bundle.vectorizer.rule_constants)
    for name, lead in bundle.leads.items():
        target = bundle.config.targets[name]
        label = holdout[target.label].to_numpy(dtype=float)
        calibrated = scores.lead_probability[name]
        raw = lead.raw_probability(scores.matrix)
        metrics[f"{name}_auc"] = float(roc_auc_score(label, calibrated))
        metrics[f"{name}_auc_raw"] = float(roc_auc_score(label, raw))
        metrics[f"{name}_pr_auc"] = float(average_precision_score(label, calibrated))
        metrics[f"{name}_brier"] = float(brier_score_loss(label, calibrated))
        metrics[f"{name}_brier_raw"] = float(brier_score_loss(label, raw))
        metrics[f"{name}_ece"] = expected_calibration_error(label, calibrated)
        metrics[f"{name}_ece_raw"] = expected_calibration_error(label, raw)
        metrics[f"{name}_base_rate"] = float(label.mean())
        oracle = holdout[target.oracle].to_numpy(dtype=float) if target.oracle in holdout else None
        if oracle is not None:
            metrics[f"{name}_oracle_auc"] = float(roc_auc_score(label, oracle))
        for budget in REVIEW_BUDGETS:
            pct = int(budget * 100)
            metrics[f"{name}_recall_top{pct}"] = recall_at_budget(label, calibrated, budget)
            metrics[f"{name}_rule_screen_recall_top{pct}"] = recall_at_budget(
                label, screens[name], budget
            )
            if oracle is not None:
                metrics[f"{name}_oracle_recall_top{pct}"] = recall_at_budget(label, oracle, budget)
        screen = screens[name] == 1.0
        metrics[f"{name}_rule_screen_share"] = float(screen.mean())
        metrics[f"{name}_rule_screen_recall"] = float(label[screen].sum() / max(label.sum(), 1))
        curves[name] = {
            "raw": _reliability(label, raw),
            "calibrated": _reliability(label, calibrated),
        }
    return metrics, curves


def _reliability(label: np.ndarray, probability: np.ndarray, bins: int = 10) -> dict[str, list]:
    mean_p, observed, count = [], [], []
    for mask in probability_bins(probability, bins):
        if mask.sum() >= 20:
            mean_p.append(float(probability[mask].mean()))
            observed.append(float(label[mask].mean()))
            count.append(int(mask.sum()))
    return {"mean_probability": mean_p, "observed_rate": observed, "count": count}


def evaluate_fairness(
    bundle: ModelBundle, scores: Scores, holdout: pd.DataFrame
) -> tuple[dict[str, float], dict[str, Any]]:
    """Sex never moves the amount; how actual amounts deviate from the reference by province."""
    flipped = holdout.copy()
    flipped["victim_sex"] = np.where(holdout["victim_sex"] == "male", "female", "male")
    other = bundle.score(flipped)
    difference = other.reference_amount_yuan - scores.reference_amount_yuan
    metrics = {
        "fairness_sex_flip_mean_abs_diff_yuan": float(np.mean(np.abs(difference))),
        "fairness_sex_flip_max_abs_diff_yuan": float(np.max(np.abs(difference))),
    }
    granted = holdout["aid_granted"].to_numpy(dtype=float) == 1.0
    ratio = holdout["aid_amount_yuan"].to_numpy(dtype=float)[granted] / np.maximum(
        scores.reference_amount_yuan[granted], 1.0
    )
    table = (
        pd.DataFrame(
            {
                "province_code": holdout["province_code"].to_numpy()[granted],
                "log_ratio": np.log(ratio),
            }
        )
        .groupby("province_code")["log_ratio"]
        .agg(["count", "mean", "median"])
    )
    by_province = {
        str(code): {
            "cases": int(row["count"]),
            "mean_deviation": float(np.exp(row["mean"]) - 1),
            "median_deviation": float(np.exp(row["median"]) - 1),
        }
        for code, row in table.iterrows()
    }
    metrics["deviation_by_province_spread"] = (
        float(np.exp(table["median"].max()) - np.exp(table["median"].min())) if len(table) else 0.0
    )
    return metrics, {"deviation_by_province": by_province}


def _group_figures(
    mask: np.ndarray,
    holdout: pd.DataFrame,
    scores: Scores,
    label: np.ndarray,
    probability: np.ndarray,
    oracle_p: np.ndarray | None,
    threshold: float,
    oracle_months: np.ndarray | None,
) -> dict[str, float]:
    """Lead recall at the threshold, amount MAE and ratios to the oracle on ``mask``'s rows."""
    aided = mask & (label == 1.0)
    figures = {"cases": float(mask.sum()), "aided": float(aided.sum())}
    if not aided.any():
        return figures
    figures["lead_recall"] = float(np.mean(probability[aided] >= threshold))
    if oracle_p is not None:
        figures["oracle_lead_recall"] = float(np.mean(oracle_p[aided] >= threshold))
    granted = mask & (holdout["aid_granted"].to_numpy(dtype=float) == 1.0)
    if not granted.any():
        return figures
    actual = holdout["aid_amount_yuan"].to_numpy(dtype=float)[granted]
    predicted = scores.reference_amount_yuan[granted]
    figures["amount_mae_yuan"] = float(np.mean(np.abs(predicted - actual)))
    if oracle_months is not None:
        oracle = oracle_months[granted] * scores.base_monthly_wage[granted]
        oracle_mae = float(np.mean(np.abs(oracle - actual)))
        figures["amount_mae_ratio_to_oracle"] = figures["amount_mae_yuan"] / max(oracle_mae, 1.0)
        figures["amount_median_ratio_to_oracle"] = float(
            np.median(predicted / np.maximum(oracle, 1.0))
        )
    return figures


def served_worse(figures: dict[str, float], overall: dict[str, float]) -> list[str]:
    """Why a group is served markedly worse than the holdout overall (empty: it is not)."""
    if figures.get("aided", 0.0) < GROUP_MIN_AIDED:
        return []
    reasons = []
    if {"lead_recall", "oracle_lead_recall"} <= figures.keys() and "lead_recall" in overall:
        gap = figures["oracle_lead_recall"] - figures["lead_recall"]
        overall_gap = overall.get("oracle_lead_recall", 0.0) - overall.get("lead_recall", 0.0)
        if gap - overall_gap > GROUP_RECALL_SHORTFALL:
            reasons.append(
                f"lead recall {figures['lead_recall']:.3f} vs the oracle's "
                f"{figures['oracle_lead_recall']:.3f} (overall gap {overall_gap:.3f})"
            )
    ratio = figures.get("amount_mae_ratio_to_oracle")
    if ratio is not None and ratio - overall.get("amount_mae_ratio_to_oracle", ratio) > (
        GROUP_MAE_RATIO_EXCESS
    ):
        reasons.append(
            f"amount MAE ratio to the oracle {ratio:.3f} "
            f"(overall {overall['amount_mae_ratio_to_oracle']:.3f})"
        )
    median = figures.get("amount_median_ratio_to_oracle")
    low, high = GROUP_MEDIAN_RATIO_BAND
    if median is not None and not low <= median <= high:
        reasons.append(f"median reference amount {median:.3f} × the oracle's")
    return reasons


def evaluate_groups(
    bundle: ModelBundle, scores: Scores, holdout: pd.DataFrame
) -> tuple[dict[str, float], dict[str, Any]]:
    """The per-group figures beside the overall; a warning for a group served markedly worse.

    Lead recall is the share of the group's granted cases whose calibrated judicial-aid
    probability reaches the flagging threshold (and the same for the oracle's probability);
    the amount's MAE and its ratios to the oracle are on the group's granted cases.
    """
    if GROUP_LEAD not in bundle.leads:
        return {}, {}
    target = bundle.config.targets[GROUP_LEAD]
    label = holdout[target.label].to_numpy(dtype=float)
    probability = scores.lead_probability[GROUP_LEAD]
    oracle_p = holdout[target.oracle].to_numpy(dtype=float) if target.oracle in holdout else None
    amount_oracle = bundle.config.amount.oracle
    oracle_months = (
        holdout[amount_oracle].to_numpy(dtype=float) if amount_oracle in holdout else None
    )
    threshold = bundle.lead_thresholds[GROUP_LEAD]

    def figures(mask: np.ndarray) -> dict[str, float]:
        return _group_figures(
            mask, holdout, scores, label, probability, oracle_p, threshold, oracle_months
        )

    overall = figures(np.ones(len(holdout), dtype=bool))
    report: dict[str, Any] = {
        "flag_threshold": threshold,
        "all": {"zh": "全部", **overall, "served_worse": []},
    }
    metrics = {metric_name("all", k): v for k, v in overall.items()}
    for group in GROUPS:
        found = figures(np.asarray(group.members(holdout), dtype=bool))
        reasons = served_worse(found, overall)
        report[group.id] = {"zh": group.zh, **found, "served_worse": reasons}
        metrics |= {metric_name(group.id, k): v for k, v in found.items()}
        if reasons:
            log.warning(
                "group %s (%s) is served markedly worse than the holdout overall: %s",
                group.id,
                group.zh,
                "; ".join(reasons),
            )
    return metrics, report


def mean_abs_contributions(bundle: ModelBundle, frame: pd.DataFrame, rows: int = 2000) -> dict:
    """The features' mean absolute TreeSHAP contributions (months for the amount, log-odds)."""
    sample = frame.sample(min(rows, len(frame)), random_state=0)
    matrix = bundle.vectorizer.transform(sample)
    out = {}
    for target in bundle.targets:
        found = bundle.contributions(target, matrix)
        means = np.abs(found.values).mean(axis=0).tolist()
        out[target] = dict(zip(found.features, means, strict=True))
    return out


def evaluate_bundle(
    bundle: ModelBundle,
    holdout: pd.DataFrame,
    train: pd.DataFrame | None = None,
) -> Evaluation:
    """The full evaluation; baselines need the training part, the gate only the holdout."""
    holdout = holdout.reset_index(drop=True)
    scores = bundle.score(holdout)
    baselines = amount_baselines(bundle, train, holdout) if train is not None else None
    amount_metrics, amount_detail = evaluate_amount(bundle, scores, holdout, baselines)
    lead_metrics, curves = evaluate_leads(bundle, scores, holdout)
    fairness_metrics, fairness_detail = evaluate_fairness(bundle, scores, holdout)
    group_metrics, groups = evaluate_groups(bundle, scores, holdout)
    metrics = {**amount_metrics, **lead_metrics, **fairness_metrics, **group_metrics}
    report = {
        "holdout_rows": len(holdout),
        "metrics": metrics,
        "groups": groups,
        "fairness": fairness_detail,
        "mean_abs_contributions": mean_abs_contributions(bundle, holdout),
    }
    return Evaluation(metrics, report, {"calibration": curves, **amount_detail})


def write_plots(evaluation: Evaluation, folder: Path) -> list[Path]:
    """The report's pictures as PNG files: calibration, predicted vs actual, contributions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    calibration = evaluation.curves.get("calibration", {})
    fig, axes = plt.subplots(
        1, max(1, len(calibration)), figsize=(5 * max(1, len(calibration)), 4.5)
    )
    for ax, (name, curve) in zip(np.atleast_1d(axes), calibration.items(), strict=False):
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
        for kind, style in (("raw", "--"), ("calibrated", "-")):
            c = curve[kind]
            ece = evaluation.metrics.get(f"{name}_ece" + ("_raw" if kind == "raw" else ""), 0)
            ax.plot(
                c["mean_probability"],
                c["observed_rate"],
                style,
                marker="o",
                label=f"{kind} (ECE {ece:.3f})",
            )
        ax.set(
            title=f"{name}: calibration on holdout",
            xlabel="predicted probability",
            ylabel="observed rate",
            xlim=(0, 1),
            ylim=(0, 1),
        )
        ax.legend()
    fig.tight_layout()
    written.append(folder / "calibration.png")
    fig.savefig(written[-1], dpi=90)
    plt.close(fig)

    pairs = evaluation.curves.get("predicted_vs_actual")
    if pairs:
        fig, ax = plt.subplots(figsize=(5.5, 5))
        ax.loglog(pairs["actual_yuan"], pairs["predicted_yuan"], ".", alpha=0.25, markersize=3)
        lo = max(50.0, min(pairs["actual_yuan"]))
        hi = max(pairs["actual_yuan"])
        ax.plot([lo, hi], [lo, hi], color="black", linewidth=1)
        ax.set(
            title="reference amount vs actual (holdout, yuan)",
            xlabel="actual amount",
            ylabel="reference amount",
        )
        fig.tight_layout()
        written.append(folder / "amount_predicted_vs_actual.png")
        fig.savefig(written[-1], dpi=90)
        plt.close(fig)

    contributions = evaluation.report.get("mean_abs_contributions", {})
    if contributions:
        fig, axes = plt.subplots(1, len(contributions), figsize=(5 * len(contributions), 5.5))
        for ax, (name, values) in zip(np.atleast_1d(axes), contributions.items(), strict=False):
            top = sorted(values.items(), key=lambda kv: kv[1])[-12:]
            ax.barh([k for k, _ in top], [v for _, v in top])
            unit = "months" if name == REFERENCE_AMOUNT else "log-odds"
            ax.set(title=f"{name}: mean |contribution| ({unit})")
            ax.tick_params(axis="y", labelsize=7)
        fig.tight_layout()
        written.append(folder / "contributions.png")
        fig.savefig(written[-1], dpi=90)
        plt.close(fig)
    log.info("wrote %d plots to %s", len(written), folder)
    return written
