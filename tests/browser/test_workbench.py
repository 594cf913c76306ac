"""The workbench in Chromium: what a reviewer does, the refusals, the keyboard, the screens."""

from __future__ import annotations

import os
import re
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving import formats
from serving.guards import CONTENT_SECURITY_POLICY
from serving.schemas import EXAMPLE_RECORD
from serving.security import HEADER
from tests.browser.conftest import AIDREC, PHONE, WIDE, XSS

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]


def sign_in(page: Any, server: dict[str, Any], role: str = "reviewer", path: str = "") -> None:
    """Open a page, get sent to the sign-in form, paste the key, come back."""
    page.goto(f"{server['base']}/ui/predictions{path}")
    assert "/ui/login" in page.url
    page.fill("#api_key", server["keys"][role])
    page.press("#api_key", "Enter")
    page.wait_for_url(re.compile(r".*/ui/predictions.*"))


def stored(server: dict[str, Any], prediction_id: str) -> dict[str, Any]:
    response = httpx.get(
        f"{server['base']}/v1/predictions/{prediction_id}",
        headers={HEADER: server["keys"]["reviewer"]},
        timeout=30,
    )
    assert response.status_code == 200
    return dict(response.json())


def texts_of(page: Any, selector: str) -> list[str]:
    return [t.strip() for t in page.locator(selector).all_text_contents()]


def test_a_reviewer_signs_in_filters_opens_an_answer_and_reads_the_apis_numbers(
    context: Any, server: dict[str, Any]
) -> None:
    page = context.new_page()
    sign_in(page, server)
    page.fill("#case_id", server["example"]["case_id"])
    page.select_option("#province_code", "32")
    page.select_option("#deviation", "inside")
    page.click("text=筛选")
    page.wait_for_url(re.compile(r".*case_id=320106-2025-0413.*"))
    assert page.locator("#case_id").input_value() == server["example"]["case_id"]
    links = page.locator("table.list tbody a")
    assert links.count() == 1 and links.first.inner_text() == server["example"]["case_id"]
    response = None
    with page.expect_navigation() as navigation:
        links.first.click()
    response = navigation.value
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY.decode()

    answer = stored(server, server["example"]["prediction_id"])["response"]
    amount = answer["reference_amount"]
    assert page.inner_text("#reference-amount") == formats.yuan(amount["yuan"])
    assert page.inner_text("#interval-low") == formats.yuan(amount["interval_80_yuan"][0])
    assert page.inner_text("#interval-high") == formats.yuan(amount["interval_80_yuan"][1])
    assert page.inner_text("#ceiling") == formats.yuan(amount["ceiling_yuan"])
    assert page.inner_text("#granted-amount") == formats.yuan(30_000)
    for name, lead in answer["leads"].items():
        assert page.inner_text(f"#lead-{name}") == formats.percent(lead["probability"])
    # the reasons, as the waterfall shows them (the wide drawing is the visible one here)
    chart = page.locator("#reason-reference_amount .chart-wide svg")
    assert chart.is_visible()
    labels = texts_of(page, "#reason-reference_amount .chart-wide svg text")
    for item in answer["explanations"]["reference_amount"]["top"]:
        label = f"{item['label_zh']} = {formats.feature_value(item['feature'], item['value'])}"
        assert label in labels
        assert formats.signed_yuan(item["contribution_yuan"]) in labels
    for name in answer["leads"]:
        lead_labels = texts_of(page, f"#reason-{name} .chart-wide svg text")
        for item in answer["explanations"][name]["top"]:
            assert formats.signed(item["contribution"]) in lead_labels
    assert page.locator("#reason-judicial_aid .chart-narrow svg").is_hidden()
    page.click("#model-version")
    page.wait_for_url(re.compile(r".*/ui/model#v\d+"))
    assert page.locator(f"#v{answer['model']['version']}").is_visible()


