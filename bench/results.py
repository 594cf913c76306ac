"""The one way a benchmark records its figures: appended to bench/RESULTS.md and echoed.

Every script in ``bench/`` is run by hand as ``python bench/<script>.py``, so this module is
imported as ``results`` (the script's folder is first on ``sys.path``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = "# Benchmark results\n\nFigures measured by hand; newest last.\n"


def command() -> str:
    """The command line that ran this benchmark, as RESULTS.md quotes it."""
    return " ".join([Path(sys.executable).name, *sys.argv])


def figure_table(figures: Mapping[str, object]) -> list[str]:
    """A two-column markdown table of named figures."""
    return ["| figure | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in figures.items()]]


def record(lines: Sequence[str]) -> None:
    """Append ``lines`` to RESULTS.md (created with its header if missing) and echo them."""
    text = "\n".join(lines) + "\n"
    if not RESULTS.exists():
        RESULTS.write_text(HEADER, encoding="utf-8")
    with RESULTS.open("a", encoding="utf-8") as handle:
        handle.write(text)
    sys.stdout.write(text)
