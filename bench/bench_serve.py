"""Benchmark: the scoring service as a real process, driven from this one over loopback.

Run by hand: ``.venv/bin/python bench/bench_serve.py [--rows 200000] [--data-dir DIR]``.
Trains and promotes a champion on a synthetic history of ``rows`` cases (once per data
dir), then measures, in one run and with bounded counts:

- ``aidrec serve``: start-up to ready, resident memory, ``/v1/score`` (everything: all
  models, all explanations, similar cases, the audit write) p50/p99 sequentially and
  requests/s at concurrency 8, ``/v1/score/batch`` cases/s;
- ``mlflow models serve`` of the same registered version with the same single case
  (scores only: it returns no explanations, similar cases or audit);
- ``aidrec score-file`` and the in-process bundle: cases/s for scores alone and with
  every explanation.

Both servers and this driver share the machine's 2 cores. Appends to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from aidrec.settings import Settings  # noqa: E402
from features.contract import parse_record, parse_records  # noqa: E402
from features.synthetic import generate_history  # noqa: E402
from features.tables import write_table  # noqa: E402
from features.vectors import columns_from_frame  # noqa: E402
from serving.answers import LoadedModel, build_answers  # noqa: E402
from serving.schemas import EXAMPLE_RECORD  # noqa: E402
from tests.e2e.helpers import free_port, running  # noqa: E402
from training.pyfunc import as_pyfunc_input  # noqa: E402
from training.registry import configure_tracking, load_bundle  # noqa: E402


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the server may fork a worker)."""
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


def sequential(url: str, body: bytes, headers: dict[str, str], count: int) -> list[float]:
    """Latencies (s) of ``count`` requests one after another on one connection."""
    times = []
    with httpx.Client(timeout=30) as client:
        for _ in range(10):
            client.post(url, content=body, headers=headers)
        for _ in range(count):
            started = time.perf_counter()
            response = client.post(url, content=body, headers=headers)
            times.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text[:300]
    return times


def concurrent(
    url: str, body: bytes, headers: dict[str, str], workers: int, seconds: float, limit: int
) -> float:
    """Requests per second with ``workers`` connections, for at most ``seconds``/``limit``."""
    done = 0
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker() -> None:
        nonlocal done
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < stop:
                with lock:
                    if done >= limit:
                        return
                response = client.post(url, content=body, headers=headers)
                assert response.status_code == 200, response.text[:300]
                with lock:
                    done += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done / (time.perf_counter() - started)


