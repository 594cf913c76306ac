"""Inputs an outside tester tried: every one answered 4xx, nothing unreturnable stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from aidrec.settings import Settings
from serving.app import create_app
from serving.audit import records
from serving.guards import KeyLimits, strict_loads
from serving.keys import ensure_keys
from serving.schemas import EXAMPLE_RECORD
from serving.security import HEADER
from tests.api.conftest import headers

SCORE = "/v1/score"


def _stored(api: dict[str, Any]) -> int:
    with api["app"].state.service.audit.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(records)).scalar() or 0)


def _raw(api: dict[str, Any], body: str, role: str = "case_system", **kw: Any) -> Any:
    return api["client"].post(
        SCORE,
        content=body.encode(),
        headers={**headers(api, role), "Content-Type": "application/json"},
        **kw,
    )


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('{"record": {"medical_cost_yuan": Infinity}}', "numbers must be finite"),
        ('{"record": {"medical_cost_yuan": 1e400}}', "not finite"),
        ('{"record": {}, "granted_amount_yuan": NaN}', "numbers must be finite"),
        ('{"record": {"case_id": "a", "case_id": "b"}}', "duplicate key 'case_id'"),
        ('{"record": {"victim_age": ' + "9" * 5000 + "}}", "integer of 5000 digits"),
        ("[" * 5000 + "]" * 5000, "nested deeper than"),
        ('{"record": "\xff"}', None),  # valid JSON, a record of the wrong type: 422 too
    ],
)
def test_malformed_json_is_422_and_nothing_is_stored(
    api: dict[str, Any], body: str, words: str | None
) -> None:
    before = _stored(api)
    response = _raw(api, body)
    assert response.status_code == 422, response.text
    if words:
        detail = response.json()["detail"][0]
        assert words in detail["rule"], detail
    assert _stored(api) == before


def test_non_finite_numbers_are_refused_where_a_parser_allows_them(api: dict[str, Any]) -> None:
    before = _stored(api)
    record = {**EXAMPLE_RECORD, "case_id": "INF-1"}
    for body in (
        {"record": {**record, "medical_cost_yuan": float("inf")}},
        {"record": record, "granted_amount_yuan": float("nan")},
    ):
        text = json.dumps(body)  # Python writes Infinity / NaN
        assert _raw(api, text).status_code == 422
    prediction = (
        api["client"]
        .post(SCORE, json={"record": record}, headers=headers(api, "case_system"))
        .json()
    )
    review = _raw(
        api,
        json.dumps({"decision": "adjusted", "amount_yuan": float("inf"), "reason": "x"}),
        role="reviewer",
    )
    assert review.status_code == 422
    url = f"/v1/predictions/{prediction['prediction_id']}/reviews"
    for body in (
        {"decision": "adjusted", "amount_yuan": 1e12, "reason": "over the ceiling"},
        {"decision": "accepted", "reason": "bad\x00reason"},
    ):
        refused = api["client"].post(url, json=body, headers=headers(api, "reviewer"))
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"][0]["field"] in ("amount_yuan", "reason")
    assert _stored(api) == before + 1  # only the one good prediction


def test_the_key_is_checked_before_the_body(api: dict[str, Any]) -> None:
    client = api["client"]
    no_key = client.post(SCORE, content=b"{not json", headers={"Content-Type": "application/json"})
    assert no_key.status_code == 401
    wrong = client.post(
        SCORE, content=b"{not json", headers={HEADER: "nope", "Content-Type": "application/json"}
    )
    assert wrong.status_code == 401


def test_security_headers_on_every_response(api: dict[str, Any]) -> None:
    for response in (
        api["client"].get("/healthz"),
        api["client"].post(SCORE, json={}),
        _raw(api, "{"),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"


def test_a_503_carries_an_error_id_and_no_internals(api: dict[str, Any], tmp_path: Path) -> None:
    from serving.audit import AuditStore, make_engine

    state = api["app"].state.service
    working = state.audit
    state.audit = AuditStore(make_engine(f"sqlite:///{tmp_path}/no/such/dir.db"), working.secrets)
    try:
        response = api["client"].post(
            SCORE, json={"record": EXAMPLE_RECORD}, headers=headers(api, "case_system")
        )
    finally:
        state.audit = working
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    body = response.json()
    assert body["error_id"] and body["error_id"] in body["detail"]
    for internal in ("sqlite", "INSERT", "audit_head", "no/such", "SELECT"):
        assert internal not in response.text


def test_key_limits_bound_rate_and_concurrency() -> None:
    limits = KeyLimits(rate_per_second=1.0, burst=2, concurrent=1)
    assert limits.admit("a") == 0.0
    assert limits.admit("a") == 1.0  # one in flight already
    limits.done("a")
    assert limits.admit("a") == 0.0  # the second token of the burst
    limits.done("a")
    assert 0.0 < limits.admit("a") <= 1.0  # burst spent: wait for the next token
    assert limits.admit("b") == 0.0  # another key has its own budget


def test_a_key_over_its_rate_gets_429_with_retry_after(
    registry: dict[str, Any], tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=registry["data_dir"],
        audit_url=f"sqlite:///{tmp_path / 'audit.db'}",
        api_keys_file=tmp_path / "keys.json",
        rate_per_second=0.5,
        rate_burst=2,
        metrics_require_key=True,
    )
    keys = ensure_keys(settings)
    assert keys is not None
    with TestClient(create_app(settings)) as client:
        auth = {HEADER: keys["reviewer"]}
        statuses = [client.get("/v1/predictions", headers=auth).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        limited = client.get("/v1/predictions", headers=auth)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        other = client.get("/v1/predictions", headers={HEADER: keys["admin"]})
        assert other.status_code == 200  # one key's bound is not another's
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={HEADER: keys["case_system"]}).status_code == 200


def test_strict_loads_accepts_ordinary_json() -> None:
    assert strict_loads(b'{"a": [1, 2.5, "x", null, true], "b": {"c": -3}}') == {
        "a": [1, 2.5, "x", None, True],
        "b": {"c": -3},
    }


def test_loading_a_model_writes_nothing_into_the_registry(registry: dict[str, Any]) -> None:
    import mlflow

    from training.registry import load_bundle

    mlflow.set_tracking_uri(registry["tracking_uri"])
    mlflow.set_registry_uri(registry["tracking_uri"])
    artifacts = registry["data_dir"] / "mlartifacts"
    before = {p: p.stat().st_mtime_ns for p in artifacts.rglob("*")}
    load_bundle("models:/judicial-aid@champion")
    after = {p: p.stat().st_mtime_ns for p in artifacts.rglob("*")}
    assert after == before
    assert not list(artifacts.rglob("registered_model_meta"))
