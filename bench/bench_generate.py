"""Benchmark: generating (and writing) a synthetic history of 1M rows.

Run by hand: ``.venv/bin/python bench/bench_generate.py [--rows 1000000] [--repeat 3]``.
Appends the medians, with the command and the date, to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

from results import command, record

from features.synthetic import generate_history
from features.tables import write_table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    timings: dict[str, list[float]] = {"generate": [], "write parquet": [], "write csv": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            started = time.perf_counter()
            frame = generate_history(args.rows, seed=i)
            timings["generate"].append(time.perf_counter() - started)
            for fmt in ("parquet", "csv"):
                started = time.perf_counter()
                write_table(frame, Path(tmp) / f"h.{fmt}")
                timings[f"write {fmt}"].append(time.perf_counter() - started)
    lines = [
        f"\n## Synthetic history generation ({dt.date.today().isoformat()})",
        f"Command: `{command()}`; {args.rows:,} rows, "
        f"median of {args.repeat} runs (2-core machine).",
        "",
        "| step | median s | min s | max s |",
        "|---|---|---|---|",
    ]
    for step, values in timings.items():
        lines.append(
            f"| {step} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |"
        )
    total_parquet = statistics.median(
        g + w for g, w in zip(timings["generate"], timings["write parquet"], strict=True)
    )
    total_csv = statistics.median(
        g + w for g, w in zip(timings["generate"], timings["write csv"], strict=True)
    )
    lines.append(f"| generate + write parquet | {total_parquet:.2f} | | |")
    lines.append(f"| generate + write csv | {total_csv:.2f} | | |")
    record(lines)


if __name__ == "__main__":
    main()
