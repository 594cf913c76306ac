"""线索管理 in-process: queues, overdue highlighted, evidence, the transition form, scope."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from features.contract import FIELD_BY_NAME
from serving.leads import LeadCandidate, LeadStore
from serving.scopes import Scope
from serving.security import ApiKey, key_hash
from serving.sessions import CSRF_FIELD
from tests.api.test_pages import browser, csrf_of, extra_key, sign_in, signed_in


def _candidate(case_id: str, kind: str, **changes: Any) -> LeadCandidate:
    values: dict[str, Any] = {
        "kind": kind,
        "case_id": case_id,
        "person_key": "a" * 64,
        "province_code": "32",
        "office_code": "320106",
        "score": None if kind.startswith("department_failure") else 0.81,
        "reasons": {
            "top": [
                {
                    "feature": "victim_age",
                    "label_zh": "被害人年龄",
                    "value": 9,
                    "contribution": 0.42,
                }
            ],
            "facts": {"disability_grade": 4, "disability_certificate": False},
            "ceiling_yuan": 150_000.0,
        },
        "sources": [
            {"department": "disability", "snapshot": "2026-01-31", "field": "disability_grade"}
        ],
        "origin": "screening:page-test",
        "policy_version": "2026.1",
        **changes,
    }
    return LeadCandidate(**values)


@pytest.fixture(scope="module")
def leads(api: dict[str, Any]) -> dict[str, str]:
    """A fresh lead, one discovered ten days ago (overdue), and one in another province."""
    state = api["app"].state.service
    state.leads.register(
        [
            _candidate("PL-FRESH", "judicial_aid"),
            _candidate("PL-RULE", "department_failure:disability_without_certificate"),
            _candidate("PL-BEIJING", "judicial_aid", province_code="11", office_code="110105"),
        ]
    )
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    LeadStore(state.audit, state.lead_deadlines, clock=lambda: past).register(
        [_candidate("PL-LATE", "civil_support")]
    )
    return {
        case_id: state.leads.find(case_id, kind).id
        for case_id, kind in (
            ("PL-FRESH", "judicial_aid"),
            ("PL-RULE", "department_failure:disability_without_certificate"),
            ("PL-BEIJING", "judicial_aid"),
            ("PL-LATE", "civil_support"),
        )
    }


def test_the_queues_and_the_list_highlight_overdue_leads(
    api: dict[str, Any], leads: dict[str, str]
) -> None:
    client = signed_in(api)
    page = client.get("/ui/leads", params={"status": "new", "kind": "civil_support"})
    assert page.status_code == 200
    assert "线索管理" in page.text and "线索队列" in page.text
    row = re.search(r'<tr class="overdue">.*?</tr>', page.text, re.S)
    assert row and "PL-LATE" in row.group(0) and "逾期未流转" in row.group(0)
    fresh = client.get("/ui/leads", params={"kind": "judicial_aid", "overdue": "no"}).text
    assert "PL-FRESH" in fresh and 'class="overdue"' not in fresh
    late = client.get("/ui/leads", params={"overdue": "yes"}).text
    assert "PL-LATE" in late and "PL-FRESH" not in late
    rules = client.get("/ui/leads", params={"kind": "department_failure"}).text
    assert "PL-RULE" in rules and "disability_without_certificate" in rules
    bad = client.get("/ui/leads", params={"overdue": "maybe", "page": "0"})
    assert bad.status_code == 422
    assert 'id="overdue_error"' in bad.text and 'id="page_error"' in bad.text


def test_a_lead_shows_its_evidence_sources_and_history(
    api: dict[str, Any], leads: dict[str, str]
) -> None:
    page = signed_in(api).get(f"/ui/leads/{leads['PL-RULE']}")
    assert page.status_code == 200
    text = page.text
    assert "部门履职线索" in text and "规则线索" in text
    assert "数据来源" in text and "disability" in text and "2026-01-31" in text
    assert 'id="rule-facts"' in text and "disability_certificate" in text
    assert FIELD_BY_NAME["disability_certificate"].zh in text  # the fact in Chinese
    assert "被害人年龄" in text and "+0.42" in text
    assert "登记" in re.search(r'id="lead-history".*?</ol>', text, re.S).group(0)  # type: ignore[union-attr]


def test_the_transition_form_moves_the_lead_or_says_why_not(
    api: dict[str, Any], leads: dict[str, str]
) -> None:
    client = signed_in(api)
    lead_id = leads["PL-FRESH"]
    path = f"/ui/leads/{lead_id}/transitions"
    token = csrf_of(client.get(f"/ui/leads/{lead_id}").text)
    forged = client.post(path, data={"to": "transferred", "department": "civil_affairs"})
    assert forged.status_code == 403
    missing = client.post(path, data={"to": "transferred", CSRF_FIELD: token})
    assert missing.status_code == 422 and 'id="department_error"' in missing.text
    skipped = client.post(path, data={"to": "verified", CSRF_FIELD: token})
    assert skipped.status_code == 409 and "流转" in skipped.text and 'id="to_error"' in skipped.text
    bad_amount = client.post(path, data={"to": "aided", "amount_yuan": "很多", CSRF_FIELD: token})
    assert bad_amount.status_code == 422 and 'id="amount_yuan_error"' in bad_amount.text
    state = api["app"].state.service
    assert state.leads.get(lead_id).status == "new"  # nothing refused was stored
    moved = client.post(
        path,
        data={
            "to": "transferred",
            "department": "womens_federation",
            "assignee": "张三",
            CSRF_FIELD: token,
        },
    )
    assert moved.status_code == 303 and moved.headers["location"].endswith("?saved=1#history")
    shown = client.get(moved.headers["location"]).text
    assert "已记录状态变更" in shown and "妇联" in shown and "张三" in shown
    assert state.leads.get(lead_id).status == "transferred"


def test_a_lead_page_is_limited_to_the_keys_scope(
    api: dict[str, Any], leads: dict[str, str]
) -> None:
    scoped = ApiKey("leads-page-beijing", "reviewer", key_hash("k-leads-beijing"), Scope("11"))
    with extra_key(api, scoped):
        client = browser(api)
        assert sign_in(client, "k-leads-beijing").status_code == 303
        assert client.get(f"/ui/leads/{leads['PL-BEIJING']}").status_code == 200
        theirs = client.get(f"/ui/leads/{leads['PL-LATE']}")
        assert theirs.status_code == 404 and "PL-LATE" not in theirs.text
        token = csrf_of(client.get(f"/ui/leads/{leads['PL-BEIJING']}").text)
        posted = client.post(
            f"/ui/leads/{leads['PL-LATE']}/transitions",
            data={"to": "dismissed", "reason": "x", CSRF_FIELD: token},
        )
        assert posted.status_code == 404
        listed = client.get("/ui/leads", params={"province_code": "32"}).text
        assert "PL-LATE" not in listed and "共 0 条" in listed
    assert api["app"].state.service.leads.get(leads["PL-LATE"]).status == "new"
