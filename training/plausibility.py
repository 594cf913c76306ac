"""A dozen hand-written cases and what a bundle answers for them: does the champion make sense?

The cases cover every harm outcome, minors, deaths with dependants and property loss, and the
three answers of issue #11 (a 14-year-old rape victim from a 低保 left-behind family; a death
leaving four minor children in a 低保 family; an ordinary death). :func:`plausibility_rows`
scores them with a bundle and :func:`markdown_table` renders the table the README and the
notebook show (``bench/plausibility.py`` prints it for the shipped champion).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from features.contract import parse_records
from training.bundle import ModelBundle

DECISION_YEAR = 2025
"""The year the cases are decided in (the wage base is the year before)."""

_PLAIN: dict[str, Any] = {
    "province_code": "41",  # 河南: near the national median wage
    "decision_year": DECISION_YEAR,
    "applicant_role": "victim",
    "offender_status": "unable_to_pay",
    "victim_sex": "male",
    "household_size": 3,
    "dependants": 1,
    "minor_dependants": 0,
    "monthly_household_income_yuan": 9_000,  # 3,000 per head: no hardship by income
    "low_income_status": "none",
    "labor_capacity": "full",
    "rural_hukou": False,
    "registry_flags": "",
    "compensation_received_yuan": 0,
}

CHILD_RAPE = {
    "zh": "14岁强奸被害人，低保、留守儿童（v1 记录：无人身伤害）",
    "crime_type": "rape",
    "harm_outcome": "none",
    "victim_age": 14,
    "victim_sex": "female",
    "household_size": 3,
    "dependants": 0,
    "monthly_household_income_yuan": 1_500,
    "low_income_status": "dibao",
    "labor_capacity": "none",
    "rural_hukou": True,
    "registry_flags": "orphan_or_left_behind_child",
}
"""Issue #11's first case, as a v1 case system had to record it; its v1.1 record follows."""

PLAUSIBILITY_CASES: dict[str, dict[str, Any]] = {
    "child_rape_v1": CHILD_RAPE,
    "child_rape_v11": {
        **CHILD_RAPE,
        "zh": "同上（v1.1 记录：性侵害或严重精神损害）",
        "harm_outcome": "sexual_or_psychological",
    },
    "adult_sexual_assault": {
        "zh": "26岁女性性侵害被害人，妇联登记困难",
        "crime_type": "rape",
        "harm_outcome": "sexual_or_psychological",
        "victim_age": 26,
        "victim_sex": "female",
        "household_size": 1,
        "dependants": 0,
        "monthly_household_income_yuan": 1_800,
        "registry_flags": "women_federation_hardship",
    },
    "death_four_minors_dibao": {
        "zh": "被害人死亡，遗四名未成年子女，低保家庭",
        "crime_type": "intentional_homicide",
        "harm_outcome": "death",
        "applicant_role": "close_relative",
        "victim_age": 38,
        "household_size": 6,
        "dependants": 5,
        "minor_dependants": 4,
        "monthly_household_income_yuan": 1_200,
        "low_income_status": "dibao",
        "labor_capacity": None,
        "rural_hukou": True,
    },
    "death_ordinary": {
        "zh": "被害人死亡，一名成年被扶养人，无低收入认定",
        "crime_type": "intentional_homicide",
        "harm_outcome": "death",
        "applicant_role": "close_relative",
        "victim_age": 52,
        "household_size": 2,
        "dependants": 1,
        "monthly_household_income_yuan": 3_000,
        "labor_capacity": None,
    },
    "severe_injury_disabled": {
        "zh": "重伤致四级伤残，医疗费6万元，边缘易致贫",
        "crime_type": "intentional_injury",
        "harm_outcome": "severe_injury",
        "disability_grade": 4,
        "victim_age": 45,
        "medical_cost_yuan": 60_000,
        "low_income_status": "marginal",
        "labor_capacity": "partial",
        "monthly_household_income_yuan": 2_500,
    },
    "child_traffic_severe": {
        "zh": "9岁儿童交通肇事逃逸致重伤，急需救治，医疗费9万元",
        "crime_type": "traffic_accident",
        "harm_outcome": "severe_injury",
        "offender_status": "unidentified",
        "victim_age": 9,
        "victim_sex": "female",
        "urgent_medical_need": True,
        "medical_cost_yuan": 90_000,
        "dependants": 0,
        "rural_hukou": True,
        "monthly_household_income_yuan": 3_000,
    },
    "minor_injury_paid_in_part": {
        "zh": "轻伤，医疗费8千元，已获赔2千元",
        "crime_type": "intentional_injury",
        "harm_outcome": "minor_injury",
        "offender_status": "able_to_pay",
        "victim_age": 33,
        "medical_cost_yuan": 8_000,
        "compensation_received_yuan": 2_000,
    },
    "slight_injury": {
        "zh": "轻微伤，医疗费800元，无困难",
        "crime_type": "intentional_injury",
        "harm_outcome": "slight_injury",
        "victim_age": 29,
        "medical_cost_yuan": 800,
        "monthly_household_income_yuan": 12_000,
    },
    "fraud_elderly_major_loss": {
        "zh": "72岁老人被骗12万元，特困供养",
        "crime_type": "fraud",
        "harm_outcome": "property_loss",
        "offender_status": "unidentified",
        "victim_age": 72,
        "victim_sex": "female",
        "household_size": 1,
        "dependants": 0,
        "economic_loss_yuan": 120_000,
        "monthly_household_income_yuan": 900,
        "low_income_status": "tekun",
        "labor_capacity": "none",
        "rural_hukou": True,
    },
    "theft_small_loss": {
        "zh": "被盗3千元，无困难",
        "crime_type": "theft",
        "harm_outcome": "property_loss",
        "offender_status": "unidentified",
        "victim_age": 40,
        "economic_loss_yuan": 3_000,
        "monthly_household_income_yuan": 15_000,
    },
    "witness_retaliation": {
        "zh": "证人遭打击报复致轻伤",
        "crime_type": "intentional_injury",
        "harm_outcome": "minor_injury",
        "applicant_role": "witness_or_reporter",
        "victim_age": 35,
        "medical_cost_yuan": 5_000,
    },
    "victim_at_fault": {
        "zh": "重伤但被害人对案件有重大过错",
        "crime_type": "intentional_injury",
        "harm_outcome": "severe_injury",
        "victim_age": 30,
        "medical_cost_yuan": 40_000,
        "victim_at_fault": True,
    },
}
"""The cases by id: a Chinese description (``zh``) and the fields that differ from _PLAIN."""


