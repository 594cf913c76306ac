"""The deviation figures: ratio and interval, group quartiles and shares, flags, years."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.deviation import (
    ReportError,
    at_ceiling,
    deviation_of,
    figures,
    group_figures,
    parse_years,
)


def _decisions() -> pd.DataFrame:
    """Two provinces; office 320104 grants twice its province's norm, 320106 the norm."""
    offices = ["320104"] * 4 + ["320106"] * 4 + ["440104"] * 3 + [None]
    ratio = [2.0, 2.0, 2.4, 1.6, 1.0, 0.9, 1.1, 1.0, 0.5, 0.6, 0.4, 1.0]
    return pd.DataFrame(
        {
            "province_code": [o[:2] if o else "32" for o in offices],
            "office_code": offices,
            "decision_year": [2024] * 8 + [2025] * 4,
            "crime_type": ["fraud"] * 6 + ["intentional_injury"] * 6,
            "harm_outcome": ["property_loss"] * 12,
            "ratio": ratio,
            "outside_interval": [True] * 4 + [False] * 4 + [True, False, True, False],
            "at_ceiling": [False] * 11 + [True],
        }
    )


def test_deviation_of_and_the_ceiling() -> None:
    ratio, outside = deviation_of(
        np.array([100.0, 50.0, 10.0, 5.0]),
        np.array([50.0, 50.0, 0.0, 5.0]),
        np.array([40.0, 40.0, 0.0, 6.0]),
        np.array([60.0, 60.0, 0.0, 9.0]),
    )
    assert ratio.tolist() == [2.0, 1.0, 0.0, 1.0]  # no reference: 0, never inf
    assert outside.tolist() == [True, False, True, True]
    assert at_ceiling(np.array([99.0, 98.9, 120.0]), np.array([100.0] * 3)).tolist() == [
        True,
        False,
        True,
    ]


def test_figures_of_all_decisions() -> None:
    found = figures(_decisions())
    q1, median, q3 = np.quantile(_decisions()["ratio"], [0.25, 0.5, 0.75])
    assert found == pytest.approx(
        {
            "count": 12,
            "ratio_q1": q1,
            "ratio_median": median,
            "ratio_q3": q3,
            "share_outside_interval": 6 / 12,
            "share_at_ceiling": 1 / 12,
        }
    )
    assert figures(_decisions().head(0)) == {"count": 0}


def test_offices_are_compared_with_their_province() -> None:
    table = group_figures(_decisions(), "office", tolerance=0.25, min_cases=3).set_index("group")
    assert table["count"].to_dict() == {"320104": 4, "320106": 4, "440104": 3, "": 1}
    generous = table.loc["320104"]
    assert generous["ratio_median"] == pytest.approx(2.0)
    assert generous["ratio_q1"] == pytest.approx(1.9) and generous["ratio_q3"] == pytest.approx(2.1)
    assert generous["share_outside_interval"] == 1.0
    assert generous["parent"] == "32"
    province_median = np.median([2.0, 2.0, 2.4, 1.6, 1.0, 0.9, 1.1, 1.0, 1.0])
    assert generous["parent_median"] == pytest.approx(province_median)
    assert generous["relative_to_parent"] == pytest.approx(2.0 / province_median)
    assert (generous["flag"], generous["flag_zh"]) == ("generous", "偏高")
    assert table.loc["320106", "flag"] == ""  # at its province's norm
    # Guangdong's only office is its province: relative 1, never flagged against itself
    assert table.loc["440104", "relative_to_parent"] == pytest.approx(1.0)
    assert table.loc["", "label_zh"] == "（未填写）" and table.loc["", "flag"] == ""  # 1 < 3


def test_too_few_decisions_are_never_flagged() -> None:
    table = group_figures(_decisions(), "office", min_cases=5).set_index("group")
    assert set(table["flag"]) == {""}


def test_other_groupings_compare_with_all_decisions() -> None:
    by_province = group_figures(_decisions(), "province", min_cases=3).set_index("group")
    assert by_province["parent"].unique().tolist() == ["all"]
    assert by_province.loc["44", "label_zh"] == "广东"
    assert by_province.loc["44", "flag"] == "stingy"
    by_year = group_figures(_decisions(), "year", min_cases=1).set_index("group")
    assert by_year["count"].to_dict() == {"2024": 8, "2025": 4}
    assert by_year.loc["2025", "label_zh"] == "2025年"
    by_crime = group_figures(_decisions(), "crime_type").set_index("group")
    assert by_crime.loc["fraud", "label_zh"] == "诈骗"
    with pytest.raises(ReportError, match="cannot group by 'city'"):
        group_figures(_decisions(), "city")


def test_years() -> None:
    assert parse_years("2021-2025") == (2021, 2025) and parse_years("2024") == (2024, 2024)
    assert parse_years(None) is None
    assert parse_years(" 2021 - 2023 ") == (2021, 2023)
    for bad in ("2025-2021", "last year", "2021-", "21-25"):
        with pytest.raises(ReportError, match="--years"):
            parse_years(bad)
