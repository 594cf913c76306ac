"""The statutory rules of 国家司法救助, as code a reviewer can read.

Sources: the Supreme People's Procuratorate's 2021 rules on state judicial assistance
(人民检察院开展国家司法救助工作细则), Art. 7 (who may be aided), Art. 8 (who is usually not),
and the amount provisions (the previous-year provincial average monthly wage as the base,
normally at most 36 months; more only for especially grave loss and especially severe
hardship, and then never above what a court awarded). Minors and victims of sexual offences:
the Supreme People's Procuratorate's 2018 opinion on strengthening judicial aid for minors
(最高人民检察院关于全面加强未成年人国家司法救助工作的意见, 2018-02-27; its list of the minors
procuratorates shall aid begins with those whose body was disabled or whose mind was severely
traumatised by a crime and who, not compensated in time, live in hardship), the Law on the
Protection of Minors (未成年人保护法, 2020 revision) Art. 111 (economic aid among the measures
for minor victims of sexual assault or violence), and the Procuratorate's and All-China
Women's Federation's 2022 notice on special judicial aid for women in hardship (关注困难妇女群体，
加强专项司法救助, victims of sexual assault named as a priority group).

Each :class:`Rule` has an id, a Chinese and an English text, the fields it reads and a
vectorised test over canonical columns (see ``features.contract``). Rules are applied
before any model and reported as hits beside the model's numbers, never hidden in them.
The thresholds are this project's reading of the rules' words ("major loss", "hardship"):
:class:`RuleConstants`, which a deployment's policy file can change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from features.contract import wire_value
from features.wages import CEILING_MONTHS

Columns = Mapping[str, np.ndarray]

NO_COMPENSATION_OBTAINABLE = ("unable_to_pay", "deceased", "unidentified")
LOW_INCOME_RECOGNISED = ("dibao", "tekun", "marginal", "poverty_monitoring")
SEVERE_LOW_INCOME = ("dibao", "tekun")
SEXUAL_OFFENCES = ("rape",)
"""Crime types that are sexual offences (the contract's crime list has one)."""
SEXUAL_HARM = "sexual_or_psychological"
LIGHTER_THAN_SEXUAL_HARM = ("none", "property_loss", "slight_injury", "minor_injury")
"""Recorded harms a sexual offence is read above (:func:`harm_as_read`)."""
HARMED_IN_PERSON = (
    "death",
    "severe_injury",
    "minor_injury",
    "slight_injury",
    "sexual_or_psychological",
)
"""Harm outcomes that are harm to the person (not property loss, not none)."""
ADULT_AGE = 18
"""Victims younger than this are minors (未成年人)."""


@dataclass(frozen=True)
class RuleConstants:
    """This project's reading of the rules' vague words, as numbers a deployment can change.

    The defaults are the project's reading; a policy file (``training.policy``) may set
    others, and the case vectors and every rule verdict then use those.
    """

    hardship_income_share: float = 0.30
    """Household income per head below this share of the monthly base counts as hardship."""
    major_property_loss_months: float = 6.0
    """A property loss of at least this many months of the base counts as major."""
    grave_disability_grade: int = 2
    """Disability grades 1..this (or death) count as especially grave loss for the exception."""


class RuleKind(StrEnum):
    """What a rule decides."""

    EXCLUSION = "exclusion"
    CATEGORY = "category"
    CEILING = "ceiling"


class EligibilityStatus(StrEnum):
    """The rules' verdict on a case, before any model."""

    ELIGIBLE = "eligible"
    EXCLUDED = "excluded"
    NEEDS_REVIEW = "needs_review"


def _col(columns: Columns, name: str) -> np.ndarray:
    return np.asarray(columns[name])


def _is(columns: Columns, name: str) -> np.ndarray:
    """True where a boolean field is known to be true."""
    return _col(columns, name) == 1.0


def among(column: np.ndarray, values: tuple[str, ...]) -> np.ndarray:
    """Membership of an object column in a few tokens (np.isin costs ~25 µs on one row)."""
    if len(column) <= 64:
        wanted = set(values)
        return np.fromiter((v in wanted for v in column), dtype=bool, count=len(column))
    return np.isin(column.astype(object), values)


def _among(columns: Columns, name: str, values: tuple[str, ...]) -> np.ndarray:
    return among(_col(columns, name), values)


def unknown_as_zero(values: np.ndarray) -> np.ndarray:
    """NaN (unknown) counted as 0; ``np.nan_to_num`` costs ~10× more on one row."""
    values = np.asarray(values, dtype=float)
    return np.where(np.isnan(values), 0.0, values)


def _money(columns: Columns, name: str) -> np.ndarray:
    """A money field with unknown counted as 0 (what the record shows was spent or paid)."""
    return unknown_as_zero(_col(columns, name))


def documented_loss(columns: Columns) -> np.ndarray:
    """Medical cost + necessary case expenses + property loss, in yuan (unknown = 0)."""
    return (
        _money(columns, "medical_cost_yuan")
        + _money(columns, "case_expense_yuan")
        + _money(columns, "economic_loss_yuan")
    )


def compensation_in_hand(columns: Columns) -> np.ndarray:
    """Compensation received plus insurance or other relief already paid, in yuan."""
    return _money(columns, "compensation_received_yuan") + _money(
        columns, "other_relief_received_yuan"
    )


def hardship_signals(
    columns: Columns, base_monthly_wage: np.ndarray, constants: RuleConstants
) -> np.ndarray:
    """How many hardship signals a clerk would accept each case shows (0 = none).

    The signals: a recognised low-income status, income per head below
    ``constants.hardship_income_share`` of the base, each other department's registry, no
    labour capacity.
    """
    income = _col(columns, "monthly_household_income_yuan").astype(float)
    size = _col(columns, "household_size").astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        low_income = income / np.where(np.isnan(size), 1.0, size) < (
            constants.hardship_income_share * base_monthly_wage
        )
    flags = _col(columns, "registry_flags").astype(object)
    registries = np.array([len(f.split("|")) if f else 0 for f in flags], dtype=float)
    return (
        _among(columns, "low_income_status", LOW_INCOME_RECOGNISED).astype(float)
        + low_income
        + registries
        + _among(columns, "labor_capacity", ("none",))
    )


@dataclass(frozen=True)
class RuleInputs:
    """What every rule test reads: the canonical columns, the wage base and hardship.

    The hardship verdict is computed once per evaluation; three category rules need it.
    """

    columns: Columns
    base: np.ndarray
    hardship: np.ndarray  # bool: at least one hardship signal
    constants: RuleConstants


def _fully_compensated(r: RuleInputs) -> np.ndarray:
    columns = r.columns
    received = compensation_in_hand(columns)
    award = _col(columns, "court_award_yuan").astype(float)
    loss = documented_loss(columns)
    award_paid = ~np.isnan(award) & (award > 0) & (received >= award)
    loss_covered = (loss > 0) & (received >= loss) & ~_among(columns, "harm_outcome", ("death",))
    return award_paid | loss_covered


def _no_compensation(columns: Columns) -> np.ndarray:
    return _among(columns, "offender_status", NO_COMPENSATION_OBTAINABLE)


def _cat_severe(r: RuleInputs) -> np.ndarray:
    columns = r.columns
    grade = _col(columns, "disability_grade").astype(float)
    seriously_hurt = _among(columns, "harm_outcome", ("severe_injury",)) | ~np.isnan(grade)
    return seriously_hurt & _no_compensation(columns) & r.hardship


def _cat_urgent(r: RuleInputs) -> np.ndarray:
    columns = r.columns
    injured = _among(columns, "harm_outcome", ("severe_injury", "minor_injury", "slight_injury"))
    unpaid = _no_compensation(columns) | (compensation_in_hand(columns) == 0)
    return injured & _is(columns, "urgent_medical_need") & unpaid


def _cat_dependants(r: RuleInputs) -> np.ndarray:
    columns = r.columns
    lost = _among(columns, "harm_outcome", ("death",)) | _among(
        columns, "labor_capacity", ("none",)
    )
    relative = _among(columns, "applicant_role", ("close_relative",))
    return lost & relative & _no_compensation(columns)


def _cat_property(r: RuleInputs) -> np.ndarray:
    columns, base = r.columns, r.base
    loss = _money(columns, "economic_loss_yuan")
    major = loss >= r.constants.major_property_loss_months * base
    return (
        _among(columns, "harm_outcome", ("property_loss",))
        & major
        & _no_compensation(columns)
        & r.hardship
    )


def _cat_retaliation(r: RuleInputs) -> np.ndarray:
    columns = r.columns
    harmed = ~_among(columns, "harm_outcome", ("none",))
    return _among(columns, "applicant_role", ("witness_or_reporter",)) & harmed


def _cat_civil_tort(r: RuleInputs) -> np.ndarray:
    columns = r.columns
    tort = _among(columns, "crime_type", ("traffic_accident", "civil_tort"))
    return tort & _no_compensation(columns) & r.hardship


def _not_compensated_in_time(columns: Columns) -> np.ndarray:
    """No compensation obtainable, or nothing received yet ("不能及时获得有效赔偿")."""
    return _no_compensation(columns) | (compensation_in_hand(columns) == 0)


def sexual_offence(columns: Columns) -> np.ndarray:
    """A sexual offence: the crime is one, or the harm is recorded as sexual or psychological."""
    return _among(columns, "crime_type", SEXUAL_OFFENCES) | _among(
        columns, "harm_outcome", (SEXUAL_HARM,)
    )


def harm_as_read(columns: Columns) -> np.ndarray:
    """The harm outcome as an office reads it: a sexual offence is at least sexual harm.

    A sexual offence recorded as ``none`` (how a v1 case system had to record it), as a
    property loss, or with a slight or minor injury is read as ``sexual_or_psychological``, so
    recording another harm beside a rape never reads as lighter than recording none; a
    severe injury or a death is graver and is read as recorded. The amount's harm severity and
    the generated offices' decisions both read the harm this way.
    """
    harm = _col(columns, "harm_outcome").astype(object)
    lighter = among(harm, LIGHTER_THAN_SEXUAL_HARM) & sexual_offence(columns)
    return np.where(lighter, SEXUAL_HARM, harm)


def minor_victim(columns: Columns) -> np.ndarray:
    """The victim is known to be under 18."""
    age = _col(columns, "victim_age").astype(float)
    return ~np.isnan(age) & (unknown_as_zero(age) < ADULT_AGE)


def _cat_minor(r: RuleInputs) -> np.ndarray:
    columns = r.columns
    harmed = _among(columns, "harm_outcome", HARMED_IN_PERSON) | sexual_offence(columns)
    return minor_victim(columns) & harmed & _not_compensated_in_time(columns) & r.hardship


def _cat_sexual(r: RuleInputs) -> np.ndarray:
    columns = r.columns
    return sexual_offence(columns) & _not_compensated_in_time(columns) & r.hardship


def ceiling_exception_applies(r: RuleInputs) -> np.ndarray:
    """Especially grave loss, especially severe hardship, and a court award above 36 months."""
    columns, base = r.columns, r.base
    grade = _col(columns, "disability_grade").astype(float)
    grave = _among(columns, "harm_outcome", ("death",)) | (
        grade <= r.constants.grave_disability_grade
    )
    severe = _among(columns, "low_income_status", SEVERE_LOW_INCOME) | (
        _among(columns, "labor_capacity", ("none",))
        & (unknown_as_zero(_col(columns, "dependants")) > 0)
    )
    award = _col(columns, "court_award_yuan").astype(float)
    return grave & severe & (unknown_as_zero(award) > CEILING_MONTHS * base)


def _always(r: RuleInputs) -> np.ndarray:
    return np.ones(len(r.base), dtype=bool)


@dataclass(frozen=True)
class Rule:
    """One statutory rule: readable text plus the test that decides whether it hits."""

    id: str
    kind: RuleKind
    zh: str
    en: str
    facts: tuple[str, ...]
    test: Callable[[RuleInputs], np.ndarray] = field(repr=False)


RULES: tuple[Rule, ...] = (
    Rule(
        "EXCL_VICTIM_AT_FAULT",
        RuleKind.EXCLUSION,
        "被害人对案件发生有重大过错或者应当承担责任的，一般不予救助（细则第八条）",
        "Usually not aided: the applicant bears major fault or responsibility for the crime "
        "(Art. 8)",
        ("victim_at_fault",),
        lambda r: _is(r.columns, "victim_at_fault"),
    ),
    Rule(
        "EXCL_REFUSED_COOPERATION",
        RuleKind.EXCLUSION,
        "无正当理由拒绝配合查明案件事实，或者故意作虚伪陈述、伪造证据的，一般不予救助（细则第八条）",
        "Usually not aided: refused without reason to help establish the facts, or made false "
        "statements (Art. 8)",
        ("refused_cooperation",),
        lambda r: _is(r.columns, "refused_cooperation"),
    ),
    Rule(
        "EXCL_ALREADY_AIDED",
        RuleKind.EXCLUSION,
        "已就本案获得司法救助的，不再重复救助（救助一次性）",
        "Not aided again: assistance for this case was already granted (aid is one-off)",
        ("aided_before_for_this_case",),
        lambda r: _is(r.columns, "aided_before_for_this_case"),
    ),
    Rule(
        "EXCL_FULLY_COMPENSATED",
        RuleKind.EXCLUSION,
        "通过诉讼、保险或其他救助已获合理补偿的，一般不予救助（细则第八条）",
        "Usually not aided: already reasonably compensated (the court award is paid, or what was "
        "received covers the documented loss) (Art. 8)",
        (
            "compensation_received_yuan",
            "other_relief_received_yuan",
            "court_award_yuan",
            "medical_cost_yuan",
            "case_expense_yuan",
            "economic_loss_yuan",
        ),
        _fully_compensated,
    ),
    Rule(
        "ART7_SEVERE_INJURY_NO_COMPENSATION",
        RuleKind.CATEGORY,
        "受到犯罪侵害致重伤或者严重残疾，因加害人死亡、没有赔偿能力或者无法查明，未获赔偿，生活困难（细则第七条）",
        "Seriously injured or disabled by a crime, no compensation obtainable (offender dead, "
        "unable to pay or unidentified), and in hardship (Art. 7)",
        (
            "harm_outcome",
            "disability_grade",
            "offender_status",
            "low_income_status",
            "monthly_household_income_yuan",
            "household_size",
            "registry_flags",
        ),
        _cat_severe,
    ),
    Rule(
        "ART7_URGENT_MEDICAL",
        RuleKind.CATEGORY,
        "遭受犯罪侵害危及生命，急需救治，无力承担医疗救治费用（细则第七条）",
        "Injured by a crime, in urgent need of treatment and unable to pay for it (Art. 7)",
        ("harm_outcome", "urgent_medical_need", "offender_status", "compensation_received_yuan"),
        _cat_urgent,
    ),
    Rule(
        "ART7_DEPENDANTS_OF_DECEASED",
        RuleKind.CATEGORY,
        "被害人死亡或者丧失劳动能力，其近亲属或被扶养人无法获得赔偿（细则第七条）",
        "The victim died or lost labour capacity and the close relatives cannot obtain "
        "compensation (Art. 7)",
        ("harm_outcome", "labor_capacity", "applicant_role", "offender_status"),
        _cat_dependants,
    ),
    Rule(
        "ART7_MAJOR_PROPERTY_LOSS",
        RuleKind.CATEGORY,
        "因犯罪侵害遭受重大财产损失，无法获得赔偿，生活困难（细则第七条）",
        "Major property loss (at least the policy's months of the base, 6 by default) from a "
        "crime, no compensation obtainable, and in hardship (Art. 7)",
        ("harm_outcome", "economic_loss_yuan", "offender_status", "low_income_status"),
        _cat_property,
    ),
    Rule(
        "ART7_RETALIATION",
        RuleKind.CATEGORY,
        "举报人、证人、鉴定人因举报、作证、鉴定受到打击报复，致人身或财产受损（细则第七条）",
        "An informant, witness or expert harmed in retaliation (Art. 7)",
        ("applicant_role", "harm_outcome"),
        _cat_retaliation,
    ),
    Rule(
        "ART7_CIVIL_TORT_UNCOMPENSATED",
        RuleKind.CATEGORY,
        "交通事故等民事侵权行为造成人身伤害，无法通过诉讼获得赔偿，生活困难（细则第七条）",
        "Harmed by a road-traffic accident or other civil tort, no compensation obtainable "
        "through litigation, and in hardship (Art. 7)",
        ("crime_type", "offender_status", "low_income_status"),
        _cat_civil_tort,
    ),
    Rule(
        "MINOR_VICTIM_PRIORITY",
        RuleKind.CATEGORY,
        "未成年人受到犯罪侵害致使身体伤残或者心理遭受严重创伤，因不能及时获得有效赔偿，造成生活困难，"
        "应当给予救助并优先、特殊保护（最高人民检察院《关于全面加强未成年人国家司法救助工作的意见》"
        "（2018）；《未成年人保护法》第一百一十一条）",
        "A victim under 18, harmed in person or by a sexual offence, not compensated in time "
        "and in hardship: to be aided with priority (SPP opinion on judicial aid for minors, "
        "2018; Law on the Protection of Minors Art. 111)",
        (
            "victim_age",
            "harm_outcome",
            "crime_type",
            "offender_status",
            "compensation_received_yuan",
            "low_income_status",
            "registry_flags",
        ),
        _cat_minor,
    ),
    Rule(
        "SEXUAL_OFFENCE_VICTIM",
        RuleKind.CATEGORY,
        "遭受性侵害的被害人，因不能及时获得有效赔偿，造成生活困难（细则第七条其他情形；"
        "最高人民检察院、全国妇联关于加强困难妇女专项司法救助的通知（2022）将遭受性侵害的妇女列为重点对象；"
        "未成年被害人另见《未成年人保护法》第一百一十一条）",
        "A victim of a sexual offence (the crime, or harm recorded as sexual or psychological), "
        "not compensated in time and in hardship (Art. 7, other cases; the SPP and Women's "
        "Federation 2022 notice names victims of sexual assault a priority group)",
        (
            "crime_type",
            "harm_outcome",
            "offender_status",
            "compensation_received_yuan",
            "low_income_status",
            "registry_flags",
        ),
        _cat_sexual,
    ),
    Rule(
        "CEILING_36_MONTHS",
        RuleKind.CEILING,
        "救助金额一般不超过上一年度职工月平均工资的36个月",
        "The amount normally does not exceed 36 months of the previous year's average monthly wage",
        ("province_code", "decision_year"),
        _always,
    ),
    Rule(
        "CEILING_EXCEPTION_COURT_AWARD",
        RuleKind.CEILING,
        "损失特别重大、生活特别困难的，可适当突破36个月，但不得超过人民法院依法应当判决的赔偿数额",
        "Especially grave loss and especially severe hardship: the 36-month ceiling may be "
        "exceeded, but never above the court award",
        (
            "harm_outcome",
            "disability_grade",
            "low_income_status",
            "labor_capacity",
            "dependants",
            "court_award_yuan",
        ),
        ceiling_exception_applies,
    ),
)

RULE_BY_ID: dict[str, Rule] = {r.id: r for r in RULES}


@dataclass(frozen=True)
class RuleHit:
    """A rule that applies to a case, with the facts that triggered it."""

    id: str
    kind: RuleKind
    zh: str
    en: str
    facts: dict[str, Any]


@dataclass
class RuleResults:
    """Every rule evaluated on every row (vectorised), plus the per-row verdicts."""

    hits: dict[str, np.ndarray]
    ceiling_yuan: np.ndarray
    status: np.ndarray  # EligibilityStatus values
    excluded: np.ndarray  # bool: an exclusion hit
    categories: np.ndarray  # how many Art. 7 categories hit
    hardship_signals: np.ndarray  # see hardship_signals()

    def rule_ids(self, row: int) -> list[str]:
        """Ids of the rules that hit ``row``."""
        return [rule_id for rule_id, mask in self.hits.items() if mask[row]]


def evaluate_rules(
    columns: Columns, base_monthly_wage: np.ndarray, constants: RuleConstants | None = None
) -> RuleResults:
    """Evaluate every rule on canonical columns with the rows' monthly wage base."""
    base = np.asarray(base_monthly_wage, dtype=float)
    constants = constants or RuleConstants()
    signals = hardship_signals(columns, base, constants)
    inputs = RuleInputs(columns, base, signals > 0, constants)
    hits = {rule.id: np.asarray(rule.test(inputs), dtype=bool) for rule in RULES}
    excluded = np.zeros(len(base), dtype=bool)
    categories = np.zeros(len(base))
    for rule in RULES:
        if rule.kind is RuleKind.EXCLUSION:
            excluded |= hits[rule.id]
        elif rule.kind is RuleKind.CATEGORY:
            categories += hits[rule.id]
    status = np.where(
        excluded,
        EligibilityStatus.EXCLUDED.value,
        np.where(
            categories > 0, EligibilityStatus.ELIGIBLE.value, EligibilityStatus.NEEDS_REVIEW.value
        ),
    ).astype(object)
    award = unknown_as_zero(_col(columns, "court_award_yuan"))
    ceiling = np.where(hits["CEILING_EXCEPTION_COURT_AWARD"], award, CEILING_MONTHS * base)
    return RuleResults(hits, ceiling, status, excluded, categories, signals)


def rule_hits(columns: Columns, results: RuleResults, row: int) -> list[RuleHit]:
    """The hits of one row with the facts (wire values) each rule read."""
    out = []
    for rule_id in results.rule_ids(row):
        rule = RULE_BY_ID[rule_id]
        facts = {name: wire_value(name, columns[name][row]) for name in rule.facts}
        out.append(RuleHit(rule.id, rule.kind, rule.zh, rule.en, facts))
    return out
