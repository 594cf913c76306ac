"""Every bad request gets a clear error naming what is wrong; none gets a 500."""

from __future__ import annotations

from typing import Any

import pytest

from serving.schemas import EXAMPLE_RECORD
from tests.api.conftest import headers


def _post(api: dict[str, Any], body: Any, **kwargs: Any) -> Any:
    return api["client"].post("/v1/score", json=body, headers=headers(api, "case_system"), **kwargs)


@pytest.mark.parametrize(
    ("change", "field", "words", "zh"),
    [
        ({"victim_age": 130}, "record.victim_age", "0 to 120", "数值超过上限"),
        ({"crime_type": "arson"}, "record.crime_type", "intentional_injury", "取值不在允许范围内"),
        ({"province_code": None}, "record.province_code", "11, 12", "取值不在允许范围内"),
        (
            {"registry_flags": ["alien"]},
            "record.registry_flags.0",
            "veteran_family",
            "取值不在允许范围内",
        ),
        ({"medical_cost_yuan": -1}, "record.medical_cost_yuan", "≥ 0", "数值低于下限"),
        ({"victim_name": "张三"}, "record.victim_name", "no personal identifiers", "个人身份信息"),
        ({"aid_granted": True}, "record.aid_granted", "not a field of the contract", "合同未定义"),
        (
            {"dependants": 1, "minor_dependants": 2},
            "record.minor_dependants",
            "≤ dependants",
            "矛盾",
        ),
        (
            {"harm_outcome": "death", "disability_grade": 3},
            "record.disability_grade",
            "only assessed for injuries",
            "矛盾",
        ),
        ({"office_code": "440104"}, "record.office_code", "province_code is '32'", "矛盾"),
        ({"office_code": "32010"}, "record.office_code", "6-digit", "格式不符合要求"),
        ({"person_key": "320106198001010011"}, "record.person_key", "hexadecimal", "格式"),
        ({"case_id": "A\x00B"}, "record.case_id", "control characters", "格式不符合要求"),
        (
            {"contract_version": "1.0", "harm_outcome": "sexual_or_psychological"},
            "record.harm_outcome",
            "must use one of death",
            "矛盾",
        ),
    ],
)
def test_contract_violations_are_422_naming_field_and_rule(
    api: dict[str, Any], change: dict[str, Any], field: str, words: str, zh: str
) -> None:
    response = _post(api, {"record": {**EXAMPLE_RECORD, **change}})
    assert response.status_code == 422, response.text
    problems = {p["field"]: p for p in response.json()["detail"]}
    assert field in problems, problems
    assert words in problems[field]["rule"]
    assert zh in problems[field]["rule_zh"]


def test_missing_required_field(api: dict[str, Any]) -> None:
    record = {k: v for k, v in EXAMPLE_RECORD.items() if k != "victim_sex"}
    problem = _post(api, {"record": record}).json()["detail"][0]
    assert problem["field"] == "record.victim_sex" and problem["rule_zh"] == "必填字段缺失"


def test_wrong_content_type_is_415(api: dict[str, Any]) -> None:
    response = api["client"].post(
        "/v1/score",
        content=b"case_id=1",
        headers={**headers(api, "case_system"), "Content-Type": "text/plain"},
    )
    assert response.status_code == 415


def test_too_large_a_body_is_413(api: dict[str, Any]) -> None:
    big = {"record": EXAMPLE_RECORD, "padding": "x" * 300_000}
    assert _post(api, big).status_code == 413


def test_too_large_a_streamed_body_is_413(api: dict[str, Any]) -> None:
    def chunks() -> Any:
        for _ in range(30):
            yield b"x" * 10_000

    response = api["client"].post(
        "/v1/score",
        content=chunks(),
        headers={**headers(api, "case_system"), "Content-Type": "application/json"},
    )
    assert response.status_code == 413


def test_malformed_json_is_422(api: dict[str, Any]) -> None:
    response = api["client"].post(
        "/v1/score",
        content=b"{not json",
        headers={**headers(api, "case_system"), "Content-Type": "application/json"},
    )
    assert response.status_code == 422


def test_unknown_route_is_404_and_wrong_method_405(api: dict[str, Any]) -> None:
    auth = headers(api, "reviewer")
    response = api["client"].get("/v1/nothing-here", headers=auth)
    assert response.status_code == 404 and "no such route" in response.json()["detail"]
    assert api["client"].get("/v1/score", headers=auth).status_code == 405
    assert api["client"].get("/v1/nothing-here").status_code == 401  # the key comes first
    assert api["client"].get("/nothing-here").status_code == 404
