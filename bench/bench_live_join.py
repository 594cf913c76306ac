"""Benchmark: what the registry join adds to one live answer (``serving.data_sources``, #9).

Run by hand: ``nice .venv/bin/python bench/bench_live_join.py [--rows 200000]``. It imports
a 低保 extract of ``--rows`` people and three extracts of a tenth of them (特困, 退役军人, 大病)
into a fresh SQLite registry store, then times :func:`join_live` on one record: without a
person key (no query), with a key four departments hold, with a key none holds, and the store
query alone (:meth:`RegistryStore.persons`), as medians over ``--repeat`` calls. Appends the
figures, with the command and the date, to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    config = RegistryConfig.load()
    keys = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(args.rows)]
    on = dt.date(2025, 6, 30)
    with tempfile.TemporaryDirectory() as folder:
        store = RegistryStore.open(f"sqlite:///{Path(folder) / 'registries.db'}")
        for kind, n in (
            ("dibao", args.rows),
            ("tekun", args.rows // 10),
            ("veteran_family", args.rows // 10),
            ("serious_illness", args.rows // 10),
        ):
            raw = pd.DataFrame(
                {"person_key": keys[:n], "status": "active", "valid_from": "2020-01-01"}
            )
            rows = validate_extract(raw, config.department(kind), on)
            store.import_extract(kind, on, rows, extract_digest(rows), f"{kind}.csv", "bench")

        def columns(person_key: str | None) -> Any:
            record = canonical_from_typed({**EXAMPLE_RECORD, "person_key": person_key})
            return columns_from_records([record])

        no_key, held, unheld = columns(None), columns(keys[5]), columns("f" * 64)
        figures = {
            "registry_rows": args.rows + 3 * (args.rows // 10),
            "no_person_key_ms": _median_ms(lambda: join_live(no_key, store, config), args.repeat),
            "held_by_4_ms": _median_ms(lambda: join_live(held, store, config), args.repeat),
            "held_by_none_ms": _median_ms(lambda: join_live(unheld, store, config), args.repeat),
            "query_ms": _median_ms(
                lambda: store.persons([keys[5]], dt.date(2025, 12, 31)), args.repeat
            ),
        }
        store.close()
    lines = [
        f"\n## Live registry join (serving/data_sources.py) ({dt.date.today().isoformat()})",
        f"Command: `{' '.join([Path(sys.executable).name, *sys.argv])}`; one record per call, "
        f"median of {args.repeat} calls, registries in SQLite, 2 shared cores.",
        "",
        "| figure | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in figures.items()],
    ]
    text = "\n".join(lines) + "\n"
    with (Path(__file__).parent / "RESULTS.md").open("a", encoding="utf-8") as handle:
        handle.write(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
