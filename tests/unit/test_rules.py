"""Every statutory rule, from both sides of its boundary."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from features.contract import parse_record
from features.rules import (
    RULES,
    EligibilityStatus,
    RuleConstants,
    evaluate_rules,
    rule_hits,
)

BASE = 10_000.0  # monthly wage base used in these tests


def _case(**changes: Any) -> dict[str, Any]:
    """A plain injury case that triggers nothing, changed as the test says."""
    case: dict[str, Any] = {
        "case_id": "T-1",
        "province_code": "32",
        "decision_year": 2024,
        "crime_type": "intentional_injury",
        "applicant_role": "victim",
        "harm_outcome": "minor_injury",
        "offender_status": "able_to_pay",
        "victim_age": 40,
        "victim_sex": "male",
        "household_size": 3,
        "monthly_household_income_yuan": 20_000,
        "low_income_status": "none",
        "labor_capacity": "full",
        "registry_flags": [],
    }
    case.update(changes)
    return case


def _hits(
    case: dict[str, Any], constants: RuleConstants | None = None
) -> tuple[set[str], str, float]:
    parsed = parse_record(case)
    assert parsed.violations == [], parsed.violations
    columns = {c: parsed.frame[c].to_numpy() for c in parsed.frame.columns}
    results = evaluate_rules(columns, np.array([BASE]), constants)
    return set(results.rule_ids(0)), str(results.status[0]), float(results.ceiling_yuan[0])


HARDSHIP = {"low_income_status": "dibao"}
NO_COMPENSATION = {"offender_status": "unable_to_pay"}


def test_every_rule_has_an_id_and_both_texts() -> None:
    assert len({r.id for r in RULES}) == len(RULES)
    for rule in RULES:
        assert rule.zh and rule.en and rule.facts


def test_a_plain_case_hits_only_the_ceiling() -> None:
    ids, status, ceiling = _hits(_case())
    assert ids == {"CEILING_36_MONTHS"}
    assert status == EligibilityStatus.NEEDS_REVIEW
    assert ceiling == 36 * BASE


@pytest.mark.parametrize(
    ("field", "rule_id"),
    [
        ("victim_at_fault", "EXCL_VICTIM_AT_FAULT"),
        ("refused_cooperation", "EXCL_REFUSED_COOPERATION"),
        ("aided_before_for_this_case", "EXCL_ALREADY_AIDED"),
    ],
)
def test_flag_exclusions(field: str, rule_id: str) -> None:
    eligible = _case(harm_outcome="severe_injury", **NO_COMPENSATION, **HARDSHIP)
    assert _hits(eligible)[1] == EligibilityStatus.ELIGIBLE
    for value, expected in ((True, True), (False, False), (None, False)):
        ids, status, _ = _hits({**eligible, field: value})
        assert (rule_id in ids) is expected
        assert (status == EligibilityStatus.EXCLUDED) is expected


def test_fully_compensated_by_the_court_award_boundary() -> None:
    case = _case(court_award_yuan=50_000)
    assert "EXCL_FULLY_COMPENSATED" in _hits({**case, "compensation_received_yuan": 50_000})[0]
    assert "EXCL_FULLY_COMPENSATED" not in _hits({**case, "compensation_received_yuan": 49_999})[0]


def test_fully_compensated_by_covering_the_documented_loss() -> None:
    case = _case(medical_cost_yuan=8_000, case_expense_yuan=2_000)
    covered = {**case, "compensation_received_yuan": 6_000, "other_relief_received_yuan": 4_000}
    short = {**case, "compensation_received_yuan": 6_000, "other_relief_received_yuan": 3_999}
    assert "EXCL_FULLY_COMPENSATED" in _hits(covered)[0]
    assert "EXCL_FULLY_COMPENSATED" not in _hits(short)[0]
    # nothing documented and nothing received is not "fully compensated"
    assert "EXCL_FULLY_COMPENSATED" not in _hits(_case())[0]


def test_severe_injury_needs_no_compensation_and_hardship() -> None:
    rule = "ART7_SEVERE_INJURY_NO_COMPENSATION"
    case = _case(harm_outcome="severe_injury", **NO_COMPENSATION, **HARDSHIP)
    assert rule in _hits(case)[0]
    assert rule not in _hits({**case, "offender_status": "able_to_pay"})[0]
    assert rule not in _hits({**case, "low_income_status": "none"})[0]
    assert rule not in _hits({**case, "harm_outcome": "minor_injury"})[0]
    # a disability grade makes a minor injury serious
    assert rule in _hits({**case, "harm_outcome": "minor_injury", "disability_grade": 8})[0]


def test_hardship_from_income_per_head_boundary() -> None:
    rule = "ART7_SEVERE_INJURY_NO_COMPENSATION"
    case = _case(harm_outcome="severe_injury", household_size=2, **NO_COMPENSATION)
    # 30 % of the base per head is the boundary: 2 people x 3,000 = 6,000
    assert rule in _hits({**case, "monthly_household_income_yuan": 5_999})[0]
    assert rule not in _hits({**case, "monthly_household_income_yuan": 6_000})[0]
    assert rule in _hits({**case, "registry_flags": ["serious_illness"]})[0]
    # a policy that reads "hardship" as below 40 % of the base moves the boundary with it
    wider = RuleConstants(hardship_income_share=0.40)
    assert rule in _hits({**case, "monthly_household_income_yuan": 7_999}, wider)[0]
    assert rule not in _hits({**case, "monthly_household_income_yuan": 8_000}, wider)[0]


def test_urgent_medical_need() -> None:
    rule = "ART7_URGENT_MEDICAL"
    case = _case(urgent_medical_need=True, **NO_COMPENSATION)
    assert rule in _hits(case)[0]
    assert rule not in _hits({**case, "urgent_medical_need": False})[0]
    paid = {**case, "offender_status": "able_to_pay", "compensation_received_yuan": 1}
    assert rule not in _hits(paid)[0]
    assert rule in _hits({**paid, "compensation_received_yuan": 0})[0]


def test_dependants_of_a_deceased_victim() -> None:
    rule = "ART7_DEPENDANTS_OF_DECEASED"
    case = _case(
        harm_outcome="death",
        applicant_role="close_relative",
        labor_capacity=None,
        **NO_COMPENSATION,
    )
    assert rule in _hits(case)[0]
    assert rule not in _hits({**case, "applicant_role": "victim"})[0]
    assert rule not in _hits({**case, "offender_status": "unknown"})[0]
    lost_labour = {**case, "harm_outcome": "severe_injury", "labor_capacity": "none"}
    assert rule in _hits(lost_labour)[0]


def test_major_property_loss_boundary() -> None:
    rule = "ART7_MAJOR_PROPERTY_LOSS"
    case = _case(crime_type="fraud", harm_outcome="property_loss", **NO_COMPENSATION, **HARDSHIP)
    boundary = RuleConstants().major_property_loss_months * BASE
    assert rule in _hits({**case, "economic_loss_yuan": boundary})[0]
    assert rule not in _hits({**case, "economic_loss_yuan": boundary - 1})[0]


def test_retaliation_against_a_witness() -> None:
    rule = "ART7_RETALIATION"
    case = _case(applicant_role="witness_or_reporter")
    assert rule in _hits(case)[0]
    assert rule not in _hits({**case, "harm_outcome": "none"})[0]
    assert rule not in _hits({**case, "applicant_role": "victim"})[0]


def test_uncompensated_civil_tort() -> None:
    rule = "ART7_CIVIL_TORT_UNCOMPENSATED"
    case = _case(crime_type="traffic_accident", offender_status="unidentified", **HARDSHIP)
    assert rule in _hits(case)[0]
    assert rule not in _hits({**case, "crime_type": "intentional_injury"})[0]
    assert rule not in _hits({**case, "offender_status": "able_to_pay"})[0]


def test_ceiling_exception_only_above_36_months_of_court_award() -> None:
    rule = "CEILING_EXCEPTION_COURT_AWARD"
    case = _case(
        harm_outcome="death",
        applicant_role="close_relative",
        labor_capacity=None,
        **NO_COMPENSATION,
        **HARDSHIP,
    )
    above = {**case, "court_award_yuan": 36 * BASE + 1}
    ids, _, ceiling = _hits(above)
    assert rule in ids and ceiling == 36 * BASE + 1  # never above the court award
    ids, _, ceiling = _hits({**case, "court_award_yuan": 36 * BASE})
    assert rule not in ids and ceiling == 36 * BASE
    ids, _, ceiling = _hits({**above, "low_income_status": "marginal"})  # not especially severe
    assert rule not in ids and ceiling == 36 * BASE
    grave_injury = {**above, "harm_outcome": "severe_injury", "disability_grade": 2}
    assert rule in _hits(grave_injury)[0]
    assert rule not in _hits({**grave_injury, "disability_grade": 3})[0]


def test_a_hit_carries_the_facts_that_triggered_it() -> None:
    case = _case(victim_at_fault=True)
    parsed = parse_record(case)
    columns = {c: parsed.frame[c].to_numpy() for c in parsed.frame.columns}
    results = evaluate_rules(columns, np.array([BASE]))
    hit = next(h for h in rule_hits(columns, results, 0) if h.id == "EXCL_VICTIM_AT_FAULT")
    assert hit.facts == {"victim_at_fault": True}
    assert hit.zh.startswith("被害人") and hit.kind == "exclusion"


def test_minor_victim_priority() -> None:
    rule = "MINOR_VICTIM_PRIORITY"
    case = _case(victim_age=14, victim_sex="female", **NO_COMPENSATION, **HARDSHIP)
    ids, status, _ = _hits(case)
    assert rule in ids and status == EligibilityStatus.ELIGIBLE
    assert rule not in _hits({**case, "victim_age": 18})[0]  # an adult
    assert rule in _hits({**case, "victim_age": 17})[0]
    assert rule not in _hits({**case, "low_income_status": "none"})[0]  # no hardship
    # compensation not obtainable, or nothing received yet: "不能及时获得有效赔偿"
    paid = {**case, "offender_status": "able_to_pay", "compensation_received_yuan": 500}
    assert rule not in _hits(paid)[0]
    assert rule in _hits({**paid, "compensation_received_yuan": 0})[0]
    # harm to the person, or a sexual offence; not a property loss
    assert rule not in _hits({**case, "harm_outcome": "property_loss"})[0]
    assert rule not in _hits({**case, "harm_outcome": "none"})[0]
    child_rape = {**case, "crime_type": "rape", "harm_outcome": "none"}
    assert rule in _hits(child_rape)[0]


def test_sexual_offence_victim() -> None:
    rule = "SEXUAL_OFFENCE_VICTIM"
    case = _case(
        crime_type="rape", harm_outcome="none", victim_sex="female", **NO_COMPENSATION, **HARDSHIP
    )
    ids, status, _ = _hits(case)
    assert rule in ids and status == EligibilityStatus.ELIGIBLE
    # the v1.1 harm value marks a sexual or psychological harm whatever the crime's name
    other = {**case, "crime_type": "other", "harm_outcome": "sexual_or_psychological"}
    assert rule in _hits(other)[0]
    assert rule not in _hits({**other, "harm_outcome": "minor_injury"})[0]
    assert rule not in _hits({**case, "low_income_status": "none"})[0]
    paid = {**case, "offender_status": "able_to_pay", "compensation_received_yuan": 1}
    assert rule not in _hits(paid)[0]
    # an adult victim: the minors' rule stays silent
    assert "MINOR_VICTIM_PRIORITY" not in _hits({**case, "victim_age": 30})[0]


def test_a_sexual_offence_is_read_as_at_least_sexual_harm() -> None:
    from features.rules import harm_as_read

    columns = {
        "crime_type": np.array(["rape"] * 6 + ["intentional_injury", "other"], dtype=object),
        "harm_outcome": np.array(
            [
                "none",
                "property_loss",
                "slight_injury",
                "minor_injury",
                "severe_injury",
                "death",
                "slight_injury",
                "sexual_or_psychological",
            ],
            dtype=object,
        ),
    }
    assert harm_as_read(columns).tolist() == [
        "sexual_or_psychological",
        "sexual_or_psychological",
        "sexual_or_psychological",
        "sexual_or_psychological",
        "severe_injury",  # graver than sexual harm: read as recorded
        "death",
        "slight_injury",  # not a sexual offence
        "sexual_or_psychological",
    ]


def test_the_new_rules_cite_their_sources() -> None:
    from features.rules import RULE_BY_ID

    assert "关于全面加强未成年人国家司法救助工作的意见" in RULE_BY_ID["MINOR_VICTIM_PRIORITY"].zh
    assert "性侵害" in RULE_BY_ID["SEXUAL_OFFENCE_VICTIM"].zh
