"""The MLflow side: one run per training, one registered version per bundle, aliases.

``challenger`` is the newest trained version; ``champion`` is what serving loads. The gate
(:func:`promotion_decision`) moves ``champion`` only when the challenger is not worse
beyond the config's tolerances on the primary metrics, measured on the same holdout; the
reason is written as tags on the version. Embedded default: a SQLite tracking store and
local artifacts under the data directory; ``MLFLOW_TRACKING_URI`` overrides it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.data.dataset_source_registry import get_dataset_source_from_json
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from training.bundle import ModelBundle
from training.config import TrainingConfig
from training.evaluate import Evaluation, write_plots
from training.pyfunc import input_example, signature

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PRIMARY_LEAD = "judicial_aid"
BUNDLE_ARTIFACT = "artifacts/bundle.joblib"
"""Where a logged pyfunc keeps the bundle, relative to the model's folder."""
PLOTS_FOLDER = "plots"  # where a run keeps its evaluation plots
TRAINING_CONTEXT = "training"  # the context of a run's training-data input
DATA_PATH_TAG = "data_path"  # the run tag with the training file's resolved path
DATA_DIGEST_TAG = "data_sha256"  # the run tag with the SHA-256 of that file's bytes
DATASET_DIGEST_CHARS = 16  # MLflow keeps a dataset digest in 36 characters at most
LOCAL_SOURCE = "local"  # MLflow's dataset source type for a file on this machine
PREVIOUS_CHAMPION_TAG = "previous_champion"  # on a promoted version: the champion it replaced
PROMOTION_TAG_LIMIT = 5000  # characters of a tag value every MLflow store accepts


class RegistryError(RuntimeError):
    """The registry cannot do what was asked (no such version, no champion...)."""


class TrainingDataError(RegistryError):
    """A version's logged training data cannot be used: none logged, gone, or changed."""


def configure_tracking(tracking_uri: str) -> str:
    """Point MLflow's tracking and registry at one store (a SQLite file's folder is made)."""
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return tracking_uri


@dataclass(frozen=True)
class Destination:
    """Where a training is logged and registered."""

    experiment: str
    artifact_root: Path  # where a new experiment keeps its artifacts
    registered_model: str
    run_id: str | None = None  # a run already opened by `mlflow run`


def _experiment_id(destination: Destination) -> str:
    experiment = mlflow.get_experiment_by_name(destination.experiment)
    if experiment is not None:
        return str(experiment.experiment_id)
    destination.artifact_root.mkdir(parents=True, exist_ok=True)
    return str(
        mlflow.create_experiment(
            destination.experiment, artifact_location=destination.artifact_root.as_uri()
        )
    )


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes: the same file trains and evaluates the same way."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _log_training_data(path: Path, rows: int) -> dict[str, str]:
    """Log a training file as the run's dataset input (source and digest); its tags.

    A metadata-only dataset: the file stays where it is and the run records where it was
    and what it held, so a later ``promote`` or ``evaluate`` can find it and tell whether it
    changed since. The full digest is a run tag (a dataset's digest is kept short).
    """
    resolved = path.resolve()
    sha256 = file_digest(resolved)
    source = get_dataset_source_from_json(json.dumps({"uri": str(resolved)}), LOCAL_SOURCE)
    # MLflow's stubs declare `profile` abstract; MetaDataset is concrete at run time
    dataset = MetaDataset(  # type: ignore[abstract]
        source, name=resolved.name, digest=sha256[:DATASET_DIGEST_CHARS]
    )
    mlflow.log_input(dataset, context=TRAINING_CONTEXT, tags={"rows": str(rows)})
    return {DATA_PATH_TAG: str(resolved), DATA_DIGEST_TAG: sha256}


