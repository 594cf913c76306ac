"""Benchmark: what the registry join adds to one live answer (``serving.data_sources``, #9).

Run by hand: ``nice .venv/bin/python bench/bench_live_join.py [--rows 200000]
[--compare DIR]``. It imports a 低保 extract of ``--rows`` people and three extracts of a
tenth of them (特困, 退役军人, 大病) into a fresh SQLite registry store, then times
:func:`join_live` on one record: without a person key (no query), with a key four departments
hold, with a key none holds, and the store query alone (:meth:`RegistryStore.persons`), as
medians over ``--repeat`` calls. Appends the figures, with the command and the date, to
bench/RESULTS.md.

``--compare DIR`` times another tree of the project too (e.g. ``git archive main | tar -x -C
DIR``), in the same run and on the same store: this script is run again with ``PYTHONPATH=DIR``
(``--time-store``: time only, print JSON), before the figures of this tree.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from results import command, figure_table, record

from features.contract import canonical_from_typed
from features.registries import RegistryConfig, extract_digest, validate_extract
from features.vectors import columns_from_records
from serving.data_sources import join_live
from serving.registry_store import RegistryStore
from serving.schemas import EXAMPLE_RECORD


def _median_ms(call: Callable[[], Any], repeat: int) -> float:
    call()  # warm: the store's first connection, SQLAlchemy's statement cache
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 3)


def _keys(rows: int) -> list[str]:
    return [hashlib.sha256(str(i).encode()).hexdigest() for i in range(rows)]


def _timings(store: RegistryStore, rows: int, repeat: int) -> dict[str, float]:
    """The four figures (ms) on a store :func:`_fill` filled with ``rows`` people."""
    config = RegistryConfig.load()
    keys = _keys(rows)

    def columns(person_key: str | None) -> Any:
        record = canonical_from_typed({**EXAMPLE_RECORD, "person_key": person_key})
        return columns_from_records([record])

    no_key, held, unheld = columns(None), columns(keys[5]), columns("f" * 64)
    return {
        "no_person_key_ms": _median_ms(lambda: join_live(no_key, store, config), repeat),
        "held_by_4_ms": _median_ms(lambda: join_live(held, store, config), repeat),
        "held_by_none_ms": _median_ms(lambda: join_live(unheld, store, config), repeat),
        "query_ms": _median_ms(lambda: store.persons([keys[5]], dt.date(2025, 12, 31)), repeat),
    }


def _fill(store: RegistryStore, rows: int) -> None:
    config = RegistryConfig.load()
    keys = _keys(rows)
    on = dt.date(2025, 6, 30)
    for kind, n in (
        ("dibao", rows),
        ("tekun", rows // 10),
        ("veteran_family", rows // 10),
        ("serious_illness", rows // 10),
    ):
        raw = pd.DataFrame({"person_key": keys[:n], "status": "active", "valid_from": "2020-01-01"})
        canonical = validate_extract(raw, config.department(kind), on)
        store.import_extract(kind, on, canonical, extract_digest(canonical), f"{kind}.csv", "bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--compare", type=Path, help="another tree of the project to time too")
    parser.add_argument("--time-store", help=argparse.SUPPRESS)  # the --compare child
    args = parser.parse_args()
    if args.time_store:
        store = RegistryStore.open(args.time_store)
        sys.stdout.write(json.dumps(_timings(store, args.rows, args.repeat)))
        store.close()
        return
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'registries.db'}"
        store = RegistryStore.open(url)
        _fill(store, args.rows)
        before: dict[str, float] = {}
        if args.compare is not None:
            child = [sys.executable, __file__, "--time-store", url, "--rows", str(args.rows)]
            env = {**os.environ, "PYTHONPATH": str(args.compare.resolve())}
            done = subprocess.run(
                [*child, "--repeat", str(args.repeat)],
                env=env,
                cwd=args.compare,
                check=True,
                capture_output=True,
                text=True,
            )
            before = json.loads(done.stdout)
        figures = _timings(store, args.rows, args.repeat)
        store.close()
    rows = args.rows + 3 * (args.rows // 10)
    title = f"\n## Live registry join (serving/data_sources.py) ({dt.date.today().isoformat()})"
    lines = [
        title,
        f"Command: `{command()}`; one record per call, "
        f"median of {args.repeat} calls, {rows} registry rows in SQLite, 2 shared cores.",
        "",
    ]
    if before:
        lines += [
            f"| figure | before ({args.compare}) | after (this tree) |",
            "|---|---|---|",
            *[f"| {k} | {before.get(k)} | {v} |" for k, v in figures.items()],
        ]
    else:
        lines += figure_table(figures)
    record(lines)


if __name__ == "__main__":
    main()
