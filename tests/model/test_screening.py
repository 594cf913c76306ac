"""Screening: bad rows, sources, registries in the rules, ranking, re-screening, evaluation."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aidrec.settings import Settings
from features.department_rules import DepartmentRules
from features.registries import DibaoTable, RegistryConfig, validate_extract
from features.synthetic import generate_history
from features.synthetic_registries import case_cards, generate_registries, registry_date
from features.tables import write_table
from serving.leads import LeadCandidate
from serving.stores import open_lead_store
from training.bundle import ModelBundle
from training.screening import (
    RegistrySnapshot,
    Screener,
    evaluate_screening,
    lead_candidates,
    rank_leads,
    screen_file,
)

CONFIG = RegistryConfig.load()


@pytest.fixture(scope="module")
def world() -> tuple[pd.DataFrame, RegistrySnapshot]:
    history = generate_history(3_000, seed=77)
    on = registry_date(history)
    extracts = generate_registries(history, seed=77)
    rows = {k: validate_extract(v, CONFIG.department(k), on) for k, v in extracts.items()}
    return history, RegistrySnapshot(rows, dict.fromkeys(rows, on.isoformat()))


def screener(bundle: ModelBundle, registries: RegistrySnapshot, **options: object) -> Screener:
    return Screener(
        bundle=bundle,
        registries=registries,
        registry_config=CONFIG,
        rules=DepartmentRules.load(),
        dibao=DibaoTable.from_csv(),
        run_id="test",
        **options,  # type: ignore[arg-type]
    )


def test_bad_rows_get_an_error_and_the_good_ones_are_screened(
    bundle: ModelBundle, world: tuple[pd.DataFrame, RegistrySnapshot]
) -> None:
    cards = case_cards(world[0]).head(300).copy()
    cards["victim_age"] = cards["victim_age"].astype(object)
    cards.loc[5, "victim_age"] = 200
    cards.loc[9, "crime_type"] = "arson"
    run = screener(bundle, world[1])
    leads = run.screen(cards)
    refused = leads.loc[leads["error"].notna()]
    assert set(refused["case_id"]) == {cards.loc[5, "case_id"], cards.loc[9, "case_id"]}
    assert "victim_age" in refused.set_index("case_id").loc[cards.loc[5, "case_id"], "error"]
    good = leads.loc[leads["error"].isna()]
    assert len(good) > 0 and not good["case_id"].isin(refused["case_id"]).any()
    assert run.counts["cards"] == 300 and run.counts["refused"] == 2
    assert not good.duplicated(["case_id", "kind"]).any()


def test_every_lead_names_its_sources_and_reasons(
    bundle: ModelBundle, world: tuple[pd.DataFrame, RegistrySnapshot]
) -> None:
    leads = screener(bundle, world[1]).screen(case_cards(world[0]).head(1_500))
    failures = leads.loc[leads["kind"].str.startswith("department_failure:")]
    assert set(failures["kind"].str.partition(":")[2]) >= {
        "disability_without_certificate",
        "breadwinner_death_no_temporary_relief",
    }
    rules = {r.id: r for r in DepartmentRules.load().rules}
    for row in failures.itertuples():
        reasons = json.loads(row.reasons)
        rule = rules[reasons["rule"]]
        sources = json.loads(row.sources)
        assert {s["department"] for s in sources} >= set(rule.departments)
        assert all(
            s["snapshot"] == "2025-12-31" for s in sources if s["department"] in CONFIG.departments
        )
        assert set(reasons["facts"]) == set(rule.facts)
        from_card = {s["field"] for s in sources if s["department"] == "case_system"}
        assert from_card <= set(rule.facts)
        if rule.id == "disability_without_certificate":  # 残联's registry knew every key
            assert from_card == {"disability_grade"}
        assert np.isnan(row.score) and 0 <= row.priority <= 1
    model = leads.loc[leads["kind"] == "judicial_aid"]
    for text in model["sources"]:  # a registry, or the card for the joined fields it gave
        for source in json.loads(text):
            assert source["department"] in CONFIG.departments or (
                source["department"] == "case_system"
                and source["field"]
                in ("low_income_status", "disability_certificate", "registry_flags")
            )
    first = json.loads(model["reasons"].iloc[0])
    assert first["probability"] >= first["threshold"]
    assert first["top"] and first["top"][0]["contribution"] > 0
    assert all(hit["zh"] for hit in first["rule_hits"])


def test_the_registry_overrules_the_card_in_the_rules(
    bundle: ModelBundle, world: tuple[pd.DataFrame, RegistrySnapshot]
) -> None:
    history, registries = world
    cards = case_cards(history)
    graded = cards.loc[cards["disability_grade"].notna()].head(40).copy()
    registered = set(registries.rows["disability"]["person_key"])
    graded = graded.loc[~graded["person_key"].isin(registered)]
    graded["disability_certificate"] = 1.0  # the card claims a certificate 残联 never issued
    kind = "department_failure:disability_without_certificate"
    with_registry = screener(bundle, registries).screen(graded)
    assert set(with_registry.loc[with_registry["kind"] == kind, "case_id"]) == set(
        graded["case_id"]
    )
    alone = screener(bundle, RegistrySnapshot({}, {})).screen(graded)
    assert kind not in set(alone["kind"])  # the card alone shows a certificate


def test_screen_file_ranks_and_a_rerun_registers_no_duplicate(
    bundle: ModelBundle, world: tuple[pd.DataFrame, RegistrySnapshot], tmp_path: Path
) -> None:
    path = write_table(case_cards(world[0]).head(800), tmp_path / "cards.parquet")
    table = screen_file(screener(bundle, world[1]), path, chunk_rows=300)
    ranked = table.to_pandas()
    assert ranked["rank"].tolist() == list(range(1, len(ranked) + 1))
    assert ranked["priority"].is_monotonic_decreasing
    store = open_lead_store(Settings(data_dir=tmp_path))
    candidates = [LeadCandidate(**c) for c in lead_candidates(ranked)]
    first = store.register(candidates)
    assert first.created == len(ranked)
    again = screen_file(screener(bundle, world[1]), path, chunk_rows=500).to_pandas()
    second = store.register([LeadCandidate(**c) for c in lead_candidates(again)])
    assert (second.created, second.unchanged) == (0, len(ranked))


def test_refused_cards_rank_last() -> None:
    leads = pd.DataFrame(
        {
            "case_id": ["a", "b", "c"],
            "kind": ["judicial_aid", None, "civil_support"],
            "priority": [0.2, np.nan, 0.9],
            "error": [None, "victim_age: bad", None],
        }
    )
    ranked = rank_leads(leads)
    assert ranked["case_id"].tolist() == ["c", "a", "b"]
    assert ranked["rank"].tolist()[:2] == [1.0, 2.0] and np.isnan(ranked["rank"].iloc[2])


def test_evaluation_counts_recall_at_budgets() -> None:
    cards = pd.DataFrame(
        {
            "case_id": [f"c{i}" for i in range(10)],
            "p_judicial_aid": [0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.05, 0.04, 0.03, 0.02],
            "eligibility_status": ["needs_review", "eligible", "eligible"] + ["excluded"] * 7,
        }
    )
    aided = np.array([1, 0, 1, 0, 1, 0, 0, 0, 0, 0], dtype=bool)
    leads = pd.DataFrame(
        {
            "case_id": ["c0", "c2", "c2"],
            "kind": ["judicial_aid", "judicial_aid", "department_failure:x"],
            "error": [None] * 3,
        }
    )
    result = evaluate_screening(leads, cards, aided, budgets=(200, 300))
    assert result.leads_per_thousand == {"judicial_aid": 200.0, "department_failure:x": 100.0}
    assert result.screening_leads_per_thousand == 200.0
    assert result.rule_screen_leads_per_thousand == 200.0
    assert [(b.screening_recall, b.rule_screen_recall) for b in result.budgets] == [
        (2 / 3, 1 / 3),
        (1.0, 1 / 3),
    ]
    assert any("recall" in line for line in result.lines())


def test_as_of_reads_every_card_on_one_date(
    bundle: ModelBundle, world: tuple[pd.DataFrame, RegistrySnapshot]
) -> None:
    cards = case_cards(world[0]).head(400)
    early = screener(bundle, world[1], as_of=dt.date(2000, 1, 1)).screen(cards)
    # in 2000 nobody was registered yet: no registry is a source, only the card
    for text in early.loc[early["kind"] == "judicial_aid", "sources"]:
        assert {s["department"] for s in json.loads(text)} <= {"case_system"}


def test_commands_generate_import_screen_and_rescreen_without_duplicates(
    registry: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, app = registry["runner"], registry["app"]
    monkeypatch.setenv(
        "AIDREC_DATA_DIR", str(tmp_path)
    )  # the champion stays at MLFLOW_TRACKING_URI
    monkeypatch.setenv("AIDREC_PERSON_KEY_SECRET", "k" * 40)
    history, cards, leads = tmp_path / "h.parquet", tmp_path / "cards.csv", tmp_path / "leads.csv"
    write_table(generate_history(600, seed=5), history)
    made = runner.invoke(
        app,
        [
            "generate-registries",
            "--history",
            str(history),
            "--out-dir",
            str(tmp_path / "reg"),
            "--cards",
            str(cards),
            "--import",
        ],
    )
    assert made.exit_code == 0, made.output
    assert "dibao:" in made.output and "rows imported" in made.output
    raw = pd.read_csv(cards, dtype=str, keep_default_na=False)
    assert "aid_granted" not in raw.columns
    raw.loc[3, "harm_outcome"] = "bruised"
    raw.to_csv(cards, index=False)
    args = ["screen", "--cases", str(cards), "--out", str(leads), "--evaluate-with", str(history)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "600 cards screened" in first.output and "1 cards refused" in first.output
    assert "recall of aided cards checking 100 per 1,000" in first.output
    table = pd.read_csv(leads)
    assert table.loc[table["error"].notna(), "case_id"].tolist() == [raw.loc[3, "case_id"]]
    found = int(table["error"].isna().sum())
    assert f"lead register: {found} created, 0 updated, 0 unchanged" in first.output
    again = runner.invoke(app, args)
    assert f"lead register: 0 created, 0 updated, {found} unchanged" in again.output
