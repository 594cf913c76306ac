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
    api["app"].state.service.audit.checkpoint()  # anchor what is there now
    source = Path(api["settings"].audit_database_url.removeprefix("sqlite:///"))
    engine = create_engine(f"sqlite:///{source}")
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(FULL)")
    engine.dispose()
    copy = tmp_path / "audit.db"
    shutil.copy(source, copy)
    shutil.copy(f"{source}.checkpoints.jsonl", f"{copy}.checkpoints.jsonl")
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


def _sql(url: str, *statements: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    engine.dispose()


def _rehash(url: str, hash_of: Any) -> None:
    """Edit a payload, then recompute every hash and the head so that the links agree.

    What someone with write access to the database, but not the chain key, can do.
    """
    from serving.audit import GENESIS

    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE audit_records SET payload = replace(payload, '\"yuan\"', '\"yuan \"')")
        )
        previous = GENESIS
        rows = connection.execute(text("SELECT * FROM audit_records ORDER BY seq")).mappings()
        for row in list(rows):
            values = {**row, "prev_hash": previous}
            previous = hash_of(values)
            connection.execute(
                text("UPDATE audit_records SET prev_hash = :p, hash = :h WHERE seq = :s"),
                {"p": values["prev_hash"], "h": previous, "s": row["seq"]},
            )
        connection.execute(text("UPDATE audit_head SET hash = :h"), {"h": previous})
    engine.dispose()


def test_a_rewritten_chain_is_caught_without_the_key(audit_copy: str) -> None:
    import secrets as random

    from serving.audit import legacy_hash, record_hash

    for hash_of in (legacy_hash, lambda row: record_hash(row, random.token_bytes(32))):
        _rehash(audit_copy, hash_of)
        result = _verify(audit_copy)
        assert result.exit_code == 1, result.output
        assert "TAMPERED: record 1" in result.output and "keyed hash" in result.output


def test_a_rolled_back_head_is_caught_by_the_checkpoint(audit_copy: str) -> None:
    _sql(
        audit_copy,
        "DELETE FROM audit_records WHERE seq = (SELECT max(seq) FROM audit_records)",
        "UPDATE audit_head SET seq = seq - 1, hash = (SELECT hash FROM audit_records "
        "WHERE seq = (SELECT max(seq) FROM audit_records))",
    )
    result = _verify(audit_copy)
    assert result.exit_code == 1, result.output
    assert "truncated and its head rolled back" in result.output


def test_an_emptied_store_is_caught(audit_copy: str) -> None:
    from serving.audit import GENESIS

    _sql(
        audit_copy,
        "DELETE FROM audit_records",
        f"UPDATE audit_head SET seq = 0, hash = '{GENESIS}'",
    )
    result = _verify(audit_copy)
    assert result.exit_code == 1 and "it was emptied" in result.output, result.output


def test_an_altered_checkpoint_file_is_caught(audit_copy: str) -> None:
    checkpoints = Path(audit_copy.removeprefix("sqlite:///") + ".checkpoints.jsonl")
    lines = checkpoints.read_text().splitlines()
    lines[-1] = lines[-1].replace('"seq":', '"seq":1')
    checkpoints.write_text("\n".join(lines) + "\n")
    result = _verify(audit_copy)
    assert result.exit_code == 1 and "signature does not verify" in result.output


def test_the_verdict_is_the_same_in_any_time_zone(audit_copy: str, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    aidrec = str(Path(sys.executable).with_name("aidrec"))
    for zone in ("Asia/Shanghai", "America/New_York", "UTC"):
        done = subprocess.run(
            [aidrec, "audit", "verify", "--url", audit_copy],
            env={**os.environ, "TZ": zone},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0 and "ok: all" in done.stdout, (zone, done.stdout, done.stderr)


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


def test_time_filters_honour_offsets(api: dict[str, Any]) -> None:
    import datetime as dt

    client = api["client"]
    answer = client.post(
        "/v1/score",
        json={"record": {**EXAMPLE_RECORD, "case_id": "TZ-1"}},
        headers=headers(api, "case_system"),
    ).json()
    created = dt.datetime.fromisoformat(answer["created_at"])
    before = created - dt.timedelta(seconds=1)
    shanghai = dt.timezone(dt.timedelta(hours=8))
    for moment in (before.astimezone(dt.UTC), before.astimezone(shanghai)):
        found = client.get(
            "/v1/predictions",
            params={"case_id": "TZ-1", "from": moment.isoformat()},
            headers=headers(api, "reviewer"),
        ).json()
        assert found["total"] == 1, moment.isoformat()
        later = (created + dt.timedelta(seconds=1)).astimezone(shanghai)
        none = client.get(
            "/v1/predictions",
            params={"case_id": "TZ-1", "from": later.isoformat()},
            headers=headers(api, "reviewer"),
        ).json()
        assert none["total"] == 0


def test_a_store_from_before_the_keyed_chain_is_migrated(tmp_path: Path) -> None:
    from sqlalchemy import insert, update

    from serving.audit import (
        GENESIS,
        AuditError,
        AuditStore,
        canonical_json,
        head,
        legacy_hash,
        make_engine,
        metadata,
        records,
    )
    from tests.audit_payloads import answer_payload, make_secrets

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    metadata.create_all(engine)
    previous = GENESIS
    with engine.begin() as connection:  # a store as the first slice wrote it: unkeyed hashes
        connection.execute(insert(head).values(id=1, seq=0, hash=GENESIS))
        for seq in (1, 2, 3):
            row = {
                "seq": seq,
                "kind": "prediction",
                "record_id": f"p-{seq}",
                "prediction_id": f"p-{seq}",
                "created_at": dt_now(),
                "caller": "old",
                "case_id": f"C-{seq}",
                "province_code": "32",
                "flagged": False,
                "model_version": "1",
                "payload": canonical_json(answer_payload(f"C-{seq}")),
                "prev_hash": previous,
            }
            row["hash"] = previous = legacy_hash(row)
            connection.execute(insert(records).values(**row))
        connection.execute(update(head).values(seq=3, hash=previous))
    engine.dispose()
    secrets = make_secrets(tmp_path)
    with pytest.raises(AuditError, match="audit migrate"):
        AuditStore.open(url, secrets)
    env = {"AIDREC_DATA_DIR": str(tmp_path)}
    result = runner.invoke(app, ["audit", "migrate", "--url", url], env=env)
    assert result.exit_code == 0, result.output
    assert "before: ok: all 3 records intact (unkeyed chain)" in result.output
    assert "after:  ok: all 3 records intact; 1 checkpoints agree" in result.output
    result = runner.invoke(app, ["audit", "verify", "--url", url], env=env)
    assert result.exit_code == 0 and "ok: all 3" in result.output, result.output


def dt_now() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC)
