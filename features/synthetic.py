"""A synthetic history of judicial-assistance cases that follows the rules, with its oracle.

Real histories cannot be published, so models are built and tested on histories generated
here. The process, in the order it runs (all vectorised; ``rows`` rows from one seed):

1. **Who and where.** Province by population (7th census, 2020), the office (基层院) that
   handles the case by its share of the province, the applicant's person key, decision year
   with case volume growing over the years, crime type from a national mix.
2. **Harm** conditional on the crime (homicide → death, fraud → property loss, ...); the
   applicant is a close relative when the victim died, otherwise mostly the victim (3 %
   witnesses/informants); age and sex conditional on the crime; disability grades for
   injuries, urgent medical need for the seriously hurt.
3. **Money in months of the wage base**, then yuan = months × the province's base for the
   decision (so costs scale with the local wage): medical costs and necessary expenses by
   harm, property loss by crime; offender ability to pay by crime; court awards, received
   compensation (a share of the award that depends on the offender), insurance for traffic
   cases.
4. **Hardship**: household, dependants, income per head relative to the local wage,
   low-income status following income, disability certificate, labour capacity following
   the injury, rural household registration, other departments' registries.
5. **Exclusions** at realistic rates (fault is more common in fights).
6. **Missing values** where case cards really lack them (income, household, statuses,
   costs), masked *before* outcomes are decided: an office decides from the case card, so
   the outcomes depend on what the record shows, and the oracle below is exact.
7. **Outcomes.** The statutory rules (``features.rules``) sort each case into eligible,
   excluded or needs review; a judicial-aid lead is then granted with a probability that
   follows the rules, harm and hardship, plus each province's readiness to find leads
   (regional practice), with 3 % label noise. Social-assistance referrals follow hardship
   not caused by the case; civil support-prosecution follows a solvent or unknown offender
   and a vulnerable victim. Amounts, for granted cases: log(months) = a monotone function
   of harm, disability, expenses, uncovered loss (up) and compensation received (down) plus
   hardship, plus the province's and the office's generosity, plus noise (σ = 0.45). They
   are capped at 36 months, or at the court award under the statutory exception, and
   rounded to 100 yuan.
   The scale is calibrated to the public figures: about 9,000 yuan per aided person,
   typical published cases around 35,000, rare joint awards near 300,000.

**Calibration** (figures at 200,000 rows, seed 2026; ``tests/data/test_synthetic.py`` checks
them on 50,000). Every figure is public; the sources, as read on 2026-12-03:

- *Mean per aided person* ≈ 10,800 yuan, inside the national range 9,000–12,000: 2023 about
  106,000 people and 950 million yuan (≈ 9,000), 2022 about 81,000 and 860 million (≈ 10,600),
  women 2022-03..2023-03 ≈ 11,900, rural 2023..mid-2025 ≈ 10,300 (../shared/data/README.md).
- *Women* ≈ 41 % of the aided: 38.7 % in 2022-03..2023-03 (最高检 and 全国妇联, the first year
  of the special action on women in hardship, reported 2023-03).
- *Minors* ≈ 21 % of the aided (:data:`CHILD_SHARE`, rape victims' ages, :data:`MINOR_LEAD`):
  the Procuratorate aided about 17,000 minors in 2022 (未成年人检察工作白皮书 2022: 2.2 hundred
  million yuan, ≈ 13,000 each; of about 81,000 aided: 21 %), nearly 20,000 in 2023 (白皮书
  2023: 190 million yuan, ≈ 9,500 each; of 106,000: 19 %) and 16,804 in 2024 (刑事检察工作
  白皮书 2024: 170 million yuan, ≈ 10,100 each). Minors here get ≈ 11,700 on average.
- *Sexual offences against minors*: aided in about two cases of three, mean ≈ 17,000, median
  ≈ 11,000 (:data:`SEXUAL_AMOUNT`, :data:`MINOR_SEXUAL_AMOUNT`). Published cases: a 12-year-old
  rape victim in 广饶 (Shandong), 30,000 yuan for therapy (最高检 typical case, 2023-04-14); a
  17-year-old victim of sexual assault with severe depression in 南昌, 10,000 yuan (2020); a
  minor harmed in body and mind in 湄潭, 4,000 yuan (2019). Adults' sexual offences: mean
  ≈ 7,800 — an estimate (no published amount found), below the minors' as the 2018 opinion
  adds the costs of a child's upbringing and therapy.
- *Deaths*: mean ≈ 28,000, median ≈ 22,000; with two or more minor dependants and a 低保
  family ≈ 57,000 (:data:`MINOR_DEPENDANT_AMOUNT`). Published cases (skewed high, as typical
  cases are): 100,000 to the widow and two daughters of a murdered man in 厦门 (2015); about
  350,000 for seven relatives of six traffic deaths in five cases in 卓尼, Gansu (甘肃高院
  typical cases, 2024: ≈ 70,000 a case). The averages are an estimate scaled down from them
  by the ratio of the typical cases' median (≈ 35,000) to the national mean (≈ 9,000–10,000).
- *Severe injuries*: mean ≈ 16,600. Published: 100,000 to a 65-year-old with 重伤二级 and no
  family, jointly by 海淀 and 邹城 (2019); an estimate scaled down the same way.
- *Property loss*: mean ≈ 2,300 — an estimate; published: 43,400 to a fraud victim who lost
  239,000 yuan in 无为 (2020), an uncommonly large loss.
- Sexual or psychological harm is the v1.1 ``harm_outcome``; rape cases recorded as ``none``
  (how a v1 case system had to record them, 5 % of rape cases) or with a slight or minor
  injury (18 %) are read by the offices as sexual harm (:func:`decided_harm`, the rule
  :func:`features.rules.harm_as_read` the amount's harm severity reads too), so recording
  an injury beside a rape never lowers the decision, and the truth stays monotone in the
  harm as the model's constraint requires.

The **oracle** columns give what the best possible model could know:
``oracle_p_judicial_aid``, ``oracle_p_social_assistance``, ``oracle_p_civil_support`` (the
true probabilities, noise included) and two conditional medians of the amount in months
(the best prediction under absolute error): ``oracle_amount_months_local`` knows the
province's and the office's own practice; ``oracle_amount_months_national`` does not, and
mixes over the offices in the proportions in which they produce granted cases with these
features (DESIGN.md, "One national standard": the amount model must not see the place).

Regional practice (each province's lead readiness and generosity, each office's generosity:
most near the norm, about 12 % markedly generous and as many markedly stingy, see
:meth:`RegionalPractice.deviant_offices`) is one fixed world, drawn from
:data:`PRACTICE_SEED`, so that every seed samples cases from the same world. Offices and
person keys come from a random stream of their own, so adding them changed no other column.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, ndtr

from features.contract import (
    CRIME_TYPES,
    OFFENDER_STATUSES,
    PROVINCE_CODES,
    REGISTRY_FLAGS,
)
from features.rules import (
    NO_COMPENSATION_OBTAINABLE,
    SEVERE_LOW_INCOME,
    EligibilityStatus,
    RuleResults,
    compensation_in_hand,
    documented_loss,
    evaluate_rules,
    harm_as_read,
    minor_victim,
    sexual_offence,
)
from features.wages import CEILING_MONTHS, WageTable

log = logging.getLogger(__name__)

PRACTICE_SEED = 20_260_101
AMOUNT_NOISE_SIGMA = 0.45
LABEL_NOISE = 0.03

# 7th national census (2020), millions, in the order of PROVINCE_CODES
POPULATION_MILLIONS = np.array([
    21.9, 13.9, 74.6, 34.9, 24.0, 42.6, 24.1, 31.9, 24.9, 84.7, 64.6, 61.0, 41.5, 45.2, 101.5,
    99.4, 57.8, 66.4, 126.0, 50.1, 10.1, 32.1, 83.7, 38.6, 47.2, 3.6, 39.5, 25.0, 5.9, 7.2, 25.9,
])  # fmt: skip

CRIME_MIX = np.array([
    0.24, 0.035, 0.02, 0.16, 0.03, 0.04, 0.13, 0.08, 0.04, 0.06, 0.03, 0.07, 0.065,
])  # fmt: skip

GENERATED_HARMS = (
    "death",
    "severe_injury",
    "minor_injury",
    "slight_injury",
    "property_loss",
    "none",
    "sexual_or_psychological",
)
"""The harms the generator draws, in the column order of the tables below."""
# P(harm outcome | crime), in the order of GENERATED_HARMS
HARM_GIVEN_CRIME = np.array([
    [0.05, 0.25, 0.45, 0.21, 0.02, 0.02, 0.00],  # intentional_injury
    [0.75, 0.20, 0.04, 0.01, 0.00, 0.00, 0.00],  # intentional_homicide
    [0.90, 0.08, 0.02, 0.00, 0.00, 0.00, 0.00],  # negligent_homicide
    [0.22, 0.30, 0.30, 0.15, 0.03, 0.00, 0.00],  # traffic_accident
    [0.01, 0.06, 0.10, 0.08, 0.00, 0.05, 0.70],  # rape (none: a v1 system's record)
    [0.03, 0.12, 0.25, 0.25, 0.33, 0.02, 0.00],  # robbery
    [0.00, 0.00, 0.00, 0.00, 0.95, 0.05, 0.00],  # fraud
    [0.00, 0.00, 0.00, 0.02, 0.93, 0.05, 0.00],  # theft
    [0.00, 0.00, 0.00, 0.00, 0.97, 0.03, 0.00],  # illegal_fundraising
    [0.00, 0.00, 0.00, 0.00, 0.95, 0.05, 0.00],  # wage_arrears
    [0.05, 0.20, 0.30, 0.25, 0.00, 0.08, 0.12],  # abuse_abandonment
    [0.08, 0.25, 0.35, 0.25, 0.05, 0.02, 0.00],  # civil_tort
    [0.05, 0.10, 0.20, 0.22, 0.30, 0.10, 0.03],  # other
])  # fmt: skip

# P(offender status | crime): able_to_pay, unable_to_pay, deceased, unidentified, unknown
OFFENDER_GIVEN_CRIME = np.array([
    [0.30, 0.50, 0.02, 0.08, 0.10],
    [0.15, 0.55, 0.15, 0.05, 0.10],
    [0.30, 0.50, 0.05, 0.05, 0.10],
    [0.40, 0.35, 0.05, 0.12, 0.08],
    [0.20, 0.55, 0.02, 0.13, 0.10],
    [0.10, 0.50, 0.02, 0.28, 0.10],
    [0.10, 0.40, 0.02, 0.38, 0.10],
    [0.10, 0.35, 0.02, 0.43, 0.10],
    [0.10, 0.65, 0.05, 0.10, 0.10],
    [0.35, 0.45, 0.02, 0.08, 0.10],
    [0.35, 0.50, 0.02, 0.03, 0.10],
    [0.45, 0.38, 0.02, 0.05, 0.10],
    [0.30, 0.40, 0.03, 0.12, 0.15],
])  # fmt: skip

# medical cost (for sexual or psychological harm: examinations and therapy), necessary
# expenses and the court award: median months of base, by harm (order of GENERATED_HARMS)
MEDICAL_MEDIAN = np.array([1.2, 4.0, 1.0, 0.15, 0.0, 0.0, 0.4])
EXPENSE_MEDIAN = np.array([3.0, 0.8, 0.3, 0.08, 0.05, 0.02, 0.15])
COURT_AWARD_MEDIAN = np.array([45.0, 14.0, 3.5, 0.8, 0.0, 0.0, 1.0])
# log-months of the amount by harm (before hardship, expenses and province practice); sexual
# or psychological harm starts where a minor injury does (the same harm severity, so the
# monotone amount model can follow it) and the sexual offence adds SEXUAL_AMOUNT
AMOUNT_LOCATION = np.array([0.45, -0.75, -1.65, -2.3, -1.85, -2.8, -1.65])
# lead logit by harm
LEAD_HARM = np.array([1.2, 0.9, 0.2, -0.6, -0.1, -2.0, 0.6])

CHILD_SHARE = 0.13
"""Share of victims (outside wage arrears) drawn as children under 18, besides the crimes
whose victims are often minors (rape, abuse): with them, minors are about a fifth of the
aided, as in the Procuratorate's figures (see the module docstring)."""
SEXUAL_LEAD = 0.6
"""Lead log-odds a sexual offence adds (priority group: the 2018 opinion, the 2022 notice)."""
MINOR_LEAD = 0.5
"""Lead log-odds a victim under 18 adds (特殊、优先保护, the 2018 opinion)."""
SEXUAL_AMOUNT = 0.75
"""log(months) a sexual offence adds to the amount (therapy, long psychological harm)."""
MINOR_AMOUNT = 0.35
"""log(months) a victim under 18 adds (the opinion: "学习成长所需合理费用")."""
MINOR_SEXUAL_AMOUNT = 0.6
"""log(months) added again when a minor is the victim of a sexual offence."""
MINOR_DEPENDANT_AMOUNT = 0.12
"""log(months) each minor dependant adds (up to four): a child's upbringing to pay for."""


