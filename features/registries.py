"""Other departments' registries (数据管理): their shape, their validation, and the join.

``features/config/registries.yaml`` lists every kind of registry (低保, 特困, 临时救助, 残联,
大病, 人社, 妇联, 退役军人, 孤儿及事实无人抚养儿童): its Chinese name, its statuses, its
columns and the contract field it answers for. :func:`validate_extract` checks an extract
against it before anything is stored (every problem names row, column and rule);
:func:`join_registries` gives each case card what the registries knew on a date, each value
beside the card's own and with its source (department, snapshot date). :class:`DibaoTable`
is the versioned table of each province's 低保 standard the department rules compare with.

All pure: pandas/numpy in, pandas/numpy out; storage lives in ``serving.registry_store``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from features.contract import REGISTRY_FLAGS

PERSON_KEY = re.compile(r"^[0-9a-f]{64}$")
COMMON_COLUMNS = ("person_key", "status", "valid_from", "valid_to")
_TRUE = {"true": True, "1": True, "false": False, "0": False}
MAX_PROBLEMS = 200
"""Problems kept per refused extract (the count of the rest is reported)."""


class RegistryConfigError(ValueError):
    """The registries' config is unusable."""


def default_config_path() -> Path:
    """The registries' config shipped with the project."""
    return Path(str(resources.files("features") / "config" / "registries.yaml"))


