"""`aidrec audit verify` catches tampering; `aidrec export-reviews` feeds the next training."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from aidrec.cli import app
from features.contract import parse_records
from features.tables import read_table
from serving.schemas import EXAMPLE_RECORD
from tests.api.conftest import headers

runner = CliRunner()


@pytest.fixture
def audit_copy(api: dict[str, Any], tmp_path: Path) -> str:
    """A copy of the API's audit store with a few predictions and a review in it."""
    client = api["client"]
    ids = []
    for i in range(3):
        record = {**EXAMPLE_RECORD, "case_id": f"T-{i}"}
        response = client.post(
            "/v1/score", json={"record": record}, headers=headers(api, "case_system")
        )
        ids.append(response.json()["prediction_id"])
    client.post(
        f"/v1/predictions/{ids[0]}/reviews",
        json={"decision": "rejected", "reason": "x"},
        headers=headers(api, "reviewer"),
    )
    source = Path(api["settings"].audit_database_url.removeprefix("sqlite:///"))
    engine = create_engine(f"sqlite:///{source}")
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(FULL)")
    engine.dispose()
    copy = tmp_path / "audit.db"
    shutil.copy(source, copy)
    return f"sqlite:///{copy}"


def _verify(url: str) -> Any:
    return runner.invoke(app, ["audit", "verify", "--url", url])


def test_an_intact_chain_verifies(audit_copy: str) -> None:
    result = _verify(audit_copy)
    assert result.exit_code == 0, result.output
    assert "ok: all" in result.output


def _second_prediction(engine: Any) -> int:
    """The chain position of the second stored answer (key records come first)."""
    with engine.connect() as connection:
        return int(
            connection.execute(
                text("SELECT seq FROM audit_records WHERE kind = 'prediction' ORDER BY seq")
            ).all()[1][0]
        )


def test_a_changed_record_is_caught(audit_copy: str) -> None:
    engine = create_engine(audit_copy)
    seq = _second_prediction(engine)
    with engine.begin() as connection:
        changed = connection.execute(
            text(
                "UPDATE audit_records SET payload = replace(payload, "
                "'\"months_of_wage\"', '\"months_of_wagE\"') WHERE seq = :s"
            ),
            {"s": seq},
        )
        assert changed.rowcount == 1
    result = _verify(audit_copy)
    assert result.exit_code == 1
    assert f"TAMPERED: record {seq}" in result.output and "changed" in result.output


def test_a_removed_record_is_caught(audit_copy: str) -> None:
    engine = create_engine(audit_copy)
    seq = _second_prediction(engine)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_records WHERE seq = :s"), {"s": seq})
    result = _verify(audit_copy)
    assert result.exit_code == 1 and f"record {seq} is missing" in result.output


def test_removing_the_newest_records_is_caught(audit_copy: str) -> None:
    engine = create_engine(audit_copy)
    with engine.begin() as connection:
        last = connection.execute(text("SELECT max(seq) FROM audit_records")).scalar()
        connection.execute(text("DELETE FROM audit_records WHERE seq = :s"), {"s": last})
    result = _verify(audit_copy)
    assert result.exit_code == 1 and "newest record(s) were removed" in result.output


def test_export_reviews_writes_contract_rows_with_outcomes(
    api: dict[str, Any], tmp_path: Path
) -> None:
    client, reviewer = api["client"], headers(api, "reviewer")
    decisions = [("accepted", None), ("adjusted", 12_345.0), ("rejected", None)]
    for i, (decision, amount) in enumerate(decisions):
        record = {**EXAMPLE_RECORD, "case_id": f"EXP-{i}"}
        answer = client.post(
            "/v1/score", json={"record": record}, headers=headers(api, "case_system")
        ).json()
        body = {
            "decision": decision,
            "reason": "复核",
            **({"amount_yuan": amount} if amount else {}),
        }
        client.post(
            f"/v1/predictions/{answer['prediction_id']}/reviews", json=body, headers=reviewer
        )
        if decision == "accepted":
            reference = answer["reference_amount"]["yuan"]
    out = tmp_path / "reviewed.csv"
    result = runner.invoke(
        app, ["export-reviews", "--out", str(out), "--url", api["settings"].audit_database_url]
    )
    assert result.exit_code == 0, result.output
    parsed = parse_records(read_table(out))
    assert parsed.violations == []
    frame = parsed.frame.set_index("case_id")
    assert frame.loc["EXP-0", "aid_granted"] == 1.0
    assert frame.loc["EXP-0", "aid_amount_yuan"] == pytest.approx(round(reference, 2))
    assert frame.loc["EXP-1", "aid_amount_yuan"] == 12_345.0
    assert frame.loc["EXP-2", "aid_granted"] == 0.0 and pd.isna(
        frame.loc["EXP-2", "aid_amount_yuan"]
    )
    assert frame.loc["EXP-1", "registry_flags"] == "serious_illness"
