"""Supervision through the real CLI and registry: the deviation report, score-file, policies.

The deviation report's test states what "finds the deviant offices" means. The generator
makes about 12 % of offices markedly generous and as many markedly stingy against their own
province (``RegionalPractice.deviant_offices``). The report flags an office whose median
ratio granted ÷ reference is more than 25 % above (or below) its province's median and that
has at least 30 decisions. In provinces where the usual offices handle most of the cases
(the deviant ones at most 35 % of them, so that "the usual practice of the province" is
the usual offices' practice), at least 90 % of the deviant offices with 30 decisions are
flagged, each in its own direction (none in the other), and at most 10 % of the usual offices
are flagged. Not "every one": with 30 decisions the median ratio's standard error (about 0.1
in log) is as large as the margin between a stingy office's expected ratio and the flag line
where a third of its province is stingy too (the province's median moves toward them), so a
claim about every office would hold or fail with the draw (it did, with #11's generator:
office 120202, 31 decisions, 0.83 of its province's median against the 0.8 line, where the
oracle's amounts give 0.77).
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from features.contract import parse_records
from features.synthetic import RegionalPractice, generate_history
from features.tables import read_table, write_table
from training import deviation_report
from training.deviation import history_deviation
from training.policy import default_policy_path, load_policy
from training.registry import configure_tracking, load_bundle

MODEL = "judicial-aid"


def _invoke(registry: dict[str, Any], *args: str) -> Any:
    return registry["runner"].invoke(registry["app"], list(args))


@pytest.fixture(scope="module")
def history_40k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40,000 generated cases of a seed the champion never saw."""
    path = tmp_path_factory.mktemp("deviation") / "history.parquet"
    write_table(generate_history(40_000, seed=7), path)
    return path