@dataclass(frozen=True)
class ColumnSpec:
    """One attribute column of a registry."""

    name: str
    type: str  # int | number | bool | enum | text
    required: bool
    zh: str
    minimum: float | None = None
    maximum: float | None = None
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class DepartmentSpec:
    """One kind of registry: what its rows look like and what it answers for."""

    kind: str
    zh: str
    authority_zh: str
    statuses: dict[str, str]
    active: tuple[str, ...]
    supplies: dict[str, Any]
    columns: tuple[ColumnSpec, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        """Every column an extract of this kind has (common ones first)."""
        return (*COMMON_COLUMNS, *(c.name for c in self.columns))


@dataclass(frozen=True)
class RegistryConfig:
    """Every registry kind, from one versioned config."""

    version: str
    departments: dict[str, DepartmentSpec]

    @classmethod
    def load(cls, path: Path | None = None) -> RegistryConfig:
        """Read the config (default: the shipped one)."""
        path = path or default_config_path()
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
            departments = {
                kind: DepartmentSpec(
                    kind=kind,
                    zh=str(spec["zh"]),
                    authority_zh=str(spec["authority_zh"]),
                    statuses={str(k): str(v) for k, v in spec["statuses"].items()},
                    active=tuple(str(s) for s in spec["active"]),
                    supplies=dict(spec.get("supplies") or {}),
                    columns=tuple(
                        ColumnSpec(
                            name=str(name),
                            type=str(c["type"]),
                            required=bool(c.get("required", False)),
                            zh=str(c["zh"]),
                            minimum=c.get("min"),
                            maximum=c.get("max"),
                            values=tuple(str(v) for v in c.get("values", ())),
                        )
                        for name, c in (spec.get("columns") or {}).items()
                    ),
                )
                for kind, spec in raw["departments"].items()
            }
            return cls(version=str(raw["version"]), departments=departments)
        except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
            raise RegistryConfigError(f"{path}: not a usable registries config: {exc}") from exc

    def department(self, kind: str) -> DepartmentSpec:
        """The spec of ``kind``, or a RegistryConfigError listing the known kinds."""
        if kind not in self.departments:
            raise RegistryConfigError(
                f"unknown department {kind!r}; one of {', '.join(self.departments)}"
            )
        return self.departments[kind]

    def flag_departments(self) -> dict[str, str]:
        """Department → the contract registry flag it answers for."""
        return {
            kind: str(spec.supplies["registry_flag"])
            for kind, spec in self.departments.items()
            if "registry_flag" in spec.supplies
        }


@dataclass(frozen=True)
class ExtractProblem:
    """One broken rule of an extract: ``row`` is 1-based (0 = the header)."""

    row: int
    column: str
    rule: str

    def describe(self) -> str:
        """One line a clerk can read."""
        where = "header" if self.row == 0 else f"row {self.row}"
        return f"{where}: {self.column}: {self.rule}"


class ExtractError(ValueError):
    """An extract breaks the registry's shape; nothing of it may be imported."""

    def __init__(self, department: str, problems: list[ExtractProblem], total: int) -> None:
        self.department = department
        self.problems = problems
        self.total = total
        super().__init__(f"{department}: {total} problem(s); nothing imported (登记数据校验失败)")


def _blank(series: pd.Series) -> np.ndarray:
    text = series.astype("object")
    return (text.isna() | text.astype(str).str.strip().eq("")).to_numpy()


def _dates(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """ISO dates as datetime64[D] and the mask of unreadable non-blank cells."""
    blank = _blank(series)
    parsed = pd.to_datetime(series.where(~blank), format="%Y-%m-%d", errors="coerce")
    bad = ~blank & parsed.isna().to_numpy()
    return parsed.to_numpy(dtype="datetime64[D]"), bad


def _attribute(spec: ColumnSpec, series: pd.Series) -> tuple[list[Any], np.ndarray, str]:
    """Parsed values (None = blank), the bad-cell mask and the rule they break."""
    blank = _blank(series)
    text = series.astype("object").where(~blank, None)
    if spec.type in ("int", "number"):
        numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
        bad = ~blank & np.isnan(numbers)
        if spec.type == "int":
            bad |= ~np.isnan(numbers) & (numbers != np.round(numbers))
        with np.errstate(invalid="ignore"):
            if spec.minimum is not None:
                bad |= numbers < spec.minimum
            if spec.maximum is not None:
                bad |= numbers > spec.maximum
        low = "" if spec.minimum is None else f" ≥ {spec.minimum:g}"
        high = "" if spec.maximum is None else f" ≤ {spec.maximum:g}"
        values: list[Any] = [
            None if np.isnan(v) else (int(v) if spec.type == "int" else float(v)) for v in numbers
        ]
        return (
            values,
            bad,
            f"must be {'a whole number' if spec.type == 'int' else 'a number'}{low}{high}",
        )
    if spec.type == "bool":
        mapped = [None if t is None else _TRUE.get(str(t).strip().lower()) for t in text]
        bad = np.array([t is not None and m is None for t, m in zip(text, mapped, strict=True)])
        return mapped, bad.astype(bool), "must be true/false or 1/0"
    if spec.type == "enum":
        strings = [None if t is None else str(t).strip() for t in text]
        bad = np.array([s is not None and s not in spec.values for s in strings], dtype=bool)
        return strings, bad, f"must be one of {', '.join(spec.values)}"
    strings = [None if t is None else str(t).strip()[:200] for t in text]
    return strings, np.zeros(len(strings), dtype=bool), ""


def validate_extract(raw: pd.DataFrame, spec: DepartmentSpec, as_of: dt.date) -> pd.DataFrame:
    """Check a department's extract; return its canonical rows or raise ExtractError.

    Canonical rows: ``person_key``, ``status``, ``valid_from``/``valid_to`` (ISO text,
    ``valid_to`` None = open) and ``attributes`` (JSON text of the kind's columns).
    Every problem is found before raising, so the clerk fixes the file in one pass.
    """
    problems: list[ExtractProblem] = []
    columns = [str(c) for c in raw.columns]
    raw = raw.set_axis(columns, axis=1)
    expected = spec.column_names
    for name in expected:
        required = name in ("person_key", "status", "valid_from") or any(
            c.name == name and c.required for c in spec.columns
        )
        if name not in columns and required:
            problems.append(ExtractProblem(0, name, "required column is missing"))
    for name in columns:
        if name not in expected:
            problems.append(
                ExtractProblem(0, name, f"not a column of {spec.kind} ({', '.join(expected)})")
            )
    if problems:
        raise ExtractError(spec.kind, problems, len(problems))
    n = len(raw)
    if n == 0:
        raise ExtractError(spec.kind, [ExtractProblem(0, "-", "the extract has no rows")], 1)

    def add(mask: np.ndarray, column: str, rule: str) -> None:
        for i in np.flatnonzero(mask):
            problems.append(ExtractProblem(int(i) + 1, column, rule))

    keys = raw["person_key"].astype("object").where(~_blank(raw["person_key"]), "")
    add(
        ~keys.astype(str).str.fullmatch(PERSON_KEY.pattern).to_numpy(),
        "person_key",
        "must be 64 lowercase hex characters (made by aidrec pseudonymise), never an ID number",
    )
    status = (
        raw["status"].astype("object").where(~_blank(raw["status"]), "").astype(str).str.strip()
    )
    add(
        ~status.isin(list(spec.statuses)).to_numpy(),
        "status",
        f"must be one of {', '.join(spec.statuses)}",
    )
    start, bad_start = _dates(raw["valid_from"])
    add(_blank(raw["valid_from"]), "valid_from", "is required (YYYY-MM-DD)")
    add(bad_start, "valid_from", "must be a date YYYY-MM-DD")
    if "valid_to" in raw.columns:
        end, bad_end = _dates(raw["valid_to"])
    else:
        end, bad_end = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]"), np.zeros(n, bool)
    add(bad_end, "valid_to", "must be a date YYYY-MM-DD or empty")
    limit = np.datetime64(as_of, "D")
    add(~np.isnat(start) & (start > limit), "valid_from", f"is after the extract's date {as_of}")
    add(
        ~np.isnat(start) & ~np.isnat(end) & (end < start),
        "valid_to",
        "is before valid_from",
    )
    attributes: dict[str, list[Any]] = {}
    for column in spec.columns:
        if column.name not in raw.columns:
            attributes[column.name] = [None] * n
            continue
        values, bad, rule = _attribute(column, raw[column.name])
        add(bad, column.name, rule)
        if column.required:
            add(_blank(raw[column.name]), column.name, "is required")
        attributes[column.name] = values
    if problems:
        problems.sort(key=lambda p: (p.row, p.column))
        raise ExtractError(spec.kind, problems[:MAX_PROBLEMS], len(problems))
    names = list(attributes)
    packed = (
        [
            json.dumps(dict(zip(names, values, strict=True)), ensure_ascii=False, sort_keys=True)
            for values in zip(*attributes.values(), strict=True)
        ]
        if names
        else ["{}"] * n
    )
    out = pd.DataFrame(
        {
            "person_key": keys.astype(str).to_numpy(),
            "status": status.to_numpy(),
            "valid_from": start.astype(str),
            "attributes": packed,
        }
    )
    out.insert(
        3, "valid_to", pd.Series([None if np.isnat(e) else str(e) for e in end], dtype=object)
    )
    return out


def extract_digest(rows: pd.DataFrame) -> str:
    """A fingerprint of canonical rows (re-importing the same extract changes nothing)."""
    return hashlib.sha256(rows.to_csv(index=False).encode("utf-8")).hexdigest()


# --- the join --------------------------------------------------------------------------------

JOINED_FIELDS = ("low_income_status", "disability_certificate", "registry_flags")
"""The contract fields the registries answer for; each gets ``_card``, ``_registry``, source."""


def card_dates(decision_years: np.ndarray, as_of: dt.date | None) -> np.ndarray:
    """The date a card's registries are read at: ``as_of``, else 31 December of its year.

    The contract carries the decision year, not the day; the year's end stands in for it.
    """
    n = len(decision_years)
    if as_of is not None:
        return np.full(n, np.datetime64(as_of, "D"))
    years = np.asarray(decision_years, dtype=float)
    text = np.where(
        np.isnan(years), "NaT", np.char.add(np.nan_to_num(years).astype(int).astype(str), "-12-31")
    )
    return text.astype("datetime64[D]")


RowTable = pd.DataFrame | Mapping[str, np.ndarray]
"""A snapshot's canonical rows (see :func:`validate_extract`): a DataFrame, or the same
columns as arrays (the live join's few rows, read without building a DataFrame)."""
SMALL_JOIN = 256
"""Cards + rows up to which a department's person-key join is a plain loop: numpy's and
pandas' fixed cost per call (~0.1 ms) would dwarf it for the one card of a live answer."""


def _column(table: RowTable, name: str) -> np.ndarray:
    """One column of ``table`` as an object array."""
    values = table[name]
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype=object)
    return np.asarray(values, dtype=object)


