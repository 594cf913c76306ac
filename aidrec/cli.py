"""The one command line: ``aidrec``. Each command is a thin layer over a package function."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from aidrec import screening_cli
from aidrec.settings import get_settings, settings_of
from features import cli as features_cli
from features.contract import parse_records
from features.synthetic import generate_history
from features.tables import read_table, write_table
from features.wages import WageTable
from serving import cli as serving_cli
from serving import lead_cli
from training import cli as training_cli
from training import supervision_cli
from training.registry import CHAMPION, configure_tracking, version_for

app = typer.Typer(
    help="Reference amounts and leads for state judicial assistance (国家司法救助).",
    no_args_is_help=True,
    add_completion=False,
)
log = logging.getLogger("aidrec")


@app.callback()
def _configure(
    ctx: typer.Context,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging"),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        ctx.obj = get_settings()
    except ValidationError as exc:
        typer.echo(f"error: the AIDREC_ settings are invalid: {exc}", err=True)
        raise typer.Exit(2) from None


app.command()(features_cli.validate)
app.command()(features_cli.generate)
app.command()(training_cli.train)
app.command()(training_cli.evaluate)
app.command()(training_cli.promote)
app.command()(training_cli.rollback)
app.command("score-file")(training_cli.score_file)
app.command()(serving_cli.serve)
app.command("export-reviews")(serving_cli.export_reviews)
app.add_typer(serving_cli.audit_app, name="audit")
app.add_typer(serving_cli.keys_app, name="keys")
app.add_typer(lead_cli.leads_app, name="leads")
app.add_typer(supervision_cli.report_app, name="report")
app.add_typer(supervision_cli.policy_app, name="policy")
app.command()(screening_cli.pseudonymise)
app.add_typer(screening_cli.registries_app, name="registries")
app.command("generate-registries")(screening_cli.generate_registries_command)
app.command()(screening_cli.screen)


@app.command()
def run(
    ctx: typer.Context,
    rows: Annotated[int, typer.Option(min=1000, help="cases in the generated history")] = 200_000,
    seed: Annotated[int, typer.Option(help="seed of the generated history")] = 2026,
    retrain: Annotated[bool, typer.Option(help="train even when a champion exists")] = False,
    screen: Annotated[
        bool, typer.Option(help="screen new cards with generated registries (线索管理)")
    ] = True,
    serve: Annotated[bool, typer.Option(help="end by serving the champion")] = True,
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
) -> None:
    """The main job: a history and a champion (made if absent), new cards screened, served.

    Screening generates a quarter as many new case cards and the departments' registries
    (once), imports the registries and registers the leads, so the workbench shows them.
    """
    settings = settings_of(ctx)
    history: Path = settings.history_path
    if not history.exists():
        log.info("no history at %s: generating %d cases", history, rows)
        frame = generate_history(rows, seed, wage_table=WageTable.from_csv(settings.wage_table))
        write_table(frame, history)
    parsed = parse_records(read_table(history))
    for line in features_cli.violation_lines(parsed, limit=10):
        log.info(line)
    if parsed.violations:
        raise typer.Exit(1)
    log.info("history ready: %s (%d cases)", history, len(parsed.frame))
    uri = configure_tracking(settings.tracking_store_uri)
    if retrain or version_for(settings.registered_model, CHAMPION) is None:
        training_cli.train(ctx, data=history)
        training_cli.promote(ctx, data=history)
    champion = version_for(settings.registered_model, CHAMPION)
    typer.echo(
        f"champion: models:/{settings.registered_model}@{CHAMPION} (version {champion})\n"
        f"tracking store: {uri}  (browse: .venv/bin/mlflow ui --backend-store-uri {uri})"
    )
    if screen:
        screening_cli.screen_demo(ctx, rows=max(rows // 4, 1000), seed=seed)
    if serve:
        serving_cli.serve(ctx, host="127.0.0.1", port=port)


if __name__ == "__main__":
    app()
