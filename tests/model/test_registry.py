"""The registry through the real CLI and a real MLflow store: train, gate, rollback, score."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.models import get_model_info

from features.contract import INPUT_FIELDS, OUTCOME_NAMES
from training.config import load_config
from training.pyfunc import DEVIATION_COLUMNS, GRANTED, as_pyfunc_input
from training.registry import load_bundle, promotion_decision

MODEL = "judicial-aid"


def _invoke(registry: dict[str, Any], *args: str) -> Any:
    return registry["runner"].invoke(registry["app"], list(args))


def test_training_logged_one_run_with_metrics_plots_and_a_registered_bundle(
    registry: dict[str, Any],
) -> None:
    mlflow.set_tracking_uri(registry["tracking_uri"])
    client = MlflowClient()
    version = client.get_model_version_by_alias(MODEL, "champion")
    run = client.get_run(version.run_id)
    assert run.data.metrics["amount_mae_yuan"] > 0
    assert "judicial_aid_oracle_auc" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"evaluation.json", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/calibration.png" in plots
    info = get_model_info(f"models:/{MODEL}@champion")
    assert info.signature is not None, "MLflow dropped the signature"
    names = {c.name for c in info.signature.inputs.inputs}
    assert names == {f.name for f in INPUT_FIELDS} | {GRANTED}  # the granted amount: optional
    assert info.saved_input_example_info is not None
    bundle, model = load_bundle(f"models:/{MODEL}@champion")
    assert model["version"] == str(version.version)
    assert set(bundle.leads) == {"judicial_aid", "social_assistance", "civil_support"}
    assert len(bundle.index.cases) > 1000


def test_a_worse_challenger_is_refused_and_rollback_moves_the_champion(
    registry: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # its own registered model and experiment: the session's champion stays untouched
    own = "judicial-aid-gate-test"
    monkeypatch.setenv("AIDREC_REGISTERED_MODEL", own)
    monkeypatch.setenv("AIDREC_EXPERIMENT_NAME", own)
    config = load_config().raw
    config["num_boost_round"] = 2  # two trees: clearly worse
    path = tmp_path / "weak.yaml"
    import yaml

    path.write_text(yaml.safe_dump(config))
    history = str(registry["history"])
    for args in (["train", "--data", history], ["promote", "--data", history]):
        result = _invoke(registry, *args)
        assert result.exit_code == 0, result.output
    result = _invoke(registry, "train", "--data", history, "--config", str(path))
    assert result.exit_code == 0, result.output
    result = _invoke(registry, "promote", "--data", history)
    assert result.exit_code == 1
    assert "not promoted" in result.output and "worse" in result.output
    mlflow.set_tracking_uri(registry["tracking_uri"])
    client = MlflowClient()
    challenger = client.get_model_version_by_alias(own, "challenger")
    champion = client.get_model_version_by_alias(own, "champion")
    assert challenger.version != champion.version
    assert challenger.tags["promotion_decision"] == "refused"
    assert "amount MAE" in challenger.tags["promotion_reason"]

    result = _invoke(registry, "rollback", "--to", str(challenger.version))
    assert result.exit_code == 0, result.output
    assert client.get_model_version_by_alias(own, "champion").version == challenger.version
    result = _invoke(registry, "rollback", "--to", str(champion.version))
    assert result.exit_code == 0
    assert client.get_model_version_by_alias(own, "champion").version == champion.version
    result = _invoke(registry, "rollback", "--to", "999")
    assert result.exit_code == 2 and "no version 999" in result.output
    shared = client.get_model_version_by_alias(MODEL, "champion")
    assert shared.version == client.get_model_version_by_alias(MODEL, "challenger").version


def test_promotion_gate_tolerances() -> None:
    config = load_config()
    leads = ["judicial_aid"]
    champion = {"amount_mae_yuan": 1000.0, "judicial_aid_auc": 0.80}
    first = promotion_decision(champion, None, config, leads)
    assert first.promote and "first" in first.reason
    within = {"amount_mae_yuan": 1019.0, "judicial_aid_auc": 0.796}
    assert promotion_decision(within, champion, config, leads).promote
    mae_worse = {"amount_mae_yuan": 1021.0, "judicial_aid_auc": 0.80}
    assert not promotion_decision(mae_worse, champion, config, leads).promote
    auc_worse = {"amount_mae_yuan": 1000.0, "judicial_aid_auc": 0.794}
    decision = promotion_decision(auc_worse, champion, config, leads)
    assert not decision.promote and "judicial_aid AUC" in decision.reason


def test_score_file_accepts_any_file_in_the_contract_shape(
    registry: dict[str, Any], tmp_path: Path
) -> None:
    """A file written by someone else is scored.

    It has its own column order, only some optional fields, outcome and unknown columns,
    text encodings, one broken row.
    """
    rows = [
        {
            "remark": "from county office",
            "victim_sex": "female",
            "case_id": "EXT-1",
            "province_code": "52",
            "decision_year": "2025",
            "crime_type": "intentional_injury",
            "applicant_role": "victim",
            "harm_outcome": "severe_injury",
            "disability_grade": "4",
            "offender_status": "unable_to_pay",
            "victim_age": "46",
            "medical_cost_yuan": "38000",
            "low_income_status": "dibao",
            "registry_flags": "serious_illness|women_federation_hardship",
            "rural_hukou": "True",
            "aid_granted": "true",
            "aid_amount_yuan": "30000",
        },
        {
            "remark": "",
            "victim_sex": "male",
            "case_id": "EXT-2",
            "province_code": "99",
            "decision_year": "2025",
            "crime_type": "fraud",
            "applicant_role": "victim",
            "harm_outcome": "property_loss",
            "offender_status": "unknown",
            "victim_age": "70",
        },
        {
            "remark": "",
            "victim_sex": "male",
            "case_id": "EXT-3",
            "province_code": "44",
            "decision_year": "2024",
            "crime_type": "traffic_accident",
            "applicant_role": "close_relative",
            "harm_outcome": "death",
            "offender_status": "unidentified",
            "victim_age": "33",
            "dependants": "2",
            "minor_dependants": "1",
            "rural_hukou": "0",
        },
    ]
    source = tmp_path / "cases.csv"
    pd.DataFrame(rows).to_csv(source, index=False)
    out = tmp_path / "scores.parquet"
    result = _invoke(registry, "score-file", "--input", str(source), "--output", str(out))
    assert result.exit_code == 0, result.output
    assert "1 rows refused" in result.output
    scores = pd.read_parquet(out)
    assert list(scores["case_id"]) == ["EXT-1", "EXT-2", "EXT-3"]
    assert list(scores.columns[:11]) == [
        "case_id",
        "reference_amount_yuan",
        "interval_low_yuan",
        "interval_high_yuan",
        "months_of_wage",
        "base_monthly_wage_yuan",
        "p_judicial_aid",
        "p_social_assistance",
        "p_civil_support",
        "eligibility_status",
        "rule_hits",
    ]
    assert "province_code" in scores.loc[1, "error"] and np.isnan(scores.loc[1, "p_judicial_aid"])
    ok = scores.drop(index=1)
    assert ok["error"].isna().all()
    assert (ok["interval_low_yuan"] <= ok["reference_amount_yuan"]).all()
    assert (ok["reference_amount_yuan"] <= ok["interval_high_yuan"]).all()
    assert scores.loc[2, "eligibility_status"] == "eligible"
    assert "ART7_DEPENDANTS_OF_DECEASED" in scores.loc[2, "rule_hits"]


def test_score_file_refuses_unusable_input(registry: dict[str, Any], tmp_path: Path) -> None:
    result = _invoke(
        registry,
        "score-file",
        "--input",
        str(tmp_path / "none.csv"),
        "--output",
        str(tmp_path / "o.csv"),
    )
    assert result.exit_code == 2 and "no such file" in result.output
    result = _invoke(
        registry,
        "score-file",
        "--input",
        str(registry["history"]),
        "--output",
        str(tmp_path / "o.xlsx"),
    )
    assert result.exit_code == 2 and "not a CSV or Parquet" in result.output


def test_evaluate_prints_the_metrics(registry: dict[str, Any]) -> None:
    result = _invoke(registry, "evaluate", "--data", str(registry["history"]))
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["model"]["name"] == MODEL
    assert report["metrics"]["amount_interval_coverage"] > 0.6


def test_training_refuses_a_flawed_history(registry: dict[str, Any], tmp_path: Path) -> None:
    frame = pd.read_parquet(registry["history"]).head(3000)
    frame.loc[5, "victim_age"] = 300
    path = tmp_path / "flawed.parquet"
    frame.to_parquet(path)
    result = _invoke(registry, "train", "--data", str(path))
    assert result.exit_code == 2
    assert "1 invalid row(s)" in result.output and "--drop-invalid" in result.output


def test_outcome_columns_never_reach_the_pyfunc_input(registry: dict[str, Any]) -> None:
    """Outcomes never change the scores; the granted amount only adds its deviation."""
    mlflow.set_tracking_uri(registry["tracking_uri"])
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    frame = pd.read_parquet(registry["history"]).head(20)  # Int64, boolean, list columns
    inputs = as_pyfunc_input(frame.drop(columns=list(OUTCOME_NAMES)))
    others = [name for name in OUTCOME_NAMES if name != GRANTED]
    with_outcomes = model.predict(pd.concat([as_pyfunc_input(frame), frame[others]], axis=1))
    without = model.predict(inputs)
    scores = [c for c in with_outcomes.columns if c not in DEVIATION_COLUMNS]
    pd.testing.assert_frame_equal(with_outcomes[scores], without[scores])
    assert with_outcomes["error"].isna().all()
    assert without[list(DEVIATION_COLUMNS)].isna().all().all()
    granted = frame[GRANTED].notna().to_numpy()
    assert granted.any() and not granted.all()
    ratio = frame[GRANTED].to_numpy(dtype=float) / without["reference_amount_yuan"].to_numpy()
    assert with_outcomes["ratio_to_reference"][granted].to_numpy() == pytest.approx(
        ratio[granted], rel=1e-3
    )
    assert with_outcomes["ratio_to_reference"][~granted].isna().all()


@pytest.mark.parametrize("bad", ["models:/judicial-aid@nobody", "runs:/x/model"])
def test_unknown_model_uri_is_a_clear_error(registry: dict[str, Any], bad: str) -> None:
    result = _invoke(registry, "evaluate", "--data", str(registry["history"]), "--model-uri", bad)
    assert result.exit_code == 2 and "error:" in result.output


def test_evaluation_json_and_the_model_card_carry_the_groups(registry: dict[str, Any]) -> None:
    from training.groups import GROUPS

    mlflow.set_tracking_uri(registry["tracking_uri"])
    version = MlflowClient().get_model_version_by_alias(MODEL, "champion")
    path = mlflow.artifacts.download_artifacts(
        run_id=version.run_id, artifact_path="evaluation.json"
    )
    groups = json.loads(Path(path).read_text())["groups"]
    assert {"all", *(g.id for g in GROUPS)} <= set(groups)
    assert groups["women"]["cases"] > 0 and "lead_recall" in groups["women"]
    assert "amount_median_ratio_to_oracle" in groups["all"]
    card = load_bundle(f"models:/{MODEL}@champion")[0].card()
    assert card["evaluation_by_group"]["women"]["cases"] == groups["women"]["cases"]
