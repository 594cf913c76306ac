"""Benchmark: training every target (amount median + interval, three leads, index) by size.

Run by hand: ``.venv/bin/python bench/bench_train.py [--sizes 50000 200000 1000000]``.
Times ``train_bundle`` alone (no MLflow logging, no evaluation), plus the holdout figures
of each size; appends a table with the command and date to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time

import numpy as np
from results import command, record
from sklearn.metrics import roc_auc_score

from features.synthetic import generate_history
from training.config import load_config
from training.train import train_bundle


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000, 1_000_000])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = load_config()
    rows = []
    for size in args.sizes:
        history = generate_history(size, seed=2026)
        started = time.perf_counter()
        bundle, split = train_bundle(history, config)
        seconds = time.perf_counter() - started
        holdout = history.loc[split.holdout].reset_index(drop=True)
        scores = bundle.score(holdout)
        granted = holdout["aid_granted"].to_numpy() == 1.0
        actual = holdout["aid_amount_yuan"].to_numpy()[granted]
        mae = np.mean(np.abs(scores.reference_amount_yuan[granted] - actual))
        oracle = np.mean(
            np.abs(
                holdout["oracle_amount_months_national"].to_numpy()[granted]
                * scores.base_monthly_wage[granted]
                - actual
            )
        )
        auc = roc_auc_score(holdout["aid_granted"], scores.lead_probability["judicial_aid"])
        oracle_auc = roc_auc_score(holdout["aid_granted"], holdout["oracle_p_judicial_aid"])
        trees = bundle.metadata["best_iterations"]
        rows.append(
            f"| {size:,} | {seconds:.1f} | {mae / oracle:.3f} | {auc:.4f} | {oracle_auc:.4f} | "
            f"{sum(trees.values())} |"
        )
        sys.stdout.write(rows[-1] + "\n")
    header = "| cases | train s | amount MAE / oracle MAE | judicial-aid AUC | oracle AUC | trees |"
    lines = [
        f"\n## Training time by history size ({dt.date.today().isoformat()})",
        f"Command: `{command()}`; `train_bundle` only (vectorise, amount median + 2 quantiles, "
        "3 leads with calibration, similar-case index); one run per size, 2-core machine. "
        "Quality on each size's holdout year.",
        "",
        header,
        "|---|---|---|---|---|---|",
        *rows,
    ]
    record(lines)


if __name__ == "__main__":
    main()
