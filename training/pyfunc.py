"""The bundle as an MLflow pyfunc, so MLflow's own tools (serve, spark_udf) can score with it.

Input: a DataFrame of case records in the contract's wire shape (``registry_flags`` as the
``|``-joined tokens, as in CSV). Output: one row per input row in the ``score-file``
columns, plus ``error`` naming what was wrong with a row that breaks the contract (its
numbers are then empty). Outcome and unknown columns are ignored, but for
``aid_amount_yuan``: where a row has it, ``ratio_to_reference`` and ``outside_interval``
(1/0) say how the granted amount compares with the reference (同案不同救); elsewhere they are
empty. Every row also gets its aid grade (``aid_grade`` 1, 2, ... and ``aid_grade_zh``) and
the ``policy_version`` that graded and flagged it.
"""

from __future__ import annotations

from typing import Any

import joblib
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, DataType, Schema

from features.contract import FIELD_BY_NAME, INPUT_FIELDS, OUTCOME_NAMES, Kind, parse_records
from training.bundle import ModelBundle
from training.deviation import deviation_of

OUTPUT_COLUMNS = (
    "case_id",
    "reference_amount_yuan",
    "interval_low_yuan",
    "interval_high_yuan",
    "months_of_wage",
    "base_monthly_wage_yuan",
    "p_judicial_aid",
    "p_social_assistance",
    "p_civil_support",
    "eligibility_status",
    "rule_hits",
    "aid_grade",
    "aid_grade_zh",
    "policy_version",
    "ratio_to_reference",
    "outside_interval",
)
TEXT_COLUMNS = ("case_id", "eligibility_status", "rule_hits", "aid_grade_zh", "policy_version")
"""Output columns that hold text; every other output column is a number (NaN = empty)."""
GRANTED = "aid_amount_yuan"
"""The one outcome column scoring reads: the amount granted, for the deviation."""
DEVIATION_COLUMNS = ("ratio_to_reference", "outside_interval")

_WIRE_TYPES = {
    Kind.STRING: DataType.string,
    Kind.ENUM: DataType.string,
    Kind.LIST: DataType.string,
    Kind.INT: DataType.double,  # nullable integers travel as doubles (NaN = unknown)
    Kind.NUMBER: DataType.double,
    Kind.BOOL: DataType.double,  # 1/0, NaN = unknown: MLflow cannot carry a nullable bool
}


def granted_amounts(records: pd.DataFrame) -> tuple[np.ndarray, dict[int, str]]:
    """The granted amount of each row (NaN when absent) and the rows where it is not one."""
    if GRANTED not in records.columns:
        return np.full(len(records), np.nan), {}
    raw = records[GRANTED]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, copy=True)
    blank = raw.isna().to_numpy() | (raw.astype(str).str.strip() == "").to_numpy()
    with np.errstate(invalid="ignore"):
        bad = ~blank & (~np.isfinite(values) | (values < 0))
    rule = f"{GRANTED}: must be {FIELD_BY_NAME[GRANTED].rule_text()}"
    values[blank | bad] = np.nan
    return values, {int(i): f"{rule}, got {raw.iloc[i]!r}" for i in np.flatnonzero(bad)}


def score_table(bundle: ModelBundle, records: pd.DataFrame) -> pd.DataFrame:
    """Score a frame of wire records; rows that break the contract get an ``error``."""
    granted, granted_errors = granted_amounts(records)
    inputs = records.drop(columns=[c for c in OUTCOME_NAMES if c in records.columns])
    parsed = parse_records(inputs, scoring=True)
    errors = np.full(len(inputs), None, dtype=object)
    for violation in parsed.violations:
        row = violation.row - 1
        text = f"{violation.field}: {violation.rule}"
        errors[row] = text if errors[row] is None else f"{errors[row]}; {text}"
    for row, text in granted_errors.items():
        errors[row] = text if errors[row] is None else f"{errors[row]}; {text}"
    valid = ~parsed.invalid_rows & np.array([e is None for e in errors], dtype=bool)
    out = pd.DataFrame(index=range(len(inputs)), columns=[*OUTPUT_COLUMNS, "error"], dtype=object)
    out["case_id"] = parsed.frame["case_id"].to_numpy()
    if valid.any():
        scores = bundle.score(parsed.frame.loc[valid].reset_index(drop=True))
        table = scores.table()
        given = granted[valid]
        ratio, outside = deviation_of(
            given,
            scores.reference_amount_yuan,
            scores.interval_low_yuan,
            scores.interval_high_yuan,
        )
        known = ~np.isnan(given)
        table["ratio_to_reference"] = np.where(known, np.round(ratio, 4), np.nan)
        table["outside_interval"] = np.where(known, outside.astype(float), np.nan)
        table["policy_version"] = bundle.policy.version
        out.loc[valid, list(OUTPUT_COLUMNS)] = table[list(OUTPUT_COLUMNS)].to_numpy()
    out["error"] = errors
    numeric = [c for c in OUTPUT_COLUMNS if c not in TEXT_COLUMNS]
    out[numeric] = out[numeric].astype(float)
    return out


class JudicialAidModel(PythonModel):
    """Loads the joblib bundle from the model's artifacts and scores DataFrames."""

    def load_context(self, context: Any) -> None:
        """Load the bundle once per process."""
        self.bundle: ModelBundle = joblib.load(context.artifacts["bundle"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        """One output row per input row (see the module docstring)."""
        return score_table(self.bundle, pd.DataFrame(model_input))


def signature() -> ModelSignature:
    """The input schema of the contract (every field optional but the required ones)."""
    inputs = Schema(
        [
            *[ColSpec(_WIRE_TYPES[f.kind], f.name, required=f.required) for f in INPUT_FIELDS],
            ColSpec(DataType.double, GRANTED, required=False),
        ]
    )
    outputs = Schema(
        [
            *[
                ColSpec(
                    DataType.string if c in TEXT_COLUMNS else DataType.double,
                    c,
                    required=c not in DEVIATION_COLUMNS,
                )
                for c in OUTPUT_COLUMNS
            ],
            ColSpec(DataType.string, "error", required=False),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def as_pyfunc_input(frame: pd.DataFrame) -> pd.DataFrame:
    """Contract records (and the granted amount, when given) in the signature's types.

    Numbers, integers and booleans as float (NaN = unknown), text as object. MLflow refuses
    pandas' nullable ``Int64``/``boolean`` for double columns, so convert a Parquet history
    with this before ``predict``.
    """
    out = pd.DataFrame(index=frame.index)
    for spec in (*INPUT_FIELDS, FIELD_BY_NAME[GRANTED]):
        if spec.name not in frame.columns:
            continue
        column = frame[spec.name]
        if _WIRE_TYPES[spec.kind] is DataType.double:
            out[spec.name] = column.astype("Float64").astype(float)
        elif spec.kind is Kind.LIST:
            out[spec.name] = column.map(
                lambda v: "|".join(v) if isinstance(v, list | tuple | np.ndarray) else v
            ).astype(object)
        else:
            out[spec.name] = column.astype(object)
    return out


def input_example(frame: pd.DataFrame, rows: int = 2) -> pd.DataFrame:
    """A few records in the signature's types, logged beside the model."""
    return as_pyfunc_input(frame.head(rows)).reset_index(drop=True)
