"""Benchmark (#12): cheaper trees where quality allows — each model shape beside the shipped one.

Run by hand: ``.venv/bin/python bench/bench_shapes.py [--rows 200000]``. Trains the whole
bundle once per shape on the same generated history (``train_bundle``, no MLflow), then
measures on the holdout year: the amount MAE (granted cases, yuan) relative to the shipped
shape, each lead's AUC beside the shipped one, the trees of all models, one record explained
(every model's TreeSHAP, median of 300 calls) and scores alone over the holdout (cases/s).
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
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from features.contract import parse_records
from features.synthetic import generate_history
from features.vectors import columns_from_frame
from training.config import TrainingConfig, load_config
from training.train import train_bundle

SHAPES: dict[str, dict[str, Any]] = {
    "shipped (31 leaves, depth 6, lr 0.05)": {},
    "15 leaves, depth 5": {"num_leaves": 15, "max_depth": 5},
    "15 leaves, depth 4": {"num_leaves": 15, "max_depth": 4},
    "7 leaves, depth 3": {"num_leaves": 7, "max_depth": 3},
    "31 leaves, depth 6, lr 0.1": {"learning_rate": 0.1},
    "15 leaves, depth 5, lr 0.1": {"num_leaves": 15, "max_depth": 5, "learning_rate": 0.1},
}
MAE_TOLERANCE = 0.005
AUC_TOLERANCE = 0.002


def shaped(config: TrainingConfig, change: dict[str, Any]) -> TrainingConfig:
    """The config with every target's LightGBM parameters changed alike."""
    targets = {
        name: dataclasses.replace(target, params={**target.params, **change})
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
    one = {name: values[:1] for name, values in columns.items()}
    bundle.explained(one)
    explain_ms = 1000 * _median_seconds(lambda: bundle.explained(one), 300)
    score_s = _median_seconds(lambda: bundle.score_columns(columns), 3)
    return {
        "mae": mae,
        "aucs": aucs,
        "trees": sum(bundle.metadata["best_iterations"].values()),
        "explain_ms": explain_ms,
        "scores_per_s": len(holdout) / score_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    history = generate_history(args.rows, seed=args.seed)
    config = load_config()
    results = {name: measure(history, shaped(config, change)) for name, change in SHAPES.items()}
    base = next(iter(results.values()))
    leads = list(base["aucs"])
    header = (
        "| shape | trees | amount MAE vs shipped | "
        + " | ".join(f"{name} AUC (Δ)" for name in leads)
        + " | one record explained, ms | scores/s | acceptable |"
    )
    lines = [header, "|" + "---|" * (6 + len(leads))]
    for name, result in results.items():
        worse_mae = result["mae"] / base["mae"] - 1
        deltas = {lead: result["aucs"][lead] - base["aucs"][lead] for lead in leads}
        acceptable = worse_mae <= MAE_TOLERANCE and min(deltas.values()) >= -AUC_TOLERANCE
        cells = " | ".join(f"{result['aucs'][lead]:.4f} ({deltas[lead]:+.4f})" for lead in leads)
        lines.append(
            f"| {name} | {result['trees']} | {worse_mae:+.2%} | {cells} | "
            f"{result['explain_ms']:.2f} | {result['scores_per_s']:,.0f} | "
            f"{'yes' if acceptable else 'no'} |"
        )
        sys.stdout.write(lines[-1] + "\n")
    command = " ".join([Path(sys.executable).name, *sys.argv])
    text = "\n".join(
        [
            f"\n## Tree shapes (#12) ({dt.date.today().isoformat()})",
            f"Command: `{command}`; {args.rows:,} generated cases (seed {args.seed}), one "
            "training per shape, the same holdout year; acceptable = amount MAE at most "
            f"{MAE_TOLERANCE:.1%} worse and no lead AUC more than {AUC_TOLERANCE} lower.",
            "",
            *lines,
        ]
    )
    with Path(__file__).with_name("RESULTS.md").open("a") as handle:
        handle.write(text + "\n")


if __name__ == "__main__":
    main()
