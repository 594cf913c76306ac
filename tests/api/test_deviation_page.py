"""The 同案不同救监督 page in-process: scopes, flagged groups, drill-down, empty state, bad filters.

Its answers are scored in provinces 63 and 62, which no other test uses: three offices of
province 63 (two of city 6301, one of 6302), one of 62 and some without an office. Office
630104 grants 100 yuan whatever the case, so that the report has a stingy office to flag.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving import formats
from serving.guards import CONTENT_SECURITY_POLICY
from serving.scopes import Scope
from serving.security import HEADER
from tests.api.conftest import headers
from tests.api.test_pages import browser, sign_in, signed_in

OFFICES = ("630102", "630104", "630202", "620102", None)
STINGY_OFFICE = "630104"
SCOPES = {"county": "630102", "city": "6301", "province": "63"}
ROW = re.compile(r'<tr(?: class="flag-(\w+)")? data-group="([^"]*)">')
GROUP_LINK = re.compile(r'<th scope="row"[^>]*><a href="([^"]+)">')
ANSWER_LINK = re.compile(r'href="/ui/predictions/([0-9a-f-]{8,})"')
TOTAL = re.compile(r"共 ([\d,]+) 条")
COUNT = re.compile(r'data-group="([^"]*)">.*?<td data-label="案件数" class="num">([\d,]+)', re.S)


@pytest.fixture(scope="module")
def answers(api: dict[str, Any], history_records: list[dict[str, Any]]) -> dict[str, Any]:
    """Keys of each level and thirty-odd answers with a granted amount spread over OFFICES."""
    store = api["app"].state.service.keys
    keys = {
        level: store.create(f"devpage-{level}", "reviewer", Scope(code), "test")
        for level, code in SCOPES.items()
    }
    keys["elsewhere"] = store.create("devpage-elsewhere", "reviewer", Scope("61"), "test")
    granted = [r for r in history_records if r["granted"]][:35]
    items = []
    for i, source in enumerate(granted):
        office = OFFICES[i % len(OFFICES)]
        record = {
            **source["record"],
            "case_id": f"DEVPAGE-{i:03d}",
            "province_code": office[:2] if office else "63",
            "office_code": office,
        }
        amount = 100.0 if office == STINGY_OFFICE else float(source["amount"])
        items.append({"record": record, "granted_amount_yuan": amount})
    response = api["client"].post(
        "/v1/score/batch", json={"items": items}, headers=headers(api, "case_system")
    )
    assert response.status_code == 200 and response.json()["refused"] == 0, response.text
    scored = [item["result"] for item in response.json()["results"]]
    for item, answer in zip(items, scored, strict=True):
        answer["office_code"] = item["record"]["office_code"]
        answer["province_code"] = item["record"]["province_code"]
    return {"keys": keys, "answers": scored}


def as_key(api: dict[str, Any], key: str) -> TestClient:
    client = browser(api)
    assert sign_in(client, key).status_code == 303
    return client


def rows_of(page: str) -> dict[str, str]:
    """The table's groups: key → flag ("" when not flagged)."""
    return {group: flag for flag, group in ROW.findall(page)}


def group_links(page: str) -> list[str]:
    return [html.unescape(link) for link in GROUP_LINK.findall(page)]


def total_of(page: str) -> int:
    found = TOTAL.search(page)
    assert found, "the list page shows no total"
    return int(found.group(1).replace(",", ""))


def api_report(api: dict[str, Any], key: str, **params: Any) -> dict[str, Any]:
    response = api["client"].get("/v1/reports/deviation", params=params, headers={HEADER: key})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_the_page_needs_a_session_and_is_in_the_navigation(api: dict[str, Any]) -> None:
    response = browser(api).get("/ui/deviation?group_by=year")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=%2Fui%2Fdeviation%3Fgroup_by%3Dyear"
    page = signed_in(api).get("/ui/deviation")
    assert page.status_code == 200
    assert '<a href="/ui/deviation" aria-current="page">同案不同救监督</a>' in page.text
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY.decode()
    assert "<script" not in page.text and "style=" not in page.text