def _present(
    keys: np.ndarray, dates: np.ndarray, rows: RowTable | None, spec: DepartmentSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Per card: any active row valid on its date, and the (card, row position) pairs.

    The pairs are sorted by card, then row. Small inputs (a live answer) go through
    :func:`_pairs_small`, large ones (a screening chunk) through :func:`_pairs_vectorised`;
    both give the same pairs, and everything after them is shared.
    """
    n = len(keys)
    found = np.zeros(n, dtype=bool)
    m = 0 if rows is None else len(rows["person_key"])
    if rows is None or not m:
        return found, np.zeros((0, 2), dtype=int)
    pairs = _pairs_small if n + m <= SMALL_JOIN else _pairs_vectorised
    hits = pairs(keys, np.asarray(dates, dtype="datetime64[D]"), rows, spec)
    found[hits[:, 0]] = True
    return found, hits


def _pairs_small(
    keys: np.ndarray, dates: np.ndarray, rows: RowTable, spec: DepartmentSpec
) -> np.ndarray:
    """:func:`_present`'s pairs by a plain loop (few cards and rows)."""
    cards: dict[str, list[int]] = {}
    for card, person in enumerate(keys):
        if isinstance(person, str):
            cards.setdefault(person, []).append(card)
    found: list[tuple[int, int]] = []
    for row, (person, status, start, end) in enumerate(
        zip(*(_column(rows, name) for name in COMMON_COLUMNS), strict=True)
    ):
        if person not in cards or status not in spec.active:
            continue
        first = np.datetime64(start, "D")
        last = np.datetime64(end, "D") if isinstance(end, str) else None
        for card in cards[person]:
            day = dates[card]
            if first <= day and (last is None or last >= day):
                found.append((card, row))
    found.sort()
    return np.array(found, dtype=int).reshape(-1, 2)


def _pairs_vectorised(
    keys: np.ndarray, dates: np.ndarray, rows: RowTable, spec: DepartmentSpec
) -> np.ndarray:
    """:func:`_present`'s pairs: a many-to-many equi-join on ``person_key`` in numpy."""
    none = np.zeros((0, 2), dtype=int)
    active = np.flatnonzero(pd.Series(rows["status"]).isin(spec.active).to_numpy())
    cards = np.flatnonzero(pd.notna(keys))
    if not len(active) or not len(cards):
        return none
    row_keys = _column(rows, "person_key")[active]
    codes, _ = pd.factorize(np.concatenate([np.asarray(keys, dtype=object)[cards], row_keys]))
    card_codes, row_codes = codes[: len(cards)], codes[len(cards) :]
    order = np.argsort(card_codes, kind="stable")
    ordered = card_codes[order]
    low = np.searchsorted(ordered, row_codes, "left")
    counts = np.searchsorted(ordered, row_codes, "right") - low
    total = int(counts.sum())
    if not total:
        return none
    first = np.repeat(np.cumsum(counts) - counts, counts)
    pair_card = cards[order[np.repeat(low, counts) + np.arange(total) - first]]
    pair_row = active[np.repeat(np.arange(len(active)), counts)]
    start = _column(rows, "valid_from")[pair_row].astype("datetime64[D]")
    end = pd.to_datetime(pd.Series(_column(rows, "valid_to")[pair_row], dtype=object)).to_numpy(
        dtype="datetime64[D]"
    )
    day = dates[pair_card]
    valid = (start <= day) & (np.isnat(end) | (end >= day))
    hits = np.column_stack([pair_card[valid], pair_row[valid]]).astype(int)
    return hits[np.lexsort((hits[:, 1], hits[:, 0]))]


def join_registries(
    cards: pd.DataFrame,
    rows: Mapping[str, RowTable],
    snapshots: Mapping[str, str],
    dates: np.ndarray,
    config: RegistryConfig,
) -> pd.DataFrame:
    """What the registries knew of each card's applicant on its date, beside the card.

    Args:
        cards: canonical case cards (``person_key``, the three joined fields).
        rows: department → its snapshot's canonical rows (see :func:`validate_extract`).
        snapshots: department → the snapshot date (ISO) of ``rows`` (数据来源).
        dates: the date each card is read at (see :func:`card_dates`).
        config: the registries' config.

    Returns:
        Aligned with ``cards``: for each joined field the merged value (the registry's where
        it knows, else the card's), ``<field>_card``, ``<field>_registry`` and
        ``<field>_source``; per department ``registry_<kind>`` (1.0 covered, 0.0 known not
        covered, NaN no snapshot or no person key); ``dibao_or_tekun_registry``;
        ``disability_level_registry``; and ``registry_sources`` (JSON list of the
        departments that hold the person, each with its snapshot date).
    """
    out = join_registry_columns(join_inputs(cards), rows, snapshots, dates, config)
    return pd.DataFrame(
        {
            name: pd.Series(values, dtype=object, index=cards.index)
            if values.dtype == object
            else pd.Series(values, index=cards.index)
            for name, values in out.items()
        }
    )


def join_inputs(
    cards: pd.DataFrame | Mapping[str, Any], rows: Any = slice(None)
) -> dict[str, np.ndarray]:
    """The card columns :func:`join_registry_columns` reads, in the dtypes it expects.

    ``cards`` is a frame or a mapping of columns; ``rows`` selects some of them. The
    certificate is a float (1, 0 or NaN), the rest objects.
    """
    return {
        name: np.asarray(
            np.asarray(cards[name])[rows],
            dtype=float if name == "disability_certificate" else object,
        )
        for name in ("person_key", *JOINED_FIELDS)
    }


def join_registry_columns(
    cards: Mapping[str, np.ndarray],
    rows: Mapping[str, RowTable],
    snapshots: Mapping[str, str],
    dates: np.ndarray,
    config: RegistryConfig,
) -> dict[str, np.ndarray]:
    """:func:`join_registries` as arrays (no DataFrame: the live answer's cheap form).

    ``cards`` is what :func:`join_inputs` gives; the columns are those of
    :func:`join_registries`, in its order.
    """
    keys = _text(cards["person_key"])
    n = len(keys)
    has_key = pd.notna(keys)
    out: dict[str, np.ndarray] = {}
    present: dict[str, np.ndarray] = {}
    held: list[list[dict[str, str]]] = [[] for _ in range(n)]
    level = np.full(n, np.nan)
    certified = np.zeros(n, dtype=bool)
    for kind, spec in config.departments.items():
        if kind not in snapshots:
            out[f"registry_{kind}"] = np.full(n, np.nan)
            continue
        table = rows.get(kind)
        found, hits = _present(keys, dates, table, spec)
        present[kind] = found
        out[f"registry_{kind}"] = np.where(has_key, found.astype(float), np.nan)
        field = field_of(spec)
        for card in np.unique(hits[:, 0]) if len(hits) else []:
            held[card].append(
                {
                    "department": kind,
                    "department_zh": spec.zh,
                    "snapshot": snapshots[kind],
                    "field": field,
                }
            )
        if kind == "disability" and len(hits) and table is not None:
            attrs = [json.loads(a) for a in _column(table, "attributes")[hits[:, 1]]]
            for (card, _row), attr in zip(hits, attrs, strict=True):
                if attr.get("certificate"):
                    certified[card] = True
                    lv = attr.get("disability_level")
                    if lv is not None and (np.isnan(level[card]) or lv < level[card]):
                        level[card] = lv

    def known(*kinds: str) -> np.ndarray:
        return has_key & all(k in snapshots for k in kinds)

    # low-income status: 特困 before 低保 (the stricter status), None when neither holds
    registry_low = np.full(n, None, dtype=object)
    for kind in ("dibao", "tekun"):  # tekun last: it wins
        if kind in present:
            registry_low[present[kind] & has_key] = config.departments[kind].supplies[
                "low_income_status"
            ]
    either = np.zeros(n, dtype=bool)
    for kind in ("dibao", "tekun"):
        either |= present.get(kind, np.zeros(n, dtype=bool))
    out["dibao_or_tekun_registry"] = np.where(
        has_key & either, 1.0, np.where(known("dibao", "tekun"), 0.0, np.nan)
    )
    card_low = _text(cards["low_income_status"])
    out["low_income_status_card"] = card_low
    out["low_income_status_registry"] = registry_low
    out["low_income_status"] = np.where(pd.notna(registry_low), registry_low, card_low)
    out["low_income_status_source"] = _source_text(pd.notna(registry_low), registry_low, snapshots)

    card_cert = np.asarray(cards["disability_certificate"], dtype=float)
    registry_cert = np.where(known("disability"), certified.astype(float), np.nan)
    out["disability_certificate_card"] = card_cert
    out["disability_certificate_registry"] = registry_cert
    out["disability_certificate"] = np.where(np.isnan(registry_cert), card_cert, registry_cert)
    cert_source = np.full(n, None, dtype=object)
    cert_source[~np.isnan(registry_cert)] = f"disability@{snapshots.get('disability', '')}"
    out["disability_certificate_source"] = cert_source
    out["disability_level_registry"] = level

    flag_kinds = {k: f for k, f in config.flag_departments().items() if k in snapshots}
    card_flags = _text(cards["registry_flags"])
    registry_flags = np.full(n, None, dtype=object)
    if flag_kinds:
        registry_flags[has_key] = ""
        flag_sources = np.full(n, "", dtype=object)
        for flag in sorted(REGISTRY_FLAGS):
            for kind, supplied in flag_kinds.items():
                if supplied != flag:
                    continue
                hit = present[kind] & has_key
                registry_flags[hit] = np.where(
                    registry_flags[hit] == "", flag, registry_flags[hit] + "|" + flag
                )
                tag = f"{kind}@{snapshots[kind]}"
                flag_sources[hit] = np.where(
                    flag_sources[hit] == "", tag, flag_sources[hit] + ";" + tag
                )
        flag_sources[flag_sources == ""] = None
        out["registry_flags_source"] = flag_sources
    else:
        out["registry_flags_source"] = np.full(n, None, dtype=object)
    out["registry_flags_card"] = card_flags
    out["registry_flags_registry"] = registry_flags
    out["registry_flags"] = _union_flags(card_flags, registry_flags)
    out["registry_sources"] = np.array(
        [json.dumps(h, ensure_ascii=False) if h else None for h in held], dtype=object
    )
    return out


def _text(values: np.ndarray) -> np.ndarray:
    """Text cells with every missing marker (None, NaN, pd.NA) as None."""
    return np.array([v if isinstance(v, str) else None for v in values], dtype=object)


def field_of(spec: DepartmentSpec) -> str:
    """The contract field (or fact) a department answers for (its 数据来源 ``field``)."""
    if "low_income_status" in spec.supplies:
        return "low_income_status"
    if "disability_certificate" in spec.supplies:
        return "disability_certificate"
    if "registry_flag" in spec.supplies:
        return "registry_flags"
    return str(spec.supplies.get("fact", spec.kind))


def _source_text(mask: np.ndarray, values: np.ndarray, snapshots: Mapping[str, str]) -> np.ndarray:
    out = np.full(len(mask), None, dtype=object)
    for value in ("dibao", "tekun"):
        hit = mask & (values == value)
        out[hit] = f"{value}@{snapshots.get(value, '')}"
    return out


def _union_flags(card: np.ndarray, registry: np.ndarray) -> np.ndarray:
    """The sorted union of two canonical flag columns (None only where both are unknown)."""
    out = card.copy()
    for i, (a, b) in enumerate(zip(card, registry, strict=True)):
        if b == "" and a is None:
            out[i] = ""
        elif isinstance(b, str) and b:
            out[i] = b if not a else "|".join(sorted(set(a.split("|")) | set(b.split("|"))))
    return out


# --- 低保 standards ---------------------------------------------------------------------------


def default_dibao_table_path() -> Path:
    """The 低保 standards shipped with the project (estimates, each with its basis)."""
    return Path(str(resources.files("features") / "data" / "dibao_standards.csv"))


class DibaoTable:
    """Each province's 低保 standard (元/人·月, urban and rural) by year, with its source."""

    def __init__(self, frame: pd.DataFrame, source: str = "<memory>") -> None:
        needed = ("province_code", "year", "urban_yuan_month", "rural_yuan_month", "source")
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise RegistryConfigError(f"{source}: missing column(s) {', '.join(missing)}")
        table = frame.copy()
        table["province_code"] = table["province_code"].astype(str).str.zfill(2)
        self.frame = table.sort_values(["province_code", "year"]).reset_index(drop=True)
        self.source = source
        self.version = hashlib.sha256(self.frame.to_csv(index=False).encode()).hexdigest()[:12]

    @classmethod
    def from_csv(cls, path: Path | None = None) -> DibaoTable:
        """Load a table; ``None`` = the shipped one."""
        path = path or default_dibao_table_path()
        return cls(pd.read_csv(path, dtype={"province_code": str}), source=str(path))

    def standard(
        self, province_codes: np.ndarray, years: np.ndarray, rural: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The line (元/人·月) and the table year used for each row.

        A rural household gets the rural line (unknown = urban, the higher); a year missing
        from the table uses the nearest earlier one (else the earliest).
        """
        n = len(province_codes)
        line = np.full(n, np.nan)
        used = np.full(n, np.nan)
        codes = np.asarray(province_codes, dtype=object)
        wanted = np.asarray(years, dtype=float)
        is_rural = np.asarray(rural, dtype=float) == 1.0
        for code, group in self.frame.groupby("province_code"):
            rows = np.flatnonzero((codes == code) & ~np.isnan(wanted))
            if not len(rows):
                continue
            table_years = group["year"].to_numpy(dtype=float)
            position = np.clip(
                np.searchsorted(table_years, wanted[rows], side="right") - 1, 0, None
            )
            urban = group["urban_yuan_month"].to_numpy(dtype=float)[position]
            rural_line = group["rural_yuan_month"].to_numpy(dtype=float)[position]
            line[rows] = np.where(is_rural[rows], rural_line, urban)
            used[rows] = table_years[position]
        return line, used


# --- every department in one table (the Spark engine's input) --------------------------------

REGISTRY_COLUMNS = (
    "department",
    "snapshot",
    "person_key",
    "status",
    "valid_from",
    "valid_to",
    "attributes",
)
"""The registries table the Spark engine reads: every department's snapshot rows in one table
(``aidrec registries export`` writes it from the registry store; ``snapshot`` is the ISO date
of the extract, ``attributes`` the kind's columns as JSON, as the store keeps them)."""


def registry_table(rows: Mapping[str, pd.DataFrame], snapshots: Mapping[str, str]) -> pd.DataFrame:
    """Every department's canonical rows in one table with ``department`` and ``snapshot``.

    The shape :func:`join_on_spark` reads (:data:`REGISTRY_COLUMNS`); ``aidrec registries
    export`` writes the registry store's current snapshots in it.
    """
    parts = [
        frame.assign(department=department, snapshot=snapshots[department])
        for department, frame in rows.items()
        if department in snapshots
    ]
    if not parts:
        return pd.DataFrame({name: pd.Series([], dtype=object) for name in REGISTRY_COLUMNS})
    return pd.concat(parts, ignore_index=True)[list(REGISTRY_COLUMNS)].astype(object)