def _flat_params(config: TrainingConfig) -> dict[str, Any]:
    params: dict[str, Any] = {
        "config_version": config.version,
        "config_digest": config.digest,
        "validation_years": config.validation_years,
        "holdout_years": config.holdout_years,
        "num_boost_round": config.num_boost_round,
        "early_stopping_rounds": config.early_stopping_rounds,
    }
    for name, target in config.targets.items():
        params[f"{name}.objective"] = target.objective
        params[f"{name}.n_features"] = len(target.features)
        for key in ("learning_rate", "num_leaves", "max_depth", "min_data_in_leaf"):
            if key in target.params:
                params[f"{name}.{key}"] = target.params[key]
    params["reference_amount.monotone"] = json.dumps(config.amount.monotone)
    params["reference_amount.monotone_shapes"] = json.dumps(config.amount.shapes)
    return params


@dataclass(frozen=True)
class LoggedModel:
    """Where one training ended up."""

    run_id: str
    version: str
    model_uri: str
    tracking_uri: str


def log_training_run(
    bundle: ModelBundle,
    evaluation: Evaluation,
    history: pd.DataFrame,
    destination: Destination,
    data_path: Path | str | None = None,
    tags: dict[str, str] | None = None,
) -> LoggedModel:
    """Log params, metrics, plots, the evaluation and the pyfunc; register; alias challenger.

    ``data_path``, the file ``history`` was read from, is logged as the run's training
    dataset (:func:`training_data` finds it again). ``tags`` go on the run and on the
    registered version (e.g. what a policy change changed).
    """
    bundle.metadata["evaluation"] = evaluation.metrics
    registered_model = destination.registered_model
    start = (
        mlflow.start_run(run_id=destination.run_id)
        if destination.run_id
        else mlflow.start_run(experiment_id=_experiment_id(destination))
    )
    with start as run, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        mlflow.log_params(_flat_params(bundle.config))
        mlflow.log_metrics(evaluation.metrics)
        data_tags = (
            _log_training_data(Path(data_path), len(history)) if data_path else {DATA_PATH_TAG: ""}
        )
        mlflow.set_tags(
            {
                **data_tags,
                "rows": str(len(history)),
                "wage_table_version": bundle.metadata.get("wage_table_version", ""),
                "policy_version": bundle.policy.version,
                **(tags or {}),
            }
        )
        (folder / "evaluation.json").write_text(
            json.dumps(
                {"metadata": bundle.metadata, **evaluation.report},
                indent=2,
                ensure_ascii=False,
                default=str,
            ),
            encoding="utf-8",
        )
        mlflow.log_artifact(str(folder / "evaluation.json"))
        mlflow.log_dict(bundle.policy.summary(), "policy.json")
        for plot in write_plots(evaluation, folder / PLOTS_FOLDER):
            mlflow.log_artifact(str(plot), artifact_path=PLOTS_FOLDER)
        bundle_path = folder / "bundle.joblib"
        joblib.dump(bundle, bundle_path, compress=3)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("mlflow_model.py")),
            artifacts={"bundle": str(bundle_path)},
            signature=signature(),
            input_example=input_example(history),
            registered_model_name=registered_model,
            metadata={"config_version": bundle.config.version},
        )
    client = MlflowClient()
    version = str(info.registered_model_version)
    client.set_registered_model_alias(registered_model, CHALLENGER, version)
    client.set_model_version_tag(registered_model, version, "run_id", run.info.run_id)
    client.set_model_version_tag(registered_model, version, "policy_version", bundle.policy.version)
    for key, value in (tags or {}).items():
        client.set_model_version_tag(registered_model, version, key, value)
    log.info(
        "run %s registered as %s version %s (alias %s)",
        run.info.run_id,
        registered_model,
        version,
        CHALLENGER,
    )
    return LoggedModel(
        run.info.run_id, version, f"models:/{registered_model}/{version}", mlflow.get_tracking_uri()
    )


def _run_of(registered_model: str, version: str) -> Run:
    client = MlflowClient()
    try:
        return client.get_run(str(client.get_model_version(registered_model, version).run_id))
    except MlflowException as exc:
        raise RegistryError(f"cannot read the run of {registered_model} version {version}") from exc


def run_metrics(registered_model: str, version: str) -> dict[str, float]:
    """The metrics a version's training run logged (its own holdout's evaluation)."""
    return dict(_run_of(registered_model, version).data.metrics)


