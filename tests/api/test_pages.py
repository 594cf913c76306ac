"""The pages in-process: sign-in, CSRF, roles, scopes, bad input, escaping, security headers.

Each test gets its own client (its own cookie jar) over the session's running app, so the
pages are exercised exactly as a browser would: form posts, cookies, redirects.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving import formats
from serving.guards import CONTENT_SECURITY_POLICY
from serving.schemas import EXAMPLE_RECORD
from serving.scopes import Scope
from serving.security import HEADER, ApiKey, key_hash
from serving.sessions import COOKIE, CSRF_FIELD, SessionSigner
from tests.api.conftest import headers

XSS = "<script>alert(1)</script>"


def browser(api: dict[str, Any]) -> TestClient:
    """A fresh client with its own cookies, on the running app (no second lifespan)."""
    return TestClient(api["app"], follow_redirects=False)


def csrf_of(page: str) -> str:
    found = re.search(rf'name="{CSRF_FIELD}" value="([^"]+)"', page)
    assert found, "the page has no CSRF field"
    return found.group(1)


def sign_in(client: TestClient, key: str) -> Any:
    form = client.get("/ui/login")
    assert form.status_code == 200
    return client.post(
        "/ui/login",
        data={CSRF_FIELD: csrf_of(form.text), "api_key": key, "next": "/ui/predictions"},
    )


def signed_in(api: dict[str, Any], role: str = "reviewer") -> TestClient:
    client = browser(api)
    response = sign_in(client, api["keys"][role])
    assert response.status_code == 303, response.text
    return client


def score(api: dict[str, Any], granted: float | None = 30_000, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"record": {**EXAMPLE_RECORD, **changes}}
    if granted is not None:
        body["granted_amount_yuan"] = granted
    response = api["client"].post("/v1/score", json=body, headers=headers(api, "case_system"))
    assert response.status_code == 200, response.text
    return dict(response.json())


def stored_reviews(api: dict[str, Any], prediction_id: str) -> list[dict[str, Any]]:
    response = api["client"].get(
        f"/v1/predictions/{prediction_id}", headers=headers(api, "reviewer")
    )
    assert response.status_code == 200
    return list(response.json()["reviews"])


def signer(api: dict[str, Any]) -> SessionSigner:
    found = api["app"].state.service.sessions
    assert isinstance(found, SessionSigner)
    return found


@contextmanager
def extra_key(api: dict[str, Any], key: ApiKey) -> Iterator[None]:
    """A key in the key store for the block; revoked after it (names are never reused)."""
    keys = api["app"].state.service.keys
    keys.add(key, "test")
    try:
        yield
    finally:
        keys.revoke(key.name, "test")


def test_signing_in_sets_a_strict_signed_cookie_that_never_holds_the_key(
    api: dict[str, Any],
) -> None:
    client = browser(api)
    response = sign_in(client, api["keys"]["reviewer"])
    assert response.status_code == 303 and response.headers["location"] == "/ui/predictions"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=strict" in lowered and "path=/ui" in lowered
    assert "max-age=28800" in lowered  # 8 hours by default
    assert "secure" not in lowered  # plain http here; https sets Secure
    assert api["keys"]["reviewer"] not in cookie
    value = client.cookies[COOKIE]
    session = signer(api).read(value)
    assert session is not None and session.key_name == "default-reviewer"
    page = client.get("/ui/predictions")
    assert page.status_code == 200 and "评分记录" in page.text
    assert api["keys"]["reviewer"] not in page.text
    assert "default-reviewer" in page.text


def test_a_forged_or_tampered_cookie_is_not_a_session(api: dict[str, Any]) -> None:
    client = signed_in(api)
    value = client.cookies[COOKIE]
    body, signature = value.split(".")
    forged = SessionSigner(b"x" * 64, 3600).issue("default-admin")[1]
    for bad in (f"{body}.{signature[:-2]}AA", forged, "garbage", ""):
        client.cookies.clear()
        client.cookies.set(COOKIE, bad, path="/ui")
        assert client.get("/ui/predictions").status_code == 303


def test_pages_send_a_visitor_without_a_session_to_sign_in_and_back(api: dict[str, Any]) -> None:
    client = browser(api)
    response = client.get("/ui/predictions?case_id=A1")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=%2Fui%2Fpredictions%3Fcase_id%3DA1"
    login = client.get(response.headers["location"])
    assert 'name="next" value="/ui/predictions?case_id=A1"' in login.text
    done = client.post(
        "/ui/login",
        data={
            CSRF_FIELD: csrf_of(login.text),
            "api_key": api["keys"]["reviewer"],
            "next": "/ui/predictions?case_id=A1",
        },
    )
    assert done.headers["location"] == "/ui/predictions?case_id=A1"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/v1/score"])
def test_sign_in_never_sends_the_browser_elsewhere(api: dict[str, Any], target: str) -> None:
    client = browser(api)
    form = client.get("/ui/login")
    done = client.post(
        "/ui/login",
        data={CSRF_FIELD: csrf_of(form.text), "api_key": api["keys"]["admin"], "next": target},
    )
    assert done.status_code == 303 and done.headers["location"] == "/ui/predictions"


def test_a_case_system_key_or_an_unknown_key_cannot_sign_in(api: dict[str, Any]) -> None:
    client = browser(api)
    refused = sign_in(client, api["keys"]["case_system"])
    assert refused.status_code == 403
    assert "不能登录页面" in refused.text
    assert api["keys"]["case_system"] not in refused.text  # never echoed
    assert client.get("/ui/predictions").status_code == 303  # still signed out
    unknown = sign_in(client, "aidrec_reviewer_not-a-key")
    assert unknown.status_code == 401 and "密钥无效" in unknown.text
    assert "aidrec_reviewer_not-a-key" not in unknown.text


def test_forms_without_a_valid_csrf_token_are_refused_and_store_nothing(
    api: dict[str, Any],
) -> None:
    answer = score(api)
    pid = answer["prediction_id"]
    client = signed_in(api)
    review = {"decision": "accepted", "reason": "材料齐全"}
    url = f"/ui/predictions/{pid}/reviews"
    assert client.post(url, data=review).status_code == 403
    wrong = client.post(url, data={**review, CSRF_FIELD: "not-the-token"})
    assert wrong.status_code == 403 and "CSRF" in wrong.text
    other_session = signed_in(api)  # a token of another session is not this one's
    token = csrf_of(other_session.get(f"/ui/predictions/{pid}").text)
    assert client.post(url, data={**review, CSRF_FIELD: token}).status_code == 403
    assert client.post(url, json={**review, CSRF_FIELD: token}).status_code == 403
    assert client.post(f"/ui/predictions/{pid}/replay", data={}).status_code == 403
    assert client.post("/ui/logout", data={}).status_code == 403
    assert stored_reviews(api, pid) == []
    # and the sign-in form itself carries one
    fresh = browser(api)
    fresh.get("/ui/login")
    no_token = fresh.post("/ui/login", data={"api_key": api["keys"]["reviewer"]})
    assert no_token.status_code == 403 and COOKIE in fresh.cookies
    assert signer(api).read(fresh.cookies[COOKIE]).signed_in is False  # type: ignore[union-attr]


def test_an_expired_session_can_neither_read_nor_post(api: dict[str, Any]) -> None:
    pid = score(api)["prediction_id"]
    sessions = signer(api)
    past = time.time() - sessions.lifetime - 60
    session, value = sessions.issue("default-reviewer", now=past)
    client = browser(api)
    client.cookies.set(COOKIE, value, path="/ui")
    assert client.get(f"/ui/predictions/{pid}").status_code == 303
    posted = client.post(
        f"/ui/predictions/{pid}/reviews",
        data={"decision": "accepted", "reason": "x", CSRF_FIELD: sessions.csrf_token(session)},
    )
    assert posted.status_code == 403 and "会话已过期" in posted.text
    assert stored_reviews(api, pid) == []


def test_a_role_that_may_not_use_the_pages_is_refused_even_with_a_valid_session(
    api: dict[str, Any],
) -> None:
    """A session whose key is (now) a case-system key: the role is checked on every request."""
    pid = score(api)["prediction_id"]
    sessions = signer(api)
    session, value = sessions.issue("default-case_system")
    client = browser(api)
    client.cookies.set(COOKIE, value, path="/ui")
    assert client.get("/ui/predictions").status_code == 403
    posted = client.post(
        f"/ui/predictions/{pid}/reviews",
        data={"decision": "accepted", "reason": "x", CSRF_FIELD: sessions.csrf_token(session)},
    )
    assert posted.status_code == 403
    assert stored_reviews(api, pid) == []


def test_a_revoked_key_ends_its_sessions_at_once(api: dict[str, Any]) -> None:
    temporary = ApiKey("temp-reviewer", "reviewer", key_hash("k-temp"))
    client = browser(api)
    with extra_key(api, temporary):
        assert sign_in(client, "k-temp").status_code == 303
        assert client.get("/ui/predictions").status_code == 200
    assert client.get("/ui/predictions").status_code == 303


def test_signing_out_ends_the_session_even_for_a_kept_copy_of_the_cookie(
    api: dict[str, Any],
) -> None:
    client = signed_in(api)
    kept = client.cookies[COOKIE]
    page = client.get("/ui/predictions")
    out = client.post("/ui/logout", data={CSRF_FIELD: csrf_of(page.text)})
    assert out.status_code == 303 and out.headers["location"] == "/ui/login?signed_out=1"
    assert client.get("/ui/predictions").status_code == 303
    replayed = browser(api)
    replayed.cookies.set(COOKIE, kept, path="/ui")
    assert replayed.get("/ui/predictions").status_code == 303


def test_a_bad_filter_shows_the_page_with_the_error_next_to_its_field(api: dict[str, Any]) -> None:
    client = signed_in(api)
    response = client.get(
        "/ui/predictions",
        params={
            "office_code": "12",
            "from": "2025-99-01",
            "lead": "bogus",
            "province_code": "99",
            "page": "0",
        },
    )
    assert response.status_code == 422
    for field in ("office_code", "from", "lead", "province_code"):
        assert f'id="{field}_error"' in response.text, field
        assert f'aria-describedby="{field}_error"' in response.text, field
    assert 'id="page_error"' in response.text  # the page number has no field: shown below
    assert "检察院代码应为 6 位数字" in response.text
    assert "日期应写作 2025-03-04" in response.text
    assert 'value="12"' in response.text  # what was typed stays in the form
    ordered = client.get("/ui/predictions", params={"from": "2025-03-05", "to": "2025-03-04"})
    assert ordered.status_code == 422 and 'id="to_error"' in ordered.text


def test_the_list_filters_orders_and_pages_like_the_api(api: dict[str, Any]) -> None:
    first = score(api, case_id="PAGES-LIST-1", granted=1)  # far below: outside the interval
    second = score(api, case_id="PAGES-LIST-1", granted=None)
    client = signed_in(api)
    page = client.get("/ui/predictions", params={"case_id": "PAGES-LIST-1"})
    assert page.status_code == 200
    assert page.text.index(second["prediction_id"]) < page.text.index(first["prediction_id"])
    outside = client.get(
        "/ui/predictions", params={"case_id": "PAGES-LIST-1", "deviation": "outside"}
    )
    assert first["prediction_id"] in outside.text
    assert second["prediction_id"] not in outside.text
    assert "共 1 条" in outside.text and "区间外" in outside.text
    one = client.get("/ui/predictions", params={"case_id": "PAGES-LIST-1", "limit": "1"})
    assert "共 2 条" in one.text and "下一页" in one.text
    two = client.get(
        "/ui/predictions", params={"case_id": "PAGES-LIST-1", "limit": "1", "page": "2"}
    )
    assert first["prediction_id"] in two.text and "上一页" in two.text
    today = formats.local_time(first["created_at"])[:10]
    dated = client.get(
        "/ui/predictions", params={"case_id": "PAGES-LIST-1", "from": today, "to": today}
    )
    assert "共 2 条" in dated.text
    api_page = api["client"].get(
        "/v1/predictions", params={"case_id": "PAGES-LIST-1"}, headers=headers(api, "reviewer")
    )
    assert api_page.json()["total"] == 2


def test_a_review_with_bad_input_is_refused_with_the_reason_and_nothing_stored(
    api: dict[str, Any],
) -> None:
    answer = score(api)
    pid = answer["prediction_id"]
    client = signed_in(api)
    token = csrf_of(client.get(f"/ui/predictions/{pid}").text)
    url = f"/ui/predictions/{pid}/reviews"
    ceiling = answer["reference_amount"]["ceiling_yuan"]
    cases = [
        ({"decision": "accepted", "reason": "  "}, "reason", "请填写理由"),
        ({"decision": "", "reason": "x"}, "decision", "请选择复核决定"),
        ({"decision": "adjusted", "reason": "x"}, "amount_yuan", "调整决定须填写金额"),
        ({"decision": "adjusted", "amount_yuan": "-5", "reason": "x"}, "amount_yuan", "-5"),
        (
            {"decision": "adjusted", "amount_yuan": "abc", "reason": "x"},
            "amount_yuan",
            "金额应为数字",
        ),
        (
            {"decision": "adjusted", "amount_yuan": "inf", "reason": "x"},
            "amount_yuan",
            "金额应为数字",
        ),
        (
            {"decision": "adjusted", "amount_yuan": str(ceiling + 1), "reason": "x"},
            "amount_yuan",
            "不超过本案救助上限",
        ),
        (
            {"decision": "accepted", "amount_yuan": "100", "reason": "x"},
            "amount_yuan",
            "调整决定须填写金额",
        ),
    ]
    for form, field, words in cases:
        response = client.post(url, data={**form, CSRF_FIELD: token})
        assert response.status_code == 422, (form, response.text[:300])
        assert f'id="{field}_error"' in response.text, form
        assert words in html.unescape(response.text), form
        assert "复核未记录" in response.text
    assert stored_reviews(api, pid) == []
    done = client.post(
        url,
        data={
            "decision": "adjusted",
            "amount_yuan": "28,000",
            "reason": "票据核减",
            CSRF_FIELD: token,
        },
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"/ui/predictions/{pid}?saved=review#reviews"
    reviews = stored_reviews(api, pid)
    assert [(r["decision"], r["amount_yuan"], r["reason"], r["reviewer"]) for r in reviews] == [
        ("adjusted", 28_000.0, "票据核减", "default-reviewer")
    ]
    shown = client.get(done.headers["location"])
    assert "复核已记录" in shown.text and "票据核减" in shown.text and "28,000 元" in shown.text
    listed = (
        api["client"]
        .get(
            "/v1/predictions",
            params={"case_id": answer["case_id"]},
            headers=headers(api, "reviewer"),
        )
        .json()
    )
    assert next(i for i in listed["items"] if i["prediction_id"] == pid)["review_status"] == (
        "adjusted"
    )


def test_the_api_refuses_an_adjusted_amount_above_the_statutory_ceiling(
    api: dict[str, Any],
) -> None:
    answer = score(api)
    ceiling = answer["reference_amount"]["ceiling_yuan"]
    response = api["client"].post(
        f"/v1/predictions/{answer['prediction_id']}/reviews",
        json={"decision": "adjusted", "amount_yuan": ceiling * 2, "reason": "x"},
        headers=headers(api, "reviewer"),
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "amount_yuan"
    assert stored_reviews(api, answer["prediction_id"]) == []


def test_a_hostile_case_id_is_shown_as_text(api: dict[str, Any]) -> None:
    answer = score(api, case_id=XSS)
    client = signed_in(api)
    listed = client.get("/ui/predictions", params={"case_id": XSS})
    page = client.get(f"/ui/predictions/{answer['prediction_id']}")
    for response in (listed, page):
        assert response.status_code == 200
        assert XSS not in response.text
        assert html.escape(XSS, quote=False) in response.text


def test_the_answer_page_shows_the_apis_numbers(api: dict[str, Any]) -> None:
    answer = score(api)
    client = signed_in(api)
    page = client.get(f"/ui/predictions/{answer['prediction_id']}").text
    amount = answer["reference_amount"]

    def shown(ident: str) -> str:
        found = re.search(rf'id="{ident}"[^>]*>([^<]+)<', page)
        assert found, ident
        return found.group(1)

    assert shown("reference-amount") == formats.yuan(amount["yuan"])
    assert shown("interval-low") == formats.yuan(amount["interval_80_yuan"][0])
    assert shown("interval-high") == formats.yuan(amount["interval_80_yuan"][1])
    assert shown("ceiling") == formats.yuan(amount["ceiling_yuan"])
    assert shown("granted-amount") == formats.yuan(30_000)
    for name, lead in answer["leads"].items():
        assert shown(f"lead-{name}") == formats.percent(lead["probability"])
    for item in answer["explanations"]["reference_amount"]["top"]:
        assert html.escape(item["label_zh"]) in page
        assert formats.signed_yuan(item["contribution_yuan"]) in page
    for hit in answer["eligibility"]["rule_hits"]:
        assert html.escape(hit["zh"]) in page
    for case in answer["similar_cases"]:
        assert case["case_id"] in page
    assert f'href="/ui/model#v{answer["model"]["version"]}"' in page


def test_replay_from_the_page_says_identical(api: dict[str, Any]) -> None:
    pid = score(api)["prediction_id"]
    client = signed_in(api)
    token = csrf_of(client.get(f"/ui/predictions/{pid}").text)
    replayed = client.post(f"/ui/predictions/{pid}/replay", data={CSRF_FIELD: token})
    assert replayed.status_code == 200 and "复现一致" in replayed.text


def test_a_page_is_limited_to_the_keys_scope_exactly_like_the_api(api: dict[str, Any]) -> None:
    jiangsu = score(api, case_id="PAGES-SCOPE-32")
    guangdong = score(api, case_id="PAGES-SCOPE-44", province_code="44", office_code="440104")
    scoped = ApiKey("guangdong", "reviewer", key_hash("k-guangdong"), Scope("44"))
    with extra_key(api, scoped):
        client = browser(api)
        assert sign_in(client, "k-guangdong").status_code == 303
        assert "省级 广东 44" in client.get("/ui/predictions").text
        mine = client.get(f"/ui/predictions/{guangdong['prediction_id']}")
        assert mine.status_code == 200
        theirs = client.get(f"/ui/predictions/{jiangsu['prediction_id']}")
        assert theirs.status_code == 404 and "未找到" in theirs.text
        assert "PAGES-SCOPE-32" not in theirs.text
        token = csrf_of(mine.text)
        posted = client.post(
            f"/ui/predictions/{jiangsu['prediction_id']}/reviews",
            data={"decision": "accepted", "reason": "x", CSRF_FIELD: token},
        )
        assert posted.status_code == 404
        listed = client.get("/ui/predictions", params={"case_id": "PAGES-SCOPE-32"})
        assert "共 0 条" in listed.text
        widened = client.get(
            "/ui/predictions", params={"case_id": "PAGES-SCOPE-32", "province_code": "32"}
        )
        assert "共 0 条" in widened.text  # a filter never widens the scope
    assert stored_reviews(api, jiangsu["prediction_id"]) == []


def test_the_model_page_shows_the_card_the_plots_and_the_versions(api: dict[str, Any]) -> None:
    client = signed_in(api)
    page = client.get("/ui/model")
    assert page.status_code == 200
    card = api["client"].get("/v1/model", headers=headers(api, "reviewer")).json()
    assert f"第 {card['model']['version']} 版" in page.text
    assert 'id="v1"' in page.text and "champion" in page.text
    assert "no champion yet: the first model is promoted" in page.text
    plots = re.findall(r'src="/ui/model/plots/([^"]+)"', page.text)
    assert "calibration.png" in plots
    image = client.get(f"/ui/model/plots/{plots[0]}")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert image.headers["content-type"] == "image/png"
    assert client.get("/ui/model/plots/..%2F..%2Fmlflow.db").status_code == 404
    assert browser(api).get(f"/ui/model/plots/{plots[0]}").status_code == 303
    versions = api["client"].get("/v1/model/versions", headers=headers(api, "reviewer")).json()
    assert versions[0]["version"] == "1" and "champion" in versions[0]["aliases"]
    assert versions[0]["promotion_decision"] == "promoted"


def test_every_response_carries_the_security_headers(api: dict[str, Any]) -> None:
    client = signed_in(api)
    for response in (
        client.get("/ui/predictions"),
        client.get("/ui/login"),
        client.get("/ui/static/aidrec.css"),
        client.get("/"),
        api["client"].get("/healthz"),
        api["client"].post("/v1/score", json={}),
    ):
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY.decode()
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    docs = api["client"].get("/docs")
    assert docs.status_code == 200 and "content-security-policy" not in docs.headers
    assert docs.headers["x-content-type-options"] == "nosniff"


def test_the_front_door_links_the_pages_and_the_api_docs(api: dict[str, Any]) -> None:
    response = api["client"].get("/")
    assert response.status_code == 200
    assert 'href="/ui/predictions"' in response.text and 'href="/docs"' in response.text
    assert browser(api).get("/ui").headers["location"] == "/ui/predictions"
    missing = browser(api).get("/ui/no-such-page")
    assert missing.status_code == 404 and "页面不存在" in missing.text
    api_missing = api["client"].get("/v1/no-such-route", headers={HEADER: api["keys"]["reviewer"]})
    assert api_missing.status_code == 404 and api_missing.json()["detail"].startswith("no such")


def test_every_page_form_carries_a_csrf_token(api: dict[str, Any]) -> None:
    pid = score(api)["prediction_id"]
    client = signed_in(api)
    for path in ("/ui/predictions", f"/ui/predictions/{pid}", "/ui/model"):
        page = client.get(path).text
        posts = re.findall(r'<form method="post"[^>]*>(.*?)</form>', page, flags=re.S)
        assert posts, path
        assert all(f'name="{CSRF_FIELD}"' in form for form in posts), path


def test_the_api_key_header_does_not_open_the_pages(api: dict[str, Any]) -> None:
    response = browser(api).get("/ui/predictions", headers={HEADER: api["keys"]["admin"]})
    assert response.status_code == 303


def test_the_cookie_is_secure_when_the_pages_are_served_over_https(api: dict[str, Any]) -> None:
    client = TestClient(api["app"], base_url="https://testserver", follow_redirects=False)
    response = sign_in(client, api["keys"]["reviewer"])
    assert response.status_code == 303
    assert "; secure" in response.headers["set-cookie"].lower()


def test_the_model_page_shows_the_evaluation_by_group(api: dict[str, Any]) -> None:
    card = api["client"].get("/v1/model", headers=headers(api, "reviewer")).json()
    groups = card["evaluation_by_group"]
    assert {"all", "minors", "women", "elderly", "rural", "dibao", "veteran_family"} <= set(groups)
    page = signed_in(api).get("/ui/model").text
    table = page[page.index('<table id="groups">') :]
    table = table[: table.index("</table>")]
    for group in groups:
        assert f'id="group-{group}"' in table and formats.GROUP_ZH[group] in table
    row = table[table.index('id="group-minors"') :]
    row = row[: row.index("</tr>")]
    assert formats.percent(groups["minors"]["lead_recall"]) in row
    assert formats.number(groups["minors"]["cases"]) in row
