"""POST /v1/score and /v1/score/batch through the HTTP interface."""

from __future__ import annotations

from typing import Any

import pytest

from serving.schemas import EXAMPLE_RECORD, BatchResponse, ScoreResponse
from tests.api.conftest import headers

CASE = "case_system"


def _score(api: dict[str, Any], record: dict[str, Any], **extra: Any) -> Any:
    return api["client"].post(
        "/v1/score", json={"record": record, **extra}, headers=headers(api, CASE)
    )


def test_the_answer_has_every_part_and_matches_its_schema(api: dict[str, Any]) -> None:
    response = _score(api, EXAMPLE_RECORD, granted_amount_yuan=30_000)
    assert response.status_code == 200, response.text
    answer = ScoreResponse.model_validate(response.json())
    amount = answer.reference_amount
    assert amount.yuan == pytest.approx(
        amount.months_of_wage * amount.wage_base.base_monthly_wage_yuan
    )
    low, high = amount.interval_80_yuan
    assert low <= amount.yuan <= high <= amount.ceiling_yuan
    assert amount.ceiling_yuan == pytest.approx(36 * amount.wage_base.base_monthly_wage_yuan)
    assert amount.wage_base.wage_year == 2023 and amount.wage_base.estimated  # Jiangsu, 2025
    assert any("nearest earlier" in note for note in answer.notes)
    assert answer.eligibility.status == "eligible"
    assert {h.id for h in answer.eligibility.rule_hits} >= {"ART7_SEVERE_INJURY_NO_COMPENSATION"}
    assert set(answer.leads) == {"judicial_aid", "social_assistance", "civil_support"}
    assert set(answer.explanations) == {"reference_amount", *answer.leads}
    assert len(answer.similar_cases) == 5
    assert answer.deviation is not None
    assert answer.deviation.ratio_to_reference == pytest.approx(30_000 / amount.yuan)
    assert answer.deviation.outside_interval == (not low <= 30_000 <= high)
    assert answer.model.name == "judicial-aid"


def test_contributions_add_up_to_the_model_output(api: dict[str, Any]) -> None:
    answer = _score(api, EXAMPLE_RECORD).json()
    for name, explanation in answer["explanations"].items():
        total = explanation["base_value"] + sum(c["contribution"] for c in explanation["top"])
        assert total + explanation["rest"] == pytest.approx(explanation["output"], abs=1e-6), name
    amount = answer["explanations"]["reference_amount"]
    assert amount["output"] == pytest.approx(answer["reference_amount"]["months_of_wage"], abs=1e-9)
    base = answer["reference_amount"]["wage_base"]["base_monthly_wage_yuan"]
    for contribution in amount["top"]:
        assert contribution["contribution_yuan"] == pytest.approx(
            contribution["contribution"] * base
        )
        assert contribution["label_zh"]


def test_no_deviation_without_a_granted_amount(api: dict[str, Any]) -> None:
    assert _score(api, EXAMPLE_RECORD).json()["deviation"] is None


def test_a_case_from_the_history_finds_itself_first(
    api: dict[str, Any], history_records: list[dict[str, Any]]
) -> None:
    aided = [r for r in history_records if r["granted"]][:5]
    assert len(aided) == 5
    for case in aided:
        similar = _score(api, case["record"]).json()["similar_cases"]
        assert similar[0]["case_id"] == case["record"]["case_id"]
        assert similar[0]["similarity"] == pytest.approx(1.0)
        assert similar[0]["amount_yuan"] == pytest.approx(case["amount"])
        assert [s["similarity"] for s in similar] == sorted(
            (s["similarity"] for s in similar), reverse=True
        )


def test_batch_answers_each_item_or_gives_it_its_own_error(
    api: dict[str, Any], history_records: list[dict[str, Any]]
) -> None:
    good = [{"record": r["record"]} for r in history_records[:6]]
    bad_type = {"record": {**EXAMPLE_RECORD, "victim_age": -4}}
    bad_cross = {"record": {**EXAMPLE_RECORD, "dependants": 1, "minor_dependants": 3}}
    items = [good[0], bad_type, *good[1:3], bad_cross, *good[3:]]
    response = api["client"].post(
        "/v1/score/batch", json={"items": items}, headers=headers(api, CASE)
    )
    assert response.status_code == 200, response.text
    batch = BatchResponse.model_validate(response.json())
    assert (batch.scored, batch.refused) == (6, 2)
    assert (
        batch.results[1].errors and batch.results[1].errors[0].field == "items.1.record.victim_age"
    )
    assert (
        batch.results[4].errors
        and batch.results[4].errors[0].field == "items.4.record.minor_dependants"
    )
    single = _score(api, good[0]["record"]).json()
    first = batch.results[0].result
    assert first is not None
    assert first.reference_amount.yuan == single["reference_amount"]["yuan"]
    assert first.leads["judicial_aid"].probability == single["leads"]["judicial_aid"]["probability"]


def test_a_batch_over_the_limit_is_refused(api: dict[str, Any]) -> None:
    items = [{"record": EXAMPLE_RECORD}] * 51
    response = api["client"].post(
        "/v1/score/batch", json={"items": items}, headers=headers(api, CASE)
    )
    assert response.status_code == 422
    assert "at most 50 items" in response.json()["detail"][0]["rule"]


def test_model_card(api: dict[str, Any]) -> None:
    card = api["client"].get("/v1/model", headers=headers(api, "reviewer")).json()
    assert card["model"]["name"] == "judicial-aid"
    assert card["evaluation"]["amount_mae_yuan"] > 0
    assert "province_code" not in card["features"]["reference_amount"]
    assert "province_code" in card["features"]["judicial_aid"]
    assert card["monotone_constraints"]["harm_severity"] == 1
    assert set(card["monotone_shapes"]) == set(card["monotone_constraints"])
    assert card["training_data"]["rows"] > 0


def test_metrics_count_requests_scores_and_flags(api: dict[str, Any]) -> None:
    _score(api, EXAMPLE_RECORD)
    text = api["client"].get("/metrics").text
    assert 'aidrec_requests_total{method="POST",route="/v1/score",status="200"}' in text
    assert "aidrec_scores_total{model_version=" in text
    assert "aidrec_request_seconds_bucket" in text
    assert 'aidrec_flagged_leads_total{lead="judicial_aid"}' in text


def test_absurd_but_valid_amounts_still_get_finite_answers(api: dict[str, Any]) -> None:
    record = {
        **EXAMPLE_RECORD,
        "medical_cost_yuan": 1e300,
        "compensation_received_yuan": 1e299,
        "monthly_household_income_yuan": 1e300,
    }
    response = _score(api, record)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["reference_amount"]["yuan"] <= answer["reference_amount"]["ceiling_yuan"]
    assert all(0.0 < case["similarity"] <= 1.0 for case in answer["similar_cases"])