@pytest.mark.parametrize("level", list(SCOPES))
def test_a_key_sees_only_the_groups_and_answers_of_its_scope(
    api: dict[str, Any], answers: dict[str, Any], level: str
) -> None:
    key, scope = answers["keys"][level], Scope(SCOPES[level])
    client = as_key(api, key)
    page = client.get("/ui/deviation", params={"group_by": "office", "min_cases": "1"})
    assert page.status_code == 200, page.text
    shown = set(rows_of(page.text))
    counts = dict(COUNT.findall(page.text))
    mine = {o for o in OFFICES if o and scope.covers(o[:2], o)}
    assert mine <= shown
    assert all(scope.covers(o[:2], o) for o in shown if o)
    for other in {o for o in OFFICES if o} - mine:
        assert f'data-group="{other}"' not in page.text
    # every answer the page links to is one of the scope's, and its page opens
    linked = set(ANSWER_LINK.findall(page.text))
    assert linked
    inside = {
        a["prediction_id"]
        for a in answers["answers"]
        if scope.covers(a["province_code"], a["office_code"])
    }
    outside = {a["prediction_id"] for a in answers["answers"]} - inside
    assert not linked & outside
    for prediction_id in list(linked)[:3]:
        assert client.get(f"/ui/predictions/{prediction_id}").status_code == 200
    # each group's drill-down lists exactly its answers, inside the scope
    for link in group_links(page.text):
        assert "granted=yes" in link
        listed = client.get(link)
        assert listed.status_code == 200, link
        group = re.search(r"office_code=(\d{6})", link)
        assert group and scope.covers(group.group(1)[:2], group.group(1))
        assert total_of(listed.text) == int(counts[group.group(1)].replace(",", ""))
    # a query parameter narrows the scope, never widens it
    for params in ({"province_code": "62"}, {"office_code": "620102"}):
        narrowed = client.get("/ui/deviation", params=params)
        assert narrowed.status_code == 200 and 'id="empty"' in narrowed.text
        assert "620102" not in narrowed.text.rsplit("</form>", 1)[1]
    for outside_id in list(outside)[:2]:
        assert client.get(f"/ui/predictions/{outside_id}").status_code == 404


def test_flagged_groups_are_the_reports_and_the_stingy_office_drills_down_to_its_answers(
    api: dict[str, Any], answers: dict[str, Any]
) -> None:
    client = signed_in(api)
    today = dt.datetime.now(formats.BEIJING).date()
    params = {
        "group_by": "office",
        "province_code": "63",
        "min_cases": "1",
        "from": str(today - dt.timedelta(days=1)),
        "to": str(today),
    }
    page = client.get("/ui/deviation", params=params)
    assert page.status_code == 200
    since = dt.datetime.combine(today - dt.timedelta(days=1), dt.time(), formats.BEIJING)
    report = api_report(
        api,
        headers(api, "reviewer")[HEADER],
        **{**params, "from": since.isoformat(), "to": (since + dt.timedelta(days=2)).isoformat()},
    )
    rows = rows_of(page.text)
    assert rows == {g["group"]: g["flag"] or "" for g in report["groups"]}
    assert rows[STINGY_OFFICE] == "stingy"
    assert "标记规则：案件数不少于 1 件" in page.text
    # the chart draws every group, the flagged one in its own colour, said in words
    assert page.text.count('class="chart"') == 2  # the wide and the narrow drawing
    assert f"{STINGY_OFFICE} 7 件，中位数" in page.text
    link = next(link for link in group_links(page.text) if f"office_code={STINGY_OFFICE}" in link)
    assert f"from={params['from']}" in link and f"to={params['to']}" in link
    listed = client.get(link)
    assert listed.status_code == 200
    stingy = [a for a in answers["answers"] if a["office_code"] == STINGY_OFFICE]
    assert total_of(listed.text) == len(stingy)
    assert set(ANSWER_LINK.findall(listed.text)) == {a["prediction_id"] for a in stingy}
    answer = client.get(f"/ui/predictions/{stingy[0]['prediction_id']}")
    grade = stingy[0]["aid_grade"]
    assert f'<strong id="aid-grade">{grade["label_zh"]}</strong>' in answer.text
    assert f'<span id="policy-version" class="mono">{grade["policy_version"]}</span>' in answer.text


@pytest.mark.parametrize("group_by", ["province", "year", "crime_type", "harm_outcome"])
def test_every_grouping_drills_down_to_exactly_its_groups_answers(
    api: dict[str, Any], answers: dict[str, Any], group_by: str
) -> None:
    client = as_key(api, answers["keys"]["province"])
    page = client.get("/ui/deviation", params={"group_by": group_by})
    assert page.status_code == 200
    counts = dict(COUNT.findall(page.text))
    links = group_links(page.text)
    assert links and len(links) == len([g for g in counts if g])
    assert sum(int(c.replace(",", "")) for c in counts.values()) == len(
        [a for a in answers["answers"] if a["province_code"] == "63"]
    )
    for link in links:
        key = link.rsplit("=", 1)[1]
        assert total_of(client.get(link).text) == int(counts[key].replace(",", "")), link


