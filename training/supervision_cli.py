"""Thin commands for supervision: the deviation report over a history, and policy versions."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from aidrec.settings import settings_of
from features.contract import ContractError
from features.tables import TableError, iter_table_chunks, table_format
from training import cli as training_cli
from training.deviation import (
    DEFAULT_LARGEST,
    DEFAULT_MIN_CASES,
    DEFAULT_TOLERANCE,
    GROUP_BY,
    ReportError,
    history_deviation,
    parse_years,
)
from training.deviation_report import write_report
from training.evaluate import evaluate_bundle
from training.policy import PolicyError, load_policy, policy_changes
from training.registry import (
    CHAMPION,
    RegistryError,
    configure_tracking,
    load_bundle,
    log_training_run,
    version_for,
)
from training.train import TrainingError, split_by_time

log = logging.getLogger(__name__)
report_app = typer.Typer(help="Supervision reports (同案不同救).", no_args_is_help=True)
policy_app = typer.Typer(help="Policy versions (权重管理).", no_args_is_help=True)
TAG_LIMIT = 5000
"""MLflow keeps tag values up to this many characters."""


@report_app.command("deviation")
def deviation(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help="history file (CSV or Parquet) with outcomes")],
    out: Annotated[Path, typer.Option(help="folder for deviation.html and the CSV tables")],
    years: Annotated[
        str | None, typer.Option(help="decision years, e.g. 2021-2025 (default: all)")
    ] = None,
    group_by: Annotated[str, typer.Option(help="one of " + ", ".join(GROUP_BY))] = "office",
    model_uri: Annotated[str, typer.Option(help="registered model (default: champion)")] = "",
    tolerance: Annotated[
        float, typer.Option(min=0.01, max=10.0, help="flag beyond ×(1+t) or ÷(1+t) of the parent")
    ] = DEFAULT_TOLERANCE,
    min_cases: Annotated[
        int, typer.Option(min=1, help="decisions a group needs to be flagged")
    ] = DEFAULT_MIN_CASES,
    largest: Annotated[
        int, typer.Option(min=0, max=1000, help="largest deviations listed")
    ] = DEFAULT_LARGEST,
    similar_k: Annotated[int, typer.Option(min=1, max=50, help="similar cases per deviation")] = 5,
    drop_invalid: Annotated[
        bool, typer.Option("--drop-invalid", help="report on the valid rows of a flawed file")
    ] = False,
    chunk_rows: Annotated[int, typer.Option(min=1000, help="rows scored at a time")] = 100_000,
) -> None:
    """Score a history's granted decisions with the champion and report the deviation by group."""
    settings = settings_of(ctx)
    configure_tracking(settings.tracking_store_uri)
    uri = model_uri or f"models:/{settings.registered_model}@{CHAMPION}"
    try:
        span = parse_years(years)
        table_format(data)
        if not data.is_file():
            raise TableError(f"{data}: no such file")
        bundle, info = load_bundle(uri)
        report = history_deviation(
            bundle,
            iter_table_chunks(data, chunk_rows),
            group_by,
            span,
            tolerance,
            min_cases,
            largest,
            similar_k,
            drop_invalid,
            model={"name": info["name"], "version": info["version"]},
        )
        written = write_report(report, out, str(data))
    except (TableError, ContractError, RegistryError, ReportError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    flagged = report.groups[report.groups["flag"] != ""]
    typer.echo(
        f"{report.overall['count']} decisions by {group_by}: {len(report.groups)} groups, "
        f"{len(flagged)} flagged → {written[0]}"
    )


def _champion_data_path(run_id: str) -> str | None:
    try:
        return MlflowClient().get_run(run_id).data.tags.get("data_path") or None
    except MlflowException:
        return None


@policy_app.command("apply")
def apply(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="the policy YAML to apply")],
    data: Annotated[
        Path | None,
        typer.Option(help="history for the holdout (default: the champion's training data)"),
    ] = None,
) -> None:
    """Register the champion's boosters under a new policy, and promote it through the gate.

    Nothing is registered when the file is refused (its line and rule are printed).
    """
    settings = settings_of(ctx)
    configure_tracking(settings.tracking_store_uri)
    name = settings.registered_model
    try:
        policy = load_policy(file)
        champion_version = version_for(name, CHAMPION)
        if champion_version is None:
            raise RegistryError(f"{name} has no {CHAMPION}: train and promote a model first")
        champion, info = load_bundle(f"models:/{name}/{champion_version}")
        changes = policy_changes(champion.policy, policy)
        if not changes:
            raise PolicyError(
                f"{file}: the same policy as version {champion_version}: nothing to do"
            )
        if policy.version == champion.policy.version:
            raise PolicyError(
                f"{file}: version {policy.version!r} is the champion's own policy version but "
                "the policy differs; give the new policy a new version"
            )
        path = data or Path(_champion_data_path(info["run_id"]) or settings.history_path)
        history = training_cli.load_history(path, drop_invalid=True)
        split = split_by_time(history, champion.config)
        bundle = champion.with_policy(policy)
        evaluation = evaluate_bundle(bundle, history.loc[split.holdout], history.loc[split.train])
        tags = {
            "policy_change": "; ".join(changes)[:TAG_LIMIT],
            "policy_applied_to_version": champion_version,
        }
        logged = log_training_run(
            bundle, evaluation, history, training_cli.destination(settings), str(path), tags
        )
    except (PolicyError, TableError, ContractError, TrainingError, RegistryError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"policy {policy.version} on the boosters of version {champion_version} registered as "
        f"version {logged.version}; changed: " + "; ".join(changes)
    )
    training_cli.promote(ctx, data=path)
