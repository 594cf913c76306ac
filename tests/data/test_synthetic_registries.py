"""Synthetic registries: valid extracts about the history's own people, with realistic gaps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.registries import RegistryConfig, validate_extract
from features.synthetic import generate_history
from features.synthetic_registries import case_cards, generate_registries, registry_date

CONFIG = RegistryConfig.load()


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return generate_history(4_000, seed=13)


def test_every_kind_is_written_valid_and_about_the_history_s_people(
    history: pd.DataFrame,
) -> None:
    extracts = generate_registries(history, seed=13)
    assert set(extracts) == set(CONFIG.departments)
    people = set(history["person_key"])
    on = registry_date(history)
    for kind, frame in extracts.items():
        rows = validate_extract(frame, CONFIG.department(kind), on)
        assert len(rows) > 0, kind
        assert set(rows["person_key"]) <= people, kind


def test_the_registries_have_the_gaps_screening_looks_for(history: pd.DataFrame) -> None:
    extracts = generate_registries(history, seed=13)
    certified = set(extracts["disability"]["person_key"])
    graded = history.loc[history["disability_grade"].notna(), "person_key"]
    missing = ~graded.isin(certified)
    assert 0.1 < missing.mean() < 0.9  # some graded victims have no certificate, most have
    dibao = set(extracts["dibao"]["person_key"])
    claims = history.loc[history["low_income_status"] == "dibao", "person_key"]
    assert claims.isin(dibao).mean() > 0.9  # most 低保 claims are registered
    ended = extracts["dibao"]["status"].eq("ended").mean()
    assert 0.02 < ended < 0.2  # some claims are stale
    deaths = history.loc[(history["harm_outcome"] == "death") & (history["minor_dependants"] >= 1)]
    relieved = deaths["person_key"].isin(set(extracts["temporary_relief"]["person_key"]))
    assert 0.2 < relieved.mean() < 0.8


def test_same_seed_same_registries_and_cards_have_no_outcomes(history: pd.DataFrame) -> None:
    a, b = generate_registries(history, seed=3), generate_registries(history, seed=3)
    for kind in a:
        pd.testing.assert_frame_equal(a[kind], b[kind])
    cards = case_cards(history)
    assert "aid_granted" not in cards.columns
    assert not any(c.startswith("oracle_") for c in cards.columns)
    assert np.array_equal(cards["case_id"], history["case_id"])
