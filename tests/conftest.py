"""Shared fixtures: small seeded histories, made in memory (no network, no shared state)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from features.contract import INPUT_NAMES, wire_value
from features.synthetic import generate_history


@pytest.fixture(scope="session")
def small_history() -> pd.DataFrame:
    """2,000 synthetic cases (canonical frame with outcomes and oracle columns)."""
    return generate_history(2_000, seed=11)


def wire_record(frame: pd.DataFrame, row: int) -> dict[str, Any]:
    """One row of a canonical frame as a JSON-style scoring record (inputs only)."""
    return {name: wire_value(name, frame[name].iloc[row]) for name in INPUT_NAMES if name in frame}


@pytest.fixture
def record(small_history: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """A valid scoring record in wire form."""
    yield wire_record(small_history, 0)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real MLflow registry (SQLite + local artifacts) with version 1 trained and champion.

    Built through the real CLI, as a data team would: generate, train, promote.
    """
    from typer.testing import CliRunner

    from aidrec.cli import app

    folder = tmp_path_factory.mktemp("registry")
    patch = pytest.MonkeyPatch()
    tracking_uri = f"sqlite:///{(folder / 'data' / 'mlflow.db').resolve()}"
    patch.setenv("AIDREC_DATA_DIR", str(folder / "data"))
    patch.setenv("MLFLOW_TRACKING_URI", tracking_uri)  # explicit: mlflow also writes this variable
    history = folder / "history.parquet"
    runner = CliRunner()
    for args in (
        ["generate", "--rows", "12000", "--seed", "31", "--out", str(history)],
        ["train", "--data", str(history)],
        ["promote", "--data", str(history)],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output, result.exception)
    yield {
        "folder": folder,
        "data_dir": folder / "data",
        "history": history,
        "tracking_uri": tracking_uri,
        "runner": runner,
        "app": app,
    }
    patch.undo()
