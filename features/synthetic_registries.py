"""Departments' registry extracts consistent with a synthetic history, and its case cards.

From :func:`features.synthetic.generate_history` output (which carries each applicant's
``person_key``), :func:`generate_registries` writes what each department would hold about the
same people on one date, with the gaps real registries have:

- 低保/特困: most households the card shows in 低保/特困 are registered (valid since some
  years before the decision); about 8 % of them left 低保 before it (the card is stale);
  a household whose income per head is below about 0.12 of the wage base while the card says
  nothing of low income is registered only one time in three, so poor households outside 低保
  remain for the screening to find.
- 残联: every card with a certificate is registered (残疾等级 1-4 from the 伤残等级); victims
  assessed with a grade and no certificate are not (the department-failure lead).
- 大病, 妇联, 退役军人, 孤儿/事实无人抚养: the card's registry flags, and a few people the
  card does not flag (registries know more than cards).
- 临时救助: about half of the families of a dead breadwinner with minors got it; a few other
  hardship cases too.
- 人社: unemployment or work-injury benefits for a few adults.

Extracts are in the wire shape ``aidrec registries import`` reads. :func:`case_cards` is the
history without its outcomes and oracle columns: what a screening run reads.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract import ORACLE_PREFIX, OUTCOME_NAMES
from features.wages import WageTable

log = logging.getLogger(__name__)
REGISTRY_SEED_OFFSET = 7
"""Registries draw from a stream of their own, so the history itself is unchanged."""


def case_cards(history: pd.DataFrame) -> pd.DataFrame:
    """The history's case cards: outcomes and oracle columns removed."""
    drop = [c for c in history.columns if c in OUTCOME_NAMES or c.startswith(ORACLE_PREFIX)]
    return history.drop(columns=drop)


def registry_date(history: pd.DataFrame) -> dt.date:
    """The extracts' date: the end of the history's last decision year."""
    return dt.date(int(np.nanmax(history["decision_year"].to_numpy(dtype=float))), 12, 31)


def _dates(
    rng: np.random.Generator, year_end: np.ndarray, years_before: tuple[float, float]
) -> np.ndarray:
    """Dates a random number of years (uniform in the range) before each year's end."""
    days = rng.uniform(years_before[0] * 365, years_before[1] * 365, len(year_end)).astype(int)
    return year_end - days.astype("timedelta64[D]")


def _extract(
    keys: np.ndarray,
    status: np.ndarray | str,
    start: np.ndarray,
    end: np.ndarray | None = None,
    **attributes: np.ndarray,
) -> pd.DataFrame:
    n = len(keys)
    frame = pd.DataFrame(
        {
            "person_key": keys,
            "status": np.broadcast_to(np.asarray(status, dtype=object), (n,)),
            "valid_from": start.astype(str),
            "valid_to": pd.Series(
                [None] * n if end is None else [None if np.isnat(e) else str(e) for e in end],
                dtype=object,
            ),
        }
    )
    for name, values in attributes.items():
        frame[name] = values
    return frame


