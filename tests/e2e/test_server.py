"""The real server process: start, score over loopback, read the audit back, catch tampering."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from serving.schemas import EXAMPLE_RECORD
from serving.security import HEADER
from tests.e2e.helpers import free_port, running

AIDREC = str(Path(sys.executable).with_name("aidrec"))


def test_served_answer_is_audited_and_tampering_is_caught(
    registry: dict[str, Any], tmp_path: Path
) -> None:
    port = free_port()
    audit = tmp_path / "audit.db"
    env = {
        "AIDREC_DATA_DIR": str(registry["data_dir"]),
        "AIDREC_AUDIT_URL": f"sqlite:///{audit}",
        "AIDREC_API_KEYS_FILE": str(tmp_path / "keys.json"),
    }
    log = tmp_path / "server.log"
    base = f"http://127.0.0.1:{port}"
    with running([AIDREC, "serve", "--port", str(port)], f"{base}/readyz", env=env, output=log):
        printed = log.read_text()
        rows = [line.split() for line in printed.splitlines() if line.startswith("  ")]
        keys = {row[0]: row[1] for row in rows if row[0] in ("case_system", "reviewer")}
        assert "curl -s -X POST" in printed and keys["case_system"] in printed
        stored = b"".join(f.read_bytes() for f in tmp_path.glob("audit.db*"))
        assert keys["case_system"].encode() not in stored  # hashed only
        body = {"record": EXAMPLE_RECORD, "granted_amount_yuan": 1}
        scored = httpx.post(
            f"{base}/v1/score", json=body, headers={HEADER: keys["case_system"]}, timeout=30
        )
        assert scored.status_code == 200, scored.text
        answer = scored.json()
        assert answer["deviation"]["outside_interval"] is True
        stored = httpx.get(
            f"{base}/v1/predictions/{answer['prediction_id']}",
            headers={HEADER: keys["reviewer"]},
            timeout=30,
        )
        assert stored.status_code == 200 and stored.json()["response"] == answer
        for i in range(3):
            record = {**EXAMPLE_RECORD, "case_id": f"E{i}"}
            httpx.post(
                f"{base}/v1/score",
                json={"record": record},
                headers={HEADER: keys["case_system"]},
                timeout=30,
            )

    def verify() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [AIDREC, "audit", "verify", "--url", f"sqlite:///{audit}"],
            capture_output=True,
            text=True,
            timeout=120,
        )

    clean = verify()
    # the three default keys' creation, then the four answers
    assert clean.returncode == 0 and "all 7 records intact" in clean.stdout, clean.stdout
    with sqlite3.connect(audit) as connection:
        statement = (
            "UPDATE audit_records SET payload = replace(payload, '\"yuan\"', "
            "'\"yuan \"') WHERE record_id = ?"
        )
        connection.execute(statement, (answer["prediction_id"],))
    tampered = verify()
    assert tampered.returncode == 1
    assert "TAMPERED: record 4" in tampered.stdout and answer["prediction_id"] in tampered.stdout
