"""Figures of the fault suite: load held, p99 under 32 clients, faults, tampering, bad inputs.

Run by hand: ``.venv/bin/python bench/bench_faults.py``. It runs the fault suite
(``tests/reliability``) and the tampering and hardening tests (``tests/api/test_audit_cli.py``,
``tests/api/test_hardening.py``) with pytest, reads the figures the suite writes, and
appends them to bench/RESULTS.md with the command and date.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import command, record

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    """Run the suites and append their figures."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "faults.json"
        started = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/reliability",
                "tests/api/test_audit_cli.py",
                "tests/api/test_hardening.py",
            ],
            cwd=ROOT,
            env={**os.environ, "AIDREC_FAULT_REPORT": str(report)},
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
        figures = json.loads(report.read_text()) if report.exists() else {}
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]
    tampering = len(re.findall(r"def test_(a_|an_|removing|the_verdict)", _text("test_audit_cli")))
    lines = [
        f"\n## Fault suite ({dt.date.today().isoformat()})",
        f"Command: `{command()}` (pytest of "
        "tests/reliability, tests/api/test_audit_cli.py, tests/api/test_hardening.py: real "
        f"`aidrec serve` processes on loopback, 2 shared cores); {seconds:.0f} s; pytest: "
        f"`{summary}`; tampering and time-zone cases in test_audit_cli: {tampering}.",
        "",
        "| scenario | figures |",
        "|---|---|",
        *[
            f"| {name} | {json.dumps(value, ensure_ascii=False)} |"
            for name, value in figures.items()
        ],
    ]
    record(lines)
    if done.returncode != 0:
        sys.stdout.write(done.stdout[-3000:])
        raise SystemExit(done.returncode)


def _text(module: str) -> str:
    return (ROOT / "tests" / "api" / f"{module}.py").read_text(encoding="utf-8")


if __name__ == "__main__":
    main()
