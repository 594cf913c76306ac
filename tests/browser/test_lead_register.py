"""线索管理 in Chromium: a live answer's lead in the queue, moved on from the page, audited."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.security import HEADER
from tests.browser.conftest import AIDREC, PHONE, WIDE
from tests.browser.test_workbench import sign_in

pytestmark = pytest.mark.browser


def _leads(server: dict[str, Any], **params: Any) -> dict[str, Any]:
    response = httpx.get(
        f"{server['base']}/v1/leads",
        params=params,
        headers={HEADER: server["keys"]["reviewer"]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def _flagged(server: dict[str, Any]) -> tuple[str, str]:
    """A (case id, kind) the server's stored answers flagged (registered by the live path)."""
    for answer in [server["example"], *server["history"]]:
        for name, lead in answer["leads"].items():
            if lead["flagged"]:
                return answer["case_id"], name
    pytest.fail("none of the stored answers flagged a lead")


def test_a_reviewer_transfers_a_live_lead_from_the_page(
    context: Any, server: dict[str, Any]
) -> None:
    case_id, kind = _flagged(server)
    registered = _leads(server, case_id=case_id, kind=kind)
    assert registered["total"] == 1
    lead = registered["items"][0]
    page = context.new_page()
    sign_in(page, server)
    page.click("nav >> text=线索管理")
    page.wait_for_url(re.compile(r".*/ui/leads$"))
    assert page.locator("#queues table").is_visible()
    page.select_option("#kind", kind)
    page.select_option("#status", "new")
    page.click("text=筛选")
    page.wait_for_url(re.compile(rf".*kind={kind}.*"))
    page.click(f"#lead-list a:text-is('{case_id}')")
    page.wait_for_url(re.compile(rf".*/ui/leads/{lead['id']}$"))
    assert page.inner_text("#lead-status") == "待流转"
    assert page.locator("#evidence").is_visible() and page.locator("#sources").is_visible()

    # not offered: no skipping a step
    assert "verified" not in page.locator("#to option").evaluate_all("o => o.map(x => x.value)")
    page.select_option("#to", "transferred")
    page.click("#transition-form button[type=submit]")
    page.wait_for_selector("#department_error")
    assert "department" in page.inner_text("#department_error")
    page.select_option("#to", "transferred")
    page.select_option("#department", "disabled_persons_federation")
    page.fill("#assignee", "李四")
    page.fill("#note", "已电话告知残联")
    page.click("#transition-form button[type=submit]")
    page.wait_for_url(re.compile(r".*saved=1.*"))
    assert page.inner_text("#lead-status") == "已流转"
    history = page.inner_text("#lead-history")
    assert "残联" in history and "李四" in history and "已电话告知残联" in history

    stored = _leads(server, case_id=case_id, kind=kind)["items"][0]
    assert (stored["status"], stored["department"], stored["assignee"]) == (
        "transferred",
        "disabled_persons_federation",
        "李四",
    )
    verified = subprocess.run(
        [AIDREC, "audit", "verify", "--url", server["audit_url"]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verified.returncode == 0 and verified.stdout.startswith("ok: all "), verified.stdout


@pytest.mark.parametrize(("viewport", "size"), [("wide", WIDE), ("phone", PHONE)])
def test_the_lead_pages_fit_the_screen(
    chromium: Any, server: dict[str, Any], screenshots: Path, viewport: str, size: dict[str, int]
) -> None:
    context = chromium.new_context(viewport=size, locale="zh-CN", timezone_id="Asia/Shanghai")
    page = context.new_page()
    try:
        sign_in(page, server)
        lead_id = _leads(server)["items"][0]["id"]
        for name, path in (("leads", "/ui/leads"), ("lead", f"/ui/leads/{lead_id}")):
            page.goto(server["base"] + path)
            page.wait_for_load_state("load")
            shot = screenshots / f"{viewport}-{name}.png"
            page.screenshot(path=shot, full_page=True)
            assert shot.stat().st_size > 10_000, name
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{name} is {overflow} px wider than the {viewport} screen"
    finally:
        context.close()
