"""Department-failure rules: the tree evaluator's three-valued logic, and each rule both ways."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.department_rules import (
    FACT_COLUMNS,
    All,
    AnyOf,
    Arith,
    Col,
    Compare,
    Const,
    DepartmentRules,
    IsIn,
    IsNull,
    Not,
    evaluate,
    hit_facts,
    parse_condition,
)

RULES = DepartmentRules.load()
RULE = {r.id: r for r in RULES.rules}


def facts(**values: Any) -> pd.DataFrame:
    """One row of facts: every column unknown unless given."""
    base: dict[str, Any] = {name: np.nan for name in FACT_COLUMNS}
    for name in ("low_income_status", "crime_type", "harm_outcome"):
        base[name] = None
    base.update(values)
    return pd.DataFrame(
        {
            k: pd.Series([v], dtype=object if isinstance(v, str) or v is None else float)
            for k, v in base.items()
        }
    )


def fires(rule_id: str, **values: Any) -> bool:
    return bool(evaluate(RULE[rule_id].when, facts(**values))[0])


def test_three_valued_logic_matches_sql() -> None:
    frame = pd.DataFrame({"x": [1.0, np.nan, 3.0], "s": pd.Series(["a", None, "b"], dtype=object)})
    gt = Compare("gt", Col("x"), Const(2.0))
    assert evaluate(gt, frame).tolist() == [False, False, True]
    assert evaluate(Not(gt), frame).tolist() == [True, False, False]  # NOT unknown: unknown
    true_or_unknown = AnyOf((gt, Compare("eq", Col("s"), Const("b"))))
    assert evaluate(true_or_unknown, frame).tolist() == [False, False, True]
    false_and_unknown = All(
        (Compare("lt", Col("x"), Const(0.0)), Compare("eq", Col("s"), Const("a")))
    )
    mixed = pd.DataFrame({"x": [1.0], "s": pd.Series([None], dtype=object)})
    assert evaluate(Not(false_and_unknown), mixed).tolist() == [True]  # false AND unknown: false
    assert evaluate(Not(false_and_unknown), frame).tolist() == [True, False, True]
    assert evaluate(IsIn(Col("s"), ("a",)), frame).tolist() == [True, False, False]
    assert evaluate(IsNull(Col("x")), frame).tolist() == [False, True, False]
    ratio = Compare("lt", Arith("div", Col("x"), Const(0.0)), Const(1.0))
    assert evaluate(Not(ratio), frame).tolist() == [False, False, False]  # x/0 is unknown


def test_trees_parse_from_config_with_params() -> None:
    tree = parse_condition({"le": [{"col": "g"}, {"param": "top"}]}, {"top": 8})
    assert tree == Compare("le", Col("g"), Const(8.0))
    assert RULE["disability_without_certificate"].facts == (
        "disability_grade",
        "disability_certificate",
    )


def test_disability_grade_without_certificate() -> None:
    assert fires("disability_without_certificate", disability_grade=7.0, disability_certificate=0.0)
    assert not fires(
        "disability_without_certificate", disability_grade=7.0, disability_certificate=1.0
    )
    assert not fires("disability_without_certificate", disability_certificate=0.0)  # no grade
    assert not fires("disability_without_certificate", disability_grade=7.0)  # unknown cert


def test_income_below_dibao_line_outside_dibao() -> None:
    poor = {
        "monthly_household_income_yuan": 1200.0,
        "household_size": 3.0,
        "dibao_standard_yuan": 700.0,
    }
    assert fires("income_below_dibao_not_covered", **poor, dibao_or_tekun_registry=0.0)
    assert not fires("income_below_dibao_not_covered", **poor, dibao_or_tekun_registry=1.0)
    richer = {**poor, "monthly_household_income_yuan": 2400.0}
    assert not fires("income_below_dibao_not_covered", **richer, dibao_or_tekun_registry=0.0)
    # no registry: the card's own status decides
    assert fires("income_below_dibao_not_covered", **poor, low_income_status="marginal")
    assert not fires("income_below_dibao_not_covered", **poor, low_income_status="dibao")
    assert not fires("income_below_dibao_not_covered", **poor)  # nothing known of coverage
    no_household = {**poor, "household_size": np.nan}
    assert not fires("income_below_dibao_not_covered", **no_household, dibao_or_tekun_registry=0.0)


def test_minor_without_carer_outside_the_child_registry() -> None:
    abused = {"victim_age": 9.0, "crime_type": "abuse_abandonment"}
    assert fires("minor_without_carer_unregistered", **abused, registry_child_without_carer=0.0)
    assert not fires("minor_without_carer_unregistered", **abused, registry_child_without_carer=1.0)
    assert fires("minor_without_carer_unregistered", **abused, child_flag_card=0.0)
    assert not fires("minor_without_carer_unregistered", **abused, child_flag_card=1.0)
    adult = {"victim_age": 30.0, "crime_type": "abuse_abandonment"}
    assert not fires("minor_without_carer_unregistered", **adult, registry_child_without_carer=0.0)
    orphaned = {"harm_outcome": "death", "minor_dependants": 2.0, "household_size": 3.0}
    assert fires("minor_without_carer_unregistered", **orphaned, registry_child_without_carer=0.0)
    with_carer = {**orphaned, "household_size": 4.0}  # another adult at home
    assert not fires(
        "minor_without_carer_unregistered", **with_carer, registry_child_without_carer=0.0
    )


def test_breadwinner_death_without_temporary_relief() -> None:
    death = {"harm_outcome": "death", "minor_dependants": 1.0}
    assert fires("breadwinner_death_no_temporary_relief", **death, registry_temporary_relief=0.0)
    assert not fires(
        "breadwinner_death_no_temporary_relief", **death, registry_temporary_relief=1.0
    )
    assert not fires("breadwinner_death_no_temporary_relief", **death)  # registry unknown
    no_minors = {"harm_outcome": "death", "minor_dependants": 0.0}
    assert not fires(
        "breadwinner_death_no_temporary_relief", **no_minors, registry_temporary_relief=0.0
    )
    injured = {"harm_outcome": "severe_injury", "minor_dependants": 2.0}
    assert not fires(
        "breadwinner_death_no_temporary_relief", **injured, registry_temporary_relief=0.0
    )


def test_a_hit_shows_the_facts_it_read() -> None:
    frame = facts(harm_outcome="death", minor_dependants=1.0, registry_temporary_relief=0.0)
    (shown,) = hit_facts(RULE["breadwinner_death_no_temporary_relief"], frame, np.array([0]))
    assert shown == {
        "harm_outcome": "death",
        "minor_dependants": 1.0,
        "registry_temporary_relief": 0.0,
    }


@pytest.mark.parametrize(
    "bad", [{"lt": [{"col": "a"}]}, {"nope": 1}, {"le": [{"param": "x"}, {"const": 1}]}]
)
def test_a_broken_tree_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(Exception, match=r"node|param|unpack|not enough"):
        parse_condition(bad, {})
