"""Who may do what; the audit trail; reviews; replay; reload; audit failure withholds answers."""

from __future__ import annotations

from typing import Any

import pytest

from serving.audit import AuditStore, make_engine
from serving.schemas import EXAMPLE_RECORD, PredictionPage, PredictionRecord, ReviewOut
from serving.security import HEADER
from serving.state import ModelRefused
from tests.api.conftest import headers


def _score(api: dict[str, Any], **changes: Any) -> dict[str, Any]:
    response = api["client"].post(
        "/v1/score",
        json={"record": {**EXAMPLE_RECORD, **changes}},
        headers=headers(api, "case_system"),
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.mark.parametrize(
    ("method", "path", "role", "status"),
    [
        ("post", "/v1/score", None, 401),
        ("post", "/v1/score", "wrong-key", 401),
        ("post", "/v1/score", "reviewer", 403),
        ("post", "/v1/score/batch", "reviewer", 403),
        ("get", "/v1/predictions", "case_system", 403),
        ("post", "/v1/admin/reload", "reviewer", 403),
        ("post", "/v1/admin/reload", "case_system", 403),
        ("get", "/v1/model", None, 401),
    ],
)
def test_keys_and_roles(
    api: dict[str, Any], method: str, path: str, role: str | None, status: int
) -> None:
    auth = (
        {}
        if role is None
        else ({HEADER: "not-a-key"} if role == "wrong-key" else headers(api, role))
    )
    body = {"json": {"record": EXAMPLE_RECORD}} if method == "post" else {}
    response = getattr(api["client"], method)(path, headers=auth, **body)
    assert response.status_code == status, response.text


def test_open_endpoints(api: dict[str, Any]) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert api["client"].get(path).status_code == 200, path


def test_every_answer_is_stored_and_readable_by_reviewers(api: dict[str, Any]) -> None:
    answer = _score(api, case_id="AUDIT-READ-1")
    response = api["client"].get(
        f"/v1/predictions/{answer['prediction_id']}", headers=headers(api, "reviewer")
    )
    assert response.status_code == 200
    stored = PredictionRecord.model_validate(response.json())
    assert stored.response == answer
    assert stored.request["record"]["case_id"] == "AUDIT-READ-1"
    assert stored.model_version == answer["model"]["version"]
    assert stored.caller == "default-case_system"


def test_predictions_can_be_filtered_and_paged(api: dict[str, Any]) -> None:
    guangdong = {"province_code": "44", "office_code": "440104"}
    answers = [_score(api, case_id="AUDIT-PAGE", **guangdong) for _ in range(3)]
    client, auth = api["client"], headers(api, "reviewer")
    page = PredictionPage.model_validate(
        client.get(
            "/v1/predictions", params={"case_id": "AUDIT-PAGE", "limit": 2}, headers=auth
        ).json()
    )
    assert page.total == 3 and len(page.items) == 2
    rest = client.get(
        "/v1/predictions", params={"case_id": "AUDIT-PAGE", "limit": 2, "offset": 2}, headers=auth
    ).json()
    assert len(rest["items"]) == 1
    flagged = any(lead["flagged"] for lead in answers[0]["leads"].values())
    for wanted, total in ((flagged, 3), (not flagged, 0)):
        found = client.get(
            "/v1/predictions",
            params={"case_id": "AUDIT-PAGE", "province_code": "44", "flagged": wanted},
            headers=auth,
        ).json()
        assert found["total"] == total and len(found["items"]) == total
        assert all(i["province_code"] == "44" and i["flagged"] == wanted for i in found["items"])
    future = client.get(
        "/v1/predictions", params={"from": "2100-01-01T00:00:00"}, headers=auth
    ).json()
    assert future["total"] == 0
    bad = client.get("/v1/predictions", params={"province_code": "99"}, headers=auth)
    assert bad.status_code == 422


def test_reviews_are_appended_never_overwritten(api: dict[str, Any]) -> None:
    prediction_id = _score(api, case_id="AUDIT-REVIEW")["prediction_id"]
    client, auth = api["client"], headers(api, "reviewer")
    url = f"/v1/predictions/{prediction_id}/reviews"
    first = client.post(url, json={"decision": "accepted", "reason": "符合条件"}, headers=auth)
    assert first.status_code == 201, first.text
    ReviewOut.model_validate(first.json())
    second = client.post(
        url,
        json={"decision": "adjusted", "amount_yuan": 25_000, "reason": "票据核减"},
        headers=auth,
    )
    assert second.status_code == 201
    reviews = client.get(f"/v1/predictions/{prediction_id}", headers=auth).json()["reviews"]
    assert [r["decision"] for r in reviews] == ["accepted", "adjusted"]
    assert reviews[1]["amount_yuan"] == 25_000 and reviews[1]["reviewer"] == "default-reviewer"
    missing_amount = client.post(url, json={"decision": "adjusted", "reason": "x"}, headers=auth)
    assert missing_amount.status_code == 422
    assert missing_amount.json()["detail"][0]["field"] == "amount_yuan"
    unknown = client.post(
        "/v1/predictions/nope/reviews", json={"decision": "rejected", "reason": "x"}, headers=auth
    )
    assert unknown.status_code == 404


def test_replay_gives_the_identical_answer(api: dict[str, Any]) -> None:
    prediction_id = _score(api, case_id="AUDIT-REPLAY")["prediction_id"]
    response = api["client"].post(
        f"/v1/predictions/{prediction_id}/replay", headers=headers(api, "reviewer")
    )
    assert response.status_code == 200
    assert response.json()["identical"] is True, response.json()["differences"]


def test_reload_keeps_the_old_model_when_the_new_one_is_refused(api: dict[str, Any]) -> None:
    state = api["app"].state.service
    before = state.model
    admin = headers(api, "admin")
    response = api["client"].post("/v1/admin/reload", headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["current"]["version"] == before.version
    good_loader = state.loader

    def broken(uri: str) -> Any:
        raise RuntimeError("artifact missing")

    state.loader = broken
    try:
        refused = api["client"].post("/v1/admin/reload", headers=admin)
        assert refused.status_code == 409 and "artifact missing" in refused.json()["detail"]
        assert state.model is not None
        assert _score(api)["model"]["version"] == state.model.version  # still serving
    finally:
        state.loader = good_loader


def test_canary_refuses_a_model_that_cannot_score(api: dict[str, Any]) -> None:
    from serving.state import checked

    state = api["app"].state.service
    model = state.model

    def no_index(uri: str) -> Any:
        import copy

        broken = copy.copy(model)
        broken.bundle = copy.copy(model.bundle)
        broken.bundle.index = None
        return broken

    with pytest.raises(ModelRefused):
        checked(no_index, "models:/judicial-aid@champion")


def test_no_answer_without_an_audit_record(api: dict[str, Any], tmp_path: Any) -> None:
    state = api["app"].state.service
    working = state.audit
    state.audit = AuditStore(
        make_engine(f"sqlite:///{tmp_path}/missing/dir/audit.db"), working.secrets
    )
    try:
        response = api["client"].post(
            "/v1/score", json={"record": EXAMPLE_RECORD}, headers=headers(api, "case_system")
        )
        assert response.status_code == 503
        assert "could not be audited" in response.json()["detail"]
        assert "prediction_id" not in response.text
    finally:
        state.audit = working
    metrics = api["client"].get("/metrics").text
    assert "aidrec_audit_failures_total 1.0" in metrics
