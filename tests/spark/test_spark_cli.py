"""``aidrec screen --engine spark`` from the command line, as a data team runs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from features.registries import REGISTRY_COLUMNS
from features.synthetic import generate_history
from features.tables import write_table


@pytest.fixture
def screened(
    spark: Any, registry: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """A data dir of its own with imported registries and case cards (the champion shared)."""
    monkeypatch.setenv("AIDREC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AIDREC_PERSON_KEY_SECRET", "spark-cli-test-secret-0123456789")
    runner, app = registry["runner"], registry["app"]
    history = write_table(generate_history(4000, seed=41), tmp_path / "history.parquet")
    cards = tmp_path / "cards.parquet"
    result = runner.invoke(
        app,
        [
            *("generate-registries", "--history", str(history)),
            *("--out-dir", str(tmp_path / "extracts"), "--cards", str(cards), "--import"),
        ],
    )
    assert result.exit_code == 0, result.output
    return {"runner": runner, "app": app, "cards": cards, "folder": tmp_path}


def test_screen_on_spark_writes_registers_and_reruns_idempotently(
    screened: dict[str, Any],
) -> None:
    runner, app, folder = screened["runner"], screened["app"], screened["folder"]
    args = [
        *("screen", "--engine", "spark", "--master", "local[2]"),
        *("--cases", str(screened["cards"]), "--out", str(folder / "out")),
        *("--shuffle-partitions", "4", "--conf", "spark.sql.adaptive.enabled=true"),
    ]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "cards screened on Spark (local[2])" in first.output
    leads = pd.read_parquet(folder / "out" / "leads")
    assert len(leads) > 0 and leads["kind"].str.startswith("department_failure:").any()
    assert (folder / "out" / "leads").is_dir()
    assert any(p.name.startswith("province_code=") for p in (folder / "out" / "leads").iterdir())
    assert f"{len(leads)} created" in first.output
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "0 created" in again.output and f"{len(leads)} unchanged" in again.output


def test_export_and_a_registries_table_with_the_wrong_schema(screened: dict[str, Any]) -> None:
    runner, app, folder = screened["runner"], screened["app"], screened["folder"]
    exported = folder / "registries.parquet"
    result = runner.invoke(app, ["registries", "export", "--out", str(exported)])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(exported)
    assert tuple(table.columns) == REGISTRY_COLUMNS and len(table) > 0
    bad = folder / "bad_registries.parquet"
    table.drop(columns=["valid_from", "status"]).to_parquet(bad)
    refused = runner.invoke(
        app,
        [
            *("screen", "--engine", "spark", "--cases", str(screened["cards"])),
            *("--registries", str(bad), "--out", str(folder / "refused")),
        ],
    )
    assert refused.exit_code == 2
    assert "status, valid_from" in refused.output
    assert not (folder / "refused").exists()  # stopped before any scoring or writing
    wrong = runner.invoke(app, ["screen", "--engine", "spark", "--conf", "nokey", "--cases", "x"])
    assert wrong.exit_code != 0
