"""Benchmark: screening 1M generated case cards with the departments' registries (#9).

Run by hand: ``nice .venv/bin/python bench/bench_screen.py [--cards 1000000]
[--train-rows 50000]``. It generates a history and trains a bundle on it (the model being
timed), generates ``--cards`` new cards and their registries, imports every extract into a
fresh SQLite registry store (rows/s), then screens the cards in a child process (so its peak
memory is the screening's alone): cards/s and peak RSS. Appends the figures, with the command
and the date, to bench/RESULTS.md. Aims (issue #9): 1M cards in under 2 minutes, under 4 GB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import joblib
from results import command, figure_table, record

from features.department_rules import DepartmentRules
from features.registries import DibaoTable, RegistryConfig, extract_digest, validate_extract
from features.synthetic import generate_history
from features.synthetic_registries import case_cards, generate_registries, registry_date
from features.tables import write_table
from serving.registry_store import RegistryStore
from training.config import load_config
from training.screening import RegistrySnapshot, Screener, screen_file
from training.train import train_bundle


def child(
    bundle_path: Path, store_url: str, cards: Path, chunk_rows: int, top_reasons: int
) -> None:
    """Screen the cards (what ``aidrec screen`` does, without the registering) and report."""
    bundle = joblib.load(bundle_path)
    store = RegistryStore.open(store_url)
    view = store.as_of(dt.date.max)
    store.close()
    screener = Screener(
        bundle=bundle,
        registries=RegistrySnapshot(view.rows, view.snapshot_dates),
        registry_config=RegistryConfig.load(),
        rules=DepartmentRules.load(),
        dibao=DibaoTable.from_csv(),
        run_id="bench",
        top_reasons=top_reasons,
    )
    started = time.perf_counter()
    leads = screen_file(screener, cards, chunk_rows)
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sys.stdout.write(
        json.dumps(
            {
                "seconds": round(seconds, 1),
                "cards": screener.counts.get("cards", 0),
                "leads": leads.num_rows,
                "peak_rss_mb": round(peak_kb / 1024),
            }
        )
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cards", type=int, default=1_000_000)
    parser.add_argument("--train-rows", type=int, default=50_000)
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument("--top-reasons", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("BUNDLE", "STORE", "CARDS"))
    args = parser.parse_args()
    if args.child:
        bundle, store, cards = args.child
        child(Path(bundle), store, Path(cards), args.chunk_rows, args.top_reasons)
        return
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        bundle, _ = train_bundle(generate_history(args.train_rows, seed=1), load_config())
        joblib.dump(bundle, root / "bundle.joblib")
        figures["train_s"] = round(time.perf_counter() - started, 1)
        history = generate_history(args.cards, seed=2)
        extracts = generate_registries(history, seed=2)
        cards = write_table(case_cards(history), root / "cards.parquet")
        on = registry_date(history)
        del history
        url = f"sqlite:///{root / 'registries.db'}"
        store = RegistryStore.open(url)
        config = RegistryConfig.load()
        rows = 0
        started = time.perf_counter()
        for kind, frame in extracts.items():
            canonical = validate_extract(frame, config.department(kind), on)
            store.import_extract(kind, on, canonical, extract_digest(canonical), kind, "bench")
            rows += len(canonical)
        seconds = time.perf_counter() - started
        store.close()
        figures["registry_rows"] = rows
        figures["import_rows_per_s"] = round(rows / seconds)
        output = subprocess.run(
            [
                sys.executable,
                __file__,
                "--chunk-rows",
                str(args.chunk_rows),
                "--child",
                str(root / "bundle.joblib"),
                url,
                str(cards),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        screening = json.loads(output.strip().splitlines()[-1])
        figures |= screening
        figures["cards_per_s"] = round(screening["cards"] / screening["seconds"])
    lines = [
        f"\n## Screening with registries ({dt.date.today().isoformat()})",
        f"Command: `{command()}`; {args.cards:,} cards, "
        f"bundle trained on {args.train_rows:,} generated cases, chunks of {args.chunk_rows:,}, "
        f"{args.top_reasons} model contributions per lead, "
        "registries in SQLite, 2 shared cores. Aim: 1M cards < 2 min, < 4 GB.",
        "",
        *figure_table(figures),
    ]
    record(lines)


if __name__ == "__main__":
    main()
