"""Department-failure rules (部门履职线索): each one a small expression tree, defined once as data.

A rule says that a case card and the registries show another department has not done its
duty towards the victim's household (a disability grade without a 残疾人证; income below
the 低保 line outside 低保; a minor left without carers outside the child registry; a
breadwinner's death with minors and no temporary relief). The rules live in
``features/config/department_rules.yaml`` with their thresholds and a version.

Each condition is a tree of the node types below, over the columns that
:func:`department_facts` computes. :func:`evaluate` turns a tree into a boolean numpy array
over a DataFrame with SQL's three-valued logic (Kleene: a comparison with an unknown value is
unknown; AND is false if any side is known false; OR is true if any side is known true; NOT
unknown is unknown), and a rule **fires only where its condition is known true**. That is
exactly how Spark and SQL evaluate the same tree in a ``filter``/``when``, so a compiler of
these trees to Spark column expressions gives the same answers (node by node:
``Col`` → ``F.col``, ``Const`` → ``F.lit``, ``Arith`` → ``+ - * /`` (division by zero is
null), ``Compare`` → ``== != < <= > >=``, ``All``/``AnyOf``/``Not`` → ``& | ~``,
``IsIn`` → ``.isin``, ``IsNull`` → ``.isNull``).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml

from features.registries import DibaoTable, RegistryConfigError

# --- the tree ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Col:
    """The value of a column of the facts frame (NaN/None = unknown)."""

    name: str


@dataclass(frozen=True)
class Const:
    """A constant (a number or a token)."""

    value: float | str


@dataclass(frozen=True)
class Arith:
    """``left op right``; unknown if either is, and a division by zero is unknown."""

    op: Literal["add", "sub", "mul", "div"]
    left: Value
    right: Value


@dataclass(frozen=True)
class Compare:
    """``left op right``; unknown if either side is."""

    op: Literal["eq", "ne", "lt", "le", "gt", "ge"]
    left: Value
    right: Value


@dataclass(frozen=True)
class All:
    """Every item is true (SQL AND)."""

    items: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    """At least one item is true (SQL OR)."""

    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    """The item is false (SQL NOT; unknown stays unknown)."""

    item: Condition


@dataclass(frozen=True)
class IsIn:
    """The value is one of ``values`` (unknown if the value is)."""

    operand: Value
    values: tuple[float | str, ...]


@dataclass(frozen=True)
class IsNull:
    """The value is unknown (never itself unknown)."""

    operand: Value


Value = Col | Const | Arith
Condition = Compare | All | AnyOf | Not | IsIn | IsNull
ARITH_OPS = ("add", "sub", "mul", "div")
COMPARE_OPS = ("eq", "ne", "lt", "le", "gt", "ge")
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}


def parse_value(node: Any, params: Mapping[str, Any]) -> Value:
    """A value node from its config form (params are resolved to constants here)."""
    if not isinstance(node, dict) or len(node) != 1:
        raise RegistryConfigError(f"a value node is a one-key mapping, got {node!r}")
    ((kind, arg),) = node.items()
    if kind == "col":
        return Col(str(arg))
    if kind == "const":
        return Const(arg if isinstance(arg, str) else float(arg))
    if kind == "param":
        if arg not in params:
            raise RegistryConfigError(f"unknown param {arg!r}")
        return Const(float(params[arg]))
    if kind in ARITH_OPS:
        left, right = arg
        return Arith(kind, parse_value(left, params), parse_value(right, params))
    raise RegistryConfigError(f"unknown value node {kind!r}")


def parse_condition(node: Any, params: Mapping[str, Any]) -> Condition:
    """A condition node from its config form."""
    if not isinstance(node, dict) or len(node) != 1:
        raise RegistryConfigError(f"a condition node is a one-key mapping, got {node!r}")
    ((kind, arg),) = node.items()
    if kind in COMPARE_OPS:
        left, right = arg
        return Compare(kind, parse_value(left, params), parse_value(right, params))
    if kind == "all":
        return All(tuple(parse_condition(n, params) for n in arg))
    if kind == "any":
        return AnyOf(tuple(parse_condition(n, params) for n in arg))
    if kind == "not":
        return Not(parse_condition(arg, params))
    if kind == "isnull":
        return IsNull(parse_value(arg, params))
    if kind == "isin":
        operand, values = arg
        return IsIn(parse_value(operand, params), tuple(values))
    raise RegistryConfigError(f"unknown condition node {kind!r}")


def columns_of(node: Value | Condition) -> Iterator[str]:
    """Every column a tree reads, in order of appearance (the facts a rule shows)."""
    if isinstance(node, Col):
        yield node.name
    elif isinstance(node, Arith | Compare):
        yield from columns_of(node.left)
        yield from columns_of(node.right)
    elif isinstance(node, All | AnyOf):
        for item in node.items:
            yield from columns_of(item)
    elif isinstance(node, Not):
        yield from columns_of(node.item)
    elif isinstance(node, IsIn | IsNull):
        yield from columns_of(node.operand)


# --- evaluation ----------------------------------------------------------------------------


def _value(node: Value, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(values, unknown mask) of a value node."""
    n = len(frame)
    if isinstance(node, Col):
        values = frame[node.name].to_numpy()
        if values.dtype.kind in "fiub":
            values = values.astype(float)
            return values, np.isnan(values)
        values = values.astype(object)
        return values, pd.isna(values)
    if isinstance(node, Const):
        return np.full(n, node.value, dtype=object if isinstance(node.value, str) else float), (
            np.zeros(n, dtype=bool)
        )
    left, left_null = _value(node.left, frame)
    right, right_null = _value(node.right, frame)
    null = left_null | right_null
    a = np.where(null, np.nan, left).astype(float)
    b = np.where(null, np.nan, right).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if node.op == "add":
            out = a + b
        elif node.op == "sub":
            out = a - b
        elif node.op == "mul":
            out = a * b
        else:
            null = null | (b == 0)
            out = np.where(null, np.nan, a / np.where(b == 0, 1.0, b))
    return out, null | np.isnan(out)