OFFICES_PER_PROVINCE = (4, 12)
"""Basic-level procuratorates per province in the synthetic world (fewest, most)."""
DEVIANT_OFFICE_SHARE = 0.12
"""Share of offices that are markedly generous, and (as many) markedly stingy."""
DEVIANT_OFFICE_GENEROSITY = 0.45
"""log(months) an office that deviates adds (generous) or removes (stingy)."""


@dataclass(frozen=True)
class RegionalPractice:
    """Each province's and office's practice: readiness to find leads, and generosity.

    Offices (基层院) carry their own generosity on top of their province's: most are near the
    norm, some markedly generous or stingy (what supervision of 同案不同救 should find).
    """

    lead_readiness: np.ndarray
    social_readiness: np.ndarray
    civil_readiness: np.ndarray
    generosity: np.ndarray  # per province, added to log(months)
    office_codes: tuple[str, ...]
    office_province: np.ndarray  # each office's index into PROVINCE_CODES
    office_share: np.ndarray  # each office's share of its province's cases
    office_generosity: np.ndarray  # per office, added to its province's generosity

    @classmethod
    def default(cls) -> RegionalPractice:
        """The one fixed world every synthetic history is drawn from."""
        rng = np.random.default_rng(PRACTICE_SEED)
        k = len(PROVINCE_CODES)
        provinces = {
            "lead_readiness": rng.normal(0.0, 0.6, k),
            "social_readiness": rng.normal(0.0, 0.5, k),
            "civil_readiness": rng.normal(0.0, 0.5, k),
            "generosity": rng.normal(0.0, 0.25, k),
        }
        offices = np.random.default_rng([PRACTICE_SEED, 1])
        codes, where, shares = [], [], []
        for p, province in enumerate(PROVINCE_CODES):
            count = int(offices.integers(OFFICES_PER_PROVINCE[0], OFFICES_PER_PROVINCE[1] + 1))
            size = offices.dirichlet(np.full(count, 4.0))
            for j in range(count):
                codes.append(f"{province}{1 + j // 3:02d}{2 * (j % 3) + 2:02d}")
                where.append(p)
                shares.append(size[j])
        n = len(codes)
        u = offices.random(n)
        deviation = np.select(
            [u < DEVIANT_OFFICE_SHARE, u > 1 - DEVIANT_OFFICE_SHARE],
            [DEVIANT_OFFICE_GENEROSITY, -DEVIANT_OFFICE_GENEROSITY],
            0.0,
        )
        return cls(
            **provinces,
            office_codes=tuple(codes),
            office_province=np.asarray(where),
            office_share=np.asarray(shares),
            office_generosity=deviation + offices.normal(0.0, 0.05, n),
        )

    def deviant_offices(self) -> dict[str, str]:
        """The offices made markedly generous or stingy: code → ``generous`` or ``stingy``."""
        return {
            code: "generous" if g > 0 else "stingy"
            for code, g in zip(self.office_codes, self.office_generosity, strict=True)
            if abs(g) >= DEVIANT_OFFICE_GENEROSITY / 2
        }


