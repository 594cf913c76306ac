"""The wage base: previous year, nearest earlier year, estimated flag, replaceable table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.wages import WageTable, WageTableError


@pytest.fixture(scope="module")
def table() -> WageTable:
    return WageTable.from_csv()


def test_previous_year_figure_when_the_table_has_it(table: WageTable) -> None:
    base = table.lookup("32", 2024)  # Jiangsu 2023: 125,102 a year
    assert (base.wage_year, base.estimated) == (2023, False)
    assert base.base_monthly_wage == pytest.approx(125_102 / 12)


def test_missing_year_uses_the_nearest_earlier_year_and_says_so(table: WageTable) -> None:
    base = table.lookup("32", 2026)  # wants 2025; Jiangsu has 2021-2023
    assert (base.wage_year, base.estimated) == (2023, True)
    assert "nearest earlier" in base.note
    hebei = table.lookup("13", 2023)  # wants 2022; Hebei has only 2021
    assert (hebei.wage_year, hebei.estimated) == (2021, True)


def test_no_earlier_year_uses_the_earliest_and_says_so(table: WageTable) -> None:
    base = table.lookup("11", 2016)
    assert (base.wage_year, base.estimated) == (2021, True)
    assert "earliest" in base.note


def test_every_contract_province_has_a_base(table: WageTable) -> None:
    from features.contract import PROVINCE_CODES

    for code in PROVINCE_CODES:
        assert table.lookup(code, 2023).base_monthly_wage > 0


def test_every_contract_province_has_the_name_the_shipped_table_gives() -> None:
    from features.contract import PROVINCE_CODES, PROVINCE_NAMES_ZH
    from features.wages import default_wage_table_path

    shipped = pd.read_csv(default_wage_table_path(), dtype={"province_code": str})
    names = dict(zip(shipped["province_code"], shipped["province_zh"], strict=True))
    assert tuple(PROVINCE_NAMES_ZH) == PROVINCE_CODES
    assert all(PROVINCE_NAMES_ZH[code] == names[code] for code in PROVINCE_CODES)


def test_a_deployment_can_replace_the_table(tmp_path: Path) -> None:
    path = tmp_path / "wages.csv"
    pd.DataFrame(
        {
            "province_code": ["32", "32"],
            "year": [2024, 2025],
            "avg_annual_wage_yuan": [120000, 132000],
        }
    ).to_csv(path, index=False)
    table = WageTable.from_csv(path)
    assert table.lookup("32", 2026).base_monthly_wage == pytest.approx(11_000)
    with pytest.raises(WageTableError, match="no wage figure for province '33'"):
        table.lookup("33", 2026)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("province_code,year\n32,2024\n", "missing column"),
        ("province_code,year,avg_annual_wage_yuan\n32,2024,-5\n", "positive wage"),
        ("province_code,year,avg_annual_wage_yuan\n32,2024,5\n32,2024,6\n", "twice"),
    ],
)
def test_a_broken_table_is_refused_with_a_reason(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "wages.csv"
    path.write_text(content)
    with pytest.raises(WageTableError, match=words):
        WageTable.from_csv(path)
