"""The live answer joins the department registries (数据来源), over HTTP."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy.exc import OperationalError

from features.department_rules import DepartmentRules
from features.registries import DibaoTable, RegistryConfig, extract_digest, validate_extract
from serving.registry_store import RegistryStore
from serving.schemas import EXAMPLE_RECORD, ScoreResponse
from tests.api.conftest import headers
from tests.api.test_pages import signed_in
from training.screening import RegistrySnapshot, Screener

CONFIG = RegistryConfig.load()
DECISION = dt.date(EXAMPLE_RECORD["decision_year"], 12, 31)


def key(name: str) -> str:
    return hashlib.sha256(f"live-join-{name}".encode()).hexdigest()


def put(store: RegistryStore, kind: str, on: dt.date, **columns: list[str]) -> int:
    rows = validate_extract(pd.DataFrame(columns), CONFIG.department(kind), on)
    return store.import_extract(
        kind, on, rows, extract_digest(rows), f"{kind}.csv", "v"
    ).snapshot.id


@pytest.fixture(scope="module")
def registries(api: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The service reads a registry store of its own for this module (others see none)."""
    folder: Path = tmp_path_factory.mktemp("live-join")
    store = RegistryStore.open(f"sqlite:///{folder / 'registries.db'}")
    state = api["app"].state.service
    previous = state.registry_store
    state.registry_store = store
    yield store
    state.registry_store = previous
    store.close()


