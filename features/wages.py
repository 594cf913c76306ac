"""The wage base of the amount: the province's previous-year average monthly wage.

The rules anchor aid to 上一年度职工月平均工资 of the deciding province. The figures are
data, not code: the project ships ``features/data/province_wages.csv`` (published annual
averages with their sources) and a deployment may point ``AIDREC_WAGE_TABLE`` at its own
file of the same shape. A year missing from the table uses the nearest earlier year of that
province (and the answer says so); where the table has no earlier year at all, the nearest
later year is used, also flagged as estimated.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

CEILING_MONTHS = 36
REQUIRED_COLUMNS = ("province_code", "year", "avg_annual_wage_yuan")


class WageTableError(ValueError):
    """The wage table file is unusable, or has no figure for a province."""


@dataclass(frozen=True)
class WageBase:
    """The monthly base used for one decision, with where it came from."""

    province_code: str
    decision_year: int
    wage_year: int
    base_monthly_wage: float
    estimated: bool
    note: str


def default_wage_table_path() -> Path:
    """The wage table shipped with the project."""
    return Path(str(resources.files("features") / "data" / "province_wages.csv"))


def province_names() -> dict[str, str]:
    """Each province code's Chinese name (江苏...), from the shipped wage table."""
    frame = pd.read_csv(default_wage_table_path(), dtype={"province_code": str})
    names = frame.drop_duplicates("province_code").set_index("province_code")["province_zh"]
    return {str(code): str(name) for code, name in names.items() if code != "00"}


class WageTable:
    """Annual average wages by province and year, read from a CSV file."""

    def __init__(self, frame: pd.DataFrame, source: str = "<memory>") -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
        if missing:
            raise WageTableError(f"{source}: missing column(s) {', '.join(missing)}")
        table = frame.loc[:, list(REQUIRED_COLUMNS)].copy()
        table["province_code"] = table["province_code"].astype(str).str.zfill(2)
        table["year"] = pd.to_numeric(table["year"], errors="coerce")
        table["avg_annual_wage_yuan"] = pd.to_numeric(
            table["avg_annual_wage_yuan"], errors="coerce"
        )
        bad = table["year"].isna() | ~(table["avg_annual_wage_yuan"] > 0)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0]) + 2
            raise WageTableError(f"{source}: line {row}: year and a positive wage are required")
        if table.duplicated(["province_code", "year"]).any():
            raise WageTableError(f"{source}: a province-year appears twice")
        self.source = source
        self.frame = table.astype({"year": int}).sort_values(["province_code", "year"])
        self.version = hashlib.sha256(self.frame.to_csv(index=False).encode("utf-8")).hexdigest()[
            :12
        ]
        self._years: dict[str, np.ndarray] = {}
        self._wages: dict[str, np.ndarray] = {}
        for code, group in self.frame.groupby("province_code"):
            self._years[str(code)] = group["year"].to_numpy(dtype=int)
            self._wages[str(code)] = group["avg_annual_wage_yuan"].to_numpy(dtype=float)

    @classmethod
    def from_csv(cls, path: Path | str | None = None) -> WageTable:
        """Load a wage table; ``None`` means the table shipped with the project."""
        path = Path(path) if path is not None else default_wage_table_path()
        try:
            frame = pd.read_csv(path, dtype={"province_code": str})
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise WageTableError(f"{path}: cannot read the wage table: {exc}") from exc
        return cls(frame, source=str(path))

    def lookup(self, province_code: str, decision_year: int) -> WageBase:
        """The base for one decision: the previous year's monthly average wage."""
        _, years, monthly, estimated = self.lookup_many(
            np.asarray([province_code], dtype=object), np.asarray([decision_year], dtype=float)
        )
        used = int(years[0])
        note = self.note(province_code, int(decision_year), used)
        return WageBase(
            province_code, int(decision_year), used, float(monthly[0]), bool(estimated[0]), note
        )

    def note(self, province_code: str, decision_year: int, wage_year: int) -> str:
        """Where the base of a decision came from, in words a reviewer reads."""
        wanted = decision_year - 1
        if wage_year == wanted:
            return f"{wage_year} average wage of province {province_code}"
        if wage_year < wanted:
            return (
                f"no {wanted} figure for province {province_code}; "
                f"used {wage_year}, the nearest earlier year"
            )
        return (
            f"no figure for {wanted} or earlier for province {province_code}; "
            f"used {wage_year}, the earliest the table has"
        )

    def lookup_many(
        self, province_codes: np.ndarray, decision_years: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Vectorised lookup: (codes, wage year used, monthly base, estimated flag) per row.

        Rows with an unknown province or year get NaN; a province missing from the table
        raises, because every contract province must have a base.
        """
        n = len(province_codes)
        wage_year = np.full(n, np.nan)
        monthly = np.full(n, np.nan)
        codes = np.asarray(province_codes, dtype=object)
        wanted = np.asarray(decision_years, dtype=float) - 1
        for code in {c for c in codes if isinstance(c, str)}:
            if code not in self._years:
                raise WageTableError(f"{self.source}: no wage figure for province {code!r}")
            rows = np.flatnonzero((codes == code) & ~np.isnan(wanted))
            years, wages = self._years[code], self._wages[code]
            position = np.searchsorted(years, wanted[rows], side="right") - 1
            position = np.clip(position, 0, len(years) - 1)  # none earlier: the earliest
            wage_year[rows] = years[position]
            monthly[rows] = wages[position] / 12.0
        estimated = ~np.isnan(wage_year) & (wage_year != wanted)
        return codes, wage_year, monthly, estimated
