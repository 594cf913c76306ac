"""Thin commands over the serving package: serve, audit verify, export-reviews."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from aidrec.settings import settings_of
from features.contract import parse_records
from features.tables import TableError, table_format, write_table
from serving.audit import AuditError, AuditStore, make_engine, verify_chain
from serving.schemas import EXAMPLE_RECORD
from serving.security import CASE_SYSTEM, HEADER, ensure_keys

log = logging.getLogger(__name__)
audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)


def example_curl(host: str, port: int, key: str) -> str:
    """One curl that scores the example case."""
    import json

    body = json.dumps({"record": EXAMPLE_RECORD, "granted_amount_yuan": 30000}, ensure_ascii=False)
    return (
        f"curl -s -X POST http://{host}:{port}/v1/score -H 'Content-Type: application/json' "
        f"-H '{HEADER}: {key}' -d '{body}'"
    )


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
) -> None:
    """Serve the API and the reviewers' pages (uvicorn), loading the configured model alias."""
    import uvicorn

    from serving.app import create_app

    settings = settings_of(ctx)
    created = ensure_keys(settings.api_keys_path)
    if created:
        typer.echo(f"API keys created in {settings.api_keys_path} (shown only this once):")
        for role, key in created.items():
            typer.echo(f"  {role:<12} {key}")
        typer.echo(
            "score the example case with:\n  " + example_curl(host, port, created[CASE_SYSTEM])
        )
    typer.echo(
        f"pages for reviewers (sign in with the reviewer or admin key): http://{host}:{port}/ui"
    )
    typer.echo(f"serving {settings.model_uri} on http://{host}:{port} (docs: /docs)")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", access_log=False)


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(help="audit store URL (default: settings)")] = None,
) -> None:
    """Walk the hash chain; exit 1 naming the first record changed or removed."""
    settings = settings_of(ctx)
    report = verify_chain(make_engine(url or settings.audit_database_url))
    typer.echo(("ok: " if report.ok else "TAMPERED: ") + report.message)
    if not report.ok:
        raise typer.Exit(1)


def reviewed_rows(store: AuditStore) -> pd.DataFrame:
    """The reviewed cases as contract rows with outcomes, for the next training.

    The latest review of the latest reviewed prediction per case: accepted = granted at the
    reference amount, adjusted = granted at the reviewer's amount, rejected = not granted;
    the other outcomes unknown.
    """
    rows: dict[str, dict[str, Any]] = {}
    for prediction, review in store.reviewed_predictions():
        record = dict(prediction.payload["request"]["record"])
        decision = review.payload["decision"]
        reference = prediction.payload["response"]["reference_amount"]["yuan"]
        record["aid_granted"] = decision != "rejected"
        record["aid_amount_yuan"] = (
            None
            if decision == "rejected"
            else round(
                float(review.payload["amount_yuan"] if decision == "adjusted" else reference), 2
            )
        )
        record["referred_social_assistance"] = None
        record["civil_support_prosecution"] = None
        rows[prediction.case_id] = record
    frame = pd.DataFrame(
        {
            k: pd.Series([r.get(k) for r in rows.values()], dtype=object)
            for k in (next(iter(rows.values())) if rows else {})
        }
    )
    return frame


def export_reviews(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="output file, .csv or .parquet")],
    url: Annotated[str | None, typer.Option(help="audit store URL (default: settings)")] = None,
) -> None:
    """Write the reviewed cases as contract rows with outcomes, ready for the next training."""
    settings = settings_of(ctx)
    try:
        table_format(out)
        store = AuditStore.open(url or settings.audit_database_url)
        frame = reviewed_rows(store)
        if frame.empty:
            typer.echo("no reviewed predictions yet: nothing written")
            return
        parsed = parse_records(frame)
        if parsed.violations:
            raise TableError("; ".join(v.describe() for v in parsed.violations[:3]))
        write_table(parsed.frame, out)
    except (TableError, AuditError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{len(parsed.frame)} reviewed cases written to {out}")