def score(api: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body = {"record": {**EXAMPLE_RECORD, "case_id": "LIVE-JOIN-1", **changes}}
    response = api["client"].post("/v1/score", json=body, headers=headers(api, "case_system"))
    assert response.status_code == 200, response.text
    return dict(response.json())


def replay(api: dict[str, Any], prediction_id: str) -> dict[str, Any]:
    response = api["client"].post(
        f"/v1/predictions/{prediction_id}/replay", headers=headers(api, "reviewer")
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_keyed_card_is_joined_shown_stored_and_replayed_after_a_new_import(
    api: dict[str, Any], registries: RegistryStore
) -> None:
    first = put(
        registries,
        "dibao",
        dt.date(EXAMPLE_RECORD["decision_year"], 6, 30),
        person_key=[key("a")],
        status=["active"],
        valid_from=["2020-01-01"],
    )
    answer = score(api, person_key=key("a"), low_income_status="none")
    found = answer["data_sources"]
    assert found["status"] == "joined" and found["read_on"] == DECISION.isoformat()
    low = next(f for f in found["fields"] if f["field"] == "low_income_status")
    assert (low["card"], low["registry"], low["used"], low["conflict"]) == (
        "none",
        "dibao",
        "dibao",
        True,
    )
    assert low["sources"][0]["snapshot_id"] == first
    assert low["sources"][0]["department_zh"] == "最低生活保障（低保）"
    # the model read the registry's value: the same card saying dibao scores the same
    said = score(api, person_key=key("a"), low_income_status="dibao")
    unjoined = score(api, low_income_status="none")
    assert (
        said["leads"] == answer["leads"] and said["reference_amount"] == answer["reference_amount"]
    )
    assert unjoined["data_sources"]["status"] == "no_person_key"
    assert unjoined["leads"] != answer["leads"]  # the card's own "none" reads otherwise
    stored = (
        api["client"]
        .get(f"/v1/predictions/{answer['prediction_id']}", headers=headers(api, "reviewer"))
        .json()
    )
    assert stored["response"]["data_sources"] == found
    # a newer extract: the person left 低保 — new answers read it, the replay does not
    newer = put(
        registries,
        "dibao",
        dt.date(EXAMPLE_RECORD["decision_year"], 9, 30),
        person_key=[key("a")],
        status=["ended"],
        valid_from=["2020-01-01"],
    )
    later = score(api, person_key=key("a"), low_income_status="none")
    assert later["data_sources"]["snapshots"][0]["snapshot_id"] == newer
    assert not any(f["conflict"] for f in later["data_sources"]["fields"])
    assert replay(api, answer["prediction_id"]) == {
        "prediction_id": answer["prediction_id"],
        "model_version": answer["model"]["version"],
        "identical": True,
        "differences": [],
    }
    assert replay(api, later["prediction_id"])["identical"]
    # the answer page shows both values and the source
    page = signed_in(api).get(f"/ui/predictions/{answer['prediction_id']}")
    assert page.status_code == 200
    block = page.text.split('id="sources"', 1)[1].split("</section>", 1)[0]
    assert "已比对部门登记数据" in block and 'id="sources-conflict"' in block
    assert "最低生活保障（低保）" in block and f"第 {first} 号快照" in block
    assert "民政部门" in block and "不一致" in block


def test_a_card_without_a_person_key_reads_no_registry(
    api: dict[str, Any], registries: RegistryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def untouchable(*_: Any, **__: Any) -> Any:
        raise AssertionError("no registry query without a person key")

    monkeypatch.setattr(registries, "persons", untouchable)
    answer = score(api)
    assert answer["data_sources"]["status"] == "no_person_key"
    assert answer["data_sources"]["fields"] == []
    assert replay(api, answer["prediction_id"])["identical"]


def test_an_unreachable_store_still_answers_from_the_card(
    api: dict[str, Any], registries: RegistryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(
        registries,
        "disability",
        dt.date(EXAMPLE_RECORD["decision_year"], 6, 30),
        person_key=[key("b")],
        status=["active"],
        valid_from=["2020-01-01"],
        disability_category=["physical"],
        disability_level=["2"],
        certificate=["true"],
    )

    def down(*_: Any, **__: Any) -> Any:
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    with monkeypatch.context() as patch:
        patch.setattr(registries, "persons", down)
        answer = score(api, person_key=key("b"), disability_certificate=False)
    assert answer["data_sources"]["status"] == "unavailable"
    assert "不可用" in answer["data_sources"]["status_zh"]
    # the store is back: the replay still gives the card-alone answer it stored
    assert replay(api, answer["prediction_id"])["identical"]
    joined = score(api, person_key=key("b"), disability_certificate=False)
    cert = next(
        f for f in joined["data_sources"]["fields"] if f["field"] == "disability_certificate"
    )
    assert cert["registry"] is True and cert["used"] is True and cert["conflict"]


def test_live_and_screening_score_a_keyed_card_alike(
    api: dict[str, Any], registries: RegistryStore
) -> None:
    put(
        registries,
        "tekun",
        dt.date(EXAMPLE_RECORD["decision_year"], 6, 30),
        person_key=[key("c")],
        status=["active"],
        valid_from=["2021-01-01"],
    )
    record = {**EXAMPLE_RECORD, "case_id": "LIVE-JOIN-S", "person_key": key("c")}
    response = api["client"].post(
        "/v1/score",
        json={"record": record},
        params={"explain": "false"},
        headers=headers(api, "case_system"),
    )
    assert response.status_code == 200, response.text
    answer = ScoreResponse.model_validate(response.json())
    view = registries.as_of(DECISION)
    screener = Screener(
        bundle=api["app"].state.service.model.bundle,
        registries=RegistrySnapshot(view.rows, view.snapshot_dates),
        registry_config=CONFIG,
        rules=DepartmentRules.load(),
        dibao=DibaoTable.from_csv(),
        run_id="live-join",
        as_of=DECISION,
        top_reasons=0,
        keep_card_scores=True,
    )
    wire = {k: "|".join(v) if isinstance(v, list) else v for k, v in record.items()}
    screener.screen(pd.DataFrame([wire]))
    screened = screener.card_scores[0]
    assert screened["p_judicial_aid"].iloc[0] == pytest.approx(
        answer.leads["judicial_aid"].probability, abs=1e-4
    )
    assert answer.data_sources is not None
    low = next(f for f in answer.data_sources.fields if f.field == "low_income_status")
    assert low.used == "tekun" and low.card == EXAMPLE_RECORD["low_income_status"]


def test_a_flagged_live_lead_carries_its_sources(
    api: dict[str, Any], registries: RegistryStore, history_records: list[dict[str, Any]]
) -> None:
    on = dt.date(2014, 1, 1)  # before every decision year: known on each card's date
    keys = [key(f"lead-{i}") for i in range(40)]
    snapshot = put(
        registries,
        "veteran_family",
        on,
        person_key=keys,
        status=["active"] * len(keys),
        valid_from=["2010-01-01"] * len(keys),
    )
    items = [
        {
            "record": {
                **r["record"],
                "case_id": f"LIVE-LEAD-{i:03d}",
                "person_key": keys[i],
            }
        }
        for i, r in enumerate(history_records[:40])
    ]
    response = api["client"].post(
        "/v1/score/batch", json={"items": items}, headers=headers(api, "case_system")
    )
    assert response.status_code == 200, response.text
    results = [item["result"] for item in response.json()["results"]]
    assert all(r is not None for r in results), response.text
    flagged = [
        (r["case_id"], name)
        for r in results
        for name, lead in r["leads"].items()
        if lead["flagged"]
    ]
    assert flagged
    case_id, kind = flagged[0]
    page = (
        api["client"]
        .get(
            "/v1/leads", params={"case_id": case_id, "kind": kind}, headers=headers(api, "reviewer")
        )
        .json()
    )
    assert page["total"] == 1
    sources = page["items"][0]["sources"]
    assert {
        "department": "veteran_family",
        "department_zh": CONFIG.departments["veteran_family"].zh,
        "snapshot": on.isoformat(),
        "snapshot_id": snapshot,
        "field": "registry_flags",
    } in sources
    lead_page = signed_in(api).get(f"/ui/leads/{page['items'][0]['id']}")
    assert lead_page.status_code == 200
    assert CONFIG.departments["veteran_family"].zh in lead_page.text
    assert f"第 {snapshot} 号快照" in lead_page.text