def _truth(node: Condition, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(true, known) masks of a condition under three-valued logic."""
    n = len(frame)
    if isinstance(node, Compare):
        left, left_null = _value(node.left, frame)
        right, right_null = _value(node.right, frame)
        known = ~(left_null | right_null)
        true = np.zeros(n, dtype=bool)
        if known.any():
            true[known] = np.asarray(_COMPARE[node.op](left[known], right[known]), dtype=bool)
        return true, known
    if isinstance(node, IsNull):
        _, null = _value(node.operand, frame)
        return null.copy(), np.ones(n, dtype=bool)
    if isinstance(node, IsIn):
        values, null = _value(node.operand, frame)
        known = ~null
        true = np.zeros(n, dtype=bool)
        true[known] = pd.Series(values[known], dtype=object).isin(list(node.values)).to_numpy()
        return true, known
    if isinstance(node, Not):
        true, known = _truth(node.item, frame)
        return known & ~true, known
    parts = [_truth(item, frame) for item in node.items]
    if isinstance(node, All):
        all_true = np.logical_and.reduce([t & k for t, k in parts])
        any_false = np.logical_or.reduce([k & ~t for t, k in parts])
        return all_true, all_true | any_false
    any_true = np.logical_or.reduce([t & k for t, k in parts])
    all_false = np.logical_and.reduce([k & ~t for t, k in parts])
    return any_true, any_true | all_false


def evaluate(condition: Condition, frame: pd.DataFrame) -> np.ndarray:
    """Where ``condition`` is known true in each row of ``frame`` (unknown → False)."""
    true, known = _truth(condition, frame)
    return true & known


# --- the rules -----------------------------------------------------------------------------


def default_rules_path() -> Path:
    """The department rules shipped with the project."""
    return Path(str(resources.files("features") / "config" / "department_rules.yaml"))


@dataclass(frozen=True)
class DepartmentRule:
    """One department-failure rule: its id, its text, the departments it reads, its tree."""

    id: str
    zh: str
    act_department_zh: str
    departments: tuple[str, ...]
    when: Condition

    @property
    def kind(self) -> str:
        """The lead kind a hit of this rule registers as."""
        return f"department_failure:{self.id}"

    @property
    def facts(self) -> tuple[str, ...]:
        """The columns the rule reads (shown with each hit), each once."""
        return tuple(dict.fromkeys(columns_of(self.when)))


@dataclass(frozen=True)
class DepartmentRules:
    """The versioned set of rules and their thresholds."""

    version: str
    params: dict[str, float]
    rules: tuple[DepartmentRule, ...]

    @classmethod
    def load(cls, path: Path | None = None) -> DepartmentRules:
        """Read the rules (default: the shipped config)."""
        path = path or default_rules_path()
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
            params = {str(k): float(v) for k, v in raw["params"].items()}
            rules = tuple(
                DepartmentRule(
                    id=str(rule_id),
                    zh=str(spec["zh"]),
                    act_department_zh=str(spec["act_department_zh"]),
                    departments=tuple(str(d) for d in spec["departments"]),
                    when=parse_condition(spec["when"], params),
                )
                for rule_id, spec in raw["rules"].items()
            )
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
            raise RegistryConfigError(f"{path}: not a usable rules config: {exc}") from exc
        return cls(str(raw["version"]), params, rules)

    def apply(self, facts: pd.DataFrame) -> dict[str, np.ndarray]:
        """Rule id → where it fires."""
        return {rule.id: evaluate(rule.when, facts) for rule in self.rules}


FACT_COLUMNS = (
    "disability_grade",
    "disability_certificate",
    "monthly_household_income_yuan",
    "household_size",
    "dibao_standard_yuan",
    "dibao_or_tekun_registry",
    "low_income_status",
    "victim_age",
    "crime_type",
    "harm_outcome",
    "minor_dependants",
    "registry_child_without_carer",
    "child_flag_card",
    "registry_temporary_relief",
)
"""The columns the rules read; :func:`department_facts` makes them from a card and the join."""


def department_facts(cards: pd.DataFrame, joined: pd.DataFrame, dibao: DibaoTable) -> pd.DataFrame:
    """The facts the department rules read, one row per card.

    Args:
        cards: canonical case cards (``features.contract.parse_records``).
        joined: :func:`features.registries.join_registries` of the same cards (merged
            ``low_income_status`` and ``disability_certificate``, ``registry_<kind>``).
        dibao: the 低保 standards; the province's line for the decision year (rural line for
            a rural household) becomes ``dibao_standard_yuan``.
    """
    line, _ = dibao.standard(
        cards["province_code"].to_numpy(dtype=object),
        cards["decision_year"].to_numpy(dtype=float),
        cards["rural_hukou"].to_numpy(dtype=float),
    )
    card_flags = joined["registry_flags_card"].to_numpy(dtype=object)
    child_card = np.array(
        [
            np.nan if not isinstance(f, str) else float("orphan_or_left_behind_child" in f)
            for f in card_flags
        ]
    )
    return pd.DataFrame(
        {
            "disability_grade": cards["disability_grade"].to_numpy(dtype=float),
            "disability_certificate": joined["disability_certificate"].to_numpy(dtype=float),
            "monthly_household_income_yuan": cards["monthly_household_income_yuan"].to_numpy(
                dtype=float
            ),
            "household_size": cards["household_size"].to_numpy(dtype=float),
            "dibao_standard_yuan": line,
            "dibao_or_tekun_registry": joined["dibao_or_tekun_registry"].to_numpy(dtype=float),
            "low_income_status": pd.Series(
                joined["low_income_status"].to_numpy(dtype=object), dtype=object
            ),
            "victim_age": cards["victim_age"].to_numpy(dtype=float),
            "crime_type": pd.Series(cards["crime_type"].to_numpy(dtype=object), dtype=object),
            "harm_outcome": pd.Series(cards["harm_outcome"].to_numpy(dtype=object), dtype=object),
            "minor_dependants": cards["minor_dependants"].to_numpy(dtype=float),
            "registry_child_without_carer": joined["registry_child_without_carer"].to_numpy(
                dtype=float
            ),
            "child_flag_card": child_card,
            "registry_temporary_relief": joined["registry_temporary_relief"].to_numpy(dtype=float),
        }
    )


def hit_facts(rule: DepartmentRule, facts: pd.DataFrame, rows: np.ndarray) -> list[dict[str, Any]]:
    """The facts each hit in ``rows`` read, JSON-able (unknown = None)."""
    shown = facts.iloc[np.asarray(rows, dtype=int)][list(rule.facts)].astype(object)
    return [
        {str(name): _plain(value) for name, value in record.items()}
        for record in shown.to_dict("records")
    ]


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, float | np.floating | int | np.integer):
        return float(value)
    return str(value)