def test_the_page_says_when_there_is_nothing_to_report(
    api: dict[str, Any], answers: dict[str, Any]
) -> None:
    page = as_key(api, answers["keys"]["elsewhere"]).get("/ui/deviation")
    assert page.status_code == 200
    assert 'id="empty"' in page.text and "暂无可统计的偏离" in page.text
    assert 'id="group-table"' not in page.text


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"group_by": "city"}, "group_by", "不是可选的分组方式"),
        ({"office_code": "6301"}, "office_code", "6 位数字"),
        ({"province_code": "62", "office_code": "630102"}, "office_code", "省份代码一致"),
        ({"province_code": "99"}, "province_code", "省份代码"),
        ({"aid_grade": "0"}, "aid_grade", "救助等级"),
        ({"from": "2025-13-01"}, "from", "日期应写作"),
        ({"from": "2025-03-05", "to": "2025-03-01"}, "to", "结束日期早于开始日期"),
        ({"tolerance": "0"}, "tolerance", "偏离容差"),
        ({"min_cases": "many"}, "min_cases", "最少案件数"),
    ],
)
def test_a_bad_filter_is_named_in_chinese_and_no_report_is_shown(
    api: dict[str, Any], answers: dict[str, Any], params: dict[str, str], field: str, words: str
) -> None:
    client = signed_in(api)
    stored = api_report(api, headers(api, "reviewer")[HEADER], province_code="63")
    page = client.get("/ui/deviation", params=params)
    assert page.status_code == 422
    message = re.search(rf'<p id="{field}_error" class="error" role="alert">([^<]+)</p>', page.text)
    assert message and words in html.unescape(message.group(1)), page.text
    assert f'id="{field}" name="{field}"' in page.text and 'aria-invalid="true"' in page.text
    assert 'id="group-table"' not in page.text and 'id="overall"' not in page.text
    assert api_report(api, headers(api, "reviewer")[HEADER], province_code="63") == stored


def test_the_list_shows_and_filters_by_aid_grade_and_the_drill_down_fields(
    api: dict[str, Any], answers: dict[str, Any]
) -> None:
    client = signed_in(api)
    mine = [a for a in answers["answers"] if a["province_code"] == "63"]
    everything = client.get("/ui/predictions", params={"province_code": "63", "limit": "200"})
    assert total_of(everything.text) == len(mine)
    for answer in mine[:3]:
        assert f'<td data-label="救助等级" class="grade">{answer["aid_grade"]["label_zh"]}' in (
            everything.text
        )
    grades = {a["aid_grade"]["grade"] for a in mine}
    for grade in grades:
        page = client.get("/ui/predictions", params={"province_code": "63", "aid_grade": grade})
        expected = {a["prediction_id"] for a in mine if a["aid_grade"]["grade"] == grade}
        assert total_of(page.text) == len(expected)
        assert set(ANSWER_LINK.findall(page.text)) == expected
    missing = max(grades) + 1
    none = client.get("/ui/predictions", params={"province_code": "63", "aid_grade": missing})
    assert total_of(none.text) == 0
    for params, field in (
        ({"aid_grade": "0"}, "aid_grade"),
        ({"decision_year": "1999"}, "decision_year"),
        ({"crime_type": "piracy"}, "crime_type"),
        ({"granted": "maybe"}, "granted"),
    ):
        bad = client.get("/ui/predictions", params=params)
        assert bad.status_code == 422 and f'id="{field}_error"' in bad.text, (params, bad.text)


def test_the_report_and_the_page_narrow_to_an_aid_grade(
    api: dict[str, Any], answers: dict[str, Any]
) -> None:
    key = headers(api, "reviewer")[HEADER]
    mine = [a for a in answers["answers"] if a["province_code"] == "63"]
    client = signed_in(api)
    for grade in sorted({a["aid_grade"]["grade"] for a in mine}):
        expected = [a for a in mine if a["aid_grade"]["grade"] == grade]
        report = api_report(api, key, province_code="63", aid_grade=grade, group_by="office")
        assert report["overall"]["count"] == len(expected) < len(mine)
        for group in report["groups"]:
            if group["answers"] is not None:
                assert group["answers"]["aid_grade"] == grade
        page = client.get("/ui/deviation", params={"province_code": "63", "aid_grade": str(grade)})
        assert f'<dd id="overall-count">{len(expected)}</dd>' in page.text
        for link in group_links(page.text):
            assert f"aid_grade={grade}" in link
            office = re.search(r"office_code=(\d{6})", link)
            assert office
            listed = [a for a in expected if a["office_code"] == office.group(1)]
            assert total_of(client.get(link).text) == len(listed)
