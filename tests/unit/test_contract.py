"""The contract: every field type, every cross-field rule, and the table-level errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.contract import (
    FIELDS,
    INPUT_NAMES,
    OUTCOME_NAMES,
    ContractError,
    parse_record,
    parse_records,
)


def _problems(record: dict[str, Any], scoring: bool = True) -> dict[str, str]:
    raw = pd.DataFrame({k: pd.Series([v], dtype=object) for k, v in record.items()})
    parsed = parse_records(raw, scoring=scoring)
    return {v.field: v.rule for v in parsed.violations}


DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "case-record.md"


def test_the_contract_has_every_field_of_the_document() -> None:
    text = DOCUMENT.read_text(encoding="utf-8")
    rows = {
        line.split("|")[1].strip(): line
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| field")
    }
    assert len(FIELDS) == 36
    assert len(OUTCOME_NAMES) == 4
    assert INPUT_NAMES[0] == "case_id"
    for spec in FIELDS:
        assert spec.name in rows, f"{spec.name} is not documented in {DOCUMENT.name}"
        for value in spec.values if spec.name != "province_code" else ():
            assert value in rows[spec.name], f"{spec.name}: value {value} is not documented"
        if spec.since != "1.0":
            assert "v1.1" in rows[spec.name], f"{spec.name}: not marked as v1.1"


def test_a_v1_file_validates_unchanged(small_history: pd.DataFrame) -> None:
    v1_columns = [spec.name for spec in FIELDS if spec.since == "1.0"]
    v1 = small_history[[c for c in small_history.columns if c in v1_columns]]
    assert "person_key" not in v1.columns and "office_code" not in v1.columns
    parsed = parse_records(v1)
    assert parsed.violations == []
    assert parsed.frame["person_key"].isna().all()


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"person_key": "11010519491231002X"}, "person_key", "64 lowercase hexadecimal"),
        ({"person_key": "A" * 64}, "person_key", "64 lowercase hexadecimal"),
        ({"office_code": "3201"}, "office_code", "6-digit"),
        ({"office_code": "440104"}, "office_code", "first two digits must equal province_code"),
        ({"case_id": "A\x00B"}, "case_id", "without control characters"),
        ({"contract_version": "2.0"}, "contract_version", "one of 1.0, 1.1"),
        (
            {"contract_version": "1.0", "harm_outcome": "sexual_or_psychological"},
            "harm_outcome",
            "must use one of death, severe_injury, minor_injury, slight_injury, property_loss",
        ),
        (
            {"contract_version": "1.0", "office_code": "320104"},
            "office_code",
            "a field of contract 1.1",
        ),
        (
            {"harm_outcome": "property_loss", "disability_grade": 8},
            "disability_grade",
            "only assessed for injuries and sexual or psychological harm",
        ),
    ],
)
def test_v1_1_fields_are_checked(
    record: dict[str, Any], change: dict[str, Any], field: str, words: str
) -> None:
    record.update(province_code="32", **change)
    problems = _problems(record)
    assert field in problems, problems
    assert words in problems[field]


def test_v1_1_values_are_accepted(record: dict[str, Any]) -> None:
    record.update(
        province_code="32",
        office_code="320104",
        person_key="0" * 63 + "f",
        contract_version="1.1",
        harm_outcome="sexual_or_psychological",
        disability_grade=9,
    )
    assert _problems(record) == {}
    record.update(contract_version="1.0", office_code=None, person_key=None, harm_outcome="none")
    record.update(disability_grade=None)
    assert _problems(record) == {}


def test_a_valid_record_parses_to_canonical_values(record: dict[str, Any]) -> None:
    parsed = parse_record(record)
    assert parsed.violations == []
    row = parsed.frame.iloc[0]
    assert row["case_id"] == record["case_id"]
    assert row["victim_age"] == float(record["victim_age"])


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("province_code", "00", "is not allowed"),
        ("decision_year", 2036, "above 2035"),
        ("decision_year", 2020.5, "not a whole number"),
        ("victim_age", -1, "below 0"),
        ("victim_age", "old", "not a number"),
        ("medical_cost_yuan", -0.01, "below 0"),
        ("medical_cost_yuan", float("nan"), None),  # NaN is unknown, allowed
        ("court_award_yuan", "inf", "not finite"),
        ("household_size", 0, "below 1"),
        ("urgent_medical_need", "yes", "not a boolean"),
        ("urgent_medical_need", 2, "not a boolean"),
        ("registry_flags", ["veteran_family", "alien"], "'alien' is not allowed"),
        ("registry_flags", 7, "not a list"),
        ("crime_type", "arson", "is not allowed"),
        ("case_id", "x" * 65, "65 characters"),
        ("victim_sex", None, "is required"),
        ("medical_cost_yuan", True, "not a number"),
    ],
)
def test_each_broken_value_names_the_field_and_the_rule(
    record: dict[str, Any], field: str, value: Any, words: str | None
) -> None:
    record[field] = value
    problems = _problems(record)
    if words is None:
        assert field not in problems
    else:
        assert words in problems[field]


@pytest.mark.parametrize("text", ["true", "True", "1", "false", "False", "0"])
def test_csv_booleans_in_every_spelling_the_contract_allows(
    record: dict[str, Any], text: str
) -> None:
    record["rural_hukou"] = text
    parsed = parse_record(record)
    assert parsed.violations == []
    assert parsed.frame["rural_hukou"].iloc[0] == (1.0 if text in ("true", "True", "1") else 0.0)


def test_lists_in_csv_and_native_form_agree(record: dict[str, Any]) -> None:
    record["registry_flags"] = "veteran_family|serious_illness"
    as_text = parse_record(record).frame["registry_flags"].iloc[0]
    record["registry_flags"] = ["serious_illness", "veteran_family"]
    as_list = parse_record(record).frame["registry_flags"].iloc[0]
    assert as_text == as_list == "serious_illness|veteran_family"


def test_unknown_is_not_zero(record: dict[str, Any]) -> None:
    record["medical_cost_yuan"] = None
    record["case_expense_yuan"] = 0
    frame = parse_record(record).frame
    assert np.isnan(frame["medical_cost_yuan"].iloc[0])
    assert frame["case_expense_yuan"].iloc[0] == 0.0


def test_minor_dependants_cannot_exceed_dependants(record: dict[str, Any]) -> None:
    record.update(dependants=2, minor_dependants=2)
    assert "minor_dependants" not in _problems(record)
    record.update(dependants=2, minor_dependants=3)
    assert "must be ≤ dependants" in _problems(record)["minor_dependants"]


@pytest.mark.parametrize(
    ("harm", "ok"),
    [
        ("severe_injury", True),
        ("slight_injury", True),
        ("death", False),
        ("property_loss", False),
        ("none", False),
    ],
)
def test_disability_grade_only_with_injuries(record: dict[str, Any], harm: str, ok: bool) -> None:
    record.update(harm_outcome=harm, disability_grade=5)
    assert ("disability_grade" not in _problems(record)) is ok


def test_outcomes_are_refused_in_scoring_input(record: dict[str, Any]) -> None:
    record["aid_granted"] = True
    problems = _problems(record, scoring=True)
    assert "outcome field" in problems["aid_granted"]


@pytest.mark.parametrize(
    ("granted", "amount", "problem"),
    [
        (True, 5000.0, None),
        (False, None, None),
        (True, None, "required when aid_granted"),
        (False, 100.0, "must be empty"),
        (True, 0.0, "above 0"),
    ],
)
def test_amount_present_iff_granted(
    record: dict[str, Any], granted: bool, amount: float | None, problem: str | None
) -> None:
    record.update(aid_granted=granted, aid_amount_yuan=amount)
    problems = _problems(record, scoring=False)
    if problem is None:
        assert "aid_amount_yuan" not in problems
    else:
        assert problem in problems["aid_amount_yuan"]


def test_missing_required_column_is_one_clear_error(small_history: pd.DataFrame) -> None:
    with pytest.raises(ContractError, match="victim_sex"):
        parse_records(small_history.drop(columns=["victim_sex"]))


def test_duplicate_case_ids_and_unknown_columns(small_history: pd.DataFrame) -> None:
    frame = small_history.head(3).copy()
    frame.loc[2, "case_id"] = frame.loc[0, "case_id"]
    frame["nickname"] = "x"
    parsed = parse_records(frame)
    assert parsed.unknown_columns == ["nickname"]
    assert [(v.row, v.field) for v in parsed.violations] == [(3, "case_id")]
    assert parsed.invalid_rows.tolist() == [False, False, True]
    assert len(parsed.frame.loc[~parsed.invalid_rows]) == 2


def test_the_generated_history_meets_the_contract(small_history: pd.DataFrame) -> None:
    parsed = parse_records(small_history)
    assert parsed.violations == []
    assert parsed.unknown_columns == []  # oracle_ columns are known annotations
