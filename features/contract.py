"""The case-record contract (v1.1): the one definition of every field a case system sends.

Everything that reads case records (the ``validate`` command, the training pipeline, the
API schemas) builds on :data:`FIELDS`, so the contract of ``docs/case-record.md`` is
written down exactly once (a test checks the page and this module name the same fields).
:func:`parse_records` turns a raw table (text from CSV, native values from Parquet or JSON)
into the canonical typed frame the rest of the project uses, and reports every value that
breaks the contract as a :class:`Violation` naming the row, the field and the rule in plain
words. Nothing is ever silently defaulted.

Canonical representation (what ``parse_records`` returns and the case vectors read):
numbers, integers and booleans as ``float64`` (NaN = unknown, booleans 1.0/0.0), strings
and enum tokens as ``object`` (``None`` = unknown), ``registry_flags`` as the sorted tokens
joined by ``|`` (``""`` = the empty list, ``None`` = unknown).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

CONTRACT_VERSIONS = ("1.0", "1.1")
"""Every version of the contract a record may declare in ``contract_version``."""
LATEST_VERSION = CONTRACT_VERSIONS[-1]
"""The version a record follows when it declares none (docs/case-record.md describes it)."""


class Kind(StrEnum):
    """The wire type of a field."""

    STRING = "string"
    INT = "int"
    NUMBER = "number"
    BOOL = "bool"
    ENUM = "enum"
    LIST = "list"


class Group(StrEnum):
    """The section of the contract a field belongs to."""

    IDENTITY = "identity"
    HARM = "harm"
    COMPENSATION = "compensation"
    HARDSHIP = "hardship"
    EXCLUSION = "exclusion"
    OUTCOME = "outcome"


@dataclass(frozen=True)
class FieldSpec:
    """One field of the contract: its wire name, type, constraints and Chinese label."""

    name: str
    kind: Kind
    required: bool
    zh: str
    group: Group
    values: tuple[str, ...] = ()
    labels_zh: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    description: str = ""
    pattern: str | None = None  # a text field's values match this regular expression
    pattern_text: str = ""  # ... which these words describe
    since: str = "1.0"  # the contract version that added the field
    added_values: tuple[str, ...] = ()  # enum values added after 1.0 (in LATEST_VERSION)

    def rule_text(self) -> str:
        """The field's constraint in plain words, for error messages and API docs."""
        if self.kind is Kind.STRING:
            return self.pattern_text or f"a text of 1 to {self.max_length} characters"
        if self.kind is Kind.INT:
            hi = "" if self.maximum is None else f" to {self.maximum:g}"
            return f"a whole number from {self.minimum:g}{hi}"
        if self.kind is Kind.NUMBER:
            return "an amount in yuan: a finite number ≥ 0"
        if self.kind is Kind.BOOL:
            return "true or false"
        if self.kind is Kind.ENUM:
            return "one of " + ", ".join(self.values)
        return "a list of " + ", ".join(self.values)


# The province codes read as the GB/T 2260 table they are: aligned rows, not one code a line.
PROVINCE_CODES: tuple[str, ...] = (
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37",
    "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64",
    "65",
)  # fmt: skip
# Their names as a reviewer reads them (the short forms of the wage table's province_zh).
PROVINCE_NAMES_ZH: dict[str, str] = {
    "11": "北京", "12": "天津", "13": "河北", "14": "山西", "15": "内蒙古", "21": "辽宁",
    "22": "吉林", "23": "黑龙江", "31": "上海", "32": "江苏", "33": "浙江", "34": "安徽",
    "35": "福建", "36": "江西", "37": "山东", "41": "河南", "42": "湖北", "43": "湖南",
    "44": "广东", "45": "广西", "46": "海南", "50": "重庆", "51": "四川", "52": "贵州",
    "53": "云南", "54": "西藏", "61": "陕西", "62": "甘肃", "63": "青海", "64": "宁夏",
    "65": "新疆",
}  # fmt: skip

