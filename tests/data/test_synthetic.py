"""The synthetic history: deterministic, in the contract, realistic in scale, honest oracle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.synthetic import generate_history
from features.wages import WageTable


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return generate_history(60_000, seed=5)


@pytest.fixture(scope="module")
def base(history: pd.DataFrame) -> np.ndarray:
    _, _, monthly, _ = WageTable.from_csv().lookup_many(
        history["province_code"].to_numpy(object), history["decision_year"].to_numpy()
    )
    return monthly


def test_same_seed_same_history_other_seed_other_history() -> None:
    a, b = generate_history(500, seed=3), generate_history(500, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not generate_history(500, seed=4)["victim_age"].equals(a["victim_age"])


def test_years_are_respected() -> None:
    years = generate_history(2_000, seed=1, years=(2020, 2021))["decision_year"]
    assert set(years.unique()) == {2020.0, 2021.0}
    with pytest.raises(ValueError, match="years"):
        generate_history(10, seed=1, years=(2030, 2020))


def test_scale_matches_the_public_figures(history: pd.DataFrame) -> None:
    granted = history[history["aid_granted"] == 1.0]
    assert 0.2 < len(granted) / len(history) < 0.45
    mean = granted["aid_amount_yuan"].mean()
    assert 7_000 < mean < 12_000  # ~9,000 yuan per aided person nationally
    assert granted["aid_amount_yuan"].skew() > 2  # right-skewed
    assert granted["aid_amount_yuan"].quantile(0.999) > 60_000
    assert (granted["aid_amount_yuan"] % 100 == 0).all()


def test_the_ceiling_holds_except_under_the_court_award_exception(
    history: pd.DataFrame, base: np.ndarray
) -> None:
    months = history["aid_amount_yuan"].to_numpy() / base
    over = np.nan_to_num(months) > 36 + 1e-9
    award = history["court_award_yuan"].to_numpy()
    assert np.all(history["aid_amount_yuan"].to_numpy()[over] <= award[over] + 100)


def test_outcomes_follow_the_rules(history: pd.DataFrame) -> None:
    at_fault = history["victim_at_fault"] == 1.0
    assert history.loc[at_fault, "aid_granted"].mean() < 0.5 * history["aid_granted"].mean()


def test_realistic_missing_values(history: pd.DataFrame) -> None:
    share = history.isna().mean()
    assert 0.15 < share["monthly_household_income_yuan"] < 0.4
    assert share["victim_age"] == 0 and share["province_code"] == 0


def test_oracle_probabilities_are_calibrated(history: pd.DataFrame) -> None:
    for label, oracle in [
        ("aid_granted", "oracle_p_judicial_aid"),
        ("referred_social_assistance", "oracle_p_social_assistance"),
        ("civil_support_prosecution", "oracle_p_civil_support"),
    ]:
        bins = pd.qcut(history[oracle], 10, duplicates="drop")
        grouped = history.groupby(bins, observed=True)[[label, oracle]].mean()
        assert np.abs(grouped[label] - grouped[oracle]).max() < 0.03, label


def test_oracle_amounts_are_conditional_medians(history: pd.DataFrame, base: np.ndarray) -> None:
    granted = (history["aid_granted"] == 1.0).to_numpy()
    months = history["aid_amount_yuan"].to_numpy()[granted] / base[granted]
    for column in ("oracle_amount_months_local", "oracle_amount_months_national"):
        oracle = history[column].to_numpy()[granted]
        below = months < oracle
        assert abs(below.mean() - 0.5) < 0.02, column
        # and within each harm outcome (the median holds conditionally, not just overall)
        for harm in ("death", "severe_injury", "property_loss"):
            mask = history["harm_outcome"].to_numpy()[granted] == harm
            assert abs(below[mask].mean() - 0.5) < 0.05, (column, harm)
    # knowing the province's practice helps; the province-blind oracle is the harder target
    mae = {
        c: np.mean(np.abs(months - history[c].to_numpy()[granted]))
        for c in ("oracle_amount_months_local", "oracle_amount_months_national")
    }
    assert mae["oracle_amount_months_local"] < mae["oracle_amount_months_national"]


def test_sex_does_not_drive_the_amount(history: pd.DataFrame) -> None:
    granted = history[
        (history["aid_granted"] == 1.0) & (history["crime_type"] == "traffic_accident")
    ]
    by_sex = granted.groupby("victim_sex")["oracle_amount_months_national"].median()
    assert abs(by_sex["female"] / by_sex["male"] - 1) < 0.15


def test_offices_lie_in_their_province_and_some_deviate(
    history: pd.DataFrame, base: np.ndarray
) -> None:
    from features.contract import parse_records
    from features.synthetic import RegionalPractice

    assert parse_records(history.head(2_000)).violations == []  # office and person key valid
    office = history["office_code"].to_numpy(object)
    assert all(o[:2] == p for o, p in zip(office, history["province_code"], strict=True))
    assert history["person_key"].str.fullmatch(r"[0-9a-f]{64}").all()
    assert history["person_key"].is_unique
    deviant = RegionalPractice.default().deviant_offices()
    assert {"generous", "stingy"} == set(deviant.values())
    granted = (history["aid_granted"] == 1.0).to_numpy()
    months = history["aid_amount_yuan"].to_numpy()[granted] / base[granted]
    ratio = pd.Series(
        np.log(months / history["oracle_amount_months_national"].to_numpy()[granted]),
        index=office[granted],
    )
    by_office = ratio.groupby(level=0).agg(["median", "count"])
    by_office = by_office[by_office["count"] >= 40]
    usual = ratio[~ratio.index.isin(list(deviant))]
    province = usual.groupby(usual.index.str[:2]).median()
    checked = 0
    for code, kind in deviant.items():
        if code in by_office.index:  # against its province's usual offices
            gap = by_office.loc[code, "median"] - province[code[:2]]
            assert (gap > 0.2) if kind == "generous" else (gap < -0.2), (code, gap)
            checked += 1
    assert checked >= 20


def test_who_is_aided_matches_the_public_shares(history: pd.DataFrame) -> None:
    """Women 38.7 % of the aided (2022-23), minors 19-21 % (2022, 2023), 9,000-12,000 each.

    60,000 rows give about 21,000 aided: a share's standard error is about 0.3 points and the
    mean's about 150 yuan, so the bands below are the published ranges with room for
    the seed, not for a drift of the process.
    """
    granted = history[history["aid_granted"] == 1.0]
    assert 9_000 < granted["aid_amount_yuan"].mean() < 12_000
    assert 0.36 < (granted["victim_sex"] == "female").mean() < 0.44
    assert 0.17 < (granted["victim_age"] < 18).mean() < 0.24


def test_sexual_offences_against_minors_are_aided_often_and_substantially(
    history: pd.DataFrame,
) -> None:
    sexual = (history["crime_type"] == "rape") | (
        history["harm_outcome"] == "sexual_or_psychological"
    )
    child = history["victim_age"] < 18
    assert (history["harm_outcome"] == "sexual_or_psychological").any()
    children = history[sexual & child]
    adults_hurt = history[~sexual & ~child & (history["harm_outcome"] == "minor_injury")]
    assert children["aid_granted"].mean() > 0.55
    assert children["aid_granted"].mean() > adults_hurt["aid_granted"].mean() + 0.2
    amount = children.loc[children["aid_granted"] == 1.0, "aid_amount_yuan"]
    assert amount.median() > 6_000  # published: 4,000 to 30,000; 10,000 a common figure
    # a rape recorded as `none` (a v1 record) is decided as the sexual harm it was
    v1 = history[(history["crime_type"] == "rape") & (history["harm_outcome"] == "none")]
    assert v1["oracle_p_judicial_aid"].mean() > 0.3


def test_an_injury_recorded_beside_a_rape_never_lowers_the_decision(
    history: pd.DataFrame,
) -> None:
    """A rape with a slight or minor injury is decided at least as the sexual harm it was.

    Before, a slight injury recorded beside a rape was decided as a slight injury and got less
    than the same rape recorded with no injury: a truth the monotone amount model cannot follow.
    """
    rape = history[history["crime_type"] == "rape"]
    lighter = rape[rape["harm_outcome"].isin(["none", "slight_injury"])]
    sexual = rape[rape["harm_outcome"] == "sexual_or_psychological"]
    assert len(lighter) > 50
    # the same decided harm: the lead and the amount's location do not fall with the record
    assert lighter["oracle_p_judicial_aid"].mean() > 0.8 * sexual["oracle_p_judicial_aid"].mean()
    months = "oracle_amount_months_national"
    assert (
        lighter.loc[lighter["aid_granted"] == 1.0, months].median()
        > 0.8 * sexual.loc[sexual["aid_granted"] == 1.0, months].median()
    )


def test_deaths_with_minor_dependants_receive_more(history: pd.DataFrame) -> None:
    deaths = history[(history["harm_outcome"] == "death") & (history["aid_granted"] == 1.0)]
    months = deaths["oracle_amount_months_national"]
    with_children = months[deaths["minor_dependants"] >= 2]
    without = months[deaths["minor_dependants"] == 0]
    assert with_children.median() > 1.3 * without.median()
    assert 15_000 < deaths["aid_amount_yuan"].mean() < 45_000
