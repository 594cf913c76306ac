"""Benchmark: server time of the reviewers' pages beside the JSON endpoints for the same data.

Run by hand: ``.venv/bin/python bench/bench_pages.py [--rows 20000] [--data-dir DIR]``.
Trains and promotes a champion on ``rows`` synthetic cases (once per data dir), stores 300
answers through ``/v1/score/batch``, then measures in ONE run, in-process (FastAPI's
TestClient: the app with its real lifespan, no network, so the figures are the server's time
plus the same small in-process client overhead for every endpoint), with bounded counts:

- one answer: ``GET /ui/predictions/{id}`` (the page with its SVG charts) vs
  ``GET /v1/predictions/{id}`` (the same stored answer as JSON);
- the list with 50 rows: ``GET /ui/predictions?limit=50`` vs ``GET /v1/predictions?limit=50``;
- 同案不同救监督 by office over the answers with a granted amount (the history's, where it
  granted): ``GET /ui/deviation?group_by=office`` vs ``GET /v1/reports/deviation``.

Appends the figures, the command and the date to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from fastapi.testclient import TestClient  # noqa: E402
from results import record  # noqa: E402

from aidrec.settings import Settings  # noqa: E402
from features.contract import INPUT_NAMES, parse_records, wire_value  # noqa: E402
from features.tables import read_table  # noqa: E402
from serving.app import create_app  # noqa: E402
from serving.keys import ensure_keys  # noqa: E402
from serving.security import HEADER  # noqa: E402
from serving.sessions import CSRF_FIELD  # noqa: E402


def prepare(data_dir: Path, rows: int) -> None:
    """A history and a champion in ``data_dir`` (made once)."""
    env = {**os.environ, "AIDREC_DATA_DIR": str(data_dir)}
    env.pop("MLFLOW_TRACKING_URI", None)
    if not (data_dir / "mlflow.db").exists():
        subprocess.run(
            [str(BIN / "aidrec"), "run", "--rows", str(rows), "--no-serve"], env=env, check=True
        )


def timed(call: Callable[[], Any], count: int) -> dict[str, float]:
    """p50 and p99 in ms of ``count`` calls after 10 warm-up calls."""
    for _ in range(10):
        call()
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = call()
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text[:300]
    times.sort()
    return {
        "p50_ms": statistics.median(times) * 1e3,
        "p99_ms": times[int(0.99 * (count - 1))] * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="aidrec-bench-pages-"))
    prepare(data_dir, args.rows)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    work = Path(tempfile.mkdtemp(prefix="aidrec-bench-pages-run-"))
    settings = Settings(
        data_dir=data_dir,
        audit_url=f"sqlite:///{work / 'audit.db'}",
        api_keys_file=work / "keys.json",
    )
    keys = ensure_keys(settings)
    assert keys is not None
    frame = parse_records(read_table(settings.history_path)).frame
    items = [
        {
            "record": {n: wire_value(n, frame[n].iloc[i]) for n in INPUT_NAMES},
            "granted_amount_yuan": (
                float(frame["aid_amount_yuan"].iloc[i])
                if frame["aid_granted"].iloc[i] == 1.0
                else None
            ),
        }
        for i in range(300)
    ]
    results: dict[str, float] = {}
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 300
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the model did not load"
            time.sleep(0.5)
        pids = []
        for start in range(0, len(items), 100):  # within the service's batch limit
            scored = client.post(
                "/v1/score/batch",
                json={"items": items[start : start + 100]},
                headers={HEADER: keys["case_system"]},
            )
            assert scored.status_code == 200 and scored.json()["refused"] == 0, scored.text[:300]
            pids += [r["result"]["prediction_id"] for r in scored.json()["results"]]
        assert len(pids) == 300
        pid = pids[0]
        reviewer = {HEADER: keys["reviewer"]}
        form = client.get("/ui/login").text
        token = re.search(rf'name="{CSRF_FIELD}" value="([^"]+)"', form)
        assert token is not None
        signed = client.post(
            "/ui/login",
            data={CSRF_FIELD: token.group(1), "api_key": keys["reviewer"]},
            follow_redirects=False,
        )
        assert signed.status_code == 303
        page = client.get(f"/ui/predictions/{pid}")
        assert page.status_code == 200 and "<svg" in page.text
        listed = client.get("/ui/predictions?limit=50")
        assert listed.text.count("<tr>") >= 50
        deviation = client.get("/ui/deviation?group_by=office")
        assert deviation.status_code == 200 and 'id="group-table"' in deviation.text
        for name, call in {
            "answer_page": lambda: client.get(f"/ui/predictions/{pid}"),
            "answer_json": lambda: client.get(f"/v1/predictions/{pid}", headers=reviewer),
            "list50_page": lambda: client.get("/ui/predictions?limit=50"),
            "list50_json": lambda: client.get("/v1/predictions?limit=50", headers=reviewer),
            "deviation_page": lambda: client.get("/ui/deviation?group_by=office"),
            "deviation_json": lambda: client.get(
                "/v1/reports/deviation?group_by=office", headers=reviewer
            ),
        }.items():
            for stat, value in timed(call, args.requests).items():
                results[f"{name}_{stat}"] = value
        results["answer_page_kb"] = len(page.content) / 1024
        results["list50_page_kb"] = len(listed.content) / 1024
        results["deviation_page_kb"] = len(deviation.content) / 1024
    results["ratio_answer_page_vs_json_p50"] = (
        results["answer_page_p50_ms"] / results["answer_json_p50_ms"]
    )
    results["ratio_list50_page_vs_json_p50"] = (
        results["list50_page_p50_ms"] / results["list50_json_p50_ms"]
    )
    results["ratio_deviation_page_vs_json_p50"] = (
        results["deviation_page_p50_ms"] / results["deviation_json_p50_ms"]
    )
    for name, value in results.items():
        print(f"{name:40s} {value:10.2f}")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = f"python bench/bench_pages.py --rows {args.rows} --requests {args.requests}"
    lines = [
        "",
        f"## Pages beside JSON, in-process ({stamp})",
        f"`{command}`; {os.cpu_count()} cores shared; 300 stored answers; TestClient.",
        "",
        "| measure | value |",
        "|---|---|",
        *[f"| {name} | {value:,.2f} |" for name, value in results.items()],
    ]
    record(lines)


if __name__ == "__main__":
    main()