def generate_registries(
    history: pd.DataFrame, seed: int, wage_table: WageTable | None = None
) -> dict[str, pd.DataFrame]:
    """Every department's extract about the history's applicants (see the module docstring).

    ``wage_table`` must be the one the history was generated with (default: the shipped one).
    """
    rng = np.random.default_rng([seed, REGISTRY_SEED_OFFSET])
    n = len(history)
    keys = history["person_key"].to_numpy(dtype=object)
    year_end = (
        history["decision_year"].to_numpy(dtype=float).astype(int).astype(str).astype(object)
        + "-12-31"
    ).astype("datetime64[D]")
    low = history["low_income_status"].to_numpy(dtype=object)
    income = history["monthly_household_income_yuan"].to_numpy(dtype=float)
    household = history["household_size"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        # the generator draws income per head in months of the wage base; ~0.12 is its poverty line
        per_head_share = income / household / _wage_base(history, wage_table)
    poor = per_head_share < 0.12
    u = rng.random(n)
    extracts: dict[str, pd.DataFrame] = {}

    def covered(status: str) -> np.ndarray:
        unknown_but_poor = pd.isna(low) & poor & (rng.random(n) < 0.5)
        return (low == status) | (
            unknown_but_poor & (rng.random(n) < (0.8 if status == "dibao" else 0.1))
        )

    for kind, status in (("dibao", "dibao"), ("tekun", "tekun")):
        rows = covered(status) & (u < 0.97)  # 3 % of cards claim a status nobody registered
        start = _dates(rng, year_end[rows], (0.5, 6.0))
        stale = rng.random(int(rows.sum())) < 0.08  # left before the decision: the card is stale
        end = np.where(stale, year_end[rows] - np.timedelta64(200, "D"), np.datetime64("NaT"))
        start = np.where(stale, end - np.timedelta64(700, "D"), start)
        status_text = np.where(stale, "ended", "active")
        attrs = (
            {"household_members": household[rows]}
            if kind == "dibao"
            else {
                "care_mode": np.where(rng.random(int(rows.sum())) < 0.8, "dispersed", "centralised")
            }
        )
        extracts[kind] = _extract(keys[rows], status_text, start, end, **attrs)

    cert = history["disability_certificate"].to_numpy(dtype=float) == 1.0
    grade = history["disability_grade"].to_numpy(dtype=float)
    level = np.select([grade <= 2, grade <= 4, grade <= 6], [1, 2, 3], 4)
    categories = np.array(["physical", "visual", "hearing", "mental", "multiple"], dtype=object)
    m = int(cert.sum())
    extracts["disability"] = _extract(
        keys[cert],
        "active",
        _dates(rng, year_end[cert], (0.2, 8.0)),
        disability_category=categories[rng.choice(len(categories), m, p=[0.6, 0.1, 0.1, 0.1, 0.1])],
        disability_level=level[cert],
        certificate=np.where(rng.random(m) < 0.97, "true", "false"),
    )

    flags = history["registry_flags"].to_numpy(dtype=object)
    has = {
        f: np.array([isinstance(v, str) and f in v.split("|") for v in flags])
        for f in (
            "serious_illness",
            "women_federation_hardship",
            "veteran_family",
            "orphan_or_left_behind_child",
        )
    }
    age = history["victim_age"].to_numpy(dtype=float)
    sex = history["victim_sex"].to_numpy(dtype=object)
    harm = history["harm_outcome"].to_numpy(dtype=object)
    minors = history["minor_dependants"].to_numpy(dtype=float)
    death_with_minors = (harm == "death") & (minors >= 1)
    extra = rng.random(n)
    serious = has["serious_illness"] | ((harm == "severe_injury") & (extra < 0.03))
    extracts["serious_illness"] = _extract(
        keys[serious],
        "active",
        _dates(rng, year_end[serious], (0.1, 3.0)),
        illness=np.full(int(serious.sum()), None, dtype=object),
    )
    women = has["women_federation_hardship"] | ((sex == "female") & poor & (extra < 0.05))
    extracts["women_in_hardship"] = _extract(
        keys[women], "active", _dates(rng, year_end[women], (0.1, 4.0))
    )
    veterans = has["veteran_family"]
    extracts["veteran_family"] = _extract(
        keys[veterans], "active", _dates(rng, year_end[veterans], (1.0, 15.0))
    )
    child = has["orphan_or_left_behind_child"] | (
        death_with_minors & (household <= minors + 1) & (extra < 0.5)
    )
    extracts["child_without_carer"] = _extract(
        keys[child],
        "active",
        _dates(rng, year_end[child], (0.0, 2.0)),
        category=np.where(
            has["orphan_or_left_behind_child"][child], "left_behind", "de_facto_unsupported"
        ),
    )
    relief = (death_with_minors & (rng.random(n) < 0.5)) | (poor & (rng.random(n) < 0.06))
    extracts["temporary_relief"] = _extract(
        keys[relief],
        np.where(rng.random(int(relief.sum())) < 0.95, "granted", "refused"),
        _dates(rng, year_end[relief], (0.0, 0.9)),
        amount_yuan=np.round(rng.uniform(1000, 8000, int(relief.sum())), -2),
    )
    adult = (age >= 18) & (age < 60)
    benefit = adult & (rng.random(n) < 0.04)
    extracts["unemployment_or_injury"] = _extract(
        keys[benefit],
        "active",
        _dates(rng, year_end[benefit], (0.1, 2.0)),
        benefit=np.where(rng.random(int(benefit.sum())) < 0.6, "unemployment", "work_injury"),
    )
    log.info(
        "registries for %d cards: %s",
        n,
        ", ".join(f"{k} {len(v)}" for k, v in extracts.items()),
    )
    return extracts


def _wage_base(history: pd.DataFrame, wage_table: WageTable | None) -> np.ndarray:
    """Each card's monthly wage base (the generator draws money in months of it)."""
    _, _, monthly, _ = (wage_table or WageTable.from_csv()).lookup_many(
        history["province_code"].to_numpy(dtype=object),
        history["decision_year"].to_numpy(dtype=float),
    )
    return monthly


def write_registries(extracts: dict[str, pd.DataFrame], out_dir: Path) -> dict[str, Path]:
    """Write each extract as ``out_dir/<kind>.csv``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind, frame in extracts.items():
        path = out_dir / f"{kind}.csv"
        frame.to_csv(path, index=False)
        paths[kind] = path
    log.info("wrote %d registry extracts to %s", len(paths), out_dir)
    return paths
