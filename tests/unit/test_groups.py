"""The evaluation's groups: who belongs, how their figures are read back, who is served worse."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.evaluate import (
    GROUP_MAE_RATIO_EXCESS,
    GROUP_MIN_AIDED,
    GROUP_RECALL_SHORTFALL,
    served_worse,
)
from training.groups import GROUP_BY_ID, groups_from_metrics, metric_name


def test_membership_of_each_group() -> None:
    frame = pd.DataFrame(
        {
            "victim_age": [14.0, 17.0, 18.0, 60.0, 59.0],
            "victim_sex": ["female", "male", "female", "male", "male"],
            "rural_hukou": [1.0, np.nan, 0.0, 1.0, 0.0],
            "low_income_status": ["dibao", "tekun", None, "dibao", "none"],
            "registry_flags": ["veteran_family", "", "serious_illness|veteran_family", "", ""],
        }
    )

    def members(group: str) -> list[bool]:
        return [bool(v) for v in GROUP_BY_ID[group].members(frame)]

    assert members("minors") == [True, True, False, False, False]
    assert members("women") == [True, False, True, False, False]
    assert members("elderly") == [False, False, False, True, False]
    assert members("rural") == [True, False, False, True, False]  # unknown is not rural
    assert members("dibao") == [True, False, False, True, False]
    assert members("veteran_family") == [True, False, True, False, False]


def test_groups_are_read_back_from_the_flat_metrics() -> None:
    metrics = {
        metric_name("all", "lead_recall"): 0.8,
        metric_name("minors", "lead_recall"): 0.9,
        metric_name("minors", "cases"): 120.0,
        "amount_mae_yuan": 4_000.0,
    }
    groups = groups_from_metrics(metrics)
    assert list(groups) == ["all", "minors"]
    assert groups["minors"] == {"cases": 120.0, "lead_recall": 0.9}


OVERALL = {
    "lead_recall": 0.80,
    "oracle_lead_recall": 0.85,
    "amount_mae_ratio_to_oracle": 1.01,
    "amount_median_ratio_to_oracle": 1.0,
}


def _group(**changes: float) -> dict[str, float]:
    return {"aided": float(GROUP_MIN_AIDED), **OVERALL, **changes}


def test_a_group_served_as_well_as_the_rest_is_not_called_out() -> None:
    assert served_worse(_group(), OVERALL) == []
    # recall lower where the oracle's is lower too: the law, not the model
    assert served_worse(_group(lead_recall=0.60, oracle_lead_recall=0.65), OVERALL) == []


def test_a_group_served_markedly_worse_is_called_out_from_both_sides() -> None:
    short = OVERALL["oracle_lead_recall"] - OVERALL["lead_recall"] + GROUP_RECALL_SHORTFALL
    assert served_worse(_group(lead_recall=0.85 - short + 0.01), OVERALL) == []
    assert "lead recall" in served_worse(_group(lead_recall=0.85 - short - 0.01), OVERALL)[0]
    ratio = OVERALL["amount_mae_ratio_to_oracle"] + GROUP_MAE_RATIO_EXCESS
    assert served_worse(_group(amount_mae_ratio_to_oracle=ratio - 0.01), OVERALL) == []
    assert "MAE ratio" in served_worse(_group(amount_mae_ratio_to_oracle=ratio + 0.01), OVERALL)[0]
    assert served_worse(_group(amount_median_ratio_to_oracle=0.91), OVERALL) == []
    assert "median" in served_worse(_group(amount_median_ratio_to_oracle=0.85), OVERALL)[0]
    # too few aided cases to judge
    few = _group(aided=GROUP_MIN_AIDED - 1.0, amount_median_ratio_to_oracle=0.5)
    assert served_worse(few, OVERALL) == []