# Each enum once: its wire tokens in order, with the Chinese label a reviewer reads.
CRIME_TYPES_ZH = {
    "intentional_injury": "故意伤害",
    "intentional_homicide": "故意杀人",
    "negligent_homicide": "过失致人死亡",
    "traffic_accident": "交通肇事",
    "rape": "强奸",
    "robbery": "抢劫",
    "fraud": "诈骗",
    "theft": "盗窃",
    "illegal_fundraising": "非法集资",
    "wage_arrears": "拒不支付劳动报酬",
    "abuse_abandonment": "虐待遗弃",
    "civil_tort": "民事侵权",
    "other": "其他",
}
APPLICANT_ROLES_ZH = {
    "victim": "被害人",
    "close_relative": "近亲属",
    "witness_or_reporter": "证人/举报人/鉴定人",
}
HARM_OUTCOMES_ZH = {
    "death": "死亡",
    "severe_injury": "重伤",
    "minor_injury": "轻伤",
    "slight_injury": "轻微伤",
    "sexual_or_psychological": "性侵害或严重精神损害",
    "property_loss": "财产损失",
    "none": "无",
}
HARM_ADDED_IN_1_1 = ("sexual_or_psychological",)
OFFENDER_STATUSES_ZH = {
    "able_to_pay": "有赔偿能力",
    "unable_to_pay": "无赔偿能力",
    "deceased": "死亡",
    "unidentified": "无法查明",
    "unknown": "不详",
}
LOW_INCOME_STATUSES_ZH = {
    "none": "无",
    "dibao": "低保",
    "tekun": "特困",
    "marginal": "低保边缘",
    "poverty_monitoring": "防返贫监测对象",
}
LABOR_CAPACITIES_ZH = {"full": "完全", "partial": "部分", "none": "无"}
VICTIM_SEXES_ZH = {"male": "男", "female": "女"}
REGISTRY_FLAGS_ZH = {
    "women_federation_hardship": "困难妇女",
    "veteran_family": "退役军人家庭",
    "orphan_or_left_behind_child": "孤儿/留守儿童",
    "serious_illness": "大病",
}
CRIME_TYPES = tuple(CRIME_TYPES_ZH)
HARM_OUTCOMES = tuple(HARM_OUTCOMES_ZH)
OFFENDER_STATUSES = tuple(OFFENDER_STATUSES_ZH)
REGISTRY_FLAGS = tuple(REGISTRY_FLAGS_ZH)

_I, _H, _C, _D, _X, _O = (
    Group.IDENTITY,
    Group.HARM,
    Group.COMPENSATION,
    Group.HARDSHIP,
    Group.EXCLUSION,
    Group.OUTCOME,
)


def _choice(
    name: str,
    zh: str,
    group: Group,
    labels: Mapping[str, str],
    *,
    required: bool = False,
    description: str = "",
    added_values: tuple[str, ...] = (),
) -> FieldSpec:
    return FieldSpec(
        name,
        Kind.ENUM,
        required,
        zh,
        group,
        values=tuple(labels),
        labels_zh=tuple(labels.values()),
        description=description,
        added_values=added_values,
    )


def _whole(
    name: str,
    zh: str,
    group: Group,
    minimum: float,
    maximum: float | None = None,
    *,
    required: bool = False,
    description: str = "",
) -> FieldSpec:
    return FieldSpec(
        name,
        Kind.INT,
        required,
        zh,
        group,
        minimum=minimum,
        maximum=maximum,
        description=description,
    )


def _money(name: str, zh: str, group: Group, description: str = "") -> FieldSpec:
    return FieldSpec(name, Kind.NUMBER, False, zh, group, minimum=0.0, description=description)


