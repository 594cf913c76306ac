"""The answer index beside the chain: filters, order, scopes, and rebuilding it from the chain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from serving.answer_index import AnswerQuery
from serving.audit import REVIEW, AuditEntry, AuditStore, index, verify_chain
from serving.schemas import EXAMPLE_RECORD
from serving.scopes import Scope, ScopeError
from serving.security import HEADER, ApiKey, key_hash
from tests.api.conftest import headers
from tests.audit_payloads import answer_entry, make_secrets


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    store = AuditStore.open(f"sqlite:///{tmp_path / 'audit.db'}", make_secrets(tmp_path))
    store.append_many(
        [
            answer_entry(1, office_code="320104", granted_yuan=30_000.0),  # outside [5k, 20k]
            answer_entry(2, office_code="320106", granted_yuan=12_000.0),
            answer_entry(3, province_code="44", office_code="440104"),
            answer_entry(4, office_code=None),
        ]
    )
    return store


def _ids(store: AuditStore, **query: Any) -> list[str]:
    records, total = store.predictions(AnswerQuery(**query), limit=50)
    assert total == len(records)
    return [r.record_id for r in records]


def test_filters_narrow_and_scopes_contain(store: AuditStore) -> None:
    assert _ids(store) == ["p-4", "p-3", "p-2", "p-1"]  # newest first
    assert _ids(store, outside_interval=True) == ["p-1"]
    assert _ids(store, outside_interval=False) == ["p-2"]
    assert _ids(store, lead_flagged="judicial_aid") == ["p-4", "p-2"]
    assert _ids(store, flagged=False) == ["p-3", "p-1"]
    assert _ids(store, scope=Scope("32")) == ["p-4", "p-2", "p-1"]
    assert _ids(store, scope=Scope("3201")) == ["p-2", "p-1"]  # p-4 names no office
    assert _ids(store, scope=Scope("320104")) == ["p-1"]
    # a filter never widens the scope
    assert _ids(store, scope=Scope("320104"), province_code="44") == []
    assert _ids(store, scope=Scope("32"), office_code="440104") == []


def test_order_by_a_leads_probability(store: AuditStore) -> None:
    ranked = _ids(store, order_by_lead="judicial_aid")
    assert ranked[:2] == ["p-4", "p-2"]  # flagged (0.9) before the rest (0.1), newest first


def test_reviews_set_the_review_status(store: AuditStore) -> None:
    assert _ids(store, review_status="unreviewed") == ["p-4", "p-3", "p-2", "p-1"]
    prediction = store.prediction("p-2")
    assert prediction is not None
    for decision in ("accepted", "rejected"):
        store.append(
            AuditEntry(
                REVIEW, "p-2", "r", "C-2", "32", True, "1", {"decision": decision, "reason": "x"}
            )
        )
    assert _ids(store, review_status="rejected") == ["p-2"]
    assert _ids(store, review_status="accepted") == []
    facts = store.indexed(["p-2"])["p-2"]
    assert facts.review_status == "rejected" and facts.leads["judicial_aid"] == (0.9, True)


def test_the_index_is_rebuilt_from_the_chain(store: AuditStore, tmp_path: Path) -> None:
    before = {i: store.indexed([i])[i] for i in ("p-1", "p-2", "p-3", "p-4")}
    with store.engine.begin() as connection:
        connection.execute(delete(index.leads))
        connection.execute(delete(index.answers))
    reopened = AuditStore.open(str(store.engine.url), store.secrets)  # a lagging index is rebuilt
    with reopened.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(index.answers)).scalar() == 4
    assert {i: reopened.indexed([i])[i] for i in before} == before
    assert verify_chain(reopened.engine, store.secrets).ok  # the chain itself was never touched


def test_scope_parsing() -> None:
    assert Scope.parse("national") == Scope("") and Scope.parse(None).level == "national"
    assert Scope.parse("3201").level == "city" and str(Scope.parse("320104")) == "320104"
    assert Scope("32").contains(Scope("320104")) and not Scope("3201").contains(Scope("32"))
    for bad in ("99", "321", "abcd", "3201041"):
        with pytest.raises(ScopeError):
            Scope.parse(bad)


def test_a_scoped_key_sees_only_its_part(api: dict[str, Any], tmp_path: Path) -> None:
    client, state = api["client"], api["app"].state.service
    nanjing = client.post(
        "/v1/score",
        json={"record": {**EXAMPLE_RECORD, "case_id": "SCOPE-1", "office_code": "320106"}},
        headers=headers(api, "case_system"),
    ).json()
    guangzhou = client.post(
        "/v1/score",
        json={
            "record": {
                **EXAMPLE_RECORD,
                "case_id": "SCOPE-2",
                "province_code": "44",
                "office_code": "440104",
            }
        },
        headers=headers(api, "case_system"),
    ).json()
    state.keys.add(ApiKey("nanjing", "reviewer", key_hash("k-nanjing"), Scope("3201")), "test")
    try:
        auth = {HEADER: "k-nanjing"}
        mine = client.get(f"/v1/predictions/{nanjing['prediction_id']}", headers=auth)
        assert mine.status_code == 200 and mine.json()["office_code"] == "320106"
        theirs = client.get(f"/v1/predictions/{guangzhou['prediction_id']}", headers=auth)
        assert theirs.status_code == 404  # as if it did not exist
        review = client.post(
            f"/v1/predictions/{guangzhou['prediction_id']}/reviews",
            json={"decision": "accepted", "reason": "x"},
            headers=auth,
        )
        assert review.status_code == 404
        listed = client.get(
            "/v1/predictions", params={"case_id": "SCOPE-2", "province_code": "44"}, headers=auth
        ).json()
        assert listed["total"] == 0
        listed = client.get("/v1/predictions", params={"case_id": "SCOPE-1"}, headers=auth).json()
        assert [i["case_id"] for i in listed["items"]] == ["SCOPE-1"]
    finally:
        state.keys.revoke("nanjing", "test")
