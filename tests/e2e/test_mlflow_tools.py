"""MLflow's own tools on the registered model: `mlflow models serve` and `mlflow run`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from mlflow import MlflowClient

from features.contract import parse_records
from features.tables import read_table, write_table
from tests.e2e.helpers import free_port, running
from training.pyfunc import as_pyfunc_input

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ON_PATH = {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # MLflow execs uvicorn, aidrec


@pytest.mark.slow
def test_mlflow_models_serve_answers_like_score_file(
    registry: dict[str, Any], tmp_path: Path
) -> None:
    cases = write_table(
        parse_records(read_table(registry["history"])).frame.head(25), tmp_path / "cases.csv"
    )
    scored = tmp_path / "scores.csv"
    result = registry["runner"].invoke(
        registry["app"], ["score-file", "--input", str(cases), "--output", str(scored)]
    )
    assert result.exit_code == 0, result.output
    expected = pd.read_csv(scored)
    assert expected["error"].isna().all()

    port = free_port()
    command = [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        "models:/judicial-aid@champion",
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    env = {**ON_PATH, "MLFLOW_TRACKING_URI": registry["tracking_uri"]}
    with running(command, f"http://127.0.0.1:{port}/ping", env=env, timeout=180):
        records = as_pyfunc_input(parse_records(read_table(cases)).frame)
        payload = {"dataframe_split": json.loads(records.to_json(orient="split", index=False))}
        response = httpx.post(f"http://127.0.0.1:{port}/invocations", json=payload, timeout=60)
    assert response.status_code == 200, response.text
    served = pd.DataFrame(response.json()["predictions"])
    assert list(served["case_id"]) == list(expected["case_id"])
    for column in (
        "reference_amount_yuan",
        "interval_low_yuan",
        "interval_high_yuan",
        "p_judicial_aid",
        "p_social_assistance",
        "p_civil_support",
    ):
        pd.testing.assert_series_equal(served[column], expected[column], check_names=False)
    assert list(served["rule_hits"]) == list(expected["rule_hits"])


@pytest.mark.slow
def test_mlflow_run_trains_through_the_same_cli(tmp_path: Path) -> None:
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking, tracking).create_experiment(
        "judicial-aid", artifact_location=(tmp_path / "art").as_uri()
    )
    history = tmp_path / "history.parquet"
    env = {
        **os.environ,
        **ON_PATH,
        "MLFLOW_TRACKING_URI": tracking,
        "AIDREC_DATA_DIR": str(tmp_path),
    }
    mlflow_bin = shutil.which("mlflow", path=str(BIN)) or "mlflow"
    completed = subprocess.run(
        [
            mlflow_bin,
            "run",
            str(ROOT),
            "-e",
            "train",
            "--env-manager",
            "local",
            "--experiment-name",
            "judicial-aid",
            "-P",
            "rows=8000",
            "-P",
            f"data={history}",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert history.exists()
    client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    version = client.get_model_version_by_alias("judicial-aid", "challenger")
    run = client.get_run(version.run_id)
    assert run.data.tags.get("mlflow.project.entryPoint") == "train"
    assert run.data.metrics["amount_mae_yuan"] > 0
