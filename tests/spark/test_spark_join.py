"""The registries joined on Spark give each card exactly what the local join gives it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.registries import RegistryConfig, card_dates, join_registries, validate_extract
from training.spark_engine import REGISTRY_COLUMNS, SparkEngineError, join_on_spark

CONFIG = RegistryConfig.load()
SNAPSHOT = "2024-12-31"


def key(i: int) -> str:
    return f"{i:064x}"


def _extracts(rng: np.random.Generator, people: int) -> dict[str, pd.DataFrame]:
    """Random rows for four departments: some people in several, some rows expired."""
    out = {}
    for kind in ("dibao", "tekun", "veteran_family", "disability"):
        chosen = rng.choice(people, size=people // 3, replace=False)
        start = rng.choice(["2015-01-01", "2020-06-01", "2023-03-01", "2024-09-01"], len(chosen))
        end = rng.choice(["", "", "2021-12-31", "2023-06-30"], len(chosen))
        end = np.where(end > start, end, "")  # ISO dates compare as text
        frame = pd.DataFrame(
            {
                "person_key": [key(i) for i in chosen],
                "status": rng.choice(CONFIG.department(kind).active, len(chosen)),
                "valid_from": start,
                "valid_to": end,
            }
        )
        if kind == "disability":
            frame["disability_category"] = "physical"
            frame["disability_level"] = rng.integers(1, 5, len(chosen)).astype(str)
            frame["certificate"] = rng.choice(["true", "false"], len(chosen))
        if kind == "dibao":
            frame["household_size"] = rng.integers(1, 6, len(chosen)).astype(str)
        known = [c for c in frame.columns if c in CONFIG.department(kind).column_names]
        out[kind] = validate_extract(frame[known], CONFIG.department(kind), dt.date(2024, 12, 31))
    return out


def _cards(rng: np.random.Generator, rows: int, people: int) -> pd.DataFrame:
    keys: list[Any] = [key(i) for i in rng.integers(0, people, rows)]
    keys[::7] = [None] * len(keys[::7])
    return pd.DataFrame(
        {
            "case_id": [f"C{i:06d}" for i in range(rows)],
            "person_key": keys,
            "decision_year": rng.choice([2019.0, 2022.0, 2023.0, 2024.0], rows),
            "low_income_status": rng.choice(["none", "dibao", "marginal", None], rows),
            "disability_certificate": rng.choice([0.0, 1.0, np.nan], rows),
            "registry_flags": rng.choice(["", "veteran_family", None], rows),
        }
    )


@pytest.mark.parametrize("as_of", [None, dt.date(2025, 3, 1)])
def test_spark_join_equals_the_local_join(spark: Any, as_of: dt.date | None) -> None:
    rng = np.random.default_rng(5)
    extracts = _extracts(rng, people=400)
    cards = _cards(rng, rows=2000, people=400)
    snapshots = dict.fromkeys(extracts, SNAPSHOT)
    local = join_registries(
        cards, extracts, snapshots, card_dates(cards["decision_year"].to_numpy(), as_of), CONFIG
    )
    table = pd.concat(
        [frame.assign(department=kind, snapshot=SNAPSHOT) for kind, frame in extracts.items()],
        ignore_index=True,
    )[list(REGISTRY_COLUMNS)]
    older = table.head(50).assign(snapshot="2019-12-31", status="ended")  # superseded snapshot
    registries = spark.createDataFrame(pd.concat([table, older], ignore_index=True))
    joined, used = join_on_spark(spark.createDataFrame(cards), registries, as_of, CONFIG)
    assert used == snapshots
    remote = joined.toPandas().set_index("case_id").loc[cards["case_id"]].reset_index()
    assert len(remote) == len(cards)
    for column in local.columns:
        expected = local[column].reset_index(drop=True)
        got = remote[column]
        if expected.dtype == object:
            assert (got.fillna("<none>") == expected.fillna("<none>")).all(), column
        else:
            np.testing.assert_array_equal(got.to_numpy(float), expected.to_numpy(float), column)


def test_a_registries_table_without_its_columns_stops_before_scoring(spark: Any) -> None:
    cards = spark.createDataFrame(_cards(np.random.default_rng(1), rows=5, people=5))
    registries = spark.createDataFrame(pd.DataFrame({"department": ["dibao"], "key": ["x"]}))
    with pytest.raises(SparkEngineError, match="person_key, status, valid_from"):
        join_on_spark(cards, registries, None, CONFIG)
