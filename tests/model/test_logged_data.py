"""Commands that find their own paths: the data a version was trained on, the champion before.

The test starts in an empty directory with the default settings (``data/`` under it), and
trains twice on a small history with few trees, through the real CLI.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from training.config import load_config
from training.registry import DATA_DIGEST_TAG, PREVIOUS_CHAMPION_TAG, file_digest

MODEL = "judicial-aid"
ROWS = "3000"

Invoke = Callable[..., Any]


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Invoke]:
    """The CLI in an empty working directory: no data folder, no registry, no settings."""
    from typer.testing import CliRunner

    from aidrec.cli import app

    for name in ("AIDREC_DATA_DIR", "AIDREC_TRACKING_URI", "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    config = load_config().raw
    config["num_boost_round"] = 40  # few trees: the same config twice gives the same model
    (tmp_path / "fast.yaml").write_text(yaml.safe_dump(config))
    previous_uri, previous_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        if args[0] == "train":
            args = (*args, "--config", "fast.yaml")
        return runner.invoke(app, list(args))

    result = invoke("generate", "--rows", ROWS, "--seed", "5", "--out", "cases.parquet")
    assert result.exit_code == 0, result.output
    yield invoke
    # the session's tracking store and registry again for later tests (the CLI set both)
    mlflow.set_tracking_uri(previous_uri)
    mlflow.set_registry_uri(previous_registry)


def _client() -> MlflowClient:
    mlflow.set_tracking_uri(f"sqlite:///{Path('data/mlflow.db').resolve()}")
    return MlflowClient()


def test_train_then_promote_in_an_empty_directory_and_roll_back(fresh: Invoke) -> None:
    """The first model needs no comparison; the next is compared on its own logged data."""
    assert not Path("data").exists()
    result = fresh("train", "--data", "cases.parquet")
    assert result.exit_code == 0, result.output
    result = fresh("promote")
    assert result.exit_code == 0, result.output
    assert "version 1 promoted" in result.output and "without an evaluation" in result.output

    client = _client()
    version = client.get_model_version_by_alias(MODEL, "champion")
    assert str(version.version) == "1"
    assert version.tags["promotion_decision"] == "promoted"
    assert PREVIOUS_CHAMPION_TAG not in version.tags
    run = client.get_run(str(version.run_id))
    recorded = json.loads(version.tags["promotion_metrics"])
    assert recorded["champion"] is None
    assert recorded["challenger"]["amount_mae_yuan"] == run.data.metrics["amount_mae_yuan"]
    (logged,) = run.inputs.dataset_inputs
    source = Path("cases.parquet").resolve()
    assert json.loads(logged.dataset.source) == {"uri": str(source)}
    assert logged.dataset.source_type == "local"
    assert {t.key: t.value for t in logged.tags}["mlflow.data.context"] == "training"
    assert run.data.tags[DATA_DIGEST_TAG] == file_digest(source)
    assert file_digest(source).startswith(logged.dataset.digest)

    result = fresh("evaluate")  # on the champion's own training data
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["model"]["version"] == "1"
    assert report["metrics"]["amount_mae_yuan"] == pytest.approx(
        run.data.metrics["amount_mae_yuan"]
    )

    pd.read_parquet("cases.parquet").head(5).to_csv("few.csv", index=False)
    result = fresh("score-file", "--input", "few.csv")
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv("few.scores.csv")) == 5

    # no champion before version 1: nothing to roll back to
    result = fresh("rollback")
    assert result.exit_code == 2
    assert "version 1" in result.output and "replaced no earlier champion" in result.output
    assert "--to" in result.output
    result = fresh("train", "--data", "cases.parquet")
    assert result.exit_code == 0, result.output

    # the challenger's data changed, then gone: refused, naming the file; nothing stored changes
    original = source.read_bytes()
    store = Path("data/mlflow.db")
    before = store.read_bytes()
    pd.read_parquet(source).head(2500).to_parquet(source)
    result = fresh("promote")
    assert result.exit_code == 2
    assert f"{source} changed since {MODEL} version 2" in result.output
    assert "--data" in result.output
    source.unlink()
    result = fresh("promote")
    assert result.exit_code == 2
    assert f"trained on {source}, which is gone" in result.output and "--data" in result.output
    assert store.read_bytes() == before
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    assert "promotion_decision" not in client.get_model_version(MODEL, "2").tags

    source.write_bytes(original)  # the same bytes again: the logged data is usable
    result = fresh("promote")
    assert result.exit_code == 0, result.output
    assert "version 2 promoted: not worse" in result.output  # evaluated, on cases.parquet
    promoted = client.get_model_version(MODEL, "2").tags
    assert promoted[PREVIOUS_CHAMPION_TAG] == "1"
    recorded = json.loads(promoted["promotion_metrics"])  # whole JSON, however many metrics
    assert set(recorded["challenger"]) >= {"amount_mae_yuan", "judicial_aid_auc"}
    assert recorded["champion"]["amount_mae_yuan"] > 0

    result = fresh("rollback")
    assert result.exit_code == 0, result.output
    assert "from version 2 to 1" in result.output
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    result = fresh("rollback", "--to", "2")
    assert result.exit_code == 0, result.output
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "2"
