"""Aid grades: the policy's bands and urgency facts, and every way a grade section is refused."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from features.urgency import URGENCY_FACTS
from training.grades import DEFAULT_AID_GRADES
from training.policy import PolicyError, load_policy, parse_policy

HEAD = """\
version: "g1"
lead_thresholds:
  judicial_aid: 0.5
  social_assistance: 0.3
  civil_support: 0.3
"""
GRADES = """\
aid_grades:
  bands:
    - {grade: 1, label: 一级, min_months: 6}
    - {grade: 2, label: 二级, min_months: 2, max_months: 6}
    - {grade: 3, label: 三级, max_months: 2}
  raise_when: [urgent_medical_need, severe_low_income]
"""


def _columns(n: int, **values: list[object]) -> dict[str, np.ndarray]:
    """Canonical columns of n cases where only the urgency fields are set."""
    columns = {
        "urgent_medical_need": np.full(n, np.nan),
        "harm_outcome": np.full(n, "minor_injury", dtype=object),
        "dependants": np.full(n, np.nan),
        "minor_dependants": np.full(n, np.nan),
        "low_income_status": np.full(n, None, dtype=object),
    }
    for name, given in values.items():
        columns[name] = np.asarray(given, dtype=columns[name].dtype)
    return columns


def test_the_shipped_policy_states_the_default_grades() -> None:
    assert load_policy().aid_grades == DEFAULT_AID_GRADES
    assert load_policy().summary()["aid_grades"]["bands"][0] == {
        "grade": 1,
        "label": "一级",
        "min_months": 3.0,
        "max_months": None,
    }


def test_bands_grade_the_months_and_urgency_raises_one_step() -> None:
    grades = parse_policy(HEAD + GRADES).aid_grades
    months = np.array([0.0, 1.99, 2.0, 5.9, 6.0, 40.0, 1.0, 3.0, 7.0])
    columns = _columns(
        9,
        urgent_medical_need=[0, 0, 0, 0, 0, 0, 1, 1, 1],
        low_income_status=[None, "dibao", None, None, None, None, None, None, "tekun"],
    )
    graded = grades.assign(months, columns)
    assert graded.band_grade.tolist() == [3, 3, 2, 2, 1, 1, 3, 2, 1]
    assert graded.grade.tolist() == [3, 2, 2, 2, 1, 1, 2, 1, 1]  # never past 一级
    assert graded.raised_by(1) == ["severe_low_income"]
    assert graded.raised_by(6) == ["urgent_medical_need"]
    assert graded.raised_by(8) == []  # already 一级: not raised
    assert grades.label(2) == "二级" and math.isinf(grades.band(1).max_months)


def test_death_with_dependants_is_an_urgency_fact() -> None:
    columns = _columns(3, harm_outcome=["death", "death", "minor_injury"], dependants=[2, 0, 3])
    assert URGENCY_FACTS["death_with_dependants"].holds(columns).tolist() == [True, False, False]
    graded = DEFAULT_AID_GRADES.assign(np.array([0.5, 0.5, 0.5]), columns)
    assert graded.grade.tolist() == [2, 3, 3]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (
            ("{grade: 2, label: 二级, min_months: 2,", "{grade: 2, label: 二级, min_months: 1,"),
            "line 9: grade band 2 [1, 6) overlaps grade band 3 (line 10) [0, 2)",
        ),
        (
            ("{grade: 1, label: 一级, min_months: 6}", "{grade: 1, label: 一级, min_months: 5}"),
            "line 8: grade band 1 [5, inf) overlaps grade band 2",
        ),
        (
            ("{grade: 1, label: 一级, min_months: 6}", "{grade: 1, label: 一级, min_months: 7}"),
            "line 8: no band covers 6 to 7 months",
        ),
        (
            (
                "{grade: 3, label: 三级, max_months: 2}",
                "{grade: 3, label: 三级, min_months: 1, max_months: 2}",
            ),
            "line 10: no band covers amounts below 1",
        ),
        (
            (
                "{grade: 1, label: 一级, min_months: 6}",
                "{grade: 1, label: 一级, min_months: 6, max_months: 36}",
            ),
            "line 8: no band covers amounts of 36 months or more",
        ),
        (("{grade: 3, label: 三级", "{grade: 2, label: 三级"), "line 8: the grades are [1, 2, 2]"),
        (
            ("{grade: 1, label: 一级, min_months: 6}", "{grade: 3, label: 一级, min_months: 6}"),
            "the grades are [2, 3, 3]",
        ),
        (
            (
                "{grade: 1, label: 一级, min_months: 6}\n"
                "    - {grade: 2, label: 二级, min_months: 2, max_months: 6}\n"
                "    - {grade: 3,",
                "{grade: 3, label: 一级, min_months: 6}\n"
                "    - {grade: 2, label: 二级, min_months: 2, max_months: 6}\n"
                "    - {grade: 1,",
            ),
            "more months must be a graver grade",
        ),
        (
            ("{grade: 1, label: 一级, min_months: 6}", "{grade: 1, label: 一级, min: 6}"),
            "line 8: unknown key aid_grades.bands[].'min'",
        ),
        (
            ("{grade: 3, label: 三级, max_months: 2}", "{label: 三级, max_months: 2}"),
            "line 10: a grade band needs grade",
        ),
        (
            ("{grade: 2, label: 二级, min_months: 2,", "{grade: 2, label: 二级, min_months: two,"),
            "line 9: aid_grades.bands[].min_months must be a number",
        ),
        (
            ("[urgent_medical_need, severe_low_income]", "[urgent_medical_need, rich]"),
            "line 11: unknown urgency fact 'rich'",
        ),
        (("  raise_when:", "  raise_if:"), "line 11: unknown key aid_grades.'raise_if'"),
        (
            (GRADES.split("  raise_when")[0].split("aid_grades:\n")[1], "  bands: 3\n"),
            "line 7: aid_grades.bands must be a list",
        ),
    ],
)
def test_a_bad_grade_section_is_refused_with_the_line_and_the_rule(
    change: tuple[str, str], words: str
) -> None:
    text = (HEAD + GRADES).replace(*change)
    assert text != HEAD + GRADES
    with pytest.raises(PolicyError, match=re.escape(words)):
        parse_policy(text, "p.yaml")


def test_a_policy_without_grades_uses_the_default_ones() -> None:
    assert parse_policy(HEAD).aid_grades == DEFAULT_AID_GRADES
