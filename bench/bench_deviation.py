"""Benchmark: the deviation report over a large history (seconds and peak memory).

Run by hand: ``.venv/bin/python bench/bench_deviation.py [--rows 1000000] [--data-dir DIR]``.
Prepares once, in DIR: a champion trained on ``--train-rows`` generated cases, and a generated
history of ``--rows`` cases (Parquet). Then runs ``aidrec report deviation`` over the history
as a process of its own under ``/usr/bin/time`` (wall seconds, peak resident memory), for each
``--group-by``; appends a table with the command, the date and the machine's load to
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from results import record

BIN = Path(sys.executable).parent
AIDREC = str(BIN / "aidrec")


def _run(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


def prepare(data_dir: Path, rows: int, train_rows: int, env: dict[str, str]) -> Path:
    """A champion and the history to report on (each made once)."""
    training = data_dir / "train.parquet"
    if not (data_dir / "mlflow.db").exists():
        _run(
            [
                AIDREC,
                "generate",
                "--rows",
                str(train_rows),
                "--seed",
                "2026",
                "--out",
                str(training),
            ],
            env,
        )
        _run([AIDREC, "train", "--data", str(training)], env)
        _run([AIDREC, "promote", "--data", str(training)], env)
    history = data_dir / f"history_{rows}.parquet"
    if not history.exists():
        _run([AIDREC, "generate", "--rows", str(rows), "--seed", "7", "--out", str(history)], env)
    return history


def measure(
    history: Path, group_by: str, out: Path, env: dict[str, str]
) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB, and the command's summary line."""
    command = [
        "/usr/bin/time",
        "-f",
        "TIME %e %M",
        AIDREC,
        "report",
        "deviation",
        "--data",
        str(history),
        "--out",
        str(out),
        "--group-by",
        group_by,
    ]
    output = _run(command, env)
    line = next(x for x in output.splitlines() if x.startswith("TIME "))
    _, seconds, kilobytes = line.split()
    summary = next(x for x in output.splitlines() if " decisions by " in x)
    return float(seconds), float(kilobytes) / 1024, summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--train-rows", type=int, default=50_000)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--group-by", nargs="+", default=["office", "province"])
    parser.add_argument("--note", default="", help="what else ran on the machine")
    parser.add_argument(
        "--prepare-only", action="store_true", help="make the data, measure nothing"
    )
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="aidrec-bench-deviation-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "AIDREC_DATA_DIR": str(data_dir),
        "MLFLOW_TRACKING_URI": f"sqlite:///{(data_dir / 'mlflow.db').resolve()}",
    }
    history = prepare(data_dir, args.rows, args.train_rows, env)
    if args.prepare_only:
        return
    load = os.getloadavg()[0]
    rows = []
    for group_by in args.group_by:
        seconds, peak, summary = measure(history, group_by, data_dir / f"report_{group_by}", env)
        rows.append(f"| {group_by} | {seconds:.1f} | {peak:,.0f} | {summary} |")
        sys.stdout.write(rows[-1] + "\n")
    shown = [a for a in sys.argv if a != args.note and a != "--note"]
    command = " ".join(["python", *shown])
    lines = [
        f"\n## Deviation report over a generated history ({dt.date.today().isoformat()})",
        f"Command: `{command}`; {args.rows:,} historical cases (Parquet), champion trained on "
        f"{args.train_rows:,}; `aidrec report deviation` as its own process under "
        f"`/usr/bin/time` (model loading, chunked scoring, figures, similar cases of the "
        f"largest deviations, charts, HTML and CSV); 2-core machine, 1-minute load "
        f"{load:.1f} before the run. {args.note}".rstrip(),
        "",
        "| group by | wall s | peak RSS MB | summary |",
        "|---|---|---|---|",
        *rows,
    ]
    record(lines)


if __name__ == "__main__":
    main()
