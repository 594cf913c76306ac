"""Real `aidrec serve` processes under load and faults, on loopback, each scenario bounded.

A :class:`Server` is started on the session's registry with its own audit store and keys,
can be killed (-9), stopped (SIGTERM) and restarted on the same store. Traffic goes only to
127.0.0.1. Figures each scenario measures are collected in ``FIGURES`` and written, when
``AIDREC_FAULT_REPORT`` names a file, as JSON at the end (``bench/bench_faults.py``).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.schemas import EXAMPLE_RECORD
from serving.security import HEADER, key_hash
from tests.e2e.helpers import free_port

AIDREC = str(Path(sys.executable).with_name("aidrec"))
FIGURES: dict[str, Any] = {}

pytestmark = pytest.mark.reliability


def record(case_id: str, **changes: Any) -> dict[str, Any]:
    """The example case under another case number."""
    return {"record": {**EXAMPLE_RECORD, "case_id": case_id, **changes}}


@dataclass
class Server:
    """One `aidrec serve` process and the store it keeps (restartable on the same store)."""

    folder: Path
    env: dict[str, str]
    keys: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def base(self) -> str:
        """The server's address."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> Server:
        """Start (or restart) the process and wait until it is ready."""
        self.starts += 1
        log = open(self.folder / f"server-{self.starts}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [AIDREC, "serve", "--port", str(self.port)],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"aidrec serve exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError("the server was not ready in time")

    def kill9(self) -> None:
        """Kill the process without warning."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self, timeout: float = 60.0) -> bool:
        """SIGTERM and wait; whether the server shut down cleanly.

        uvicorn re-raises the signal after its graceful shutdown, so the exit status is
        -SIGTERM either way; the log says whether the application's shutdown completed.
        """
        assert self.process is not None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        return code in (0, -signal.SIGTERM) and self.shut_down_cleanly()

    def shut_down_cleanly(self) -> bool:
        """The latest run's log ends with uvicorn's completed application shutdown."""
        text = (self.folder / f"server-{self.starts}.log").read_text(errors="replace")
        return "Application shutdown complete" in text

    def auth(self, role: str) -> dict[str, str]:
        """The header of one of this server's keys (``case_system_2`` etc. for extra keys)."""
        return {HEADER: self.keys[role]}

    def audit_count(self) -> int:
        """How many answers the reviewer can list (the audit store's predictions)."""
        response = httpx.get(
            f"{self.base}/v1/predictions",
            params={"limit": 1},
            headers=self.auth("reviewer"),
            timeout=30,
        )
        response.raise_for_status()
        return int(response.json()["total"])

    def verify(self) -> subprocess.CompletedProcess[str]:
        """`aidrec audit verify` on this server's store."""
        return subprocess.run(
            [AIDREC, "audit", "verify"],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=300,
        )


def write_keys(path: Path, case_systems: int = 4) -> dict[str, str]:
    """A key file with several case-system keys (as several case systems would have)."""
    plain = {"reviewer": "k-reviewer-" + "r" * 20, "admin": "k-admin-" + "a" * 20}
    plain |= {f"case_system_{i}": f"k-case-{i}-" + "c" * 20 for i in range(case_systems)}
    plain["case_system"] = plain["case_system_0"]
    entries = [
        {
            "name": name,
            "role": name.rsplit("_", 1)[0] if name[-1].isdigit() else name,
            "sha256": key_hash(key),
        }
        for name, key in plain.items()
        if name != "case_system"
    ]
    path.write_text(json.dumps(entries))
    return plain


@pytest.fixture
def server_at(registry: dict[str, Any], tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Make servers on the session registry: ``server_at(audit_url=None, **settings)``."""
    made: list[Server] = []

    def make(audit_url: str | None = None, **settings: str) -> Server:
        folder = tmp_path / f"server{len(made)}"
        folder.mkdir()
        keys = write_keys(folder / "keys.json")
        env = {
            "AIDREC_DATA_DIR": str(registry["data_dir"]),
            "MLFLOW_TRACKING_URI": registry["tracking_uri"],
            "AIDREC_AUDIT_URL": audit_url or f"sqlite:///{folder / 'audit.db'}",
            "AIDREC_API_KEYS_FILE": str(folder / "keys.json"),
            "AIDREC_AUDIT_KEY_FILE": str(folder / "audit.key"),
            "AIDREC_AUDIT_SIGNING_KEY_FILE": str(folder / "audit-signing.key"),
            "AIDREC_AUDIT_CHECKPOINT_FILE": str(folder / "checkpoints.jsonl"),
            **{f"AIDREC_{k.upper()}": v for k, v in settings.items()},
        }
        server = Server(folder, env, keys)
        made.append(server)
        return server

    yield make
    for server in made:
        if server.process is not None and server.process.poll() is None:
            server.kill9()


@dataclass
class Load:
    """What a load run saw: statuses, latencies, the answers received."""

    statuses: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    received: list[str] = field(default_factory=list)  # prediction ids of 200 answers
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def ok(self) -> int:
        """Answers received."""
        return len(self.received)

    def p(self, q: float) -> float:
        """A latency quantile in milliseconds."""
        if len(self.latencies) < 2:
            return float("nan")
        return 1000 * statistics.quantiles(self.latencies, n=100)[int(q) - 1]


def drive(
    server: Server,
    clients: int,
    seconds: float,
    prefix: str,
    stop: threading.Event | None = None,
) -> Load:
    """``clients`` threads scoring distinct cases for ``seconds`` (or until ``stop``)."""
    load = Load()
    ends = time.monotonic() + seconds
    stop = stop or threading.Event()

    def client(number: int) -> None:
        key = server.auth(f"case_system_{number % 4}")
        with httpx.Client(timeout=30) as http:
            i = 0
            while time.monotonic() < ends and not stop.is_set():
                i += 1
                started = time.perf_counter()
                try:
                    response = http.post(
                        f"{server.base}/v1/score",
                        json=record(f"{prefix}-{number}-{i}"),
                        headers=key,
                    )
                except httpx.HTTPError as exc:
                    with load.lock:
                        load.failures.append(type(exc).__name__)
                    if stop.is_set():
                        return
                    continue
                with load.lock:
                    load.statuses.append(response.status_code)
                    load.latencies.append(time.perf_counter() - started)
                    if response.status_code == 200:
                        load.received.append(response.json()["prediction_id"])

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    return load


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the figures when asked (bench/bench_faults.py asks)."""
    target = os.environ.get("AIDREC_FAULT_REPORT")
    if target and FIGURES:
        Path(target).write_text(json.dumps(FIGURES, indent=2, default=str))
