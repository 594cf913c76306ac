"""The registries joined on Spark give each card exactly what the local join gives it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.contract import parse_records
from features.department_rules import DepartmentRules, department_facts
from features.registries import (
    DibaoTable,
    RegistryConfig,
    card_dates,
    join_registries,
    registry_table,
    validate_extract,
)
from features.synthetic import generate_history
from features.synthetic_registries import case_cards, generate_registries, registry_date
from training.pyfunc import as_pyfunc_input
from training.spark_engine import (
    FACT,
    JoinContext,
    SparkEngineError,
    join_on_spark,
)

CONFIG = RegistryConfig.load()
CONTEXT = JoinContext(CONFIG, DibaoTable.from_csv(), DepartmentRules.load())


@pytest.fixture(scope="module")
def generated() -> dict[str, Any]:
    history = generate_history(3000, seed=17)
    on = registry_date(history)
    rows = {
        kind: validate_extract(frame, CONFIG.department(kind), on)
        for kind, frame in generate_registries(history, seed=17).items()
    }
    return {"cards": case_cards(history), "rows": rows, "on": on}


@pytest.mark.parametrize("as_of", [None, "registry_date"])
def test_spark_join_equals_the_local_join(
    spark: Any, generated: dict[str, Any], as_of: str | None
) -> None:
    on = generated["on"] if as_of else None
    cards, rows = generated["cards"], generated["rows"]
    snapshots = dict.fromkeys(rows, generated["on"].isoformat())
    canonical = parse_records(cards, scoring=True).frame
    dates = card_dates(canonical["decision_year"].to_numpy(dtype=float), on)
    local = join_registries(canonical, rows, snapshots, dates, CONFIG)
    facts = department_facts(canonical, local, CONTEXT.dibao).add_prefix(FACT)
    table = registry_table(rows, snapshots)
    older = table.head(50).assign(snapshot="2015-12-31", status="ended")  # superseded snapshot
    registries = spark.createDataFrame(pd.concat([table, older], ignore_index=True))
    wire = spark.createDataFrame(as_pyfunc_input(cards))
    joined, used = join_on_spark(wire, registries, on, CONTEXT)
    assert used == snapshots
    remote = joined.toPandas().set_index("case_id").loc[cards["case_id"]].reset_index()
    expected = pd.concat([local, facts], axis=1)
    assert len(remote) == len(cards)
    for column in expected.columns:
        want = expected[column].reset_index(drop=True)
        got = remote[column]
        if want.dtype == object:
            assert (got.fillna("<none>") == want.fillna("<none>")).all(), column
        else:
            np.testing.assert_array_equal(got.to_numpy(float), want.to_numpy(float), column)
    assert (local["low_income_status_registry"].notna()).any()  # the registries did answer


def test_a_registries_table_without_its_columns_stops_before_scoring(
    spark: Any, generated: dict[str, Any]
) -> None:
    cards = spark.createDataFrame(as_pyfunc_input(generated["cards"].head(5)))
    registries = spark.createDataFrame(pd.DataFrame({"department": ["dibao"], "key": ["x"]}))
    with pytest.raises(SparkEngineError, match="person_key, status, valid_from"):
        join_on_spark(cards, registries, dt.date(2025, 1, 1), CONTEXT)