def _flag(name: str, zh: str, group: Group, description: str = "") -> FieldSpec:
    return FieldSpec(name, Kind.BOOL, False, zh, group, description=description)


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(
        "case_id",
        Kind.STRING,
        True,
        "案件编号",
        _I,
        max_length=64,
        pattern=r"^[^\x00-\x1f\x7f]{1,64}$",
        pattern_text="a text of 1 to 64 characters without control characters",
    ),
    _choice(
        "contract_version",
        "合同版本",
        _I,
        {version: version for version in CONTRACT_VERSIONS},
        description=f"the contract version the record follows; empty = {LATEST_VERSION}",
    ),
    FieldSpec(
        "person_key",
        Kind.STRING,
        False,
        "人员标识（假名化）",
        _I,
        max_length=64,
        pattern=r"^[0-9a-f]{64}$",
        pattern_text="64 lowercase hexadecimal characters: the keyed hash `aidrec pseudonymise` "
        "makes of an ID number, never the ID number itself",
        description="the applicant's person key: the victim's own, or the close relative's who "
        "applies when the victim died; the key other departments' registries are joined on",
        since="1.1",
    ),
    FieldSpec(
        "office_code",
        Kind.STRING,
        False,
        "办案检察院",
        _I,
        max_length=6,
        pattern=r"^[0-9]{6}$",
        pattern_text="the 6-digit administrative division code of the procuratorate that handles "
        "the case (e.g. 320104); its first two digits are province_code",
        since="1.1",
    ),
    FieldSpec(
        "province_code",
        Kind.ENUM,
        True,
        "办案检察院所在省份",
        _I,
        values=PROVINCE_CODES,
        description="2-digit GB/T 2260 code of the deciding procuratorate's province",
    ),
    _whole("decision_year", "救助决定（或评估）年度", _I, 2014, 2035, required=True),
    _choice("crime_type", "案由", _I, CRIME_TYPES_ZH, required=True),
    _choice("applicant_role", "申请人身份", _I, APPLICANT_ROLES_ZH, required=True),
    _choice(
        "harm_outcome",
        "损害后果",
        _H,
        HARM_OUTCOMES_ZH,
        required=True,
        description="sexual_or_psychological: a sexual offence or serious psychological harm "
        "without a graver physical injury (v1.1; v1 recorded it as none)",
        added_values=HARM_ADDED_IN_1_1,
    ),
    _whole(
        "disability_grade", "伤残等级", _H, 1, 10, description="1 is the most severe; null = none"
    ),
    _flag("urgent_medical_need", "急需救治", _H),
    _money("medical_cost_yuan", "医疗费", _H),
    _money(
        "case_expense_yuan",
        "因案支出的必要费用",
        _H,
        "funeral, travel, care and other necessary spending caused by the case",
    ),
    _money("economic_loss_yuan", "财产损失", _H),
    _choice("offender_status", "加害人情况", _C, OFFENDER_STATUSES_ZH, required=True),
    _money("compensation_received_yuan", "已获赔偿", _C),
    _money("court_award_yuan", "判决赔偿额", _C, "what a court ordered, executed or not"),
    _money(
        "other_relief_received_yuan",
        "已获保险或其他救助",
        _C,
        "insurance, social assistance already paid for this harm",
    ),
    _whole("victim_age", "被害人年龄", _D, 0, 120, required=True),
    _choice(
        "victim_sex",
        "性别",
        _D,
        VICTIM_SEXES_ZH,
        required=True,
        description="only for fairness audits; the amount never uses it",
    ),
    _whole("household_size", "家庭人口", _D, 1),
    _whole("dependants", "被扶养人数", _D, 0, description="people the victim supported"),
    _whole("minor_dependants", "未成年被扶养人数", _D, 0),
    _money("monthly_household_income_yuan", "家庭月收入", _D),
    _choice("low_income_status", "低收入认定", _D, LOW_INCOME_STATUSES_ZH),
    _flag("disability_certificate", "持残疾人证", _D),
    _choice("labor_capacity", "劳动能力", _D, LABOR_CAPACITIES_ZH),
    _flag("rural_hukou", "农村户籍", _D),
    FieldSpec(
        "registry_flags",
        Kind.LIST,
        False,
        "其他部门登记",
        _D,
        values=REGISTRY_FLAGS,
        labels_zh=tuple(REGISTRY_FLAGS_ZH.values()),
    ),
    _flag(
        "victim_at_fault",
        "对案件发生有过错或责任",
        _X,
        "the applicant bears responsibility for the crime",
    ),
    _flag(
        "refused_cooperation",
        "拒不配合或提供虚假材料",
        _X,
        "refuses to cooperate with the investigation or trial, or gave false information",
    ),
    _flag("aided_before_for_this_case", "已就本案获得救助", _X),
    _flag(
        "aid_granted",
        "是否救助",
        _O,
        "the case was confirmed as a judicial-assistance lead and aid was granted",
    ),
    _money("aid_amount_yuan", "救助金额", _O, "null when not granted"),
    _flag(
        "referred_social_assistance",
        "移送社会救助",
        _O,
        "referred to civil affairs / other departments for social assistance",
    ),
    _flag(
        "civil_support_prosecution",
        "民事支持起诉",
        _O,
        "the procuratorate supported the victim's civil suit",
    ),
)

