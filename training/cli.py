"""Thin commands over the training package: train, evaluate, promote, rollback, score-file."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from tqdm import tqdm

from aidrec.settings import Settings, settings_of
from features.contract import ORACLE_PREFIX, ContractError, parse_records
from features.synthetic import generate_history
from features.tables import TableError, iter_table_chunks, read_table, table_format, write_table
from features.wages import WageTable, WageTableError
from training.config import ConfigError, load_config
from training.evaluate import evaluate_bundle
from training.policy import load_policy
from training.pyfunc import DEVIATION_COLUMNS, GRANTED, score_table
from training.registry import (
    CHALLENGER,
    CHAMPION,
    Destination,
    RegistryError,
    TrainingDataError,
    configure_tracking,
    first_promotion,
    load_bundle,
    log_training_run,
    promotion_decision,
    record_promotion,
    run_metrics,
    training_data,
    version_for,
)
from training.registry import (
    rollback as rollback_alias,
)
from training.train import TrainingError, split_by_time, train_bundle

log = logging.getLogger(__name__)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _logged_data(registered_model: str, version: str) -> Path:
    """A version's own training file, or an error saying to name a history with --data."""
    try:
        return training_data(registered_model, version)
    except TrainingDataError as exc:
        raise TrainingDataError(f"{exc}: pass --data PATH with the history to use") from None


def default_output(input: Path) -> Path:
    """Where ``score-file`` writes without ``--output``: beside the input, same format."""
    return input.with_name(f"{input.stem}.scores{input.suffix}")


def load_history(path: Path, drop_invalid: bool) -> pd.DataFrame:
    """A history file parsed against the contract, with a synthetic history's oracle columns.

    Invalid rows refuse the file unless ``drop_invalid``; then only valid rows are kept.
    """
    raw = read_table(path)
    parsed = parse_records(raw)
    if parsed.violations:
        first = "; ".join(v.describe() for v in parsed.violations[:3])
        bad = int(parsed.invalid_rows.sum())
        if not drop_invalid:
            raise ContractError(
                f"{path}: {bad} invalid row(s), e.g. {first}. Run `aidrec validate {path}` for "
                "the full list, or pass --drop-invalid to train on the valid rows only"
            )
        log.warning("%s: dropping %d invalid row(s), e.g. %s", path, bad, first)
    oracle = [c for c in raw.columns if str(c).startswith(ORACLE_PREFIX)]
    frame = pd.concat([parsed.frame, raw[oracle].astype(float)], axis=1)
    return frame.loc[~parsed.invalid_rows].reset_index(drop=True)


def destination(settings: Settings) -> Destination:
    """Where a training under these settings is logged and registered."""
    return Destination(
        settings.experiment_name,
        settings.artifact_root,
        settings.registered_model,
        settings.project_run_id,
    )


