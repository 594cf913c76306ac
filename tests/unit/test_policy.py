"""The policy file: what it holds, and every way a file is refused (line and rule)."""

from __future__ import annotations

import pytest

from features.rules import RuleConstants
from training.policy import PolicyError, load_policy, parse_policy

GOOD = """\
version: "t1"
lead_thresholds:
  judicial_aid: 0.4
  social_assistance: 0.3
  civil_support: 0.35
lead_deadlines:
  transfer_days: 5
rules:
  hardship_income_share: 0.35
"""


def test_the_shipped_policy_loads() -> None:
    policy = load_policy()
    assert set(policy.lead_thresholds) == {"judicial_aid", "social_assistance", "civil_support"}
    assert policy.rules == RuleConstants()  # ships the project's reading of the rules
    assert policy.lead_deadlines.transfer_days == 7 and policy.digest


def test_a_policy_sets_thresholds_deadlines_and_the_rules_reading() -> None:
    policy = parse_policy(GOOD)
    assert policy.version == "t1" and policy.lead_thresholds["judicial_aid"] == 0.4
    assert policy.lead_deadlines.transfer_days == 5 and policy.lead_deadlines.feedback_days == 30
    assert policy.rules.hardship_income_share == 0.35
    assert policy.rules.major_property_loss_months == RuleConstants().major_property_loss_months
    assert policy.summary()["rules"]["hardship_income_share"] == 0.35


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (("  judicial_aid: 0.4", "  judicial_aid: 1.2"), "line 3: lead_thresholds.judicial_aid"),
        (("  judicial_aid: 0.4", "  judicial_aid: 0"), "strictly between 0 and 1"),
        (("  civil_support: 0.35", "  civil_sport: 0.35"), "line 5: unknown key"),
        (('version: "t1"', "versoin: 1"), "line 1: unknown key 'versoin'"),
        (("  transfer_days: 5", "  transfer_days: 2.5"), "line 7: lead_deadlines.transfer_days"),
        (("  transfer_days: 5", "  transfer_days: 0"), "must be ≥ 1 day"),
        (("  hardship_income_share: 0.35", "  hardship_income_share: lots"), "must be a number"),
        (("  civil_support: 0.35\n", ""), "missing lead_thresholds.civil_support"),
        (("lead_deadlines:\n  transfer_days: 5", "lead_deadlines: 5"), "must be a mapping"),
    ],
)
def test_a_bad_policy_is_refused_with_the_line_and_the_rule(
    change: tuple[str, str], words: str
) -> None:
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(PolicyError, match=words.replace("(", r"\(")):
        parse_policy(text, "p.yaml")


def test_an_unreadable_file_is_a_clear_error(tmp_path: object) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy("/nonexistent/policy.yaml")
    with pytest.raises(PolicyError, match="empty"):
        parse_policy("")