FIELD_BY_NAME: dict[str, FieldSpec] = {f.name: f for f in FIELDS}
INPUT_FIELDS: tuple[FieldSpec, ...] = tuple(f for f in FIELDS if f.group is not Group.OUTCOME)
OUTCOME_FIELDS: tuple[FieldSpec, ...] = tuple(f for f in FIELDS if f.group is Group.OUTCOME)
INPUT_NAMES: tuple[str, ...] = tuple(f.name for f in INPUT_FIELDS)
OUTCOME_NAMES: tuple[str, ...] = tuple(f.name for f in OUTCOME_FIELDS)
REQUIRED_NAMES: tuple[str, ...] = tuple(f.name for f in INPUT_FIELDS if f.required)
ORACLE_PREFIX = "oracle_"
"""Columns a synthetic history adds (the true probabilities and amounts); not warned about."""
GRADED_OUTCOMES = ("severe_injury", "minor_injury", "slight_injury", "sexual_or_psychological")
"""Harms a disability grade (伤残等级, psychological disability included) is assessed for."""

_TRUE_TEXT = {"true": 1.0, "True": 1.0, "1": 1.0, "false": 0.0, "False": 0.0, "0": 0.0}


@dataclass(frozen=True)
class Violation:
    """One broken rule in one row: ``row`` is 1-based (the data row, header not counted)."""

    row: int
    case_id: str | None
    field: str
    rule: str
    rule_zh: str = ""

    def describe(self) -> str:
        """One line a clerk can read."""
        case = f"case_id {self.case_id!r}" if self.case_id else "case_id unknown"
        return f"row {self.row} ({case}): {self.field}: {self.rule}"


@dataclass
class ParsedRecords:
    """The canonical typed frame plus everything wrong with the input."""

    frame: pd.DataFrame
    violations: list[Violation]
    unknown_columns: list[str]
    invalid_rows: np.ndarray  # boolean mask, True where the row broke at least one rule


class ContractError(ValueError):
    """The table as a whole cannot be read as case records (missing columns, empty, ...)."""


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _parse_scalar(spec: FieldSpec, value: Any) -> tuple[Any, str | None]:
    """Parse one non-missing value; return (canonical value, None) or (None, problem)."""
    kind = spec.kind
    if kind is Kind.STRING:
        text = str(value)
        if not 1 <= len(text) <= (spec.max_length or 64):
            return None, f"must be {spec.rule_text()} (got {len(text)} characters)"
        if spec.pattern is not None and re.fullmatch(spec.pattern, text) is None:
            return None, f"{_shown(value)} is not allowed; must be {spec.rule_text()}"
        return text, None
    if kind is Kind.ENUM:
        text = str(value).strip()
        if text not in spec.values:
            return None, f"{_shown(value)} is not allowed; must be {spec.rule_text()}"
        return text, None
    if kind is Kind.BOOL:
        if isinstance(value, bool | np.bool_):
            return float(value), None
        if isinstance(value, str) and value.strip() in _TRUE_TEXT:
            return _TRUE_TEXT[value.strip()], None
        if isinstance(value, int | float | np.integer | np.floating) and value in (0, 1):
            return float(value), None  # a boolean column with gaps is float in pandas
        return None, f"{_shown(value)} is not a boolean; must be true or false"
    if kind is Kind.LIST:
        if isinstance(value, str):
            items = [v.strip() for v in value.split("|") if v.strip()]
        elif isinstance(value, list | tuple | np.ndarray):
            items = [str(v) for v in value]
        else:
            return None, f"{_shown(value)} is not a list; must be {spec.rule_text()}"
        bad = [v for v in items if v not in spec.values]
        if bad:
            return None, f"{bad[0]!r} is not allowed; must be {spec.rule_text()}"
        return "|".join(sorted(set(items))), None
    # numbers and integers
    if isinstance(value, bool | np.bool_):
        return None, f"{_shown(value)} is not a number"
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return None, f"{_shown(value)} is not a number; must be {spec.rule_text()}"
    if not math.isfinite(number):
        return None, f"{_shown(value)} is not finite; must be {spec.rule_text()}"
    if kind is Kind.INT and not number.is_integer():
        return None, f"{_shown(value)} is not a whole number; must be {spec.rule_text()}"
    if spec.minimum is not None and number < spec.minimum:
        return None, f"{_shown(value)} is below {spec.minimum:g}; must be {spec.rule_text()}"
    if spec.maximum is not None and number > spec.maximum:
        return None, f"{_shown(value)} is above {spec.maximum:g}; must be {spec.rule_text()}"
    return number, None