def train(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help="history file (CSV or Parquet) with outcomes")],
    config: Annotated[Path | None, typer.Option(help="training config YAML")] = None,
    policy: Annotated[
        Path | None, typer.Option(help="policy YAML (default: training/config/policy.yaml)")
    ] = None,
    drop_invalid: Annotated[
        bool, typer.Option("--drop-invalid", help="train on the valid rows of a flawed file")
    ] = False,
    rows_if_missing: Annotated[
        int, typer.Option(min=0, help="generate a synthetic history of this size if DATA is absent")
    ] = 0,
    seed_if_missing: Annotated[int, typer.Option(help="seed of that history")] = 0,
) -> None:
    """Train every target, evaluate on the newest years, log one MLflow run, alias challenger."""
    settings = settings_of(ctx)
    wage_table = str(settings.wage_table) if settings.wage_table else None
    try:
        training_config = load_config(config)
        training_policy = load_policy(policy)
        if rows_if_missing and not data.exists():
            log.info("%s is absent: generating %d synthetic cases", data, rows_if_missing)
            history = generate_history(
                rows_if_missing, seed_if_missing, wage_table=WageTable.from_csv(wage_table)
            )
            write_table(history, data)
        history = load_history(data, drop_invalid)
        uri = configure_tracking(settings.tracking_store_uri)
        steps = 4 + len(training_config.leads)  # split, amount, leads, index, evaluation
        with tqdm(total=steps, desc="training", unit="step") as bar:

            def progress(message: str) -> None:
                bar.set_postfix_str(message[:60])
                log.info(message)
                bar.update(1)

            bundle, split = train_bundle(
                history, training_config, training_policy, wage_table, progress
            )
            bar.set_postfix_str("evaluating on the holdout years")
            evaluation = evaluate_bundle(
                bundle, history.loc[split.holdout], history.loc[split.train]
            )
            bar.update(1)
        logged = log_training_run(bundle, evaluation, history, destination(settings), data)
    except (
        TableError,
        ContractError,
        ConfigError,
        TrainingError,
        RegistryError,
        WageTableError,
    ) as exc:
        raise _fail(str(exc)) from None
    m = evaluation.metrics
    log.info(
        "amount MAE %.0f yuan (oracle %.0f, ratio %.4f); judicial-aid AUC %.4f (oracle %.4f)",
        m["amount_mae_yuan"],
        m.get("amount_oracle_mae_yuan", float("nan")),
        m.get("amount_mae_ratio_to_oracle", float("nan")),
        m["judicial_aid_auc"],
        m.get("judicial_aid_oracle_auc", float("nan")),
    )
    typer.echo(f"run {logged.run_id} in {uri}\nmodel {logged.model_uri} (alias {CHALLENGER})")