def training_data(registered_model: str, version: str) -> Path:
    """The file a version was trained on, checked to be there and unchanged.

    Found from the run's training dataset input (:func:`log_training_run`); its bytes must
    still have the digest logged then, or evaluating on it would not be what it says.

    Raises:
        TrainingDataError: no training data was logged, or the file is gone or changed.
    """
    run = _run_of(registered_model, version)
    inputs = run.inputs.dataset_inputs if run.inputs else []
    logged = [
        found.dataset
        for found in inputs
        if found.dataset.source_type == LOCAL_SOURCE
        and any(t.key == MLFLOW_DATASET_CONTEXT and t.value == TRAINING_CONTEXT for t in found.tags)
    ]
    if not logged:
        raise TrainingDataError(
            f"{registered_model} version {version}: its run logged no training data file"
        )
    dataset = logged[-1]
    path = Path(json.loads(dataset.source)["uri"])  # a local source is {"uri": path}
    if not path.is_file():
        raise TrainingDataError(
            f"{registered_model} version {version} was trained on {path}, which is gone"
        )
    expected = run.data.tags.get(DATA_DIGEST_TAG) or dataset.digest
    found_digest = file_digest(path)
    if not found_digest.startswith(expected):
        raise TrainingDataError(
            f"{path} changed since {registered_model} version {version} was trained on it "
            f"(SHA-256 {expected[:DATASET_DIGEST_CHARS]}… then, "
            f"{found_digest[:DATASET_DIGEST_CHARS]}… now)"
        )
    return path


def version_for(registered_model: str, alias: str) -> str | None:
    """The version an alias points at, or None when the alias is not set."""
    try:
        return str(MlflowClient().get_model_version_by_alias(registered_model, alias).version)
    except MlflowException:
        return None


def resolve_model_uri(model_uri: str) -> tuple[str, str]:
    """``models:/name@alias`` or ``models:/name/version`` → (name, version)."""
    if not model_uri.startswith("models:/"):
        raise RegistryError(f"{model_uri!r} is not a registry URI (models:/name@alias)")
    rest = model_uri[len("models:/") :]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        version = version_for(name, alias)
        if version is None:
            raise RegistryError(f"no version of {name!r} has the alias {alias!r}")
        return name, version
    name, _, version = rest.partition("/")
    if not version:
        raise RegistryError(f"{model_uri!r} names no version or alias")
    return name, version


def load_bundle(model_uri: str) -> tuple[ModelBundle, dict[str, str]]:
    """Load a registered bundle and say which version and run it is.

    The version's files are copied to a temporary folder first and loaded from there:
    loading straight from a local registry makes MLflow write a ``registered_model_meta``
    file into the registry's own artifacts, and loading must never write into the registry.
    The bundle is read from the pyfunc's own artifact (``artifacts/bundle.joblib``, what
    :class:`~training.pyfunc.JudicialAidModel` loads) without building the pyfunc, which
    costs ~0.5 s of start-up and nothing the service uses.
    """
    name, version = resolve_model_uri(model_uri)
    try:
        model_version = MlflowClient().get_model_version(name, version)
        with tempfile.TemporaryDirectory(prefix="aidrec-model-") as folder:
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{name}/{version}", dst_path=folder
                )
            )
            bundle = joblib.load(local / BUNDLE_ARTIFACT)
    except (MlflowException, OSError) as exc:
        message = exc.message if isinstance(exc, MlflowException) else str(exc)
        raise RegistryError(f"cannot load {model_uri}: {message}") from exc
    if not isinstance(bundle, ModelBundle):
        raise RegistryError(f"{model_uri}: {BUNDLE_ARTIFACT} is not a model bundle")
    return bundle, {"name": name, "version": version, "run_id": str(model_version.run_id)}


@dataclass(frozen=True)
class PromotionDecision:
    """The gate's verdict and why."""

    promote: bool
    reason: str
    challenger: dict[str, float]
    champion: dict[str, float] | None
    compared: tuple[str, ...] = ()  # the metrics the gate compares (kept when space is short)