RULE_ZH: dict[str, str] = {
    # the contract's own checks (parse_records)
    "missing": "必填字段缺失",
    "value": "取值不符合规定",
    "cross": "字段之间相互矛盾",
    "outcome": "评分请求不得包含结果字段",
    "duplicate": "案件编号重复",
    # the same checks as the API's type validation names them (pydantic error types)
    "extra_forbidden": "合同未定义该字段，不得提交（含个人身份信息）",
    "literal_error": "取值不在允许范围内",
    "enum": "取值不在允许范围内",
    "greater_than_equal": "数值低于下限",
    "greater_than": "数值低于下限",
    "less_than_equal": "数值超过上限",
    "int_parsing": "不是有效整数",
    "int_from_float": "不是有效整数",
    "int_type": "不是有效整数",
    "float_parsing": "不是有效数字",
    "float_type": "不是有效数字",
    "finite_number": "数值必须有限",
    "bool_parsing": "不是有效布尔值",
    "bool_type": "不是有效布尔值",
    "bool": "不是有效布尔值",
    "string_type": "须为文本",
    "string_too_short": "长度过短",
    "string_too_long": "长度过长",
    "list_type": "须为列表",
    "too_short": "条目过少",
    "model_attributes_type": "须为JSON对象",
    "dict_type": "须为JSON对象",
    "json_invalid": "JSON格式错误",
    "string_pattern_mismatch": "格式不符合要求",
    "datetime_from_date_parsing": "不是有效时间",
    "datetime_parsing": "不是有效时间",
}
"""The Chinese text of every kind of contract violation, keyed by the kind (one home)."""


def rule_zh(kind: str) -> str:
    """The Chinese text of a kind of violation; a value that breaks a rule by default."""
    return RULE_ZH.get(kind, RULE_ZH["value"])


def _blank(raw: pd.Series) -> np.ndarray:
    """Missing values and empty / whitespace-only text."""
    missing = raw.isna().to_numpy()
    if raw.dtype == object or pd.api.types.is_string_dtype(raw):
        text = raw.astype("object").where(~missing, "")
        missing = missing | (text.map(lambda v: isinstance(v, str) and not v.strip())).to_numpy(
            dtype=bool
        )
    return missing


