"""Benchmark (#14): the Spark engine on ``local[2]`` beside the local engine, on the same cards.

Run by hand: ``nice .venv/bin/python bench/bench_spark.py [--cards 1000000] [--train-rows 50000]``.
Trains and registers a champion in a temporary data dir (``aidrec run --no-serve``), generates
``--cards`` new cards and their departments' registries, then measures in one run:

- the local engine (``training.screening.screen_file``, no contributions per lead, which is
  the work the Spark engine does) in this process: cards/s;
- the Spark engine (``training.spark_engine.screen_on_spark``, ``local[2]``): the whole run
  (cards/s), and where the time goes — the join alone (Spark SQL join plus the local join's
  functions in ``mapInPandas``), join plus the model's ``spark_udf`` (Arrow serialisation to
  the Python workers and the pyfunc), and the rest (rules, the two writes).

Stages are forced with Spark's ``noop`` sink, so nothing is written but everything computed.
Appends the table, with the command and date, to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import command, record

from features.department_rules import DepartmentRules
from features.registries import DibaoTable, RegistryConfig, registry_table, validate_extract
from features.synthetic import generate_history
from features.synthetic_registries import case_cards, generate_registries, registry_date
from features.tables import write_table
from training.registry import configure_tracking, load_bundle
from training.screening import RegistrySnapshot, Screener, screen_file
from training.spark_engine import (
    JoinContext,
    SparkJob,
    SparkOptions,
    join_on_spark,
    read_source,
    score,
    screen_on_spark,
    spark_for,
)

BIN = Path(sys.executable).parent
URI = "models:/judicial-aid@champion"


def _noop(frame: object) -> float:
    started = time.perf_counter()
    frame.write.format("noop").mode("overwrite").save()  # type: ignore[attr-defined]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cards", type=int, default=1_000_000)
    parser.add_argument("--train-rows", type=int, default=50_000)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    folder = args.data_dir or Path(tempfile.mkdtemp(prefix="aidrec-bench-spark-"))
    env = {**os.environ, "AIDREC_DATA_DIR": str(folder), "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    if not (folder / "mlflow.db").exists():
        subprocess.run(
            [
                str(BIN / "aidrec"),
                "run",
                "--rows",
                str(args.train_rows),
                "--no-serve",
                "--no-screen",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
    configure_tracking(f"sqlite:///{folder / 'mlflow.db'}")
    bundle, info = load_bundle(URI)

    history = generate_history(args.cards, seed=909)
    on = registry_date(history)
    config = RegistryConfig.load()
    rows = {
        kind: validate_extract(frame, config.department(kind), on)
        for kind, frame in generate_registries(history, seed=909).items()
    }
    snapshots = dict.fromkeys(rows, on.isoformat())
    cards = write_table(case_cards(history), folder / "bench_cards.parquet")
    registries = folder / "bench_registries.parquet"
    registry_table(rows, snapshots).to_parquet(registries, index=False)
    del history
    context = JoinContext(config, DibaoTable.from_csv(), DepartmentRules.load())
    rules = DepartmentRules.load()
    results: dict[str, float] = {}

    screener = Screener(
        bundle=bundle,
        registries=RegistrySnapshot(rows, snapshots),
        registry_config=config,
        rules=rules,
        dibao=context.dibao,
        run_id="bench",
        top_reasons=0,
    )
    started = time.perf_counter()
    local = screen_file(screener, cards, 50_000)
    results["local_s"] = time.perf_counter() - started
    results["local_leads"] = local.num_rows

    options = SparkOptions(master="local[2]", shuffle_partitions=8)
    with spark_for(options) as spark:
        frame = read_source(spark, str(cards))
        joined, _ = join_on_spark(frame, read_source(spark, str(registries)), None, context)
        results["spark_join_s"] = _noop(joined)
        results["spark_join_score_s"] = _noop(score(joined, URI, options))
        job = SparkJob(
            str(cards), str(registries), folder / "spark_out", URI, "bench", None, options
        )
        started = time.perf_counter()
        result = screen_on_spark(spark, job, bundle, context)
        results["spark_s"] = time.perf_counter() - started
        results["spark_leads"] = result.leads

    n = args.cards
    score_only = results["spark_join_score_s"] - results["spark_join_s"]
    rest = results["spark_s"] - results["spark_join_score_s"]
    lines = [
        f"\n## Screening on Spark `local[2]` beside the local engine (#14) ({dt.date.today()})",
        f"Command: `{command()}`; {n:,} generated cards "
        f"with their nine departments' registries; champion version {info['version']} trained "
        f"on {args.train_rows:,} cases; both engines in one run on the 2 shared cores; the "
        "local engine without contributions per lead (the Spark engine lists none).",
        "",
        "| measure | seconds | cards/s |",
        "|---|---|---|",
        f"| local engine, whole screening | {results['local_s']:.1f} | "
        f"{n / results['local_s']:,.0f} |",
        f"| Spark, whole screening (join, UDF, rules, leads and errors written) | "
        f"{results['spark_s']:.1f} | {n / results['spark_s']:,.0f} |",
        f"| Spark, the join alone | {results['spark_join_s']:.1f} | |",
        f"| Spark, the model's `spark_udf` (join + score − join) | {score_only:.1f} | |",
        f"| Spark, rules and writes (whole − join + score) | {rest:.1f} | |",
        "",
        f"Leads: local {results['local_leads']:,} rows, Spark {results['spark_leads']:,} "
        "(the local table also holds the refused cards' rows).",
    ]
    record(lines)


if __name__ == "__main__":
    main()
