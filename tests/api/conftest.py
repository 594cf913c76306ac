"""The app over HTTP (in-process client, real lifespan), on the session's real registry."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from aidrec.settings import Settings
from features.contract import INPUT_NAMES, parse_records, wire_value
from features.tables import read_table
from serving.app import create_app
from serving.keys import ensure_keys
from serving.security import HEADER


@pytest.fixture(scope="session")
def api(
    registry: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("api")
    settings = Settings(
        data_dir=registry["data_dir"],
        audit_url=f"sqlite:///{folder / 'audit.db'}",
        api_keys_file=folder / "keys.json",
        max_body_bytes=200_000,
        max_batch=50,
    )
    keys = ensure_keys(settings)
    assert keys is not None
    app = create_app(settings)
    with TestClient(app) as client:
        deadline = time.monotonic() + 120
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, client.get("/readyz").json()
            time.sleep(0.2)
        yield {
            "client": client,
            "keys": keys,
            "settings": settings,
            "app": app,
            "history": registry["history"],
        }


def headers(api: dict[str, Any], role: str) -> dict[str, str]:
    """The auth header of a role's key."""
    return {HEADER: api["keys"][role]}


@pytest.fixture(scope="session")
def history_records(api: dict[str, Any]) -> list[dict[str, Any]]:
    """The registry's history as JSON records (inputs only) with their outcomes beside."""
    frame = parse_records(read_table(api["history"])).frame
    return [
        {
            "record": {n: wire_value(n, frame[n].iloc[i]) for n in INPUT_NAMES},
            "granted": frame["aid_granted"].iloc[i] == 1.0,
            "amount": frame["aid_amount_yuan"].iloc[i],
        }
        for i in range(400)
    ]


def history_frame(api: dict[str, Any]) -> pd.DataFrame:
    return parse_records(read_table(api["history"])).frame