def _parse_numbers(spec: FieldSpec, raw: pd.Series) -> tuple[np.ndarray, dict[int, str]]:
    blank = _blank(raw)
    if pd.api.types.is_bool_dtype(raw):
        values = np.full(len(raw), np.nan)
        unparsable = ~blank
    else:
        source = raw if pd.api.types.is_numeric_dtype(raw) else raw.astype("object").where(~blank)
        if source.dtype == object:
            is_bool = source.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(dtype=bool)
            source = source.where(~is_bool)
        else:
            is_bool = np.zeros(len(raw), dtype=bool)
        values = pd.to_numeric(source, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        unparsable = (np.isnan(values) & ~blank) | is_bool
    known = ~np.isnan(values)
    bad = unparsable | (known & ~np.isfinite(values))
    with np.errstate(invalid="ignore"):
        if spec.kind is Kind.INT:
            bad |= known & np.isfinite(values) & (np.floor(values) != values)
        if spec.minimum is not None:
            bad |= known & (values < spec.minimum)
        if spec.maximum is not None:
            bad |= known & (values > spec.maximum)
    original = raw.to_numpy(dtype=object)
    problems = {
        int(i): _parse_scalar(spec, original[i])[1] or "invalid" for i in np.flatnonzero(bad)
    }
    return np.where(bad, np.nan, values), problems


def _parse_column(spec: FieldSpec, raw: pd.Series) -> tuple[np.ndarray, dict[int, str]]:
    """Parse a whole column: vectorised for numbers, once per distinct value otherwise."""
    if spec.kind in (Kind.INT, Kind.NUMBER):
        return _parse_numbers(spec, raw)
    if spec.kind is Kind.STRING:
        blank = _blank(raw)
        text = raw.astype("object").where(~blank).map(lambda v: v if v is None else str(v))
        length = text.str.len().to_numpy(dtype="float64", na_value=np.nan)
        bad = ~blank & ((length < 1) | (length > (spec.max_length or 64)))
        if spec.pattern is not None:
            matches = text.str.fullmatch(spec.pattern).to_numpy(dtype=object)
            bad |= ~blank & (matches != True)  # noqa: E712 - None (missing) is not a match
        problems = {
            int(i): _parse_scalar(spec, text.iloc[i])[1] or "invalid" for i in np.flatnonzero(bad)
        }
        out = text.to_numpy(dtype=object, copy=True)  # Arrow-backed frames are read-only
        out[blank | bad] = None
        return out, problems
    values = raw.astype("object")
    if spec.kind is Kind.LIST:
        # native lists (Parquet, JSON) are joined so that distinct values can be counted
        values = values.map(
            lambda v: "|".join(str(x) for x in v) if isinstance(v, list | tuple | np.ndarray) else v
        )
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    empty: Any = np.nan if spec.kind is Kind.BOOL else None
    parsed_uniques: list[Any] = []
    unique_problems: list[str | None] = []
    for value in uniques:
        if spec.kind is Kind.LIST and isinstance(value, str) and not value.strip():
            parsed_uniques.append("")
            unique_problems.append(None)
        elif _is_missing(value):
            parsed_uniques.append(empty)
            unique_problems.append(None)
        else:
            result, problem = _parse_scalar(spec, value)
            parsed_uniques.append(empty if problem else result)
            unique_problems.append(problem)
    dtype = "float64" if spec.kind is Kind.BOOL else object
    lookup = np.asarray([*parsed_uniques, empty], dtype=dtype)
    out = lookup[np.where(codes < 0, len(parsed_uniques), codes)]
    found: dict[int, str] = {}
    bad_codes = [k for k, p in enumerate(unique_problems) if p]
    if bad_codes:
        for i in np.flatnonzero(np.isin(codes, bad_codes)):
            found[int(i)] = unique_problems[codes[i]] or "invalid"
    return out, found


def unknown_column(name: str, rows: int) -> np.ndarray:
    """A canonical column of ``rows`` unknown values of field ``name`` (NaN, or None for text)."""
    if FIELD_BY_NAME[name].kind in (Kind.INT, Kind.NUMBER, Kind.BOOL):
        return np.full(rows, np.nan)
    return np.full(rows, None, dtype=object)


def parse_records(raw: pd.DataFrame, *, scoring: bool = False) -> ParsedRecords:
    """Parse and validate a table of case records against the contract.

    Args:
        raw: one row per record, one column per wire field; text (CSV) or native values.
        scoring: True for records sent to be scored, where outcome fields are refused.

    Returns:
        The canonical frame (every contract field present, outcomes only for histories),
        every violation, the unknown extra columns and the mask of rows that broke a rule.

    Raises:
        ContractError: when the table as a whole cannot be used (required columns missing).
    """
    columns = [str(c) for c in raw.columns]
    raw = raw.set_axis(columns, axis=1)
    missing_required = [name for name in REQUIRED_NAMES if name not in columns]
    if missing_required:
        raise ContractError(
            "missing required column(s): " + ", ".join(missing_required) + " (缺少必填字段列)"
        )
    n = len(raw)
    known = set(INPUT_NAMES) | set(OUTCOME_NAMES)
    unknown_columns = [c for c in columns if c not in known and not c.startswith(ORACLE_PREFIX)]
    case_ids = raw["case_id"].astype("object").where(raw["case_id"].notna(), None).tolist()
    case_ids = [None if _is_missing(c) else str(c) for c in case_ids]
    violations: list[Violation] = []

    def add(i: int, field: str, rule: str, kind: str) -> None:
        violations.append(Violation(i + 1, case_ids[i], field, rule, RULE_ZH[kind]))

    specs = INPUT_FIELDS if scoring else FIELDS
    if scoring:
        for name in OUTCOME_NAMES:
            if name in raw.columns:
                present = raw[name].notna().to_numpy()
                for i in np.flatnonzero(present):
                    add(
                        int(i),
                        name,
                        "is an outcome field and must not be sent for scoring",
                        "outcome",
                    )

    parsed: dict[str, np.ndarray] = {}
    for spec in specs:
        if spec.name not in raw.columns:
            parsed[spec.name] = unknown_column(spec.name, n)
            continue
        column = raw[spec.name]
        values, problems = _parse_column(spec, column)
        for row, problem in problems.items():
            add(row, spec.name, problem, "value")
        if spec.required:
            for row in np.flatnonzero(_blank(column)).tolist():
                if row not in problems:
                    add(row, spec.name, f"is required; must be {spec.rule_text()}", "missing")
        parsed[spec.name] = values

    frame = pd.DataFrame(parsed)
    for row, field, rule in cross_field_problems(frame, history=not scoring):
        add(row, field, rule, "cross")
    if n:
        ids = pd.Series(case_ids, dtype="object")
        dupes = ids.notna().to_numpy() & ids.duplicated(keep="first").to_numpy()
        for i in np.flatnonzero(dupes):
            add(
                int(i), "case_id", "appears more than once in the file; must be unique", "duplicate"
            )
    violations.sort(key=lambda v: (v.row, v.field))
    invalid = np.zeros(n, dtype=bool)
    for v in violations:
        invalid[v.row - 1] = True
    return ParsedRecords(frame, violations, unknown_columns, invalid)


def cross_field_problems(
    frame: Mapping[str, Any] | pd.DataFrame, *, history: bool
) -> Iterable[tuple[int, str, str]]:
    """The rules that tie fields together, as (row index, field, rule) triples.

    ``frame`` is a canonical frame or canonical columns (a mapping of arrays).
    """
    minors = np.asarray(frame["minor_dependants"], dtype=float)
    dependants = np.asarray(frame["dependants"], dtype=float)
    with np.errstate(invalid="ignore"):
        bad = minors > dependants
    for i in np.flatnonzero(bad):
        yield (
            int(i),
            "minor_dependants",
            f"{minors[i]:g} exceeds dependants ({dependants[i]:g}); must be ≤ dependants",
        )
    harm = np.asarray(frame["harm_outcome"], dtype=object)
    grade = np.asarray(frame["disability_grade"], dtype=float)
    assessed = np.isin(harm, GRADED_OUTCOMES)
    for i in np.flatnonzero(~np.isnan(grade) & ~assessed & pd.notna(harm)):
        yield (
            int(i),
            "disability_grade",
            f"is only assessed for injuries and sexual or psychological harm, not for "
            f"harm_outcome {harm[i]!r}",
        )
    yield from _office_problems(frame)
    yield from _version_problems(frame)
    if not history:
        return
    granted = np.asarray(frame["aid_granted"], dtype=float)
    amount = np.asarray(frame["aid_amount_yuan"], dtype=float)
    for i in np.flatnonzero((granted == 1.0) & np.isnan(amount)):
        yield int(i), "aid_amount_yuan", "is required when aid_granted is true"
    for i in np.flatnonzero((granted == 0.0) & ~np.isnan(amount)):
        yield int(i), "aid_amount_yuan", "must be empty when aid_granted is false"
    for i in np.flatnonzero((granted == 1.0) & (amount == 0.0)):
        yield int(i), "aid_amount_yuan", "must be above 0 when aid_granted is true"


def _office_problems(
    frame: Mapping[str, Any] | pd.DataFrame,
) -> Iterable[tuple[int, str, str]]:
    """An office lies in the province that decides: office_code starts with province_code."""
    if "office_code" not in frame:
        return
    office = np.asarray(frame["office_code"], dtype=object)
    province = np.asarray(frame["province_code"], dtype=object)
    for i in np.flatnonzero(pd.notna(office)):
        if isinstance(province[i], str) and office[i][:2] != province[i]:
            yield (
                int(i),
                "office_code",
                f"{office[i]!r} lies in province {office[i][:2]!r}, but province_code is "
                f"{province[i]!r}; the office code's first two digits must equal province_code",
            )


def _version_problems(
    frame: Mapping[str, Any] | pd.DataFrame,
) -> Iterable[tuple[int, str, str]]:
    """A record that declares contract_version 1.0 uses nothing a later version added."""
    if "contract_version" not in frame:
        return
    first = CONTRACT_VERSIONS[0]
    old = np.asarray(frame["contract_version"], dtype=object) == first
    if not old.any():
        return
    for spec in INPUT_FIELDS:
        if spec.name not in frame or not (spec.since != first or spec.added_values):
            continue
        values = pd.Series(np.asarray(frame[spec.name], dtype=object), dtype=object)
        if spec.since != first:
            for i in np.flatnonzero(old & values.notna().to_numpy()):
                yield (
                    int(i),
                    spec.name,
                    f"is a field of contract {spec.since}; a record that declares "
                    f"contract_version {first} must leave it empty",
                )
            continue
        allowed = ", ".join(v for v in spec.values if v not in spec.added_values)
        for i in np.flatnonzero(old & values.isin(spec.added_values).to_numpy()):
            yield (
                int(i),
                spec.name,
                f"{values.iloc[i]!r} is a value of contract {LATEST_VERSION}; a record that "
                f"declares contract_version {first} must use one of {allowed}",
            )


def parse_record(record: Mapping[str, Any]) -> ParsedRecords:
    """Parse one record sent for scoring (a JSON object) into a one-row canonical frame."""
    raw = pd.DataFrame({k: pd.Series([v], dtype=object) for k, v in record.items()})
    return parse_records(raw, scoring=True)


def wire_value(name: str, value: Any) -> Any:
    """A canonical value shown as it is on the wire (bools as bools, ints as ints, lists)."""
    spec = FIELD_BY_NAME.get(name)
    if spec is None or (_is_missing(value) and not (spec.kind is Kind.LIST and value == "")):
        return None
    if spec.kind is Kind.BOOL:
        return bool(value)
    if spec.kind is Kind.INT:
        return int(value)
    if spec.kind is Kind.NUMBER:
        return float(value)
    if spec.kind is Kind.LIST:
        return [] if value == "" else str(value).split("|")
    return value


def canonical_from_typed(record: Mapping[str, Any]) -> dict[str, Any]:
    """A validated record (wire types, as JSON holds them) in the canonical representation.

    No pandas on the way: this is the API's per-request path.
    """
    out: dict[str, Any] = {}
    for spec in INPUT_FIELDS:
        value = record.get(spec.name)
        if spec.kind in (Kind.INT, Kind.NUMBER, Kind.BOOL):
            out[spec.name] = np.nan if value is None else float(value)
        elif spec.kind is Kind.LIST:
            out[spec.name] = None if value is None else "|".join(sorted(set(value)))
        else:
            out[spec.name] = value
    return out
