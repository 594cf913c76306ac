"""The lead register over HTTP: live answers register their flagged leads; list, read, move on."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from aidrec.cli import app
from serving.audit import AuditError
from serving.lead_schemas import LeadOut, LeadPage
from serving.scopes import Scope
from serving.security import HEADER
from tests.api.conftest import headers


@pytest.fixture(scope="module")
def scored(api: dict[str, Any], history_records: list[dict[str, Any]]) -> dict[str, Any]:
    """Forty answers in Jiangsu (32); which leads each flagged."""
    items = [
        {
            "record": {
                **r["record"],
                "case_id": f"LEAD-{i:03d}",
                "province_code": "32",
                "office_code": "320106",
            }
        }
        for i, r in enumerate(history_records[:40])
    ]
    response = api["client"].post(
        "/v1/score/batch", json={"items": items}, headers=headers(api, "case_system")
    )
    assert response.status_code == 200 and response.json()["refused"] == 0, response.text
    answers = [item["result"] for item in response.json()["results"]]
    flagged = {
        (a["case_id"], name): a["prediction_id"]
        for a in answers
        for name, lead in a["leads"].items()
        if lead["flagged"]
    }
    assert flagged and len(flagged) < 3 * len(answers)  # both sides of the threshold
    return {"answers": answers, "flagged": flagged, "items": items}


def _leads(api: dict[str, Any], role: str = "reviewer", **params: Any) -> LeadPage:
    response = api["client"].get("/v1/leads", params=params, headers=headers(api, role))
    assert response.status_code == 200, response.text
    return LeadPage.model_validate(response.json())


def _registered(api: dict[str, Any]) -> dict[tuple[str, str], LeadOut]:
    found: dict[tuple[str, str], LeadOut] = {}
    offset = 0
    while True:
        page = _leads(api, province_code="32", limit=200, offset=offset)
        found.update({(lead.case_id, lead.kind): lead for lead in page.items})
        offset += page.limit
        if offset >= page.total:
            return {key: lead for key, lead in found.items() if key[0].startswith("LEAD-")}


def test_a_live_answer_registers_exactly_its_flagged_leads(
    api: dict[str, Any], scored: dict[str, Any]
) -> None:
    registered = _registered(api)
    assert set(registered) == set(scored["flagged"])
    for key, prediction_id in scored["flagged"].items():
        lead = registered[key]
        assert lead.origin == f"answer:{prediction_id}" and lead.status == "new"
        assert lead.score is not None and lead.score >= lead.reasons["threshold"]
        assert lead.reasons["ceiling_yuan"] > 0 and "top" in lead.reasons
        assert lead.office_code == "320106"
    one = api["client"].get(f"/v1/leads/{lead.id}", headers=headers(api, "reviewer")).json()
    assert one["history"][0]["audit_record_id"] in scored["flagged"].values()  # the answer's


def test_scoring_the_same_case_again_creates_no_duplicate(
    api: dict[str, Any], scored: dict[str, Any]
) -> None:
    (case_id, kind), _ = next(iter(scored["flagged"].items()))
    item = next(i for i in scored["items"] if i["record"]["case_id"] == case_id)
    again = api["client"].post("/v1/score", json=item, headers=headers(api, "case_system"))
    assert again.status_code == 200
    page = _leads(api, case_id=case_id, kind=kind)
    assert page.total == 1
    assert page.items[0].origin == f"answer:{again.json()['prediction_id']}"  # still new: refreshed


def test_transitions_over_http(api: dict[str, Any], scored: dict[str, Any]) -> None:
    client, auth = api["client"], headers(api, "reviewer")
    case_id, kind = sorted(scored["flagged"])[0]
    lead = _leads(api, case_id=case_id, kind=kind).items[0]
    path = f"/v1/leads/{lead.id}/transitions"
    refused = client.post(path, json={"to": "verified"}, headers=auth)
    assert refused.status_code == 409
    assert "transferred" in refused.json()["detail"] and "dismissed" in refused.json()["detail"]
    missing = client.post(path, json={"to": "transferred"}, headers=auth)
    assert missing.status_code == 422 and missing.json()["detail"][0]["field"] == "department"
    unknown = client.post(path, json={"to": "transferred", "department": "police"}, headers=auth)
    assert unknown.status_code == 422
    moved = client.post(
        path,
        json={"to": "transferred", "department": "civil_affairs", "assignee": "li"},
        headers=auth,
    )
    assert moved.status_code == 201, moved.text
    body = LeadOut.model_validate(moved.json())
    assert body.status == "transferred" and body.department_zh == "民政局"
    assert body.allowed == ["verified"]
    one = LeadOut.model_validate(client.get(f"/v1/leads/{lead.id}", headers=auth).json())
    assert [e.action for e in one.history][-1] == "transition" and one.assignee == "li"
    assert _leads(api, assignee="li", status="transferred").total >= 1


def test_leads_outside_the_scope_or_role_are_refused(
    api: dict[str, Any], scored: dict[str, Any]
) -> None:
    client = api["client"]
    store = api["app"].state.service.keys
    beijing = store.create("leads-beijing", "reviewer", Scope("11"), "test")
    jiangsu = store.create("leads-jiangsu", "reviewer", Scope("3201"), "test")
    lead = _registered(api)[sorted(scored["flagged"])[-1]]
    for key, status in ((beijing, 404), (jiangsu, 200)):
        assert client.get(f"/v1/leads/{lead.id}", headers={HEADER: key}).status_code == status
    outside = client.post(
        f"/v1/leads/{lead.id}/transitions",
        json={"to": "dismissed", "reason": "x"},
        headers={HEADER: beijing},
    )
    assert outside.status_code == 404
    listed = client.get("/v1/leads", params={"province_code": "32"}, headers={HEADER: beijing})
    assert listed.json()["total"] == 0
    assert client.get("/v1/leads", headers=headers(api, "case_system")).status_code == 403
    assert client.get("/v1/leads/no-such-lead", headers=headers(api, "reviewer")).status_code == 404
    unknown = client.get("/v1/leads", params={"kind": "aid"}, headers={HEADER: beijing})
    assert unknown.status_code == 422 and "kind" in unknown.text
    report = client.get("/v1/leads/report", headers={HEADER: beijing}).json()
    mine = client.get("/v1/leads", params={"limit": 200}, headers={HEADER: beijing}).json()
    assert all(item["province_code"] == "11" for item in mine["items"])
    assert report["scope"] == "11" and report["total"] == mine["total"]


def test_a_failing_register_never_withholds_the_answer(
    api: dict[str, Any], scored: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = api["app"].state.service

    def broken(*_: Any, **__: Any) -> Any:
        raise AuditError("the lead register is down")

    with monkeypatch.context() as patch:
        patch.setattr(state.leads, "register", broken)
        before = state.metrics.lead_register_failures._value.get()
        case_id, kind = sorted(scored["flagged"])[0]
        item = next(i for i in scored["items"] if i["record"]["case_id"] == case_id)
        item = {"record": {**item["record"], "case_id": "LEAD-SYNC-1"}}
        answer = api["client"].post("/v1/score", json=item, headers=headers(api, "case_system"))
        assert answer.status_code == 200
        assert state.metrics.lead_register_failures._value.get() == before + 1
    stored = api["client"].get(
        f"/v1/predictions/{answer.json()['prediction_id']}", headers=headers(api, "reviewer")
    )
    assert stored.status_code == 200
    assert _leads(api, case_id="LEAD-SYNC-1").total == 0
    settings = api["settings"]
    monkeypatch.setenv("AIDREC_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("AIDREC_AUDIT_URL", settings.audit_database_url)
    synced = CliRunner().invoke(app, ["leads", "sync"])
    assert synced.exit_code == 0, synced.output
    found = _leads(api, case_id="LEAD-SYNC-1", kind=kind)
    assert found.total == 1
    assert found.items[0].origin == f"answer:{answer.json()['prediction_id']}"
    again = CliRunner().invoke(app, ["leads", "sync"])
    assert "0 registered" in again.output


def test_the_openapi_documents_the_register(api: dict[str, Any]) -> None:
    spec = api["client"].get("/openapi.json").json()
    assert {"/v1/leads", "/v1/leads/{lead_id}", "/v1/leads/{lead_id}/transitions"} <= set(
        spec["paths"]
    )
    post = spec["paths"]["/v1/leads/{lead_id}/transitions"]["post"]
    assert "409" in post["responses"] and "LeadOut" in str(post["responses"]["201"])
