"""Historical case vectors: the model matrix built from canonical case records.

:class:`CaseVectorizer` is a scikit-learn transformer. It turns canonical records (see
``features.contract``) into a float matrix whose columns carry the rules' factors: money in
months of the local wage base (so one model serves every province and year), uncovered
loss, income per head against the local wage, harm and disability severity as ordered
values, hardship signals, and the categorical fields as integer codes LightGBM reads as
categories. Unknown stays NaN; a category level not seen in fitting becomes NaN too, and
:meth:`CaseVectorizer.unseen_levels` says which.

One code path computes every vector: a record sent alone (the API) becomes one-row
columns and goes through the same arithmetic as a million-row frame, so both give the
identical vector.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from features.contract import (
    FIELD_BY_NAME,
    INPUT_NAMES,
    REGISTRY_FLAGS,
    REQUIRED_NAMES,
    Kind,
    unknown_column,
)
from features.rules import (
    RuleConstants,
    RuleResults,
    compensation_in_hand,
    documented_loss,
    evaluate_rules,
    harm_as_read,
    sexual_offence,
)
from features.wages import WageTable

HARM_SEVERITY = {
    "none": 0.0,
    "property_loss": 0.0,
    "slight_injury": 1.0,
    "minor_injury": 2.0,
    "sexual_or_psychological": 2.0,  # at least a minor injury: the harm is to the person
    "severe_injury": 3.0,
    "death": 4.0,
}
HARM_AS_READ, HARM_AS_RECORDED = "as_read", "as_recorded"
"""How the harm severity reads the harm: through ``features.rules.harm_as_read`` (since #11),
or as recorded (vectorisers fitted before, which lack ``harm_reading_``)."""
LABOR_INCAPACITY = {"full": 0.0, "partial": 1.0, "none": 2.0}
CATEGORICAL_FIELDS = (
    "province_code",
    "crime_type",
    "applicant_role",
    "harm_outcome",
    "offender_status",
    "low_income_status",
)

FEATURE_LABELS_ZH: dict[str, str] = {
    "harm_severity": "人身损害严重程度",
    "property_harm": "财产损失类案件",
    "sexual_offence": "性侵害案件",
    "disability_severity": "伤残严重程度（11−伤残等级）",
    "urgent_medical_need": "急需救治",
    "medical_cost_months": "医疗费（月工资倍数）",
    "case_expense_months": "因案必要支出（月工资倍数）",
    "necessary_expense_months": "医疗费与必要支出合计（月工资倍数）",
    "economic_loss_months": "财产损失（月工资倍数）",
    "compensation_received_months": "已获赔偿（月工资倍数）",
    "other_relief_months": "已获保险或其他救助（月工资倍数）",
    "compensation_in_hand_months": "已获赔偿与救助合计（月工资倍数）",
    "court_award_months": "判决赔偿额（月工资倍数）",
    "uncovered_loss_months": "未获弥补的损失（月工资倍数）",
    "victim_age": "被害人年龄",
    "household_size": "家庭人口",
    "dependants": "被扶养人数",
    "minor_dependants": "未成年被扶养人数",
    "income_per_head_share": "人均月收入占当地月平均工资比例",
    "labor_incapacity": "劳动能力丧失程度",
    "disability_certificate": "持残疾人证",
    "rural_hukou": "农村户籍",
    "hardship_signals": "困难情形数",
    "victim_at_fault": "被害人有过错",
    "refused_cooperation": "拒不配合",
    "aided_before_for_this_case": "已获救助",
    "excluded_by_rules": "符合不予救助情形",
    "eligible_categories": "符合救助情形数",
    "base_monthly_wage": "上一年度职工月平均工资",
    "decision_year": "决定年度",
    **{
        f"registry_{flag}": FIELD_BY_NAME["registry_flags"].labels_zh[i]
        for i, flag in enumerate(REGISTRY_FLAGS)
    },
    **{name: FIELD_BY_NAME[name].zh for name in CATEGORICAL_FIELDS},
}

NUMERIC_FEATURES: tuple[str, ...] = tuple(
    name for name in FEATURE_LABELS_ZH if name not in CATEGORICAL_FIELDS
)
FEATURE_NAMES: tuple[str, ...] = NUMERIC_FEATURES + CATEGORICAL_FIELDS


def columns_from_frame(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Canonical columns (one array per input field) of a canonical frame.

    An optional field the frame lacks is unknown on every row, as the contract reads it.
    """
    missing = [name for name in REQUIRED_NAMES if name not in frame.columns]
    if missing:
        raise ValueError("records lack required contract field(s): " + ", ".join(missing))
    return {
        name: frame[name].to_numpy() if name in frame.columns else unknown_column(name, len(frame))
        for name in INPUT_NAMES
    }


def columns_from_records(records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Canonical columns of canonical records (a batch sent to the API), without pandas."""
    out: dict[str, np.ndarray] = {}
    for name in INPUT_NAMES:
        values = [record.get(name) for record in records]
        if FIELD_BY_NAME[name].kind in (Kind.INT, Kind.NUMBER, Kind.BOOL):
            out[name] = np.array([np.nan if v is None else v for v in values], dtype="float64")
        else:
            column = np.empty(len(values), dtype=object)
            column[:] = values
            out[name] = column
    return out


SMALL_INPUT = 64
"""Up to this many rows a Python loop beats factorising (~50 µs of pandas overhead)."""


def _per_distinct(values: np.ndarray, of: Callable[[Any], float]) -> np.ndarray:
    """``of(v)`` for each value, computed once per distinct value (columns hold few)."""
    if len(values) <= SMALL_INPUT:
        return np.array([of(v) for v in values], dtype=float)
    codes, distinct = pd.factorize(values, use_na_sentinel=True)
    table = np.array([*(of(v) for v in distinct), of(None)], dtype=float)
    return table[np.where(codes < 0, len(distinct), codes)]


def lookup(values: np.ndarray, mapping: Mapping[Any, float]) -> np.ndarray:
    """``mapping[v]`` for each value as floats; NaN where the mapping lacks it (None too)."""
    return _per_distinct(values, lambda v: mapping.get(v, np.nan))


def has_token(joined: np.ndarray, token: str) -> np.ndarray:
    """1.0 where a ``|``-joined list holds ``token``, 0.0 where not, NaN where unknown."""
    return _per_distinct(joined, lambda f: np.nan if f is None else float(token in f.split("|")))


def _known_or_nan(*values: np.ndarray) -> np.ndarray:
    """Sum of the known values; NaN only where every one is unknown."""
    stacked = np.vstack(values)
    total = np.nansum(stacked, axis=0)
    return np.where(np.isnan(stacked).all(axis=0), np.nan, total)


@dataclass(frozen=True)
class WageLookup:
    """The wage base of each row, and where each figure came from."""

    table: WageTable
    province_code: np.ndarray
    decision_year: np.ndarray
    monthly: np.ndarray
    wage_year: np.ndarray
    estimated: np.ndarray

    def note(self, row: int) -> str | None:
        """Why the base of ``row`` is not the previous year's figure (None when it is)."""
        if not self.estimated[row]:
            return None
        return self.table.note(
            str(self.province_code[row]), int(self.decision_year[row]), int(self.wage_year[row])
        )


@dataclass(frozen=True)
class CaseVectors:
    """The model matrix plus the wage base and the rule results computed for it."""

    matrix: np.ndarray
    wage: WageLookup
    rules: RuleResults


class CaseVectorizer(TransformerMixin, BaseEstimator):
    """Canonical case records → the model matrix (historical case vectors).

    Args:
        wage_table_path: the wage table file; ``None`` uses the one shipped with the project.
        rule_constants: the reading of the rules' vague words the rule features (hardship,
            exclusions, categories) and the rule verdicts use; ``None``: the defaults.
    """

    def __init__(
        self, wage_table_path: str | None = None, rule_constants: RuleConstants | None = None
    ) -> None:
        self.wage_table_path = wage_table_path
        self.rule_constants = rule_constants

    def fit(self, X: pd.DataFrame, y: Any = None) -> CaseVectorizer:
        """Learn the category levels seen in the history and load the wage table."""
        columns = columns_from_frame(X)
        self.wage_table_ = WageTable.from_csv(self.wage_table_path)
        self.categories_: dict[str, list[str]] = {}
        for name in CATEGORICAL_FIELDS:
            seen = set(pd.unique(columns[name][pd.notna(columns[name])]))
            self.categories_[name] = [v for v in FIELD_BY_NAME[name].values if v in seen]
        self.feature_names_out_ = np.asarray(FEATURE_NAMES, dtype=object)
        self.harm_reading_ = HARM_AS_READ
        self.categorical_features_ = list(CATEGORICAL_FIELDS)
        self.n_features_out_ = len(FEATURE_NAMES)
        return self

    def _harm(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """The harm the severity is read from.

        As read by the rules (``harm_as_read``), or as recorded by a vectoriser fitted before
        that reading: a registered older version keeps the features it was trained on.
        """
        if getattr(self, "harm_reading_", HARM_AS_RECORDED) == HARM_AS_READ:
            return harm_as_read(columns)
        return np.asarray(columns["harm_outcome"], dtype=object)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the matrix columns."""
        check_is_fitted(self, "categories_")
        return self.feature_names_out_

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """The matrix for a frame of canonical records (float64, NaN = unknown)."""
        check_is_fitted(self, "categories_")
        return self.transform_columns(columns_from_frame(X))

    def unseen_levels(self, record: Mapping[str, Any]) -> dict[str, str]:
        """Categorical values of a record the history never showed (encoded as missing)."""
        check_is_fitted(self, "categories_")
        return {
            name: str(record[name])
            for name in CATEGORICAL_FIELDS
            if record.get(name) is not None and record[name] not in self.categories_[name]
        }

    def wage_base(self, columns: Mapping[str, np.ndarray]) -> WageLookup:
        """The monthly wage base of each row, the year used and whether it is estimated."""
        codes = np.asarray(columns["province_code"], dtype=object)
        years = np.asarray(columns["decision_year"], dtype=float)
        _, wage_year, monthly, estimated = self.wage_table_.lookup_many(codes, years)
        return WageLookup(self.wage_table_, codes, years, monthly, wage_year, estimated)

    def transform_columns(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """The matrix for canonical columns (one numpy array per contract field)."""
        return self.vectors(columns).matrix

    def vectors(self, columns: Mapping[str, np.ndarray]) -> CaseVectors:
        """The matrix with what was computed on the way (wage base, rule results).

        Scoring reuses them, so the rules are evaluated and the wage looked up once.
        """
        check_is_fitted(self, "categories_")
        wage = self.wage_base(columns)
        base = wage.monthly
        rules = evaluate_rules(columns, base, self.rule_constants)

        def months(name: str) -> np.ndarray:
            return np.asarray(columns[name], dtype=float) / base

        def ordinal(name: str, mapping: Mapping[str, float]) -> np.ndarray:
            return lookup(np.asarray(columns[name], dtype=object), mapping)

        grade = np.asarray(columns["disability_grade"], dtype=float)
        medical, expense = months("medical_cost_yuan"), months("case_expense_yuan")
        economic = months("economic_loss_yuan")
        received, relief = (
            months("compensation_received_yuan"),
            months("other_relief_received_yuan"),
        )
        in_hand = _known_or_nan(received, relief)
        loss = _known_or_nan(medical, expense, economic)
        uncovered = np.maximum(documented_loss(columns) - compensation_in_hand(columns), 0.0) / base
        uncovered = np.where(np.isnan(loss), np.nan, uncovered)
        size = np.asarray(columns["household_size"], dtype=float)
        income = np.asarray(columns["monthly_household_income_yuan"], dtype=float)
        flags = np.asarray(columns["registry_flags"], dtype=object)
        registry = {flag: has_token(flags, flag) for flag in REGISTRY_FLAGS}
        labor = ordinal("labor_capacity", LABOR_INCAPACITY)
        harm = np.asarray(columns["harm_outcome"], dtype=object)
        values: dict[str, np.ndarray] = {
            "harm_severity": lookup(self._harm(columns), HARM_SEVERITY),
            "property_harm": (harm == "property_loss").astype(float),
            "sexual_offence": sexual_offence(columns).astype(float),
            "disability_severity": np.where(np.isnan(grade), 0.0, 11.0 - grade),
            "urgent_medical_need": np.asarray(columns["urgent_medical_need"], dtype=float),
            "medical_cost_months": medical,
            "case_expense_months": expense,
            "necessary_expense_months": _known_or_nan(medical, expense),
            "economic_loss_months": economic,
            "compensation_received_months": received,
            "other_relief_months": relief,
            "compensation_in_hand_months": in_hand,
            "court_award_months": months("court_award_yuan"),
            "uncovered_loss_months": uncovered,
            "victim_age": np.asarray(columns["victim_age"], dtype=float),
            "household_size": size,
            "dependants": np.asarray(columns["dependants"], dtype=float),
            "minor_dependants": np.asarray(columns["minor_dependants"], dtype=float),
            "income_per_head_share": income / size / base,
            "labor_incapacity": labor,
            "disability_certificate": np.asarray(columns["disability_certificate"], dtype=float),
            "rural_hukou": np.asarray(columns["rural_hukou"], dtype=float),
            "hardship_signals": rules.hardship_signals.astype(float),
            "victim_at_fault": np.asarray(columns["victim_at_fault"], dtype=float),
            "refused_cooperation": np.asarray(columns["refused_cooperation"], dtype=float),
            "aided_before_for_this_case": np.asarray(
                columns["aided_before_for_this_case"], dtype=float
            ),
            "excluded_by_rules": rules.excluded.astype(float),
            "eligible_categories": rules.categories.astype(float),
            "base_monthly_wage": base,
            "decision_year": np.asarray(columns["decision_year"], dtype=float),
            **{f"registry_{flag}": registry[flag] for flag in REGISTRY_FLAGS},
        }
        for name in CATEGORICAL_FIELDS:
            codes = {level: float(i) for i, level in enumerate(self.categories_[name])}
            values[name] = lookup(np.asarray(columns[name], dtype=object), codes)
        matrix = np.column_stack([values[name] for name in FEATURE_NAMES])
        return CaseVectors(matrix, wage, rules)
