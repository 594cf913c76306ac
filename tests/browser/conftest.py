"""A real browser against a real server: Debian's chromium driven by Playwright for Python.

Playwright's own browser download cannot work here, so it launches /usr/bin/chromium
(``apt-get install chromium fonts-noto-cjk``). Skipped where that browser or the playwright
package is missing, unless AIDREC_REQUIRE_BROWSER=1 (CI), where their absence fails the run.
One ``aidrec serve`` process serves the whole module, on the session's trained registry.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from features.contract import INPUT_NAMES, parse_records, wire_value
from features.tables import read_table
from serving.schemas import EXAMPLE_RECORD
from serving.security import HEADER
from tests.e2e.helpers import free_port, running
from tests.parts import missing

CHROMIUM = Path(os.environ.get("AIDREC_CHROMIUM", "/usr/bin/chromium"))
# Root in a container: no sandbox; nothing fetched from outside while the tests run.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AIDREC = str(Path(sys.executable).with_name("aidrec"))
XSS = "<script>alert(1)</script>"
WIDE = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium fonts-noto-cjk)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (make setup installs the dev extras)"
    return None


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Debian's chromium, headless, launched once for the session."""
    reason = _missing()
    if reason is not None:
        missing("BROWSER", "a browser", reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield browser
        browser.close()


def _score(base: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{base}/v1/score", json=body, headers={HEADER: key}, timeout=60)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture(scope="module")
def server(
    chromium: Any, registry: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """``aidrec serve`` on the registry with a fresh audit store, and a few stored answers."""
    folder = tmp_path_factory.mktemp("browser-server")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    audit_url = f"sqlite:///{folder / 'audit.db'}"
    env = {
        "AIDREC_DATA_DIR": str(registry["data_dir"]),
        "AIDREC_AUDIT_URL": audit_url,
        "AIDREC_API_KEYS_FILE": str(folder / "keys.json"),
    }
    log = folder / "server.log"
    with running([AIDREC, "serve", "--port", str(port)], f"{base}/readyz", env=env, output=log):
        printed = log.read_text()
        rows = [line.split() for line in printed.splitlines() if line.startswith("  ")]
        keys = {row[0]: row[1] for row in rows if row[0] in ("case_system", "reviewer", "admin")}
        assert f"{base}/ui" in printed  # the pages' address is printed beside the keys
        frame = parse_records(read_table(registry["history"])).frame
        history = []
        for i in range(8):
            record = {name: wire_value(name, frame[name].iloc[i]) for name in INPUT_NAMES}
            history.append(_score(base, keys["case_system"], {"record": record}))
        example = _score(
            base, keys["case_system"], {"record": EXAMPLE_RECORD, "granted_amount_yuan": 30_000}
        )
        hostile = _score(base, keys["case_system"], {"record": {**EXAMPLE_RECORD, "case_id": XSS}})
        yield {
            "base": base,
            "keys": keys,
            "audit_url": audit_url,
            "example": example,
            "hostile": hostile,
            "history": history,
        }


@pytest.fixture
def context(chromium: Any) -> Iterator[Any]:
    """A fresh browser profile (no cookies) at 1280×800, in Chinese and Beijing time."""
    context = chromium.new_context(viewport=WIDE, locale="zh-CN", timezone_id="Asia/Shanghai")
    yield context
    context.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the module's screenshots go (under pytest's temporary folder)."""
    return tmp_path_factory.mktemp("screenshots")
