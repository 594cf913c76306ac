"""Benchmark: the scoring service as a real process, driven from this one over loopback.

Run by hand: ``.venv/bin/python bench/bench_serve.py [--rows 200000] [--data-dir DIR]``.
Trains and promotes a champion on a synthetic history of ``rows`` cases (once per data
dir), then measures, in one run and with bounded counts, every figure of issue #12 beside
its aim:

- ``aidrec serve``: start-up to ready, resident memory, ``/v1/score`` with everything (all
  models, all explanations, similar cases, the audit write) p50/p99 one after another and
  requests/s at concurrency 8, ``/v1/score/batch`` with every explanation in cases/s;
- ``mlflow models serve`` of the same registered version with the same single case (scores
  only: it returns no explanations, similar cases or audit), requests/s at concurrency 8;
- in-process: every explanation for batches, and scores alone, in cases/s;
- ``aidrec score-file`` of 200,000 and 1,000,000 cases including start-up.

Both servers and this driver share the machine's 2 cores. The venv's ``bin`` is put on PATH
(``mlflow models serve`` execs ``uvicorn``). Appends the table to bench/RESULTS.md.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from results import command, record  # noqa: E402

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

ON_PATH = {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
BATCH = 200  # the service's default max_batch


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
    with httpx.Client(timeout=60) as client:
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
        with httpx.Client(timeout=60) as client:
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


def _quantile(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[int(q * (len(ordered) - 1))]


def prepare(data_dir: Path, rows: int) -> dict[str, str]:
    """A champion in ``data_dir`` (trained once); the environment that points at it."""
    env = {**os.environ, **ON_PATH, "AIDREC_DATA_DIR": str(data_dir)}
    env.pop("MLFLOW_TRACKING_URI", None)
    if not (data_dir / "mlflow.db").exists():
        subprocess.run(
            [str(BIN / "aidrec"), "run", "--rows", str(rows), "--no-serve"], env=env, check=True
        )
    return env


def measure_aidrec(data_dir: Path, args: argparse.Namespace, results: dict[str, Any]) -> None:
    """The service over HTTP: start-up, memory, single answers, concurrency, batches."""
    for stale in data_dir.glob("bench_audit.db*"):  # the keys live there: a fresh one prints them
        stale.unlink()
    server_env = {
        **ON_PATH,
        "AIDREC_DATA_DIR": str(data_dir),
        "AIDREC_AUDIT_URL": f"sqlite:///{data_dir / 'bench_audit.db'}",
        "AIDREC_API_KEYS_FILE": str(data_dir / "bench_no_keys.json"),
        # the per-key limits protect a deployment from one caller; the benchmark is that caller
        "AIDREC_RATE_PER_SECOND": "100000",
        "AIDREC_RATE_BURST": "100000",
        "AIDREC_MAX_CONCURRENT_PER_KEY": "64",
    }
    port = free_port()
    log = data_dir / "bench_server.log"
    started = time.perf_counter()
    command = [str(BIN / "aidrec"), "serve", "--port", str(port)]
    with running(command, f"http://127.0.0.1:{port}/readyz", env=server_env, output=log) as proc:
        results["startup_s"] = time.perf_counter() - started
        key = next(
            line.split()[1]
            for line in log.read_text().splitlines()
            if line.strip().startswith("case_system")
        )
        headers = {"X-API-Key": key, "Content-Type": "application/json"}
        single = json.dumps({"record": EXAMPLE_RECORD, "granted_amount_yuan": 30000}).encode()
        url = f"http://127.0.0.1:{port}/v1/score"
        times = sequential(url, single, headers, args.requests)
        results["score_p50_ms"] = statistics.median(times) * 1e3
        results["score_p99_ms"] = _quantile(times, 0.99) * 1e3
        results["score_rps_c8"] = concurrent(url, single, headers, 8, args.seconds, 4000)
        items = [{"record": {**EXAMPLE_RECORD, "case_id": f"B{i}"}} for i in range(BATCH)]
        batch = json.dumps({"items": items}).encode()
        batch_url = f"http://127.0.0.1:{port}/v1/score/batch"
        results["batch_http_cases_per_s"] = BATCH / statistics.median(
            sequential(batch_url, batch, headers, 10)
        )
        results["rss_mb"] = _rss_mb(proc.pid)


def measure_mlflow(data_dir: Path, args: argparse.Namespace, results: dict[str, Any]) -> None:
    """``mlflow models serve`` of the same version with the same case (scores only)."""
    port = free_port()
    tracking = f"sqlite:///{data_dir / 'mlflow.db'}"
    command = [
        *(str(BIN / "mlflow"), "models", "serve", "-m", "models:/judicial-aid@champion"),
        *("--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)),
    ]
    env = {**ON_PATH, "MLFLOW_TRACKING_URI": tracking}
    started = time.perf_counter()
    with running(command, f"http://127.0.0.1:{port}/ping", env=env, timeout=300) as proc:
        results["mlflow_startup_s"] = time.perf_counter() - started
        frame = as_pyfunc_input(parse_record(EXAMPLE_RECORD).frame)
        split = json.loads(frame.to_json(orient="split", index=False))
        payload = json.dumps({"dataframe_split": split}).encode()
        url = f"http://127.0.0.1:{port}/invocations"
        plain = {"Content-Type": "application/json"}
        times = sequential(url, payload, plain, min(args.requests, 200))
        results["mlflow_p50_ms"] = statistics.median(times) * 1e3
        results["mlflow_rps_c8"] = concurrent(url, payload, plain, 8, args.seconds, 2000)
        results["mlflow_rss_mb"] = _rss_mb(proc.pid)


def _timed(work: Callable[[], object], repeat: int = 3) -> float:
    """The median seconds of ``repeat`` runs of ``work``."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure_files_and_inprocess(
    data_dir: Path, env: dict[str, str], results: dict[str, Any]
) -> None:
    """score-file at 200k and 1M (with start-up), and the bundle in this process."""
    cases = generate_history(1_000_000, seed=77)
    for rows, name in ((200_000, "200k"), (1_000_000, "1m")):
        source = write_table(cases.head(rows), data_dir / f"bench_cases_{name}.parquet")
        started = time.perf_counter()
        subprocess.run(
            [
                *(str(BIN / "aidrec"), "score-file", "--input", str(source)),
                *("--output", str(data_dir / f"bench_scores_{name}.parquet")),
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        results[f"score_file_{name}_s"] = time.perf_counter() - started
    configure_tracking(Settings(data_dir=data_dir).tracking_store_uri)
    bundle, info = load_bundle("models:/judicial-aid@champion")
    frame = parse_records(cases.head(200_000)).frame
    columns = columns_from_frame(frame)
    bundle.score_columns(columns)  # warm
    results["scores_inprocess_cases_per_s"] = len(frame) / _timed(
        lambda: bundle.score_columns(columns)
    )
    model = LoadedModel(bundle, info["name"], info["version"], info["run_id"])
    chunks = [columns_from_frame(frame.iloc[i : i + BATCH]) for i in range(0, 4000, BATCH)]

    def explain_all() -> None:
        for chunk in chunks:
            build_answers(model, chunk, [None] * BATCH, 5, 8)

    results["batch_inprocess_cases_per_s"] = 4000 / _timed(explain_all)


AIMS: tuple[tuple[str, str, str], ...] = (
    ("`/v1/score` everything, p50 ms", "score_p50_ms", "≤ 8"),
    ("`/v1/score` everything, p99 ms", "score_p99_ms", "≤ 20"),
    ("`/v1/score` req/s at concurrency 8", "score_rps_c8", ""),
    ("`mlflow models serve` (scores only) req/s at concurrency 8", "mlflow_rps_c8", ""),
    ("ratio aidrec ÷ mlflow at concurrency 8", "ratio_c8", "≥ 6×"),
    ("`/v1/score/batch` every explanation, over HTTP, cases/s", "batch_http_cases_per_s", "≥ 800"),
    ("batch every explanation, in-process, cases/s", "batch_inprocess_cases_per_s", "≥ 1,000"),
    ("scores alone, in-process, cases/s", "scores_inprocess_cases_per_s", "≥ 60,000"),
    ("`score-file` 200k cases incl. start-up, s", "score_file_200k_s", "≤ 6"),
    ("`score-file` 1M cases incl. start-up, s", "score_file_1m_s", "≤ 25"),
    ("start-up to ready, s", "startup_s", "≤ 3"),
    ("resident memory, MB", "rss_mb", "≤ 400"),
    ("`mlflow models serve` start-up, s / memory, MB", "mlflow_startup_rss", ""),
)


def main() -> None:
    """Measure and append the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="aidrec-bench-"))
    env = prepare(data_dir, args.rows)
    results: dict[str, Any] = {}
    measure_aidrec(data_dir, args, results)
    measure_mlflow(data_dir, args, results)
    measure_files_and_inprocess(data_dir, env, results)
    results["ratio_c8"] = results["score_rps_c8"] / results["mlflow_rps_c8"]
    results["mlflow_startup_rss"] = (
        f"{results['mlflow_startup_s']:.1f} / {results['mlflow_rss_mb']:.0f}"
    )

    def shown(value: Any) -> str:
        return value if isinstance(value, str) else f"{value:,.2f}"

    lines = [
        f"\n## Scoring service, issue #12's table ({dt.date.today().isoformat()})",
        f"Command: `{command()}`; champion trained on "
        f"{args.rows:,} synthetic cases; servers started as real processes, driven from the "
        "benchmark process over 127.0.0.1 (all share the 2 cores); one run, figures measured "
        "side by side.",
        "",
        "| figure | measured | aim |",
        "|---|---|---|",
        *[f"| {label} | {shown(results[key])} | {aim} |" for label, key, aim in AIMS],
    ]
    record(lines)


if __name__ == "__main__":
    main()
