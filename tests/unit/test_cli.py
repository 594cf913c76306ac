"""The command line: generate then validate; broken files; unreadable files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from aidrec.cli import app

runner = CliRunner()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_generate_then_validate_passes(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"history{suffix}"
    result = runner.invoke(app, ["generate", "--rows", "800", "--seed", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["validate", str(out)])
    assert result.exit_code == 0, result.output
    assert "all 800 rows valid" in result.output


def test_broken_rows_are_listed_with_row_case_field_and_rule(tmp_path: Path) -> None:
    good = tmp_path / "h.csv"
    runner.invoke(app, ["generate", "--rows", "300", "--seed", "2", "--out", str(good)])
    frame = pd.read_csv(good, dtype=str, keep_default_na=False)
    frame.loc[4, "victim_age"] = "200"
    frame.loc[9, "crime_type"] = "arson"
    frame["operator_note"] = "x"
    bad = tmp_path / "bad.csv"
    frame.to_csv(bad, index=False)
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    case5, case10 = frame.loc[4, "case_id"], frame.loc[9, "case_id"]
    assert f"row 5 (case_id '{case5}'): victim_age: '200' is above 120" in result.output
    assert f"row 10 (case_id '{case10}'): crime_type: 'arson' is not allowed" in result.output
    assert "warning: unknown column 'operator_note'" in result.output
    assert "2 of 300 rows invalid" in result.output


def test_long_reports_are_capped(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    runner.invoke(app, ["generate", "--rows", "200", "--seed", "2", "--out", str(path)])
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame["victim_age"] = "-1"
    frame.to_csv(path, index=False)
    result = runner.invoke(app, ["validate", str(path), "--limit", "5"])
    assert result.exit_code == 1
    assert "... and 195 more" in result.output
    assert result.output.count("victim_age") == 5


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("notes.txt", "hello", "not a CSV or Parquet file"),
        ("empty.csv", "", "the file is empty"),
        ("broken.parquet", "not parquet", "cannot be read as PARQUET"),
        ("header.csv", "case_id,province_code\n", "the file has no rows"),
        ("nocols.csv", "case_id\nA1\n", "missing required column(s): province_code"),
    ],
)
def test_unusable_files_get_one_clear_message(
    tmp_path: Path, name: str, content: str, words: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert words in result.output
    assert "Traceback" not in result.output


def test_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.csv")])
    assert result.exit_code == 2 and "no such file" in result.output