def gate_metrics(lead_names: list[str]) -> tuple[str, ...]:
    """The metrics the gate compares: the amount's MAE in yuan and every lead's AUC."""
    return ("amount_mae_yuan", *(f"{name}_auc" for name in lead_names))


def promotion_decision(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    config: TrainingConfig,
    lead_names: list[str],
) -> PromotionDecision:
    """Promote unless the challenger is worse beyond tolerance on a primary metric.

    Primary metrics: the amount's MAE in yuan (relative tolerance) and every lead's AUC
    (absolute tolerance), all measured on the same holdout rows.
    """
    compared = gate_metrics(lead_names)
    if champion is None:
        return PromotionDecision(
            True, "no champion yet: the first model is promoted", challenger, None, compared
        )
    amount_tolerance = config.promotion.get("amount_mae_yuan_relative", 0.02)
    auc_tolerance = config.promotion.get("lead_auc_absolute", 0.005)
    worse = []
    limit = champion["amount_mae_yuan"] * (1 + amount_tolerance)
    if challenger["amount_mae_yuan"] > limit:
        worse.append(
            f"amount MAE {challenger['amount_mae_yuan']:.0f} yuan > champion "
            f"{champion['amount_mae_yuan']:.0f} × (1 + {amount_tolerance})"
        )
    for name in lead_names:
        key = f"{name}_auc"
        if challenger[key] < champion[key] - auc_tolerance:
            worse.append(
                f"{name} AUC {challenger[key]:.4f} < champion {champion[key]:.4f} − {auc_tolerance}"
            )
    if worse:
        return PromotionDecision(
            False, "challenger is worse: " + "; ".join(worse), challenger, champion, compared
        )
    aucs = [
        f"{n} AUC {challenger[f'{n}_auc']:.4f} vs {champion[f'{n}_auc']:.4f}" for n in lead_names
    ]
    summary = (
        f"amount MAE {challenger['amount_mae_yuan']:.0f} vs {champion['amount_mae_yuan']:.0f} "
        "yuan; " + ", ".join(aucs)
    )
    return PromotionDecision(
        True, "not worse within tolerance: " + summary, challenger, champion, compared
    )


def first_promotion(logged_metrics: dict[str, float], lead_names: list[str]) -> PromotionDecision:
    """The first model is promoted without an evaluation: there is nothing to compare it with.

    ``logged_metrics`` (its training run's own holdout) are recorded with the decision.
    """
    return PromotionDecision(
        True,
        "no champion yet: the first model is promoted without an evaluation "
        "(the metrics are its training run's own holdout)",
        logged_metrics,
        None,
        gate_metrics(lead_names),
    )


def _promotion_metrics(decision: PromotionDecision) -> str:
    """The decision's metrics as JSON within a tag's limit: all of them, else the gate's.

    A cut JSON text would be unreadable; when every metric does not fit, the ones the gate
    compared are kept (the rest are on the runs).
    """
    both = {"challenger": decision.challenger, "champion": decision.champion}
    text = json.dumps(both, default=float)
    if len(text) <= PROMOTION_TAG_LIMIT:
        return text
    kept = {
        side: None if found is None else {k: found[k] for k in decision.compared if k in found}
        for side, found in both.items()
    }
    return json.dumps(kept, default=float)


def record_promotion(registered_model: str, version: str, decision: PromotionDecision) -> None:
    """Write the decision as tags on the version and move the alias if promoted.

    A promoted version is tagged with the champion it replaced, where :func:`rollback`
    goes back to when no version is named.
    """
    client = MlflowClient()
    previous = version_for(registered_model, CHAMPION)
    tags = {
        "promotion_decision": "promoted" if decision.promote else "refused",
        "promotion_reason": decision.reason,
        "promotion_metrics": _promotion_metrics(decision),
    }
    for key, value in tags.items():
        client.set_model_version_tag(registered_model, version, key, value)
    if decision.promote:
        if previous is not None and previous != version:
            client.set_model_version_tag(registered_model, version, PREVIOUS_CHAMPION_TAG, previous)
        client.set_registered_model_alias(registered_model, CHAMPION, version)
        log.info(
            "%s version %s is now %s: %s", registered_model, version, CHAMPION, decision.reason
        )
    else:
        log.warning("%s version %s not promoted: %s", registered_model, version, decision.reason)


