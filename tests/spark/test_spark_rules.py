"""Each department rule compiled to a Spark column fires exactly where the numpy evaluator does."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.department_rules import (
    FACT_COLUMNS,
    Arith,
    Col,
    Compare,
    Const,
    DepartmentRules,
    Not,
    evaluate,
)
from training.spark_engine import fires

RULES = DepartmentRules.load()
TEXT = {"low_income_status", "crime_type", "harm_outcome"}


def _facts(rows: int) -> pd.DataFrame:
    """Random facts around every threshold, with unknowns everywhere."""
    rng = np.random.default_rng(3)

    def numbers(values: list[float]) -> np.ndarray:
        out = rng.choice(np.array(values, dtype=float), rows)
        out[rng.random(rows) < 0.15] = np.nan
        return out

    def tokens(values: list[str]) -> pd.Series:
        out = pd.Series(rng.choice(values, rows), dtype=object)
        out[rng.random(rows) < 0.15] = None
        return out

    return pd.DataFrame(
        {
            "disability_grade": numbers([1, 4, 9, 10]),
            "disability_certificate": numbers([0, 1]),
            "monthly_household_income_yuan": numbers([0, 800, 2400, 9000]),
            "household_size": numbers([0, 1, 3, 5]),
            "dibao_standard_yuan": numbers([700, 900]),
            "dibao_or_tekun_registry": numbers([0, 1]),
            "low_income_status": tokens(["none", "dibao", "marginal", "tekun"]),
            "victim_age": numbers([8, 17, 18, 40]),
            "crime_type": tokens(["abuse_abandonment", "rape", "intentional_injury"]),
            "harm_outcome": tokens(["death", "none", "severe_injury"]),
            "minor_dependants": numbers([0, 1, 3]),
            "registry_child_without_carer": numbers([0, 1]),
            "child_flag_card": numbers([0, 1]),
            "registry_temporary_relief": numbers([0, 1]),
        }
    )


def test_the_facts_cover_what_the_rules_read() -> None:
    assert set(_facts(3).columns) == set(FACT_COLUMNS)


@pytest.mark.parametrize("rule", RULES.rules, ids=lambda r: r.id)
def test_each_rule_fires_on_spark_where_it_fires_locally(spark: Any, rule: Any) -> None:
    from pyspark.sql import functions as F

    facts = _facts(4000)
    local = evaluate(rule.when, facts)
    assert 0 < local.sum() < len(facts)  # both sides of the rule are in the sample
    numeric = set(FACT_COLUMNS) - TEXT
    frame = spark.createDataFrame(facts.assign(_row=np.arange(len(facts))))
    hit = frame.select("_row", fires(rule.when, F.col, numeric).alias("hit")).toPandas()
    remote = hit.sort_values("_row")["hit"].to_numpy(dtype=bool)
    np.testing.assert_array_equal(remote, local)


def test_division_by_zero_and_not_of_unknown_agree(spark: Any) -> None:
    from pyspark.sql import functions as F

    facts = pd.DataFrame({"a": [1.0, 1.0, np.nan, 4.0], "b": [0.0, 2.0, 1.0, 2.0]})
    tree = Not(Compare("lt", Arith("div", Col("a"), Col("b")), Const(1.0)))
    frame = spark.createDataFrame(facts.assign(_row=range(4)))
    got = frame.select("_row", fires(tree, F.col, {"a", "b"}).alias("hit")).toPandas()
    np.testing.assert_array_equal(
        got.sort_values("_row")["hit"].to_numpy(dtype=bool), evaluate(tree, facts)
    )
    assert evaluate(tree, facts).tolist() == [False, False, False, True]
