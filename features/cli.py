"""Thin commands over the features package: validate a file, generate a history."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import typer

from aidrec.settings import settings_of
from features.contract import ContractError, ParsedRecords, parse_records
from features.synthetic import generate_history
from features.tables import TableError, read_table, write_table
from features.wages import WageTable

log = logging.getLogger(__name__)

MAX_LISTED = 50


def violation_lines(parsed: ParsedRecords, limit: int = MAX_LISTED) -> list[str]:
    """The report a clerk reads: one line per broken rule, capped, then a summary."""
    lines = [f"warning: unknown column {c!r} is ignored" for c in parsed.unknown_columns]
    lines += [v.describe() for v in parsed.violations[:limit]]
    hidden = len(parsed.violations) - limit
    if hidden > 0:
        lines.append(f"... and {hidden} more")
    rows = len(parsed.frame)
    bad = int(parsed.invalid_rows.sum())
    if bad:
        lines.append(
            f"{bad} of {rows} rows invalid ({len(parsed.violations)} problems); "
            f"{rows - bad} rows valid"
        )
    else:
        lines.append(f"all {rows} rows valid")
    return lines


def validate(
    path: Annotated[Path, typer.Argument(help="a CSV or Parquet file of case records")],
    scoring: Annotated[
        bool, typer.Option("--scoring", help="check as scoring input: outcome fields are refused")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, help="list at most this many problems")] = MAX_LISTED,
) -> None:
    """Check every row of a file against the case-record contract (exit 1 if any breaks it)."""
    try:
        parsed = parse_records(read_table(path), scoring=scoring)
    except (TableError, ContractError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for line in violation_lines(parsed, limit):
        typer.echo(line)
    if parsed.violations:
        raise typer.Exit(1)


def parse_years(text: str) -> tuple[int, int]:
    """``2016-2025`` or ``2020`` → (first, last)."""
    try:
        first, _, last = text.partition("-")
        return int(first), int(last or first)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a year range like 2016-2025") from None


def generate(
    ctx: typer.Context,
    rows: Annotated[int, typer.Option(min=1, help="number of cases")],
    out: Annotated[Path, typer.Option(help="output file, .csv or .parquet")],
    seed: Annotated[int, typer.Option(help="random seed; the same seed gives the same file")] = 0,
    years: Annotated[str, typer.Option(help="decision years, e.g. 2016-2025")] = "2016-2025",
    wage_table: Annotated[
        Path | None,
        typer.Option(help="wage table CSV (default: AIDREC_WAGE_TABLE, else the shipped one)"),
    ] = None,
) -> None:
    """Write a synthetic history in the contract's shape, with outcomes and oracle columns."""
    table = wage_table or settings_of(ctx).wage_table
    try:
        first, last = parse_years(years)
        started = time.perf_counter()
        frame = generate_history(rows, seed, (first, last), WageTable.from_csv(table))
        write_table(frame, out)
    except (ValueError, TableError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    log.info("%d cases written to %s in %.1f s", rows, out, time.perf_counter() - started)
