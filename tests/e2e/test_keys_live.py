"""Keys changed by another process while the real server runs take effect at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from serving.security import HEADER, key_hash
from tests.e2e.helpers import free_port, running

AIDREC = str(Path(sys.executable).with_name("aidrec"))


def test_a_key_created_and_revoked_by_the_cli_works_and_stops_without_a_restart(
    registry: dict[str, Any], tmp_path: Path
) -> None:
    port = free_port()
    key_file = tmp_path / "api_keys.json"  # an old deployment's key file: imported on start
    key_file.write_text(
        json.dumps([{"name": "legacy", "role": "reviewer", "sha256": key_hash("k-legacy")}])
    )
    env = {
        "AIDREC_DATA_DIR": str(registry["data_dir"]),
        "AIDREC_AUDIT_URL": f"sqlite:///{tmp_path / 'audit.db'}",
        "AIDREC_API_KEYS_FILE": str(key_file),
    }

    def aidrec(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [AIDREC, *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **env},
        )

    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with running([AIDREC, "serve", "--port", str(port)], f"{base}/readyz", env=env, output=log):
        assert "API keys created" not in log.read_text()  # the imported key is the ring

        def card(key: str) -> int:
            return httpx.get(f"{base}/v1/model", headers={HEADER: key}, timeout=30).status_code

        assert card("k-legacy") == 200
        made = aidrec("keys", "create", "--name", "ops", "--role", "reviewer", "--scope", "32")
        assert made.returncode == 0, made.stderr
        key = next(line.strip() for line in made.stdout.splitlines() if line.startswith("  "))
        assert card(key) == 200
        revoked = aidrec("keys", "revoke", "legacy")
        assert revoked.returncode == 0, revoked.stderr
        assert card("k-legacy") == 401 and card(key) == 200
        listed = aidrec("keys", "list")
        assert key not in listed.stdout
        rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
        assert rows["legacy"][-1] != "-" and rows["ops"][-1] == "-"
    relisted = aidrec("keys", "list")  # reads the key file again: the revoked key stays revoked
    assert relisted.returncode == 0 and relisted.stdout == listed.stdout
    verify = aidrec("audit", "verify")
    assert verify.returncode == 0 and "all 3 records intact" in verify.stdout, verify.stdout
