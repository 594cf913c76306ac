"""Benchmark (#12, #11): each model shape beside the shipped one, quality and cost.

Run by hand: ``.venv/bin/python bench/bench_shapes.py [--rows 200000] [--seeds 2026,2027]``.
Trains the whole bundle once per shape and seed on the same generated histories
(``train_bundle``, no MLflow), then measures on the holdout year, averaged over the seeds (one
seed's holdout differs from another's by more than most shapes differ): the amount MAE
(granted cases, yuan) relative to the first shape (the one before #11's shapes), the amount MAE's
ratio to the oracle and the judicial-aid AUC's gap to the oracle (issue #11's figures), each
lead's AUC beside the first shape's, the trees of all models, one record explained (every
model's TreeSHAP, median of 300 calls) and scores alone over the holdout (cases/s).
A shape is acceptable when the MAE is at most 0.5 % worse and no lead's AUC is more than
0.002 lower (issue #12). Appends the table, with the command and date, to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import statistics
import sys
import time
from typing import Any

import numpy as np
from results import command, record
from sklearn.metrics import roc_auc_score

from features.contract import parse_records
from features.synthetic import generate_history
from features.vectors import columns_from_frame
from training.config import TrainingConfig, load_config
from training.evaluate import evaluate_bundle
from training.train import train_bundle

NO_MONOTONE_SHAPES = {"monotone_shapes": False}
SHAPES: dict[str, dict[str, Any]] = {
    "before #11 (15 leaves, depth 5, no monotone shapes)": {
        "num_leaves": 15,
        "max_depth": 5,
        **NO_MONOTONE_SHAPES,
    },
    "shipped (3 leaves, depth 2, monotone shapes)": {},
    "7 leaves, depth 3, monotone shapes": {"num_leaves": 7, "max_depth": 3},
    "15 leaves, depth 5, monotone shapes": {"num_leaves": 15, "max_depth": 5},
    "3 leaves, depth 2, no monotone shapes": NO_MONOTONE_SHAPES,
}
MAE_TOLERANCE = 0.005
AUC_TOLERANCE = 0.002


def shaped(config: TrainingConfig, change: dict[str, Any]) -> TrainingConfig:
    """The config with every target's LightGBM parameters changed alike.

    ``monotone_shapes: False`` in the change drops the amount's monotone shapes.
    """
    params = {k: v for k, v in change.items() if k != "monotone_shapes"}
    keep_shapes = change.get("monotone_shapes", True)
    targets = {
        name: dataclasses.replace(
            target,
            params={**target.params, **params},
            shapes=target.shapes if keep_shapes else {},
        )
        for name, target in config.targets.items()
    }
    return dataclasses.replace(config, targets=targets)


def _median_seconds(work: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(history: Any, config: TrainingConfig) -> dict[str, Any]:
    """Train one shape and measure it on the holdout."""
    bundle, split = train_bundle(history, config)
    holdout = history.loc[split.holdout].reset_index(drop=True)
    columns = columns_from_frame(parse_records(holdout).frame)
    scores = bundle.score_columns(columns)
    granted = holdout["aid_granted"].to_numpy() == 1.0
    mae = float(
        np.mean(
            np.abs(
                scores.reference_amount_yuan[granted]
                - holdout["aid_amount_yuan"].to_numpy(dtype=float)[granted]
            )
        )
    )
    labels = {lead.name: holdout[lead.label].to_numpy(dtype=float) == 1.0 for lead in config.leads}
    aucs = {
        name: float(roc_auc_score(label, scores.lead_probability[name]))
        for name, label in labels.items()
    }
    metrics = evaluate_bundle(bundle, holdout).metrics
    one = {name: values[:1] for name, values in columns.items()}
    bundle.explained(one)
    explain_ms = 1000 * _median_seconds(lambda: bundle.explained(one), 300)
    score_s = _median_seconds(lambda: bundle.score_columns(columns), 3)
    return {
        "mae": mae,
        "aucs": aucs,
        "ratio_to_oracle": metrics["amount_mae_ratio_to_oracle"],
        "oracle_gap": metrics["judicial_aid_oracle_auc"] - metrics["judicial_aid_auc"],
        "trees": sum(bundle.metadata["best_iterations"].values()),
        "explain_ms": explain_ms,
        "scores_per_s": len(holdout) / score_s,
    }


def _mean(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One shape's figures averaged over the seeds (speeds from the first seed's run)."""
    first = runs[0]
    return {
        **first,
        "mae": statistics.mean(run["mae"] for run in runs),
        "aucs": {
            lead: statistics.mean(run["aucs"][lead] for run in runs) for lead in first["aucs"]
        },
        "ratio_to_oracle": statistics.mean(run["ratio_to_oracle"] for run in runs),
        "oracle_gap": statistics.mean(run["oracle_gap"] for run in runs),
        "trees": statistics.mean(run["trees"] for run in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seeds", default="2026", help="comma-separated history seeds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    config = load_config()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in SHAPES}
    for seed in seeds:
        history = generate_history(args.rows, seed=seed)
        for name, change in SHAPES.items():
            runs[name].append(measure(history, shaped(config, change)))
    results = {name: _mean(found) for name, found in runs.items()}
    base = next(iter(results.values()))
    leads = list(base["aucs"])
    header = (
        "| shape | trees | amount MAE vs first | MAE ratio to oracle | judicial-aid AUC gap "
        "to oracle | "
        + " | ".join(f"{name} AUC (Δ)" for name in leads)
        + " | one record explained, ms | scores/s | acceptable |"
    )
    lines = [header, "|" + "---|" * (8 + len(leads))]
    for name, result in results.items():
        worse_mae = result["mae"] / base["mae"] - 1
        deltas = {lead: result["aucs"][lead] - base["aucs"][lead] for lead in leads}
        acceptable = worse_mae <= MAE_TOLERANCE and min(deltas.values()) >= -AUC_TOLERANCE
        cells = " | ".join(f"{result['aucs'][lead]:.4f} ({deltas[lead]:+.4f})" for lead in leads)
        lines.append(
            f"| {name} | {result['trees']:.0f} | {worse_mae:+.2%} | "
            f"{result['ratio_to_oracle']:.4f} | {result['oracle_gap']:.4f} | {cells} | "
            f"{result['explain_ms']:.2f} | {result['scores_per_s']:,.0f} | "
            f"{'yes' if acceptable else 'no'} |"
        )
        sys.stdout.write(lines[-1] + "\n")
    record(
        [
            f"\n## Tree shapes (#12, #11) ({dt.date.today().isoformat()})",
            f"Command: `{command()}`; {args.rows:,} generated cases per seed (seeds "
            f"{args.seeds}), one training per shape and seed, figures averaged over the seeds "
            "(speeds from the first seed's run); acceptable = amount MAE at most "
            f"{MAE_TOLERANCE:.1%} worse and no lead AUC more than {AUC_TOLERANCE} lower.",
            "",
            *lines,
        ]
    )


if __name__ == "__main__":
    main()