def plausibility_frame() -> pd.DataFrame:
    """The cases as a canonical frame (parsed and validated by the contract)."""
    rows = []
    for case_id, case in PLAUSIBILITY_CASES.items():
        fields = {k: v for k, v in case.items() if k != "zh"}
        rows.append({"case_id": case_id, **_PLAIN, **fields})
    parsed = parse_records(pd.DataFrame(rows), scoring=True)
    if parsed.violations:
        raise ValueError(f"a plausibility case breaks the contract: {parsed.violations[0]}")
    return parsed.frame


def plausibility_rows(bundle: ModelBundle) -> pd.DataFrame:
    """Each case's answer: reference amount, 80 % interval, lead probability, rules' verdict."""
    frame = plausibility_frame()
    scores = bundle.score(frame)
    probability = scores.lead_probability["judicial_aid"]
    return pd.DataFrame(
        {
            "case": frame["case_id"].to_numpy(),
            "zh": [PLAUSIBILITY_CASES[c]["zh"] for c in frame["case_id"]],
            "harm_outcome": frame["harm_outcome"].to_numpy(),
            "amount_yuan": scores.reference_amount_yuan,
            "low_yuan": scores.interval_low_yuan,
            "high_yuan": scores.interval_high_yuan,
            "p_judicial_aid": probability,
            "flagged": probability >= bundle.lead_thresholds["judicial_aid"],
            "status": scores.rules.status,
            "rules": [";".join(scores.rules.rule_ids(i)) for i in range(len(frame))],
        }
    )


def markdown_table(rows: pd.DataFrame) -> str:
    """The answers as a markdown table (yuan without decimals; the 36-month ceiling not listed)."""
    lines = [
        "| case | 案情 | harm | amount (yuan) | 80 % interval | P(judicial-aid lead) | rules |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for row in rows.itertuples():
        hits = str(row.rules).split(";")
        rules = ", ".join(r for r in hits if r and not r.startswith("CEILING_36"))
        lines.append(
            f"| {row.case} | {row.zh} | {row.harm_outcome} | {row.amount_yuan:,.0f} | "
            f"{row.low_yuan:,.0f}–{row.high_yuan:,.0f} | {row.p_judicial_aid:.2f}"
            f"{' (flagged)' if row.flagged else ''} | {row.status}: {rules or '—'} |"
        )
    return "\n".join(lines)
