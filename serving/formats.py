"""How pages show numbers, times and the service's words to Chinese readers.

Money as ``12,345 元``, probabilities as percentages, moments (stored in UTC) as
``2025-03-04 14:05`` Beijing time, contract values with the contract's own Chinese labels.
Pure functions: the templates and the charts call them, and tests compare a page's text with
the API's numbers through them.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from features.contract import FIELD_BY_NAME, PROVINCE_NAMES_ZH, Kind
from features.vectors import FEATURE_LABELS_ZH
from training.groups import GROUP_FIGURES_ZH as GROUP_FIGURES_ZH
from training.groups import GROUPS

# China keeps one offset all year (no daylight saving since 1991): a fixed zone is exact and
# needs no time-zone database.
BEIJING = dt.timezone(dt.timedelta(hours=8), "北京时间")
MISSING = "—"

LEAD_ZH = {
    "judicial_aid": "司法救助线索",
    "social_assistance": "社会救助转介线索",
    "civil_support": "民事支持起诉线索",
}
LEAD_SHORT_ZH = {
    "judicial_aid": "司法救助",
    "social_assistance": "社会救助",
    "civil_support": "支持起诉",
}
DECISION_ZH = {"accepted": "采纳", "adjusted": "调整", "rejected": "不采纳"}
REVIEW_STATUS_ZH = {"unreviewed": "未复核", **DECISION_ZH}
ELIGIBILITY_ZH = {
    "eligible": "符合救助条件",
    "excluded": "属不予救助情形",
    "needs_review": "需人工审查",
}
RULE_KIND_ZH = {"exclusion": "不予救助情形", "category": "救助情形", "ceiling": "金额上限"}
ROLE_ZH = {"reviewer": "复核人员", "admin": "管理员", "case_system": "业务系统"}
ALIAS_ZH = {"champion": "在用版本", "challenger": "候选版本"}
MONOTONE_ZH = {1: "只增不减", -1: "只减不增"}
PART_ZH = {"train": "训练", "validation": "验证", "holdout": "留出检验"}
AMOUNT_METRICS_ZH = {
    "amount_mae_yuan": "平均绝对误差（元）",
    "amount_rmse_yuan": "均方根误差（元）",
    "amount_mae_months": "平均绝对误差（月工资倍数）",
    "amount_interval_coverage": "80% 区间的实际覆盖率",
    "amount_interval_mean_width_yuan": "80% 区间平均宽度（元）",
    "amount_mae_ratio_to_oracle": "误差与最优可能之比",
    "amount_holdout_cases": "留出检验案件数",
}
GROUP_ZH = {"all": "全部案件", **{group.id: group.zh for group in GROUPS}}
"""The evaluation's groups by id (``training.groups``), with the whole holdout as ``all``."""
LEAD_METRICS_ZH = {
    "auc": "AUC（区分能力）",
    "pr_auc": "PR-AUC",
    "ece": "校准误差 ECE",
    "brier": "Brier 分数",
    "base_rate": "留出集实际比例",
    "oracle_auc": "最优可能 AUC",
}


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def number(value: Any, digits: int = 0) -> str:
    """A number with thousands separators (``12,345``); a dash when unknown."""
    if not _finite(value):
        return MISSING
    return f"{value:,.{digits}f}"


def yuan(value: Any, digits: int = 0) -> str:
    """An amount in yuan: ``12,345 元``."""
    shown = number(value, digits)
    return shown if shown == MISSING else f"{shown} 元"


def signed_yuan(value: Any) -> str:
    """A change in yuan with its sign: ``+1,234 元`` / ``−567 元``."""
    if not _finite(value):
        return MISSING
    if round(value) == 0:
        return "0 元"
    sign = "+" if value > 0 else "−"
    return f"{sign}{abs(value):,.0f} 元"


def percent(value: Any, digits: int = 1) -> str:
    """A probability or ratio as a percentage: ``37.5%``."""
    if not _finite(value):
        return MISSING
    return f"{value * 100:.{digits}f}%"


def months(value: Any) -> str:
    """Months of the wage base: ``3.2 个月``."""
    return MISSING if not _finite(value) else f"{value:.1f} 个月"


def signed(value: Any, digits: int = 2) -> str:
    """A contribution in its own unit with its sign (log-odds, months)."""
    if not _finite(value):
        return MISSING
    if round(value, digits) == 0:
        return f"{0:.{digits}f}"
    sign = "+" if value > 0 else "−"
    return f"{sign}{abs(value):.{digits}f}"


def log_odds(value: Any) -> str:
    """A score in log-odds, with a true minus sign: ``−1.70``."""
    if not _finite(value):
        return MISSING
    return f"{value:.2f}".replace("-", "−")


def in_lead_order(names: Any) -> list[str]:
    """Lead names in the order pages show them (judicial aid first), unknown ones last."""
    known = [name for name in LEAD_ZH if name in names]
    return known + sorted(name for name in names if name not in LEAD_ZH)


def local_time(moment: dt.datetime | str | None, pattern: str = "%Y-%m-%d %H:%M") -> str:
    """A stored moment (UTC, or its ISO text) as Beijing time: ``2025-03-04 14:05``."""
    if moment is None:
        return MISSING
    if isinstance(moment, str):
        text = moment
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            return text
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(BEIJING).strftime(pattern)


def local_date(moment: dt.datetime | str | None) -> str:
    """The Beijing date of a stored moment: ``2025-03-04`` (the date pages and sources show)."""
    return local_time(moment, "%Y-%m-%d")


def province(code: str | None) -> str:
    """A province code with its name: ``江苏（32）``."""
    if not code:
        return MISSING
    name = PROVINCE_NAMES_ZH.get(code)
    return f"{name}（{code}）" if name else code


def feature_label(name: str) -> str:
    """The Chinese label of a model feature."""
    return FEATURE_LABELS_ZH.get(name, name)


def field_label(name: str) -> str:
    """The contract's Chinese label of a field (its wire name when it is none)."""
    spec = FIELD_BY_NAME.get(name)
    return spec.zh if spec is not None else name


def _token_zh(name: str, token: Any) -> str:
    spec = FIELD_BY_NAME.get(name)
    if spec is not None and spec.labels_zh and token in spec.values:
        return spec.labels_zh[spec.values.index(token)]
    return str(token)


def field_value(name: str, value: Any) -> str:
    """A contract field's value as a reviewer reads it (labels, 是/否, yuan, 未知)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "未知"
    spec = FIELD_BY_NAME.get(name)
    if spec is None:
        return str(value)
    if spec.kind is Kind.BOOL:
        return "是" if value in (True, 1, 1.0) else "否"
    if spec.kind is Kind.LIST:
        return "、".join(_token_zh(name, v) for v in value) if value else "无"
    if spec.kind is Kind.ENUM:
        return province(value) if name == "province_code" else _token_zh(name, value)
    if spec.kind is Kind.NUMBER:
        return yuan(value)
    if spec.kind is Kind.INT:
        return str(value) if name in ("decision_year",) else number(value)
    return str(value)


def feature_value(feature: str, value: Any) -> str:
    """A model feature's value beside its reason (a category's label, or the number)."""
    if value is None:
        return "未知"
    if feature in FIELD_BY_NAME:
        return field_value(feature, value)
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)


def years(values: Any) -> str:
    """A list of years as a span: ``2016–2023 年`` (or the single year)."""
    found = sorted(int(v) for v in values or [])
    if not found:
        return MISSING
    if found[0] == found[-1]:
        return f"{found[0]} 年"
    return f"{found[0]}–{found[-1]} 年"