def prepare(data_dir: Path, rows: int) -> dict[str, str]:
    env = {**os.environ, "AIDREC_DATA_DIR": str(data_dir)}
    env.pop("MLFLOW_TRACKING_URI", None)
    if not (data_dir / "mlflow.db").exists():
        subprocess.run(
            [str(BIN / "aidrec"), "run", "--rows", str(rows), "--no-serve"], env=env, check=True
        )
    return env


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="aidrec-bench-"))
    env = prepare(data_dir, args.rows)
    results: dict[str, Any] = {}
    single = json.dumps({"record": EXAMPLE_RECORD, "granted_amount_yuan": 30000}).encode()

    # --- aidrec serve -------------------------------------------------------------------
    keys_file = data_dir / "bench_keys.json"
    keys_file.unlink(missing_ok=True)
    for stale in data_dir.glob("bench_audit.db*"):  # the keys live there: a fresh one prints them
        stale.unlink()
    server_env = {
        "AIDREC_DATA_DIR": str(data_dir),
        "AIDREC_API_KEYS_FILE": str(keys_file),
        "AIDREC_AUDIT_URL": f"sqlite:///{data_dir / 'bench_audit.db'}",
    }
    port = free_port()
    log = data_dir / "bench_server.log"
    started = time.perf_counter()
    command = [str(BIN / "aidrec"), "serve", "--port", str(port)]
    with running(command, f"http://127.0.0.1:{port}/readyz", env=server_env, output=log) as proc:
        results["aidrec_startup_s"] = time.perf_counter() - started
        key = next(
            line.split()[1]
            for line in log.read_text().splitlines()
            if line.strip().startswith("case_system")
        )
        headers = {"X-API-Key": key, "Content-Type": "application/json"}
        url = f"http://127.0.0.1:{port}/v1/score"
        times = sorted(sequential(url, single, headers, args.requests))
        results["aidrec_p50_ms"] = statistics.median(times) * 1e3
        results["aidrec_p99_ms"] = times[int(0.99 * (len(times) - 1))] * 1e3
        results["aidrec_rps_c8"] = concurrent(url, single, headers, 8, args.seconds, 4000)
        batch = json.dumps(
            {"items": [{"record": {**EXAMPLE_RECORD, "case_id": f"B{i}"}} for i in range(1000)]}
        ).encode()
        batch_url = f"http://127.0.0.1:{port}/v1/score/batch"
        batch_times = sorted(sequential(batch_url, batch, headers, 5))
        results["aidrec_batch_cases_per_s"] = 1000 / statistics.median(batch_times)
        results["aidrec_rss_mb"] = _rss_mb(proc.pid)

    # --- mlflow models serve, same registered version -------------------------------------
    port = free_port()
    tracking = f"sqlite:///{data_dir / 'mlflow.db'}"
    command = [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        "models:/judicial-aid@champion",
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    started = time.perf_counter()
    with running(
        command, f"http://127.0.0.1:{port}/ping", env={"MLFLOW_TRACKING_URI": tracking}, timeout=300
    ) as proc:
        results["mlflow_startup_s"] = time.perf_counter() - started
        frame = as_pyfunc_input(parse_record(EXAMPLE_RECORD).frame)
        split = json.loads(frame.to_json(orient="split", index=False))
        payload = json.dumps({"dataframe_split": split}).encode()
        url = f"http://127.0.0.1:{port}/invocations"
        plain = {"Content-Type": "application/json"}
        times = sorted(sequential(url, payload, plain, min(args.requests, 200)))
        results["mlflow_p50_ms"] = statistics.median(times) * 1e3
        results["mlflow_p99_ms"] = times[int(0.99 * (len(times) - 1))] * 1e3
        results["mlflow_rps_c8"] = concurrent(url, payload, plain, 8, args.seconds, 2000)
        results["mlflow_rss_mb"] = _rss_mb(proc.pid)

    # --- files and in-process -----------------------------------------------------------------

    cases = generate_history(200_000, seed=77)
    source = write_table(cases, data_dir / "bench_cases.parquet")
    started = time.perf_counter()
    subprocess.run(
        [
            str(BIN / "aidrec"),
            "score-file",
            "--input",
            str(source),
            "--output",
            str(data_dir / "bench_scores.parquet"),
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    results["score_file_200k_s_including_startup"] = time.perf_counter() - started
    configure_tracking(Settings(data_dir=data_dir).tracking_store_uri)
    bundle, info = load_bundle("models:/judicial-aid@champion")
    frame = parse_records(cases).frame
    started = time.perf_counter()
    bundle.score(frame)
    results["inprocess_scores_cases_per_s"] = len(frame) / (time.perf_counter() - started)
    model = LoadedModel(bundle, info["name"], info["version"], info["run_id"])
    chunks = [
        columns_from_frame(frame.iloc[start : start + 1000]) for start in range(0, 5000, 1000)
    ]
    started = time.perf_counter()
    for columns in chunks:
        build_answers(model, columns, [None] * 1000, 5, 8)
    results["inprocess_full_answers_cases_per_s"] = 5000 / (time.perf_counter() - started)
    results["ratio_rps_aidrec_vs_mlflow"] = results["aidrec_rps_c8"] / results["mlflow_rps_c8"]

    lines = [
        f"\n## Scoring service ({dt.date.today().isoformat()})",
        f"Command: `{' '.join([Path(sys.executable).name, *sys.argv])}`; champion trained on "
        f"{args.rows:,} synthetic cases; servers started as real processes, driven from the "
        "benchmark process over 127.0.0.1 (all share the 2 cores); one run, figures measured "
        "side by side.",
        "",
        "| what | figure |",
        "|---|---|",
        *[f"| {k} | {v:,.2f} |" for k, v in results.items()],
    ]
    text = "\n".join(lines) + "\n"
    with Path(__file__).with_name("RESULTS.md").open("a") as handle:
        handle.write(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