def evaluate(
    ctx: typer.Context,
    data: Annotated[
        Path | None,
        typer.Option(help="history file with outcomes (default: the version's training data)"),
    ] = None,
    model_uri: Annotated[str, typer.Option(help="registered model")] = "",
) -> None:
    """Evaluate a registered version on the newest years of a history (JSON on stdout)."""
    settings = settings_of(ctx)
    configure_tracking(settings.tracking_store_uri)
    uri = model_uri or f"models:/{settings.registered_model}@{CHAMPION}"
    try:
        bundle, info = load_bundle(uri)
        path = data or _logged_data(info["name"], info["version"])
        history = load_history(path, drop_invalid=True)
        split = split_by_time(history, bundle.config)
        evaluation = evaluate_bundle(
            bundle, history.loc[split.holdout], history.loc[split.train | split.validation]
        )
    except (TableError, ContractError, TrainingError, RegistryError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(json.dumps({"model": info, "metrics": evaluation.metrics}, indent=2))


def promote(
    ctx: typer.Context,
    data: Annotated[
        Path | None,
        typer.Option(
            help="history whose newest years are the common holdout "
            "(default: the challenger's training data)"
        ),
    ] = None,
) -> None:
    """Move champion to the challenger unless it is worse on the same holdout.

    Without ``--data`` both are evaluated on the challenger's own training file, as logged
    (it must still be there, unchanged); with no champion yet the challenger is promoted
    without an evaluation.
    """
    settings = settings_of(ctx)
    configure_tracking(settings.tracking_store_uri)
    name = settings.registered_model
    try:
        challenger_version = version_for(name, CHALLENGER)
        if challenger_version is None:
            raise RegistryError(f"{name} has no {CHALLENGER}: train a model first")
        champion_version = version_for(name, CHAMPION)
        if champion_version == challenger_version:
            typer.echo(f"version {challenger_version} is already {CHAMPION}")
            return
        challenger, _ = load_bundle(f"models:/{name}/{challenger_version}")  # loads, as served
        if data is None and champion_version is None:
            decision = first_promotion(
                run_metrics(name, challenger_version), list(challenger.leads)
            )
        else:
            path = data or _logged_data(name, challenger_version)
            history = load_history(path, drop_invalid=True)
            holdout = history.loc[split_by_time(history, challenger.config).holdout]
            challenger_metrics = evaluate_bundle(challenger, holdout).metrics
            champion_metrics = None
            if champion_version is not None:
                champion, _ = load_bundle(f"models:/{name}/{champion_version}")
                champion_metrics = evaluate_bundle(champion, holdout).metrics
            decision = promotion_decision(
                challenger_metrics, champion_metrics, challenger.config, list(challenger.leads)
            )
        record_promotion(name, challenger_version, decision)
    except (TableError, ContractError, TrainingError, RegistryError) as exc:
        raise _fail(str(exc)) from None
    verdict = "promoted" if decision.promote else "not promoted"
    typer.echo(f"version {challenger_version} {verdict}: {decision.reason}")
    if not decision.promote:
        raise typer.Exit(1)


def rollback(
    ctx: typer.Context,
    to: Annotated[
        str | None,
        typer.Option(
            "--to", help="the version to serve again (default: the champion's predecessor)"
        ),
    ] = None,
) -> None:
    """Point champion back at an earlier version: the one it replaced, or the one named."""
    settings = settings_of(ctx)
    configure_tracking(settings.tracking_store_uri)
    try:
        previous, current = rollback_alias(settings.registered_model, to)
    except RegistryError as exc:
        hint = "" if to else ": name a version with --to"
        raise _fail(f"{exc}{hint}") from None
    typer.echo(f"{CHAMPION} moved from version {previous} to {current}")


def score_file(
    ctx: typer.Context,
    input: Annotated[Path, typer.Option("--input", help="case records, CSV or Parquet")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", help="scores, CSV or Parquet (default: INPUT's name with .scores)"
        ),
    ] = None,
    model_uri: Annotated[str, typer.Option(help="registered model")] = "",
    chunk_rows: Annotated[int, typer.Option(min=1, help="rows per chunk")] = 100_000,
) -> None:
    """Score a file of case records in chunks: one output row per case.

    With an ``aid_amount_yuan`` column, each row also says how the amount granted compares
    with the reference (``ratio_to_reference``, ``outside_interval``). Without ``--output``
    the scores go beside the input (``cases.csv`` → ``cases.scores.csv``).
    """
    settings = settings_of(ctx)
    configure_tracking(settings.tracking_store_uri)
    uri = model_uri or f"models:/{settings.registered_model}@{CHAMPION}"
    output = output or default_output(input)
    try:
        out_format = table_format(output)
        table_format(input)
        if not input.is_file():
            raise TableError(f"{input}: no such file")
        bundle, info = load_bundle(uri)
        import pyarrow as pa
        import pyarrow.csv as pa_csv
        import pyarrow.parquet as pq

        writer: pq.ParquetWriter | pa_csv.CSVWriter | None = None
        schema: pa.Schema | None = None
        rows = errors = 0
        output.parent.mkdir(parents=True, exist_ok=True)
        with tqdm(desc=f"scoring with version {info['version']}", unit="case") as bar:
            for chunk in iter_table_chunks(input, chunk_rows):
                scored = score_table(bundle, chunk.reset_index(drop=True))
                if GRANTED not in chunk.columns:  # no granted amounts: no deviation columns
                    scored = scored.drop(columns=list(DEVIATION_COLUMNS))
                table = pa.Table.from_pandas(scored, preserve_index=False)
                if writer is None or schema is None:
                    schema = table.schema
                    writer = (
                        pq.ParquetWriter(output, schema)
                        if out_format == "parquet"
                        else pa_csv.CSVWriter(output, schema)
                    )
                writer.write_table(table.cast(schema))
                rows += len(scored)
                errors += int(scored["error"].notna().sum())
                bar.update(len(scored))
        if writer is not None:
            writer.close()
    except (TableError, ContractError, RegistryError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(
        f"{rows} cases scored by {info['name']} version {info['version']} → {output}"
        + (f" ({errors} rows refused, see the error column)" if errors else "")
    )
