"""The case vectors: one record alone gives the identical vector as inside a large frame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from features.contract import parse_record, parse_records
from features.vectors import FEATURE_NAMES, CaseVectorizer
from tests.conftest import wire_record


@pytest.fixture(scope="module")
def fitted(small_history: pd.DataFrame) -> CaseVectorizer:
    return CaseVectorizer().fit(small_history)


def test_follows_scikit_learn_estimator_rules(small_history: pd.DataFrame) -> None:
    vectorizer = CaseVectorizer(wage_table_path=None)
    assert vectorizer.get_params() == {"wage_table_path": None}
    assert not hasattr(vectorizer, "categories_")  # nothing learned in __init__
    with pytest.raises(NotFittedError):
        vectorizer.transform(small_history)
    assert vectorizer.fit(small_history) is vectorizer
    assert not hasattr(clone(vectorizer), "categories_")
    assert list(vectorizer.get_feature_names_out()) == list(FEATURE_NAMES)


def test_a_record_alone_gives_the_identical_vector(
    fitted: CaseVectorizer, small_history: pd.DataFrame
) -> None:
    big = fitted.transform(small_history)
    for row in (0, 7, 123, 1999):
        record = parse_record(wire_record(small_history, row)).frame.iloc[0].to_dict()
        alone = fitted.transform_record(record)
        np.testing.assert_array_equal(alone[0], big[row])
        one_row_frame = fitted.transform(small_history.iloc[[row]])
        np.testing.assert_array_equal(one_row_frame[0], big[row])


def test_wire_and_parsed_history_give_the_same_matrix(
    fitted: CaseVectorizer, small_history: pd.DataFrame, tmp_path: Path
) -> None:
    from features.tables import read_table, write_table

    path = write_table(small_history.head(300), tmp_path / "h.csv")
    reparsed = parse_records(read_table(path)).frame
    np.testing.assert_array_equal(
        fitted.transform(reparsed), fitted.transform(small_history.head(300))
    )


def test_money_enters_in_months_of_the_base(fitted: CaseVectorizer, record: dict[str, Any]) -> None:
    record.update(province_code="32", decision_year=2024, medical_cost_yuan=125_102 / 12 * 2)
    frame = parse_record(record).frame.iloc[0].to_dict()
    vector = dict(zip(FEATURE_NAMES, fitted.transform_record(frame)[0], strict=True))
    assert vector["medical_cost_months"] == pytest.approx(2.0)
    assert vector["base_monthly_wage"] == pytest.approx(125_102 / 12)


def test_unknown_stays_missing_and_unseen_levels_are_reported(
    small_history: pd.DataFrame, record: dict[str, Any]
) -> None:
    without_fraud = small_history[small_history["crime_type"] != "fraud"]
    vectorizer = CaseVectorizer().fit(without_fraud)
    record.update(crime_type="fraud", harm_outcome="property_loss", disability_grade=None,
                  household_size=None)  # fmt: skip
    frame = parse_record(record).frame.iloc[0].to_dict()
    vector = dict(zip(FEATURE_NAMES, vectorizer.transform_record(frame)[0], strict=True))
    assert np.isnan(vector["crime_type"])
    assert np.isnan(vector["household_size"])
    assert vectorizer.unseen_levels(frame) == {"crime_type": "fraud"}


def test_persists_with_joblib(
    fitted: CaseVectorizer, small_history: pd.DataFrame, tmp_path: Path
) -> None:
    joblib.dump(fitted, tmp_path / "v.joblib")
    loaded = joblib.load(tmp_path / "v.joblib")
    np.testing.assert_array_equal(
        loaded.transform(small_history.head(50)), fitted.transform(small_history.head(50))
    )