def test_a_review_from_the_page_is_in_the_api_and_the_audit_chain_and_replays(
    context: Any, server: dict[str, Any]
) -> None:
    target = server["history"][0]
    page = context.new_page()
    sign_in(page, server)
    page.goto(f"{server['base']}/ui/predictions/{target['prediction_id']}")
    page.check("input[name=decision][value=adjusted]")
    page.fill("#amount_yuan", "12,345")
    page.fill("#reason", "医疗费票据核减（页面复核）")
    page.click("text=提交复核")
    page.wait_for_url(re.compile(r".*saved=review.*"))
    assert "复核已记录" in page.inner_text("main")
    reviews = stored(server, target["prediction_id"])["reviews"]
    assert [(r["decision"], r["amount_yuan"], r["reason"]) for r in reviews] == [
        ("adjusted", 12_345.0, "医疗费票据核减（页面复核）")
    ]
    assert "医疗费票据核减（页面复核）" in page.inner_text("#reviews")
    verified = subprocess.run(
        [AIDREC, "audit", "verify", "--url", server["audit_url"]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verified.returncode == 0 and verified.stdout.startswith("ok: all "), verified.stdout
    page.click("#replay button")
    page.wait_for_selector("#replay-result")
    assert "复现一致" in page.inner_text("#replay-result")
    page.goto(f"{server['base']}/ui/predictions?review_status=adjusted")
    assert target["case_id"] in texts_of(page, "table.list tbody a")


def test_refusals_case_system_key_missing_csrf_hostile_case_id_and_signing_out(
    context: Any, server: dict[str, Any]
) -> None:
    dialogs: list[str] = []
    page = context.new_page()
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    # a case-system key is for machines
    page.goto(f"{server['base']}/ui/login")
    page.fill("#api_key", server["keys"]["case_system"])
    page.click("button:has-text('登录')")
    assert "/ui/login" in page.url and "不能登录页面" in page.inner_text("#login_error")
    page.goto(f"{server['base']}/ui/predictions")
    assert "/ui/login" in page.url
    # a form without its CSRF token is refused and stores nothing
    sign_in(page, server)
    target = server["history"][1]["prediction_id"]
    page.goto(f"{server['base']}/ui/predictions/{target}")
    page.evaluate("document.querySelector('#review-form input[name=csrf_token]').remove()")
    page.check("input[name=decision][value=accepted]")
    page.fill("#reason", "无校验码的提交")
    with page.expect_navigation() as navigation:
        page.click("text=提交复核")
    assert navigation.value.status == 403
    assert "表单校验码无效" in page.inner_text("main")
    assert stored(server, target)["reviews"] == []
    # a hostile case id is text, never a script
    page.goto(f"{server['base']}/ui/predictions/{server['hostile']['prediction_id']}")
    assert page.inner_text("#case-id") == XSS
    page.goto(f"{server['base']}/ui/predictions?case_id={urllib.parse.quote(XSS)}")
    assert XSS in texts_of(page, "table.list tbody a")
    assert page.locator("main script").count() == 0
    assert dialogs == []
    # signing out ends the session
    page.click("button:has-text('退出')")
    page.wait_for_url(re.compile(r".*/ui/login\?signed_out=1"))
    assert "已退出登录" in page.inner_text("main")
    page.goto(f"{server['base']}/ui/predictions")
    assert "/ui/login" in page.url


def test_the_review_form_can_be_completed_with_the_keyboard_alone(
    context: Any, server: dict[str, Any]
) -> None:
    target = server["history"][2]["prediction_id"]
    page = context.new_page()
    sign_in(page, server)
    page.goto(f"{server['base']}/ui/predictions/{target}")

    def focused() -> str:
        return str(
            page.evaluate(
                "(() => { const e = document.activeElement;"
                " return e.tagName + '|' + (e.id || '') + '|' + (e.name || '') + '|'"
                " + (e.value || '') + '|' + (e.textContent || '').trim(); })()"
            )
        )

    page.keyboard.press("Tab")
    assert focused().endswith("跳到正文")  # the first stop skips the navigation
    for _ in range(300):
        page.keyboard.press("Tab")
        if focused().startswith("INPUT||decision|"):
            break
    else:
        pytest.fail("the review form's decision cannot be reached with Tab")
    page.keyboard.press("ArrowDown")  # 采纳 → 调整
    assert page.is_checked("input[name=decision][value=adjusted]")
    page.keyboard.press("Tab")
    assert focused().startswith("INPUT|amount_yuan|")
    page.keyboard.type("23456")
    page.keyboard.press("Tab")
    assert focused().startswith("TEXTAREA|reason|")
    page.keyboard.type("键盘完成的复核")
    page.keyboard.press("Tab")
    assert focused().startswith("BUTTON||")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "复核已记录" in page.inner_text("main")
    reviews = stored(server, target)["reviews"]
    assert [(r["decision"], r["amount_yuan"], r["reason"]) for r in reviews] == [
        ("adjusted", 23_456.0, "键盘完成的复核")
    ]


SUPERVISED = (("630102", 30_000), ("630102", 26_000), ("630102", 34_000), ("630104", 2_000))
SUPERVISED += (("630104", 1_500), ("630104", 2_500), ("630202", 31_000), ("630202", 29_000))
"""Answers for the supervision page: office 630104 grants far below the others."""


def score_supervised(server: dict[str, Any]) -> list[dict[str, Any]]:
    """Score SUPERVISED (once per server) in province 63, which no other browser test uses."""
    if "supervised" not in server:
        answers = []
        for i, (office, granted) in enumerate(SUPERVISED):
            record = {**EXAMPLE_RECORD, "case_id": f"SUP-{i}", "province_code": "63"}
            record["office_code"] = office
            response = httpx.post(
                f"{server['base']}/v1/score",
                json={"record": record, "granted_amount_yuan": granted},
                headers={HEADER: server["keys"]["case_system"]},
                timeout=60,
            )
            assert response.status_code == 200, response.text
            answers.append(response.json())
        server["supervised"] = answers
    return list(server["supervised"])


def test_a_supervisor_regroups_the_deviation_and_drills_down_to_an_answer(
    context: Any, server: dict[str, Any]
) -> None:
    answers = score_supervised(server)
    page = context.new_page()
    sign_in(page, server)
    page.click("nav >> text=同案不同救监督")
    page.wait_for_url(re.compile(r".*/ui/deviation$"))
    page.select_option("#province_code", "63")
    page.fill("#min_cases", "1")
    page.click("button:has-text('统计')")
    page.wait_for_url(re.compile(r".*/ui/deviation\?group_by=office.*province_code=63.*"))
    assert page.inner_text("#overall-count") == str(len(SUPERVISED))
    offices = page.locator("#group-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.group)"
    )
    assert sorted(offices) == ["630102", "630104", "630202"]
    assert "偏低" in page.inner_text("#group-table tr[data-group='630104']")
    assert page.locator("#groups .chart-wide svg").is_visible()
    # regroup by year: one group, 2025 (the example record's year)
    page.select_option("#group_by", "year")
    page.click("button:has-text('统计')")
    page.wait_for_url(re.compile(r".*group_by=year.*"))
    assert page.inner_text("#groups-h").startswith("按决定年度")
    assert texts_of(page, "#group-table tbody th") == ["2025年"]
    assert page.locator("#province_code").input_value() == "63"
    # back to offices, and down to the stingy office's answers, then to one of them
    page.select_option("#group_by", "office")
    page.click("button:has-text('统计')")
    page.wait_for_url(re.compile(r".*group_by=office.*"))
    page.click("#group-table tr[data-group='630104'] th a")
    page.wait_for_url(re.compile(r".*/ui/predictions\?.*office_code=630104.*"))
    assert page.locator("#granted").input_value() == "yes"
    stingy = {a["case_id"] for a, (o, _) in zip(answers, SUPERVISED, strict=True) if o == "630104"}
    assert set(texts_of(page, "table.list tbody td[data-label='案件编号'] a")) == stingy
    with page.expect_navigation():
        page.locator("table.list tbody td[data-label='案件编号'] a").first.click()
    opened = next(a for a in answers if a["case_id"] == page.inner_text("#case-id"))
    assert page.inner_text("#granted-amount") == formats.yuan(
        opened["deviation"]["granted_amount_yuan"]
    )
    assert page.inner_text("#aid-grade") == opened["aid_grade"]["label_zh"]


PAGES = {
    "login": "/ui/login",
    "list": "/ui/predictions",
    "list-filtered-error": "/ui/predictions?office_code=12&from=2025-13-01",
    "answer": "/ui/predictions/{example}",
    "model": "/ui/model",
    "deviation": "/ui/deviation?group_by=office&min_cases=1",
    "deviation-error": "/ui/deviation?group_by=city&office_code=12",
    "not-found": "/ui/predictions/no-such-answer",
}


@pytest.mark.parametrize(("viewport", "size"), [("wide", WIDE), ("phone", PHONE)])
def test_every_page_renders_in_chinese_at_desktop_and_phone_width(
    chromium: Any, server: dict[str, Any], screenshots: Path, viewport: str, size: dict[str, int]
) -> None:
    """A screenshot of every page; Chinese fonts present; nothing wider than the screen."""
    context = chromium.new_context(viewport=size, locale="zh-CN", timezone_id="Asia/Shanghai")
    page = context.new_page()
    try:
        page.goto(f"{server['base']}{PAGES['login']}")
        page.screenshot(path=screenshots / f"{viewport}-login.png", full_page=True)
        sign_in(page, server)
        for name, path in PAGES.items():
            if name == "login":
                continue
            page.goto(server["base"] + path.format(example=server["example"]["prediction_id"]))
            page.wait_for_load_state("load")
            shot = screenshots / f"{viewport}-{name}.png"
            page.screenshot(path=shot, full_page=True)
            assert shot.stat().st_size > 10_000, name
            assert page.evaluate("document.fonts.check('16px \"Noto Sans CJK SC\"', '司法救助')")
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{name} is {overflow} px wider than the {viewport} screen"
        if viewport == "wide" and os.environ.get("AIDREC_UPDATE_SCREENSHOTS") == "1":
            # the README's picture: the answer page down to the end of its reasons
            page.goto(
                server["base"] + PAGES["answer"].format(example=server["example"]["prediction_id"])
            )
            box = page.locator("#reasons").bounding_box()
            assert box is not None
            target = ROOT / "docs" / "screenshots" / "answer.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            clip = {"x": 0, "y": 0, "width": size["width"], "height": box["y"] + box["height"] + 16}
            page.screenshot(path=target, full_page=True, clip=clip)
            # and the supervision page, with the answers of the supervision test
            score_supervised(server)
            page.goto(server["base"] + "/ui/deviation?province_code=63&min_cases=1")
            box = page.locator("#groups").bounding_box()
            assert box is not None
            target = ROOT / "docs" / "screenshots" / "deviation.png"
            clip = {"x": 0, "y": 0, "width": size["width"], "height": box["y"] + box["height"] + 16}
            page.screenshot(path=target, full_page=True, clip=clip)
    finally:
        context.close()