def _choose(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One categorical draw per row from per-row probability vectors (rows sum to 1)."""
    cumulative = np.cumsum(probabilities, axis=1)
    u = rng.random(len(probabilities))[:, None] * cumulative[:, -1:]
    return np.minimum((u >= cumulative).sum(axis=1), probabilities.shape[1] - 1)


def _lognormal(rng: np.random.Generator, median: np.ndarray, sigma: float) -> np.ndarray:
    return median * np.exp(sigma * rng.standard_normal(len(median)))


def _mask(rng: np.random.Generator, values: np.ndarray, rate: float | np.ndarray) -> np.ndarray:
    """Blank out values where the case card lacks them."""
    out = values.astype(object) if values.dtype == object else values.astype(float)
    hide = rng.random(len(values)) < rate
    out[hide] = None if out.dtype == object else np.nan
    return out


def _mixture_median_offset(
    weights: np.ndarray, locations: np.ndarray, sigma: float, iterations: int = 60
) -> np.ndarray:
    """T with Σ_p w_p Φ((t − g_p)/σ) = 1/2, for each row of ``weights`` (bisection)."""
    low = np.full(len(weights), locations.min() - 6 * sigma)
    high = np.full(len(weights), locations.max() + 6 * sigma)
    for _ in range(iterations):
        middle = (low + high) / 2
        below = (weights * ndtr((middle[:, None] - locations[None, :]) / sigma)).sum(axis=1) < 0.5
        low = np.where(below, middle, low)
        high = np.where(below, high, middle)
    return (low + high) / 2


def national_median_offset(
    lead_logit: np.ndarray, practice: RegionalPractice, grid_size: int = 801
) -> np.ndarray:
    """Offset of the place-blind median of log(months) for rows with a given lead logit.

    Among granted cases with the same features, an office's share is proportional to its
    province's population times its share of the province's cases times the province's
    probability of granting (with label noise); the amounts are then a mixture of the offices'
    log-normal practices (province and office generosity). The median depends on the features
    only through the lead logit, so it is computed on a grid and interpolated.
    """
    grid = np.linspace(-12.0, 12.0, grid_size)
    province = practice.office_province
    granted = LABEL_NOISE + (1 - 2 * LABEL_NOISE) * expit(
        grid[:, None] + practice.lead_readiness[province][None, :]
    )
    weights = (POPULATION_MILLIONS[province] * practice.office_share)[None, :] * granted
    weights /= weights.sum(axis=1, keepdims=True)
    local = practice.generosity[province] + practice.office_generosity
    offsets = _mixture_median_offset(weights, local, AMOUNT_NOISE_SIGMA)
    return np.interp(np.clip(lead_logit, grid[0], grid[-1]), grid, offsets)


def _office_and_person(
    rng: np.random.Generator, case: Latent, world: RegionalPractice, seed: int
) -> Latent:
    """The office that handles each case and the applicant's person key.

    The office is drawn by its share of the province; the person key stands in for the keyed
    hash of an ID number. Both come from a random stream of their own.
    """
    n = len(case["province_index"])
    office_index = np.empty(n, dtype=int)
    for p in np.unique(case["province_index"]):
        rows = np.flatnonzero(case["province_index"] == p)
        offices = np.flatnonzero(world.office_province == p)
        share = world.office_share[offices] / world.office_share[offices].sum()
        office_index[rows] = rng.choice(offices, len(rows), p=share)
    prefix = hashlib.sha256(f"aidrec-synthetic-person:{seed}".encode()).hexdigest()[:8]
    keys = np.array(
        [hashlib.sha256(f"{prefix}:{row}".encode()).hexdigest() for row in rng.permutation(n)],
        dtype=object,
    )
    return {
        "office_index": office_index,
        "office": np.asarray(world.office_codes, dtype=object)[office_index],
        "person_key": keys,
    }


Latent = dict[str, np.ndarray]
"""What the generator knows of each case so far, by name (the truth, before masking)."""


def generate_history(
    rows: int,
    seed: int,
    years: tuple[int, int] = (2016, 2025),
    wage_table: WageTable | None = None,
    practice: RegionalPractice | None = None,
) -> pd.DataFrame:
    """Generate ``rows`` historical cases (canonical frame with outcomes and oracle columns).

    Deterministic for a seed. Each step of the module docstring is one function; they draw
    from one random stream in this order.
    """
    if rows < 1:
        raise ValueError("rows must be at least 1")
    first_year, last_year = years
    if not 2014 <= first_year <= last_year <= 2035:
        raise ValueError(f"years must lie within 2014-2035 and be ordered, got {years}")
    wages = wage_table or WageTable.from_csv()
    world = practice or RegionalPractice.default()
    rng = np.random.default_rng(seed)
    case = _who_and_where(rng, rows, years, wages)
    case |= _office_and_person(np.random.default_rng([seed, 1]), case, world, seed)
    case |= _harm_and_victim(rng, case)
    case |= _money_in_months(rng, case)
    case |= _hardship(rng, case)
    case |= _exclusions(rng, case)
    record = _case_card(rng, case, seed)
    outcomes, oracle = _decide_outcomes(rng, record, case, world)
    log.info(
        "generated %d cases (seed %d): %.1f %% granted, mean aid %.0f yuan; wage years %d-%d",
        rows,
        seed,
        100 * np.mean(outcomes["aid_granted"]),
        np.nanmean(outcomes["aid_amount_yuan"]) if np.any(outcomes["aid_granted"]) else 0.0,
        np.nanmin(case["wage_year"]),
        np.nanmax(case["wage_year"]),
    )
    return pd.DataFrame({**record, **outcomes, **oracle})


def _who_and_where(
    rng: np.random.Generator, n: int, years: tuple[int, int], wages: WageTable
) -> Latent:
    """1. Province by population, decision year growing over time, the crime, the base."""
    province_index = rng.choice(
        len(PROVINCE_CODES), n, p=POPULATION_MILLIONS / POPULATION_MILLIONS.sum()
    )
    province = np.asarray(PROVINCE_CODES, dtype=object)[province_index]
    year_values = np.arange(years[0], years[1] + 1)
    year_weights = np.linspace(0.6, 1.4, len(year_values))
    year = rng.choice(year_values, n, p=year_weights / year_weights.sum()).astype(float)
    _, wage_year, base, _ = wages.lookup_many(province, year)
    crime_index = rng.choice(len(CRIME_TYPES), n, p=CRIME_MIX / CRIME_MIX.sum())
    return {
        "province_index": province_index,
        "province": province,
        "year": year,
        "wage_year": wage_year,
        "base": base,
        "crime_index": crime_index,
        "crime": np.asarray(CRIME_TYPES, dtype=object)[crime_index],
    }


def _is_crime(case: Latent, name: str) -> np.ndarray:
    return np.asarray(case["crime_index"] == CRIME_TYPES.index(name))


def _harm_and_victim(rng: np.random.Generator, case: Latent) -> Latent:
    """2. Harm given the crime, the applicant, the victim's age and sex, disability, urgency."""
    n = len(case["crime_index"])
    harm_index = _choose(rng, HARM_GIVEN_CRIME[case["crime_index"]])
    death, severe, minor, slight = (harm_index == k for k in range(4))
    injured = severe | minor | slight
    sexual = harm_index == GENERATED_HARMS.index("sexual_or_psychological")
    u = rng.random(n)
    role = np.where(
        death,
        np.where(u < 0.97, "close_relative", "witness_or_reporter"),
        np.where(u < 0.03, "witness_or_reporter", np.where(u < 0.15, "close_relative", "victim")),
    ).astype(object)
    age = np.clip(rng.normal(42, 16, n), 18, 90)
    age = np.where(_is_crime(case, "rape"), np.clip(rng.normal(20, 8, n), 6, 60), age)
    age = np.where(_is_crime(case, "wage_arrears"), np.clip(rng.normal(40, 10, n), 18, 65), age)
    abuse_age = np.where(rng.random(n) < 0.5, rng.uniform(1, 16, n), rng.uniform(65, 92, n))
    age = np.where(_is_crime(case, "abuse_abandonment"), abuse_age, age)
    child = (rng.random(n) < CHILD_SHARE) & ~_is_crime(case, "wage_arrears")
    age = np.floor(np.where(child, rng.uniform(0, 18, n), age))
    female_share = np.select(
        [_is_crime(case, "rape"), _is_crime(case, "abuse_abandonment"), _is_crime(case, "fraud")],
        [0.97, 0.6, 0.5],
        0.35,
    )
    sex = np.where(rng.random(n) < female_share, "female", "male").astype(object)
    grade_known = rng.random(n) < np.select(
        [severe, minor, slight, sexual], [0.75, 0.2, 0.03, 0.05], 0.0
    )
    raw_grade = np.select(
        [severe, minor | sexual],
        [
            np.clip(np.round(rng.normal(6.0, 2.2, n)), 1, 10),
            np.clip(np.round(rng.normal(9, 1, n)), 7, 10),
        ],
        10.0,
    )
    urgency = np.select([severe, minor], [0.5, 0.15], 0.04)
    urgent = np.where(injured, (rng.random(n) < urgency).astype(float), 0.0)
    return {
        "harm_index": harm_index,
        "harm": np.asarray(GENERATED_HARMS, dtype=object)[harm_index],
        "death": death,
        "severe": severe,
        "minor": minor,
        "injured": injured,
        "sexual": sexual,
        "role": role,
        "age": age,
        "sex": sex,
        "disability_grade": np.where(grade_known, raw_grade, np.nan),
        "urgent": urgent,
    }


def _money_in_months(rng: np.random.Generator, case: Latent) -> Latent:
    """3. Costs, losses, the offender, the court award and what was received, in months."""
    n = len(case["crime_index"])
    harm_index, death, injured = case["harm_index"], case["death"], case["injured"]
    grade = case["disability_grade"]
    medical_m = np.where(
        injured | death | case["sexual"],
        _lognormal(rng, MEDICAL_MEDIAN[harm_index] + 1e-9, 0.8),
        0.0,
    )
    medical_m = np.where(death & (rng.random(n) < 0.4), 0.0, medical_m)
    medical_m += np.where(~np.isnan(grade), (11 - np.nan_to_num(grade)) * 0.3, 0)
    expense_m = _lognormal(rng, EXPENSE_MEDIAN[harm_index], 0.7)
    property_harm = harm_index == GENERATED_HARMS.index("property_loss")
    loss_median = np.select(
        [_is_crime(case, "illegal_fundraising"), _is_crime(case, "wage_arrears")], [8.0, 2.5], 2.0
    )
    property_loss_m = _lognormal(rng, loss_median, 1.2)
    robbed = _is_crime(case, "robbery") & (rng.random(n) < 0.5)
    economic_m = np.where(
        property_harm,
        property_loss_m,
        np.where(robbed, _lognormal(rng, np.full(n, 0.3), 1.0), 0.0),
    )
    offender_index = _choose(rng, OFFENDER_GIVEN_CRIME[case["crime_index"]])
    identified = offender_index < 3
    loss_m = medical_m + expense_m + economic_m
    award_m = np.where(
        identified & (rng.random(n) < 0.55),
        np.maximum(_lognormal(rng, COURT_AWARD_MEDIAN[harm_index] + 1e-9, 0.6), loss_m * 1.1),
        np.nan,
    )
    award_m = np.where(award_m > 0, award_m, np.nan)
    claim_m = np.where(np.isnan(award_m), loss_m, award_m)
    paid_share = np.select(
        [offender_index == 0, offender_index == 1],
        [rng.beta(4, 2, n), rng.beta(0.4, 6, n)],
        rng.beta(0.2, 20, n),
    )
    insured = _is_crime(case, "traffic_accident") & (rng.random(n) < 0.7)
    relief_m = np.where(insured, np.minimum(medical_m, 2.0 * rng.random(n)), 0.0)
    relief_m = np.where(~insured & (rng.random(n) < 0.08), 0.3 * rng.random(n), relief_m)
    return {
        "medical_m": medical_m,
        "expense_m": expense_m,
        "economic_m": economic_m,
        "property_harm": property_harm,
        "offender": np.asarray(OFFENDER_STATUSES, dtype=object)[offender_index],
        "award_m": award_m,
        "received_m": claim_m * paid_share,
        "relief_m": relief_m,
    }


def _hardship(rng: np.random.Generator, case: Latent) -> Latent:
    """4. Household, dependants, income, low-income status, certificate, labour, registries."""
    n = len(case["crime_index"])
    age, severe, minor = case["age"], case["severe"], case["minor"]
    household = np.clip(rng.poisson(2.3, n) + 1, 1, 9).astype(float)
    adult = (age >= 22) & (age <= 65)
    dependants = np.where(adult, rng.binomial(np.maximum(household - 1, 0).astype(int), 0.6), 0)
    minor_dependants = np.where(adult & (age < 55), rng.binomial(dependants, 0.6), 0)
    rural = rng.random(n) < 0.42
    per_head = _lognormal(rng, np.where(rural, 0.18, 0.32), 0.7)  # months of base per person
    low = per_head < 0.12
    u = rng.random(n)
    low_income = np.where(
        low,
        np.select(
            [u < 0.45, u < 0.52, u < 0.72, (u < 0.85) & rural],
            ["dibao", "tekun", "marginal", "poverty_monitoring"],
            "none",
        ),
        np.select([u < 0.04, (u < 0.06) & rural], ["marginal", "poverty_monitoring"], "none"),
    ).astype(object)
    graded = ~np.isnan(case["disability_grade"])
    certificate = (rng.random(n) < 0.04) | (graded & (rng.random(n) < 0.55))
    u = rng.random(n)
    labor = np.select(
        [
            severe & (u < 0.3),
            severe & (u < 0.8),
            minor & (u < 0.25),
            age >= 75,
            (age >= 65) & (u < 0.5),
            age < 16,
        ],
        ["none", "partial", "partial", "none", "partial", "none"],
        "full",
    ).astype(object)
    labor[case["death"]] = None
    hardship_base = (low_income != "none") | (per_head < 0.15)
    flags = {
        "women_federation_hardship": (case["sex"] == "female")
        & hardship_base
        & (rng.random(n) < 0.25),
        "veteran_family": rng.random(n) < 0.025,
        "orphan_or_left_behind_child": (age < 18) & rural & (rng.random(n) < 0.3),
        "serious_illness": (rng.random(n) < 0.03) | (severe & (rng.random(n) < 0.15)),
    }
    return {
        "household": household,
        "dependants": dependants,
        "minor_dependants": minor_dependants,
        "rural": rural,
        "income_m": per_head * household,
        "low_income": low_income,
        "certificate": certificate,
        "labor": labor,
        "registry": _join_flags(flags),
    }


def _exclusions(rng: np.random.Generator, case: Latent) -> Latent:
    """5. The facts that usually exclude aid, at realistic rates (fault is common in fights)."""
    n = len(case["crime_index"])
    fault_rate = np.where(_is_crime(case, "intentional_injury"), 0.12, 0.04)
    return {
        "fault": rng.random(n) < fault_rate,
        "refused": rng.random(n) < 0.02,
        "aided_before": rng.random(n) < 0.02,
    }


def _case_card(rng: np.random.Generator, case: Latent, seed: int) -> dict[str, np.ndarray]:
    """6. What the case card shows: yuan = months × base, values missing where cards lack them."""
    n = len(case["crime_index"])
    base, injured = case["base"], case["injured"]
    medical = _mask(rng, np.round(case["medical_m"] * base), np.where(injured, 0.12, 0.5))
    expense = _mask(rng, np.round(case["expense_m"] * base), 0.2)
    economic = _mask(
        rng, np.round(case["economic_m"] * base), np.where(case["property_harm"], 0.08, 0.6)
    )
    numbers = np.char.zfill(np.arange(1, n + 1).astype(str), 8)
    record = {
        "case_id": np.char.add(f"SYN{seed}-", numbers).astype(object),
        "person_key": case["person_key"],
        "province_code": case["province"],
        "office_code": case["office"],
        "decision_year": case["year"],
        "crime_type": case["crime"],
        "applicant_role": case["role"],
        "harm_outcome": case["harm"],
        "disability_grade": case["disability_grade"],
        "urgent_medical_need": _mask(rng, case["urgent"], np.where(injured, 0.3, 0.6)),
        "medical_cost_yuan": medical,
        "case_expense_yuan": expense,
        "economic_loss_yuan": economic,
        "offender_status": case["offender"],
        "compensation_received_yuan": _mask(rng, np.round(case["received_m"] * base), 0.15),
        "court_award_yuan": np.round(case["award_m"] * base),
        "other_relief_received_yuan": _mask(rng, np.round(case["relief_m"] * base), 0.3),
        "victim_age": case["age"],
        "victim_sex": case["sex"],
        "household_size": _mask(rng, case["household"], 0.12),
        "dependants": _mask(rng, case["dependants"].astype(float), 0.18),
        "minor_dependants": case["minor_dependants"].astype(float),
        "monthly_household_income_yuan": _mask(rng, np.round(case["income_m"] * base), 0.28),
        "low_income_status": _mask(rng, case["low_income"], 0.3),
        "disability_certificate": _mask(rng, case["certificate"].astype(float), 0.2),
        "labor_capacity": _mask(rng, case["labor"], 0.2),
        "rural_hukou": _mask(rng, case["rural"].astype(float), 0.05),
        "registry_flags": case["registry"],
        "victim_at_fault": _mask(rng, case["fault"].astype(float), 0.25),
        "refused_cooperation": _mask(rng, case["refused"].astype(float), 0.35),
        "aided_before_for_this_case": _mask(rng, case["aided_before"].astype(float), 0.35),
    }
    record["minor_dependants"] = np.where(
        np.isnan(record["dependants"]), np.nan, record["minor_dependants"]
    )
    return record


def _join_flags(flags: dict[str, np.ndarray]) -> np.ndarray:
    """Registry flags as the canonical sorted ``|``-joined tokens."""
    out = np.full(len(next(iter(flags.values()))), "", dtype=object)
    for name in sorted(REGISTRY_FLAGS):  # alphabetical, so the joined text is sorted
        hit = flags[name]
        out[hit] = np.where(out[hit] == "", name, out[hit] + "|" + name)
    return out


@dataclass(frozen=True)
class CardFacts:
    """What an office reads off the case card to decide, in months of the base."""

    rules: RuleResults
    months: dict[str, np.ndarray]
    received_m: np.ndarray
    uncovered_m: np.ndarray
    per_head_m: np.ndarray
    severe_low: np.ndarray
    some_low: np.ndarray
    registered: np.ndarray
    no_labor: np.ndarray
    dependants: np.ndarray
    minors: np.ndarray
    disability: np.ndarray
    hardship: np.ndarray
    harm_index: np.ndarray  # the harm as the office reads it (index into GENERATED_HARMS)
    sexual: np.ndarray  # a sexual offence (the crime or the recorded harm)
    child: np.ndarray  # the victim is under 18


def decided_harm(record: dict[str, np.ndarray]) -> np.ndarray:
    """The harm as an office reads the card (an index into GENERATED_HARMS).

    A sexual offence is at least sexual or psychological harm (:func:`harm_as_read`): a rape
    recorded as ``none`` (how a v1 case system had to record it) or with a slight or minor
    injury is decided as sexual harm.
    """
    return np.array([GENERATED_HARMS.index(h) for h in harm_as_read(record)], dtype=int)


def _card_facts(record: dict[str, np.ndarray], base: np.ndarray) -> CardFacts:
    rules = evaluate_rules(record, base)
    months = {
        name: np.nan_to_num(record[name] / base)
        for name in ("medical_cost_yuan", "case_expense_yuan", "economic_loss_yuan")
    }
    received_m = compensation_in_hand(record) / base
    loss_m = documented_loss(record) / base
    income = record["monthly_household_income_yuan"] / np.nan_to_num(
        record["household_size"], nan=3.0
    )
    per_head_m = np.nan_to_num(income / base, nan=0.3)
    low_income = record["low_income_status"].astype(object)
    severe_low = np.isin(low_income, SEVERE_LOW_INCOME)
    some_low = np.isin(low_income, ("marginal", "poverty_monitoring"))
    registered = record["registry_flags"] != ""
    no_labor = record["labor_capacity"] == "none"
    dependants = np.nan_to_num(record["dependants"])
    grade = record["disability_grade"]
    hardship = (
        0.9 * severe_low
        + 0.5 * some_low
        + 0.4 * registered
        + 0.5 * no_labor
        + 0.8 * np.clip(0.35 - per_head_m, 0, 0.35) / 0.35
        + 0.1 * np.minimum(dependants, 4)
        + 0.2 * (record["rural_hukou"] == 1.0)
    )
    return CardFacts(
        rules=rules,
        months=months,
        received_m=received_m,
        uncovered_m=np.maximum(loss_m - received_m, 0.0),
        per_head_m=per_head_m,
        severe_low=severe_low,
        some_low=some_low,
        registered=registered,
        no_labor=no_labor,
        dependants=dependants,
        minors=np.nan_to_num(record["minor_dependants"]),
        disability=np.where(np.isnan(grade), 0.0, 11 - np.nan_to_num(grade)),
        hardship=hardship,
        harm_index=decided_harm(record),
        sexual=sexual_offence(record),
        child=minor_victim(record),
    )


def _noisy(logit: np.ndarray) -> np.ndarray:
    """The probability of a label with LABEL_NOISE flipped at random."""
    return np.asarray(LABEL_NOISE + (1 - 2 * LABEL_NOISE) * expit(logit))


def _decide_outcomes(
    rng: np.random.Generator,
    record: dict[str, np.ndarray],
    case: Latent,
    world: RegionalPractice,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """7. The office's decisions, from the case card, and the oracle of each."""
    base, province_index = case["base"], case["province_index"]
    facts = _card_facts(record, base)
    lead_logit = _judicial_aid_logit(record, facts)
    p_lead = _noisy(lead_logit + world.lead_readiness[province_index])
    granted = rng.random(len(base)) < p_lead
    location = _amount_location(facts)
    cap_months = _cap_months(record, facts, base)
    generosity = world.generosity[province_index] + world.office_generosity[case["office_index"]]
    noise = AMOUNT_NOISE_SIGMA * rng.standard_normal(len(base))
    amount_m = np.minimum(np.exp(location + generosity + noise), cap_months)
    amount_yuan = np.maximum(np.round(amount_m * base / 100.0) * 100.0, 100.0)
    p_social = _noisy(_social_logit(record, facts) + world.social_readiness[province_index])
    p_civil = _noisy(_civil_logit(record, facts) + world.civil_readiness[province_index])
    outcomes = {
        "aid_granted": granted.astype(float),
        "aid_amount_yuan": np.where(granted, amount_yuan, np.nan),
        "referred_social_assistance": (rng.random(len(base)) < p_social).astype(float),
        "civil_support_prosecution": (rng.random(len(base)) < p_civil).astype(float),
    }
    national = location + national_median_offset(lead_logit, world)
    oracle = {
        "oracle_p_judicial_aid": p_lead,
        "oracle_p_social_assistance": p_social,
        "oracle_p_civil_support": p_civil,
        "oracle_amount_months_local": np.minimum(np.exp(location + generosity), cap_months),
        "oracle_amount_months_national": np.minimum(np.exp(national), cap_months),
    }
    return outcomes, oracle


def _judicial_aid_logit(record: dict[str, np.ndarray], facts: CardFacts) -> np.ndarray:
    """The lead's log-odds before the province's readiness: the rules' verdict first."""
    status = facts.rules.status
    no_comp = np.isin(record["offender_status"], NO_COMPENSATION_OBTAINABLE)
    verdict = np.select(
        [
            status == EligibilityStatus.EXCLUDED.value,
            status == EligibilityStatus.ELIGIBLE.value,
        ],
        [-4.5, -0.6],
        -2.6,
    )
    return np.asarray(
        verdict
        + LEAD_HARM[facts.harm_index]
        + SEXUAL_LEAD * facts.sexual
        + MINOR_LEAD * facts.child
        + 0.08 * facts.disability
        + 0.9 * facts.hardship
        + 0.7 * no_comp
        + 0.35 * np.log1p(facts.uncovered_m)
        - 0.3 * np.log1p(facts.received_m)
        + 0.4 * (record["urgent_medical_need"] == 1.0)
    )


def _amount_location(facts: CardFacts) -> np.ndarray:
    """log(months) of a granted case before the province's generosity and the noise.

    Monotone in the harm, the expenses, the uncovered loss (up) and the compensation
    received (down).
    """
    months = facts.months
    return np.asarray(
        AMOUNT_LOCATION[facts.harm_index]
        + SEXUAL_AMOUNT * facts.sexual
        + MINOR_AMOUNT * facts.child
        + MINOR_SEXUAL_AMOUNT * (facts.child & facts.sexual)
        + 0.09 * facts.disability
        + 0.22 * np.log1p(months["medical_cost_yuan"] + months["case_expense_yuan"])
        + 0.12 * np.log1p(facts.uncovered_m)
        - 0.10 * np.log1p(facts.received_m)
        + 0.25 * facts.severe_low
        + 0.12 * facts.some_low
        + 0.12 * np.minimum(facts.dependants, 4)
        + MINOR_DEPENDANT_AMOUNT * np.minimum(facts.minors, 4)
        + 0.15 * facts.no_labor
        + 0.08 * facts.registered
    )


def _cap_months(record: dict[str, np.ndarray], facts: CardFacts, base: np.ndarray) -> np.ndarray:
    """36 months, or the court award under the statutory exception."""
    award = np.nan_to_num(record["court_award_yuan"]) / base
    return np.asarray(
        np.where(
            facts.rules.hits["CEILING_EXCEPTION_COURT_AWARD"],
            np.maximum(award, CEILING_MONTHS),
            CEILING_MONTHS,
        )
    )


def _social_logit(record: dict[str, np.ndarray], facts: CardFacts) -> np.ndarray:
    """A social-assistance referral: hardship not caused by the case."""
    elderly_alone = (record["victim_age"] >= 70) & (record["household_size"] == 1.0)
    return np.asarray(
        -3.4
        + 1.3 * facts.severe_low
        + 0.8 * facts.some_low
        + 0.6 * facts.registered
        + 0.7 * facts.no_labor
        + 1.0 * np.clip(0.3 - facts.per_head_m, 0, 0.3) / 0.3
        + 0.7 * elderly_alone
        + 0.4 * (record["rural_hukou"] == 1.0)
        + 0.6 * (facts.rules.status == EligibilityStatus.EXCLUDED.value)
    )


def _civil_logit(record: dict[str, np.ndarray], facts: CardFacts) -> np.ndarray:
    """Civil support-prosecution: someone to sue, a victim who cannot sue alone."""
    age = record["victim_age"]
    vulnerable = (
        (age < 18)
        | (age >= 65)
        | (facts.disability > 0)
        | (record["disability_certificate"] == 1.0)
    )
    crime = record["crime_type"]
    return np.asarray(
        -3.6
        + 1.6 * np.isin(record["offender_status"], ("able_to_pay", "unknown"))
        + 1.4 * (crime == "wage_arrears")
        + 1.1 * (crime == "abuse_abandonment")
        + 0.5 * np.isin(crime, ("traffic_accident", "civil_tort"))
        + 0.8 * vulnerable
        + 0.5 * (facts.received_m < 0.05)
        + 0.3 * np.isnan(record["court_award_yuan"])
    )
