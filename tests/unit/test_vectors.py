"""The case vectors: one record alone gives the identical vector as inside a large frame."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from features.contract import parse_record, parse_records
from features.vectors import FEATURE_NAMES, CaseVectorizer, columns_from_records
from tests.conftest import wire_record


def _vector_of(vectorizer: CaseVectorizer, record: dict[str, Any]) -> dict[str, float]:
    matrix = vectorizer.transform_columns(columns_from_records([record]))
    return dict(zip(FEATURE_NAMES, matrix[0], strict=True))


@pytest.fixture(scope="module")
def fitted(small_history: pd.DataFrame) -> CaseVectorizer:
    return CaseVectorizer().fit(small_history)


# scikit-learn's checks that fit on a random numeric array cannot run on a transformer of
# case-record frames; each of their rules is checked on a real history below instead.
FRAME_ONLY = "fits on a random numeric array; CaseVectorizer reads case-record frames"
NUMERIC_INPUT_CHECKS = {
    name: FRAME_ONLY
    for name in (
        "check_fit_score_takes_y",
        "check_estimators_overwrite_params",
        "check_dont_overwrite_parameters",
        "check_estimators_fit_returns_self",
        "check_readonly_memmap_input",
        "check_n_features_in_after_fitting",
        "check_positive_only_tag_during_fit",
    )
}


@parametrize_with_checks(
    [CaseVectorizer()],
    legacy=False,
    expected_failed_checks=lambda _: NUMERIC_INPUT_CHECKS,
    xfail_strict=True,
)
def test_scikit_learn_api_checks(estimator: CaseVectorizer, check: Any) -> None:
    check(estimator)


def test_the_numeric_checks_rules_hold_on_a_history(small_history: pd.DataFrame) -> None:
    vectorizer = CaseVectorizer(wage_table_path=None)
    with pytest.raises(NotFittedError):
        vectorizer.transform(small_history)
    params = clone(vectorizer).get_params()
    assert vectorizer.fit(small_history, y=np.zeros(len(small_history))) is vectorizer
    assert vectorizer.get_params() == params  # fitting never changes a parameter
    assert not hasattr(clone(vectorizer), "categories_")
    assert list(vectorizer.get_feature_names_out()) == list(FEATURE_NAMES)
    assert vectorizer.transform(small_history).shape == (len(small_history), len(FEATURE_NAMES))


def test_a_record_alone_gives_the_identical_vector(
    fitted: CaseVectorizer, small_history: pd.DataFrame
) -> None:
    big = fitted.transform(small_history)
    for row in (0, 7, 123, 1999):
        record = parse_record(wire_record(small_history, row)).frame.iloc[0].to_dict()
        alone = fitted.transform_columns(columns_from_records([record]))
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
    vector = _vector_of(fitted, frame)
    assert vector["medical_cost_months"] == pytest.approx(2.0)
    assert vector["base_monthly_wage"] == pytest.approx(125_102 / 12)


def test_a_sexual_offence_reads_as_at_least_sexual_harm(
    fitted: CaseVectorizer, record: dict[str, Any]
) -> None:
    """A rape recorded as none (v1), with a slight or a minor injury is sexual harm's severity.

    Recording an injury beside a rape must never read as a lighter harm than recording none,
    or the amount's monotone harm constraint would pull the two records apart.
    """

    def severity(**changes: Any) -> float:
        frame = parse_record({**record, **changes}).frame.iloc[0].to_dict()
        return _vector_of(fitted, frame)["harm_severity"]

    sexual = severity(crime_type="other", harm_outcome="sexual_or_psychological")
    for harm in ("none", "slight_injury", "minor_injury"):
        assert severity(crime_type="rape", harm_outcome=harm) == sexual
    assert severity(crime_type="intentional_injury", harm_outcome="none") < sexual
    assert severity(crime_type="intentional_injury", harm_outcome="slight_injury") < sexual
    assert severity(crime_type="rape", harm_outcome="severe_injury") > sexual
    assert severity(crime_type="rape", harm_outcome="death") > severity(
        crime_type="rape", harm_outcome="severe_injury"
    )


def test_a_vectoriser_fitted_before_the_harm_reading_keeps_the_recorded_harm(
    fitted: CaseVectorizer, record: dict[str, Any]
) -> None:
    """A registered older version is fed the features it was trained on."""
    older = copy.deepcopy(fitted)
    del older.harm_reading_
    frame = parse_record({**record, "crime_type": "rape", "harm_outcome": "none"}).frame
    row = frame.iloc[0].to_dict()
    assert _vector_of(older, row)["harm_severity"] == 0.0
    assert _vector_of(fitted, row)["harm_severity"] == 2.0


def test_unknown_stays_missing_and_unseen_levels_are_reported(
    small_history: pd.DataFrame, record: dict[str, Any]
) -> None:
    without_fraud = small_history[small_history["crime_type"] != "fraud"]
    vectorizer = CaseVectorizer().fit(without_fraud)
    record.update(
        crime_type="fraud", harm_outcome="property_loss", disability_grade=None, household_size=None
    )
    frame = parse_record(record).frame.iloc[0].to_dict()
    vector = _vector_of(vectorizer, frame)
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


def test_ten_thousand_records_alone_give_the_vectors_of_the_whole_frame() -> None:
    """The API's path (one record, columns of one) equals the batch path, record by record."""
    from features.synthetic import generate_history

    history = generate_history(10_000, seed=77)
    vectorizer = CaseVectorizer().fit(history)
    frame = parse_records(history).frame
    together = vectorizer.transform(frame)
    records = frame.to_dict("records")
    for row, record in enumerate(records):
        alone = vectorizer.transform_columns(columns_from_records([record]))
        np.testing.assert_array_equal(alone[0], together[row], err_msg=f"row {row}")
