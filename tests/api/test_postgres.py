"""The audit store and the MLflow tracking store on PostgreSQL, as production runs them."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from sqlalchemy import text

from serving.answer_index import AnswerQuery
from serving.audit import AuditEntry, AuditStore, verify_chain
from tests.audit_payloads import answer_entry, make_secrets
from tests.postgres import fresh_database

pytestmark = pytest.mark.postgres


def _entry(i: int) -> AuditEntry:
    return answer_entry(i)


def test_audit_chain_on_postgres_with_concurrent_writers(tmp_path: Path) -> None:
    secrets = make_secrets(tmp_path)
    with fresh_database() as url:
        stores = [AuditStore.open(url, secrets) for _ in range(2)]  # two "processes"

        def write(store: AuditStore, start: int) -> None:
            for i in range(start, start + 40):
                store.append(_entry(i))

        threads = [threading.Thread(target=write, args=(s, k * 100)) for k, s in enumerate(stores)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        report = verify_chain(stores[0].engine, secrets)
        assert report.ok and report.records == 80, report.message
        page, total = stores[0].predictions(AnswerQuery(flagged=True), limit=100)
        assert total == 40 and all(r.flagged for r in page)
        with stores[0].engine.begin() as connection:
            connection.execute(text("UPDATE audit_records SET caller = 'someone' WHERE seq = 17"))
        report = verify_chain(stores[0].engine, secrets)
        assert not report.ok and report.first_bad_seq == 17
        for store in stores:
            store.engine.dispose()


def test_train_and_promote_with_the_tracking_store_on_postgres(
    registry: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real CLI, with MLFLOW_TRACKING_URI on PostgreSQL (artifacts on local disk)."""
    from training.registry import load_bundle

    history = tmp_path / "history.parquet"
    with fresh_database() as url:
        # setenv first: mlflow.set_tracking_uri (called by the CLI) writes the variable too,
        # and monkeypatch must restore what was there before this test
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        MlflowClient(url, url).create_experiment("judicial-aid", tmp_path.joinpath("art").as_uri())
        monkeypatch.setenv("AIDREC_DATA_DIR", str(tmp_path))
        try:
            for args in (
                ["generate", "--rows", "6000", "--seed", "8", "--out", str(history)],
                ["train", "--data", str(history)],
                ["promote", "--data", str(history)],
            ):
                result = registry["runner"].invoke(registry["app"], args)
                assert result.exit_code == 0, (args, result.output)
            client = MlflowClient(url, url)
            version = client.get_model_version_by_alias("judicial-aid", "champion")
            assert client.get_run(version.run_id).data.metrics["amount_mae_yuan"] > 0
            bundle, info = load_bundle("models:/judicial-aid@champion")
            assert info["version"] == str(version.version) and bundle.leads
        finally:
            mlflow.set_tracking_uri(registry["tracking_uri"])
            mlflow.set_registry_uri(registry["tracking_uri"])