@pytest.fixture(scope="module")
def by_office(
    registry: dict[str, Any], history_40k: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("report")
    result = _invoke(registry, "report", "deviation", "--data", str(history_40k), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "flagged" in result.output
    return out


def test_the_report_finds_the_offices_the_generator_made_deviant(by_office: Path) -> None:
    world = RegionalPractice.default()
    deviant = world.deviant_offices()
    share = dict(zip(world.office_codes, world.office_share, strict=True))
    deviant_share: dict[str, float] = {}
    for code in world.office_codes:
        deviant_share[code[:2]] = deviant_share.get(code[:2], 0.0) + (
            share[code] if code in deviant else 0.0
        )
    groups = pd.read_csv(by_office / "groups.csv", dtype={"group": str, "parent": str})
    groups["flag"] = groups["flag"].fillna("")
    enough = groups[(groups["count"] >= 30) & (groups["group"].str[:2].map(deviant_share) <= 0.35)]
    truth = enough["group"].map(lambda code: deviant.get(code, ""))
    assert (truth != "").sum() >= 8 and (truth == "").sum() >= 50  # enough to judge by
    found = enough.loc[truth != "", ["group", "flag", "count", "relative_to_parent"]]
    missed = found["flag"] != truth[truth != ""]
    assert missed.mean() <= 0.10, found[missed]
    assert not (found["flag"][missed] != "").any(), found[missed]  # never the wrong direction
    false = (enough.loc[truth == "", "flag"] != "").mean()
    assert false <= 0.10, enough[(truth == "") & (enough["flag"] != "")]
    # the flags agree with the stated rule
    relative = groups["ratio_median"] / groups["parent_median"]
    assert np.allclose(relative, groups["relative_to_parent"])
    flagged = (groups["count"] >= 30) & ((relative > 1.25) | (relative < 1 / 1.25))
    assert ((groups["flag"] != "") == flagged).all()


def test_the_report_is_a_chinese_page_with_charts_and_the_same_tables(
    by_office: Path, history_40k: Path
) -> None:
    page = (by_office / "deviation.html").read_text(encoding="utf-8")
    assert "同案不同救监督报告：按办案检察院分组" in page
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"', page)) == 3
    groups = pd.read_csv(by_office / "groups.csv", dtype={"group": str})
    history = pd.read_parquet(history_40k)
    granted = history[history["aid_granted"].fillna(False).astype(bool)]
    assert groups["count"].sum() == len(granted)
    counts = granted["office_code"].value_counts()
    assert (groups.set_index("group")["count"] == counts.reindex(groups["group"]).values).all()
    for code in groups.loc[groups["flag"].notna(), "group"].head(5):
        assert f"<td>{code}</td>" in page
    largest = pd.read_csv(by_office / "largest.csv", dtype={"office_code": str})
    similar = pd.read_csv(by_office / "largest_similar.csv")
    assert len(largest) == 20
    distance = np.abs(np.log(largest["ratio_to_reference"]))
    assert (np.diff(distance) <= 1e-12).all()  # farthest first
    assert distance.iloc[-1] >= np.quantile(
        np.abs(np.log(groups["ratio_median"])), 0.99
    )  # far beyond any group's median
    assert (similar.groupby("deviating_case_id").size() == 5).all()
    assert set(similar["deviating_case_id"]) == set(largest["case_id"])
    assert not (similar["deviating_case_id"] == similar["case_id"]).any()  # never itself
    row = largest.iloc[0]
    original = history.set_index("case_id").loc[row["case_id"]]
    assert row["granted_yuan"] == original["aid_amount_yuan"]
    assert row["office_code"] == original["office_code"]


def test_years_and_groupings(registry: dict[str, Any], history_40k: Path, tmp_path: Path) -> None:
    result = _invoke(
        registry,
        "report",
        "deviation",
        "--data",
        str(history_40k),
        "--out",
        str(tmp_path),
        "--years",
        "2024-2025",
        "--group-by",
        "year",
        "--largest",
        "3",
    )
    assert result.exit_code == 0, result.output
    groups = pd.read_csv(tmp_path / "groups.csv", dtype={"group": str})
    history = pd.read_parquet(history_40k)
    granted = history[history["aid_granted"].fillna(False).astype(bool)]
    expected = granted["decision_year"].astype(int).value_counts()
    assert dict(zip(groups["group"], groups["count"], strict=True)) == {
        str(year): int(expected[year]) for year in (2024, 2025)
    }
    assert set(groups["label_zh"]) == {"2024年", "2025年"}
    assert len(pd.read_csv(tmp_path / "largest.csv")) == 3
    page = (tmp_path / "deviation.html").read_text(encoding="utf-8")
    assert "2024–2025年" in page and "按决定年度分组" in page


def test_bad_report_requests_are_refused_with_what_is_wrong(
    registry: dict[str, Any], history_40k: Path, tmp_path: Path
) -> None:
    flawed = pd.read_parquet(registry["history"]).head(3000)
    flawed.loc[7, "office_code"] = "440104"  # in Guangdong, whatever the province says
    flawed.loc[7, "province_code"] = "32"
    path = tmp_path / "flawed.parquet"
    flawed.to_parquet(path)
    base = ["report", "deviation", "--out", str(tmp_path / "out")]
    result = _invoke(registry, *base, "--data", str(path))
    assert result.exit_code == 2
    assert "row 8" in result.output and "office_code" in result.output
    assert "--drop-invalid" in result.output
    assert not (tmp_path / "out").exists()  # nothing written
    result = _invoke(registry, *base, "--data", str(path), "--drop-invalid", "--min-cases", "5")
    assert result.exit_code == 0, result.output
    assert "其中无效 1 行未计入" in (tmp_path / "out" / "deviation.html").read_text("utf-8")
    for args, words in (
        (["--group-by", "city"], "cannot group by 'city'"),
        (["--years", "2025-2021"], "the first year is after the last"),
        (["--years", "2030"], "no granted decision with an amount in 2030-2030"),
    ):
        result = _invoke(registry, *base, "--data", str(history_40k), *args)
        assert result.exit_code == 2 and words in result.output, result.output
    result = _invoke(registry, *base, "--data", str(tmp_path / "none.parquet"))
    assert result.exit_code == 2 and "no such file" in result.output


def test_without_a_chinese_font_the_charts_fall_back_to_english(
    registry: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    mlflow.set_tracking_uri(registry["tracking_uri"])
    bundle, _ = load_bundle(f"models:/{MODEL}@champion")
    history = generate_history(3000, seed=3)
    report = history_deviation(bundle, [history], "province", min_cases=5, largest=2)
    assert deviation_report.find_cjk_font() is not None  # this machine has one (fonts-noto-cjk)
    monkeypatch.setattr(deviation_report, "find_cjk_font", lambda: None)
    with caplog.at_level(logging.WARNING, logger="training.deviation_report"):
        pictures = deviation_report.charts(report)
    assert "no font with Chinese glyphs" in caplog.text
    assert set(pictures) == {"relative", "histogram", "outside"}


def test_score_file_writes_the_deviation_and_the_aid_grade(
    registry: dict[str, Any], tmp_path: Path
) -> None:
    history = pd.read_parquet(registry["history"]).head(400)
    history.loc[3, "aid_amount_yuan"] = -5.0  # not an amount
    source = tmp_path / "decided.parquet"
    history.to_parquet(source)
    out = tmp_path / "scores.csv"
    result = _invoke(registry, "score-file", "--input", str(source), "--output", str(out))
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out, dtype={"policy_version": str})
    assert "aid_amount_yuan" in scores.loc[3, "error"] and np.isnan(scores.loc[3, "aid_grade"])
    ok = scores.drop(index=3)
    given = history.drop(index=3)["aid_amount_yuan"].to_numpy(dtype=float)
    known = ~np.isnan(given)
    assert known.sum() > 50
    ratio = given[known] / ok["reference_amount_yuan"].to_numpy()[known]
    assert ok["ratio_to_reference"].to_numpy()[known] == pytest.approx(ratio, rel=1e-3)
    low, high = (
        ok["interval_low_yuan"].to_numpy()[known],
        ok["interval_high_yuan"].to_numpy()[known],
    )
    outside = (given[known] < low - 0.01) | (given[known] > high + 0.01)
    assert (ok["outside_interval"].to_numpy()[known] == outside.astype(float)).all()
    assert ok["ratio_to_reference"][~known].isna().all()
    policy = load_policy()
    for row in ok.itertuples():
        band = next(
            b for b in policy.aid_grades.bands if b.min_months <= row.months_of_wage < b.max_months
        )
        assert row.aid_grade in (band.grade, max(band.grade - 1, 1))
        assert row.aid_grade_zh == policy.aid_grades.label(int(row.aid_grade))
        assert row.policy_version == policy.version
    raised = ok[
        ok["aid_grade"]
        < ok["months_of_wage"].map(
            lambda m: next(
                b.grade for b in policy.aid_grades.bands if b.min_months <= m < b.max_months
            )
        )
    ]
    assert len(raised) > 0  # urgency raised some grades
    undecided = tmp_path / "undecided.csv"
    history.drop(columns=["aid_granted", "aid_amount_yuan"]).head(20).to_csv(undecided, index=False)
    result = _invoke(
        registry, "score-file", "--input", str(undecided), "--output", str(tmp_path / "u.csv")
    )
    assert result.exit_code == 0, result.output
    columns = pd.read_csv(tmp_path / "u.csv").columns
    assert "aid_grade" in columns and "ratio_to_reference" not in columns


def _versions(name: str) -> list[str]:
    return sorted(v.version for v in MlflowClient().search_model_versions(f"name='{name}'"))


@pytest.fixture
def own_registry(
    registry: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A copy of the session's tracking store: its champion moves here, not there."""
    copy = tmp_path / "mlflow.db"
    shutil.copy(registry["data_dir"] / "mlflow.db", copy)
    uri = f"sqlite:///{copy}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    configure_tracking(uri)  # tracking and registry
    yield uri
    configure_tracking(registry["tracking_uri"])


NEW_POLICY = """\
version: "2026.2"
lead_thresholds:
  judicial_aid: 0.35
  social_assistance: 0.3
  civil_support: 0.3
lead_deadlines:
  transfer_days: 5
aid_grades:
  bands:
    - {grade: 1, label: 一级, min_months: 2}
    - {grade: 2, label: 二级, max_months: 2}
  raise_when: [urgent_medical_need]
"""


def test_policy_apply_registers_the_same_boosters_under_the_new_policy(
    registry: dict[str, Any], own_registry: str, tmp_path: Path
) -> None:
    before = _versions(MODEL)
    old, old_info = load_bundle(f"models:/{MODEL}@champion")
    path = tmp_path / "policy.yaml"
    path.write_text(NEW_POLICY, encoding="utf-8")
    result = _invoke(registry, "policy", "apply", str(path))
    assert result.exit_code == 0, result.output
    assert "promoted" in result.output and "lead_thresholds.judicial_aid: 0.5 → 0.35" in (
        result.output
    )
    assert len(_versions(MODEL)) == len(before) + 1
    new, info = load_bundle(f"models:/{MODEL}@champion")
    assert info["version"] not in before  # the new version is the champion
    version = MlflowClient().get_model_version(MODEL, info["version"])
    assert version.tags["policy_version"] == "2026.2"
    assert version.tags["policy_applied_to_version"] == old_info["version"]
    change = version.tags["policy_change"]
    assert "lead_deadlines.transfer_days: 7 → 5" in change and "aid_grades.bands" in change
    assert "version: '2026.1' → '2026.2'" in change
    assert version.tags["promotion_decision"] == "promoted"
    frame = parse_records(read_table(registry["history"]).head(500)).frame
    then, now = old.score(frame), new.score(frame)
    np.testing.assert_array_equal(then.reference_amount_yuan, now.reference_amount_yuan)
    for lead in then.lead_probability:
        np.testing.assert_array_equal(then.lead_probability[lead], now.lead_probability[lead])
    assert (
        now.lead_flagged["judicial_aid"] == (now.lead_probability["judicial_aid"] >= 0.35)
    ).all()
    assert set(now.aid_grade.grade) <= {1, 2} and set(then.aid_grade.grade) >= {3}
    assert new.card()["policy"]["version"] == "2026.2"
    assert new.card()["policy"]["aid_grades"]["bands"][1]["label"] == "二级"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (
            ("max_months: 2}", "max_months: 3}"),
            "line 10: grade band 1 [2, inf) overlaps grade band 2",
        ),
        (
            ("judicial_aid: 0.35", "judicial_aid: 1.5"),
            "line 3: lead_thresholds.judicial_aid is 1.5",
        ),
        (("lead_deadlines:", "lead_deadline:"), "line 6: unknown key 'lead_deadline'"),
        (('version: "2026.2"', 'version: "2026.1"'), "is the champion's own policy version"),
    ],
)
def test_a_refused_policy_registers_nothing(
    registry: dict[str, Any], own_registry: str, tmp_path: Path, change: tuple[str, str], words: str
) -> None:
    before = _versions(MODEL)
    champion = MlflowClient().get_model_version_by_alias(MODEL, "champion").version
    path = tmp_path / "policy.yaml"
    path.write_text(NEW_POLICY.replace(*change), encoding="utf-8")
    result = _invoke(registry, "policy", "apply", str(path))
    assert result.exit_code == 2 and words in result.output, result.output
    assert _versions(MODEL) == before
    assert MlflowClient().get_model_version_by_alias(MODEL, "champion").version == champion


def test_the_champions_own_policy_is_nothing_to_apply(
    registry: dict[str, Any], own_registry: str
) -> None:
    before = _versions(MODEL)
    result = _invoke(registry, "policy", "apply", str(default_policy_path()))
    assert result.exit_code == 2 and "nothing to do" in result.output
    assert _versions(MODEL) == before


def test_the_pyfunc_output_matches_its_signature(registry: dict[str, Any]) -> None:
    """What spark_udf reads: every output column, in the signature's order and types."""
    from mlflow.models import get_model_info

    from training.pyfunc import OUTPUT_COLUMNS, TEXT_COLUMNS, as_pyfunc_input

    mlflow.set_tracking_uri(registry["tracking_uri"])
    info = get_model_info(f"models:/{MODEL}@champion")
    assert info.signature is not None and info.signature.outputs is not None
    outputs = info.signature.outputs.inputs
    assert [c.name for c in outputs] == [*OUTPUT_COLUMNS, "error"]
    for column in outputs:
        expected = "string" if column.name in (*TEXT_COLUMNS, "error") else "double"
        assert column.type.name == expected, column
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    frame = pd.read_parquet(registry["history"]).head(30)
    predicted = model.predict(as_pyfunc_input(frame))
    assert list(predicted.columns) == [c.name for c in outputs]
    for column in outputs:
        values = predicted[column.name].dropna()
        if column.type.name == "double":
            assert predicted[column.name].dtype == float, column.name
        else:
            assert values.map(lambda v: isinstance(v, str)).all(), column.name
    assert predicted["ratio_to_reference"].notna().any()  # the history's granted amounts
