"""Supervision over HTTP: scopes on every read, the live deviation report, aid grades.

A county (office) key sees only its office, a city key its offices, a province key its
province: stored answers, their reviews and replays, the lists, the deviation report and
the exported reviews. The answers are scored in provinces 65 and 64, which no other test
uses, with the amounts the generated history granted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from aidrec.cli import app
from features.contract import parse_records
from features.tables import read_table
from serving.scopes import Scope
from serving.security import HEADER
from tests.api.conftest import headers
from training.deviation import AT_CEILING_SHARE

OFFICES = ("650102", "650104", "650202", "640102", None)
"""Two offices of one city, one of another city, one of another province, and none."""
SCOPES = {"county": "650102", "city": "6501", "province": "65"}


@pytest.fixture(scope="module")
def scoped(api: dict[str, Any], history_records: list[dict[str, Any]]) -> dict[str, Any]:
    """Keys of each level and about forty answers spread over OFFICES."""
    store = api["app"].state.service.keys
    keys = {
        level: store.create(f"sup-{level}", "reviewer", Scope(code), "test")
        for level, code in SCOPES.items()
    }
    granted = [r for r in history_records if r["granted"]][:40]
    items = []
    for i, source in enumerate(granted):
        office = OFFICES[i % len(OFFICES)]
        province = office[:2] if office else "65"
        record = {
            **source["record"],
            "case_id": f"SUP-{i:03d}",
            "province_code": province,
            "office_code": office,
        }
        amount = None if i % 9 == 8 else float(source["amount"])  # a few without a grant
        items.append({"record": record, "granted_amount_yuan": amount})
    response = api["client"].post(
        "/v1/score/batch", json={"items": items}, headers=headers(api, "case_system")
    )
    assert response.status_code == 200 and response.json()["refused"] == 0, response.text
    answers = [item["result"] for item in response.json()["results"]]
    for item, answer in zip(items, answers, strict=True):
        answer["office_code"] = item["record"]["office_code"]
        answer["province_code"] = item["record"]["province_code"]
    return {"keys": keys, "answers": answers}


def _get(api: dict[str, Any], key: str, path: str, **params: Any) -> Any:
    return api["client"].get(path, params=params, headers={HEADER: key})


def _all_listed(api: dict[str, Any], key: str, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = _get(api, key, "/v1/predictions", limit=200, offset=len(found), **params)
        assert page.status_code == 200, page.text
        found += page.json()["items"]
        if len(found) >= page.json()["total"]:
            return found


@pytest.mark.parametrize("level", list(SCOPES))
def test_every_read_of_an_answer_is_limited_to_the_keys_scope(
    api: dict[str, Any], scoped: dict[str, Any], level: str
) -> None:
    key, scope = scoped["keys"][level], Scope(SCOPES[level])
    answers = scoped["answers"]
    inside = {
        a["prediction_id"] for a in answers if scope.covers(a["province_code"], a["office_code"])
    }
    assert inside and len(inside) < len(answers)
    for answer in answers:
        expected = 200 if answer["prediction_id"] in inside else 404
        path = f"/v1/predictions/{answer['prediction_id']}"
        assert _get(api, key, path).status_code == expected, (level, answer["office_code"])
    listed = _all_listed(api, key)
    assert all(scope.covers(a["province_code"], a["office_code"]) for a in listed)
    assert inside <= {a["prediction_id"] for a in listed}
    # a query parameter narrows the scope, never widens it
    assert _all_listed(api, key, province_code="64") == []
    assert _all_listed(api, key, office_code="640102") == []
    # reviews and replays: one answer of each office
    seen: set[str | None] = set()
    for answer in answers:
        if answer["office_code"] in seen:
            continue
        seen.add(answer["office_code"])
        base = f"/v1/predictions/{answer['prediction_id']}"
        expected = answer["prediction_id"] in inside
        replay = api["client"].post(f"{base}/replay", headers={HEADER: key})
        assert replay.status_code == (200 if expected else 404)
        review = api["client"].post(
            f"{base}/reviews",
            json={"decision": "accepted", "reason": f"{level} 复核"},
            headers={HEADER: key},
        )
        assert review.status_code == (201 if expected else 404)


def _report(api: dict[str, Any], key: str, **params: Any) -> dict[str, Any]:
    response = _get(api, key, "/v1/reports/deviation", **params)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


FIGURES = ("count", "ratio_q1", "ratio_median", "ratio_q3", "share_outside_interval")


@pytest.mark.parametrize("level", list(SCOPES))
def test_the_deviation_report_is_limited_to_the_keys_scope(
    api: dict[str, Any], scoped: dict[str, Any], level: str
) -> None:
    key, scope = scoped["keys"][level], Scope(SCOPES[level])
    national = headers(api, "reviewer")[HEADER]
    everything = {g["group"]: g for g in _report(api, national, province_code="65")["groups"]}
    report = _report(api, key)
    assert report["scope"] == SCOPES[level]
    offices = {g["group"] for g in report["groups"]}
    assert offices and all(scope.covers(o[:2] if o else "65", o or None) for o in offices)
    mine = {a["office_code"] for a in scoped["answers"] if a["office_code"]}
    assert {o for o in mine if scope.covers(o[:2], o)} <= offices
    for group in report["groups"]:  # the same figures the national key sees for that group
        assert {f: group[f] for f in FIGURES} == pytest.approx(
            {f: everything[group["group"]][f] for f in FIGURES}
        )
    for largest in report["largest"]:
        assert scope.covers(largest["province_code"], largest["office_code"])
        assert _get(api, key, f"/v1/predictions/{largest['prediction_id']}").status_code == 200
    # parameters narrow, never widen
    assert _report(api, key, province_code="64")["overall"]["count"] == 0
    assert _report(api, key, office_code="640102")["groups"] == []


def test_the_live_report_computes_the_figures_of_the_answers_it_covers(
    api: dict[str, Any], scoped: dict[str, Any]
) -> None:
    key = headers(api, "reviewer")[HEADER]
    listed = _all_listed(api, key, province_code="65", granted="true")
    assert listed and all(a["response"]["deviation"] for a in listed)
    ratio = np.array([a["response"]["deviation"]["ratio_to_reference"] for a in listed])
    outside = np.array([a["response"]["deviation"]["outside_interval"] for a in listed])
    granted = np.array([a["response"]["deviation"]["granted_amount_yuan"] for a in listed])
    ceiling = np.array([a["response"]["reference_amount"]["ceiling_yuan"] for a in listed])
    report = _report(api, key, province_code="65", group_by="office", min_cases=1)
    q1, median, q3 = np.quantile(ratio, [0.25, 0.5, 0.75])
    assert report["overall"] == pytest.approx(
        {
            "count": len(listed),
            "ratio_q1": q1,
            "ratio_median": median,
            "ratio_q3": q3,
            "share_outside_interval": outside.mean(),
            "share_at_ceiling": (granted >= AT_CEILING_SHARE * ceiling).mean(),
        }
    )
    offices = pd.Series(ratio).groupby([a["office_code"] or "" for a in listed])
    for group in report["groups"]:
        assert group["count"] == offices.size()[group["group"]]
        assert group["ratio_median"] == pytest.approx(offices.median()[group["group"]])
        assert group["parent"] == "65"
        assert group["relative_to_parent"] == pytest.approx(group["ratio_median"] / median)
        if group["relative_to_parent"] > 1 + report["tolerance"]:
            assert group["flag"] == "generous" and group["flag_zh"] == "偏高"
        # the drill-down lists exactly the group's answers
        if group["group"] == "":
            assert group["answers"] is None and group["label_zh"] == "（未填写）"
            continue
        drilled = _get(api, key, "/v1/predictions", limit=1, **group["answers"]).json()
        assert drilled["total"] == group["count"], group["answers"]
    distances = [abs(np.log(a["ratio_to_reference"])) for a in report["largest"]]
    assert distances == sorted(distances, reverse=True)
    by_year = _report(api, key, province_code="65", group_by="year")
    assert sum(g["count"] for g in by_year["groups"]) == len(listed)
    assert all(g["label_zh"].endswith("年") for g in by_year["groups"])


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"office_code": "6501"}, "office_code", "pattern"),
        ({"province_code": "64", "office_code": "650102"}, "office_code", "province_code"),
        ({"province_code": "99"}, "province_code", "not a province code"),
        ({"group_by": "city"}, "group_by", "office"),
        ({"min_cases": 0}, "min_cases", "greater than or equal"),
        ({"from": "yesterday"}, "from", "datetime"),
    ],
)
def test_a_bad_report_query_is_422_naming_the_field(
    api: dict[str, Any], params: dict[str, Any], field: str, words: str
) -> None:
    response = _get(api, headers(api, "reviewer")[HEADER], "/v1/reports/deviation", **params)
    assert response.status_code == 422
    problems = response.json()["detail"]
    assert any(p["field"] == field and words in p["rule"] for p in problems), problems


def test_the_report_is_for_reviewers(api: dict[str, Any]) -> None:
    response = _get(api, headers(api, "case_system")[HEADER], "/v1/reports/deviation")
    assert response.status_code == 403


def test_every_answer_has_an_aid_grade_that_can_be_filtered(
    api: dict[str, Any], scoped: dict[str, Any]
) -> None:
    policy = api["app"].state.service.model.bundle.policy
    for answer in scoped["answers"]:
        grade = answer["aid_grade"]
        assert grade["policy_version"] == answer["model"]["policy_version"] == policy.version
        low, high = grade["band_months"]
        assert low <= answer["reference_amount"]["months_of_wage"] < (high or np.inf)
        band = policy.aid_grades.band(grade["grade"] + (1 if grade["raised_by"] else 0))
        assert band.min_months == low  # raised one step from the band's own grade, or not
        assert grade["label_zh"] == policy.aid_grades.label(grade["grade"])
    key = headers(api, "reviewer")[HEADER]
    grades = {a["aid_grade"]["grade"] for a in scoped["answers"]}
    for grade in grades:
        listed = _all_listed(api, key, province_code="65", aid_grade=grade)
        assert listed and {a["response"]["aid_grade"]["grade"] for a in listed} == {grade}
    assert _get(api, key, "/v1/predictions", aid_grade=0).status_code == 422


def test_exported_reviews_are_limited_to_a_scope(
    api: dict[str, Any], scoped: dict[str, Any], tmp_path: Path
) -> None:
    reviewer = headers(api, "reviewer")
    chosen = {}
    for answer in scoped["answers"]:
        if answer["office_code"] and answer["office_code"] not in chosen:
            chosen[answer["office_code"]] = answer
            api["client"].post(
                f"/v1/predictions/{answer['prediction_id']}/reviews",
                json={"decision": "rejected", "reason": "导出"},
                headers=reviewer,
            )
    runner = CliRunner()
    url = api["settings"].audit_database_url
    for scope, expected in (("6501", {"650102", "650104"}), ("65", {"650102", "650104", "650202"})):
        out = tmp_path / f"reviews-{scope}.csv"
        result = runner.invoke(
            app, ["export-reviews", "--out", str(out), "--url", url, "--scope", scope]
        )
        assert result.exit_code == 0, result.output
        frame = parse_records(read_table(out)).frame
        assert frame["office_code"].dropna().str.startswith(scope).all()
        assert (frame["province_code"] == scope[:2]).all()
        exported = set(frame.loc[frame["case_id"].str.startswith("SUP-"), "office_code"].dropna())
        assert exported == expected
    bad = runner.invoke(app, ["export-reviews", "--out", str(tmp_path / "x.csv"), "--scope", "9"])
    assert bad.exit_code == 2 and "is not a scope" in bad.output


def test_an_index_written_by_older_code_is_rebuilt_with_the_grade(tmp_path: Path) -> None:
    from dataclasses import replace

    from sqlalchemy import inspect, text

    from serving.answer_index import AnswerQuery
    from serving.audit import AuditStore
    from tests.audit_payloads import answer_entry, make_secrets

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    secrets = make_secrets(tmp_path)
    store = AuditStore.open(url, secrets)
    entry = answer_entry(1, office_code="650102", granted_yuan=9_000.0)
    payload = {
        **entry.payload,
        "response": {**entry.payload["response"], "aid_grade": {"grade": 2}},
    }
    store.append(replace(entry, payload=payload))
    with store.engine.begin() as connection:  # the index as the code before grades wrote it
        connection.execute(text("DROP INDEX ix_answer_index_aid_grade"))
        connection.execute(text("ALTER TABLE answer_index DROP COLUMN aid_grade"))
    store.engine.dispose()
    reopened = AuditStore.open(url, secrets)
    columns = {c["name"] for c in inspect(reopened.engine).get_columns("answer_index")}
    assert "aid_grade" in columns
    records, total = reopened.predictions(AnswerQuery(aid_grade=2))
    assert total == 1 and records[0].record_id == "p-1"
    assert reopened.indexed(["p-1"])["p-1"].granted_yuan == 9_000.0
