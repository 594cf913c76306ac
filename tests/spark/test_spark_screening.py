"""Parity: the Spark engine finds the local engine's leads, with the same probabilities.

50,000 generated cards and their registries, the session's champion, ``local[2]``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.department_rules import DepartmentRules
from features.registries import DibaoTable, RegistryConfig, registry_table, validate_extract
from features.synthetic import generate_history
from features.synthetic_registries import case_cards, generate_registries, registry_date
from features.tables import write_table
from training.registry import configure_tracking, load_bundle
from training.screening import RegistrySnapshot, Screener, screen_file
from training.spark_engine import (
    JoinContext,
    SparkJob,
    SparkOptions,
    screen_on_spark,
)

CARDS = 50_000
URI = "models:/judicial-aid@champion"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("spark_screen")
    history = generate_history(CARDS, seed=23)
    on = registry_date(history)
    config = RegistryConfig.load()
    rows = {
        kind: validate_extract(frame, config.department(kind), on)
        for kind, frame in generate_registries(history, seed=23).items()
    }
    snapshots = dict.fromkeys(rows, on.isoformat())
    cards = case_cards(history)
    cards.loc[[3, 4_000], "victim_age"] = 300  # two cards break the contract
    cards_path = write_table(cards, folder / "cards.parquet")
    registries_path = folder / "registries.parquet"
    registry_table(rows, snapshots).to_parquet(registries_path)
    return {
        "folder": folder,
        "cards": cards_path,
        "registries": registries_path,
        "rows": rows,
        "snapshots": snapshots,
        "context": JoinContext(config, DibaoTable.from_csv(), DepartmentRules.load()),
        "broken": set(cards.loc[[3, 4_000], "case_id"]),
    }


def test_spark_finds_the_local_leads(
    spark: Any, registry: dict[str, Any], inputs: dict[str, Any]
) -> None:
    configure_tracking(registry["tracking_uri"])
    bundle, _ = load_bundle(URI)
    rules = DepartmentRules.load()
    context: JoinContext = inputs["context"]
    screener = Screener(
        bundle=bundle,
        registries=RegistrySnapshot(inputs["rows"], inputs["snapshots"]),
        registry_config=context.registry_config,
        rules=rules,
        dibao=context.dibao,
        run_id="parity",
        top_reasons=0,
    )
    local = screen_file(screener, inputs["cards"], 20_000).to_pandas()
    job = SparkJob(
        cards=str(inputs["cards"]),
        registries=str(inputs["registries"]),
        out=inputs["folder"] / "spark_out",
        model_uri=URI,
        run_id="parity",
        as_of=None,
        options=SparkOptions(),
    )
    result = screen_on_spark(spark, job, bundle, context)
    remote = pd.read_parquet(result.leads_path)
    errors = pd.read_parquet(result.errors_path)

    assert result.cards == CARDS and result.refused == 2
    assert set(errors["case_id"]) == inputs["broken"]
    assert errors["error"].str.contains("victim_age").all()
    found = local.loc[local["error"].isna()].set_index(["case_id", "kind"]).sort_index()
    assert set(local.loc[local["error"].notna(), "case_id"]) == inputs["broken"]
    spark_found = remote.set_index(["case_id", "kind"]).sort_index()
    assert spark_found.index.equals(found.index)
    assert (
        len(found) > 1000
        and found.index.get_level_values("kind").str.startswith("department_failure:").any()
    )
    for column in ("score", "priority", "p_judicial_aid", "decision_year"):
        np.testing.assert_allclose(
            spark_found[column].to_numpy(float), found[column].to_numpy(float), atol=1e-9, rtol=0
        )
    for column in ("sources", "policy_version", "origin", "person_key", "office_code"):
        same = spark_found[column].fillna("") == found[column].fillna("")
        assert same.all(), (
            column,
            spark_found.loc[~same, column].head(3).tolist(),
            found.loc[~same, column].head(3).tolist(),
        )
    assert (spark_found["province_code"].astype(str) == found["province_code"]).all()
    rule_rows = found.index.get_level_values("kind").str.startswith("department_failure:")
    local_facts = found.loc[rule_rows, "reasons"].map(lambda r: json.loads(r)["facts"])
    spark_facts = spark_found.loc[rule_rows, "reasons"].map(lambda r: json.loads(r)["facts"])
    assert (local_facts == spark_facts).all()
    assert result.leads == len(found)
    assert Path(result.leads_path).is_dir()