def previous_champion(registered_model: str) -> str:
    """The version the champion replaced when it was promoted (its ``previous_champion``)."""
    champion = version_for(registered_model, CHAMPION)
    if champion is None:
        raise RegistryError(f"{registered_model} has no {CHAMPION} to roll back")
    try:
        tags = MlflowClient().get_model_version(registered_model, champion).tags or {}
    except MlflowException as exc:
        raise RegistryError(f"cannot read {registered_model} version {champion}") from exc
    previous = tags.get(PREVIOUS_CHAMPION_TAG)
    if not previous:
        raise RegistryError(
            f"{registered_model} version {champion} (the {CHAMPION}) replaced no earlier "
            f"{CHAMPION} when it was promoted"
        )
    return previous


def rollback(registered_model: str, to_version: str | None = None) -> tuple[str | None, str]:
    """Point ``champion`` back at a version; returns (the version it left, the one it is on).

    Without ``to_version``, back to the champion the current one replaced.
    """
    client = MlflowClient()
    if to_version is None:
        to_version = previous_champion(registered_model)
    try:
        client.get_model_version(registered_model, to_version)
    except MlflowException as exc:
        raise RegistryError(f"{registered_model} has no version {to_version}") from exc
    previous = version_for(registered_model, CHAMPION)
    client.set_registered_model_alias(registered_model, CHAMPION, to_version)
    client.set_model_version_tag(
        registered_model, to_version, "rolled_back_from", previous or "none"
    )
    log.info("%s: %s moved from version %s to %s", registered_model, CHAMPION, previous, to_version)
    return previous, to_version


@dataclass(frozen=True)
class VersionInfo:
    """A registered version as the model page lists it: aliases and why it was promoted."""

    version: str
    aliases: tuple[str, ...]
    run_id: str | None
    created_at: dt.datetime | None
    promotion_decision: str | None
    promotion_reason: str | None
    rolled_back_from: str | None


def list_versions(registered_model: str) -> list[VersionInfo]:
    """Every version of a registered model, newest first, with its aliases and promotion tags."""
    client = MlflowClient()
    try:
        aliases = client.get_registered_model(registered_model).aliases or {}
        found = client.search_model_versions(f"name='{registered_model}'")
    except MlflowException as exc:
        raise RegistryError(f"cannot list the versions of {registered_model}: {exc}") from exc
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    out = []
    for found_version in found:
        tags = found_version.tags or {}
        created = found_version.creation_timestamp
        out.append(
            VersionInfo(
                version=str(found_version.version),
                aliases=tuple(sorted(by_version.get(str(found_version.version), []))),
                run_id=found_version.run_id,
                created_at=None
                if created is None
                else dt.datetime.fromtimestamp(created / 1000, tz=dt.UTC),
                promotion_decision=tags.get("promotion_decision"),
                promotion_reason=tags.get("promotion_reason"),
                rolled_back_from=tags.get("rolled_back_from"),
            )
        )
    return sorted(out, key=lambda v: int(v.version) if v.version.isdigit() else 0, reverse=True)


def run_plots(run_id: str) -> list[str]:
    """The file names of the evaluation plots a training run logged (``write_plots``)."""
    try:
        listed = MlflowClient().list_artifacts(run_id, PLOTS_FOLDER)
    except MlflowException as exc:
        raise RegistryError(f"cannot list the plots of run {run_id}: {exc}") from exc
    return sorted(Path(item.path).name for item in listed if item.path.endswith(".png"))


def read_run_plot(run_id: str, name: str) -> bytes:
    """One logged plot's PNG bytes; only a name :func:`run_plots` lists is read."""
    if name not in run_plots(run_id):
        raise RegistryError(f"run {run_id} logged no plot {name!r}")
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=f"{PLOTS_FOLDER}/{name}", dst_path=tmp
        )
        return Path(path).read_bytes()
