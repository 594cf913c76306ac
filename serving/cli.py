"""Thin commands over the serving package: serve, keys, audit verify, export-reviews."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
from sqlalchemy.exc import SQLAlchemyError

from aidrec.settings import Settings, settings_of
from features.contract import parse_records
from features.registries import RegistryConfig, card_dates
from features.tables import TableError, table_format, write_table
from serving.audit import AuditError, AuditStore, make_engine, migrate, verify_chain
from serving.checkpoints import AuditKeyError
from serving.guards import GuardedH11Protocol
from serving.keys import KeyStoreError, ensure_keys, open_keys
from serving.registry_store import RegistryStore, RegistryStoreError
from serving.schemas import EXAMPLE_RECORD
from serving.scopes import LEVELS_ZH, NATIONAL, Scope, ScopeError
from serving.security import CASE_SYSTEM, HEADER, ROLES
from serving.stores import audit_secrets, open_audit_store

log = logging.getLogger(__name__)
audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys: role and scope (密钥管理).", no_args_is_help=True)
CLI_ACTOR = "aidrec keys"
"""Who changed a key from the command line, as the audit trail names it."""


EXAMPLE_PERSON_DEPARTMENTS = ("disability", "dibao")
"""Departments whose first covered person lends the example case a person key (see below)."""


def example_person_key(settings: Settings) -> str | None:
    """A person the imported registries hold on the example's decision date, or None.

    ``aidrec run`` imports generated registries; with one of their person keys the example's
    answer shows the live join (数据来源) instead of ``no_person_key``. No registry, or a
    store that cannot be read, leaves the example without a key.
    """
    on = card_dates(np.array([EXAMPLE_RECORD["decision_year"]]), None)[0].item()
    try:
        store = RegistryStore.open(settings.registry_database_url)
    except (RegistryStoreError, SQLAlchemyError) as exc:
        log.info("the example case gets no person key: %s", exc)
        return None
    config = RegistryConfig.load()
    try:
        current = store.current(on)
        for department in EXAMPLE_PERSON_DEPARTMENTS:
            if department in current:
                rows = store.rows_of(current[department].id)
                covered = rows.loc[rows["status"].isin(config.department(department).active)]
                if len(covered):
                    return str(covered["person_key"].iloc[0])
    except (RegistryStoreError, SQLAlchemyError) as exc:
        log.info("the example case gets no person key: %s", exc)
    finally:
        store.close()
    return None


def example_curl(host: str, port: int, key: str, person_key: str | None = None) -> str:
    """One curl that scores the example case (with a person key, joined to the registries)."""
    import json

    record = {**EXAMPLE_RECORD, "person_key": person_key} if person_key else EXAMPLE_RECORD
    body = json.dumps({"record": record, "granted_amount_yuan": 30000}, ensure_ascii=False)
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
    try:
        created = ensure_keys(settings)
    except (KeyStoreError, AuditError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if created:
        typer.echo("API keys created, national scope (shown only this once):")
        for role, key in created.items():
            typer.echo(f"  {role:<12} {key}")
        person_key = example_person_key(settings)
        typer.echo(
            "score the example case with:\n  "
            + example_curl(host, port, created[CASE_SYSTEM], person_key)
        )
        if person_key:
            typer.echo(
                "  (its person_key is a person the imported registries hold: the answer's "
                "data_sources shows what they say beside the case card)"
            )
    typer.echo(
        f"pages for reviewers (sign in with the reviewer or admin key): http://{host}:{port}/ui"
    )
    typer.echo(f"serving {settings.model_uri} on http://{host}:{port} (docs: /docs)")
    protocol = type(
        "HeaderDeadlineH11", (GuardedH11Protocol,), {"header_timeout": settings.header_timeout_s}
    )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        http=protocol,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=30,
    )


def _store_settings(ctx: typer.Context, url: str | None) -> Settings:
    settings = settings_of(ctx)
    return settings.model_copy(update={"audit_url": url}) if url else settings


def _scope(text: str) -> Scope:
    try:
        return Scope.parse(text)
    except ScopeError as exc:
        raise typer.BadParameter(str(exc)) from None


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="a name for the key (who or what uses it)")],
    role: Annotated[str, typer.Option(help="one of " + ", ".join(ROLES))],
    scope: Annotated[
        str, typer.Option(help="national, or a province (32), city (3201) or office (320104)")
    ] = "national",
) -> None:
    """Create a key; it is printed once and stored only as a hash."""
    settings = settings_of(ctx)
    try:
        store = open_keys(settings, CLI_ACTOR)
        plain = store.create(name, role, _scope(scope), CLI_ACTOR)
    except (KeyStoreError, AuditError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    level = LEVELS_ZH[_scope(scope).level]
    typer.echo(f"key {name!r} ({role}, scope {_scope(scope)} {level}), shown only this once:")
    typer.echo(f"  {plain}")


@keys_app.command("list")
def keys_list(ctx: typer.Context) -> None:
    """Every key: name, role, scope, created, last used, revoked (never the key itself)."""
    settings = settings_of(ctx)
    try:
        keys = open_keys(settings, CLI_ACTOR).entries()
    except (KeyStoreError, AuditError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    def moment(value: Any) -> str:
        return value.strftime("%Y-%m-%d %H:%M") if value else "-"

    typer.echo(f"{'name':<24} {'role':<12} {'scope':<9} {'created':<17} {'last used':<17} revoked")
    for key in keys:
        typer.echo(
            f"{key.name:<24} {key.role:<12} {key.scope!s:<9} {moment(key.created_at):<17} "
            f"{moment(key.last_used_at):<17} {moment(key.revoked_at)}"
        )


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="the key's name")]
) -> None:
    """Revoke a key: refused from the next request on, without a restart."""
    settings = settings_of(ctx)
    try:
        when = open_keys(settings, CLI_ACTOR).revoke(name, CLI_ACTOR)
    except (KeyStoreError, AuditError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"key {name!r} revoked at {when:%Y-%m-%d %H:%M:%S} UTC")


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(help="audit store URL (default: settings)")] = None,
) -> None:
    """Walk the chain and check the signed checkpoints; exit 1 naming what was tampered with.

    Names a record changed, inserted or removed, newest records removed (the head rolled
    back), a chain emptied or rewritten, and an altered checkpoint file.
    """
    settings = _store_settings(ctx, url)
    try:
        secrets = audit_secrets(settings, create=False)
        engine = make_engine(settings.audit_database_url, timeout_s=30.0)
        report = verify_chain(engine, secrets)
    except (AuditError, AuditKeyError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(("ok: " if report.ok else "TAMPERED: ") + report.message)
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("migrate")
def audit_migrate(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(help="audit store URL (default: settings)")] = None,
) -> None:
    """Key a store written before the keyed chain: verify, re-hash under the key, checkpoint.

    Nothing changes unless the old chain verifies; the verdicts before and after are printed.
    Creates the chain and signing keys if they do not exist yet (keep copies apart).
    """
    settings = _store_settings(ctx, url)
    try:
        before, after = migrate(settings.audit_database_url, audit_secrets(settings, create=True))
    except (AuditError, AuditKeyError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"before: {'ok' if before.ok else 'TAMPERED'}: {before.message}")
    typer.echo(f"after:  {'ok' if after.ok else 'TAMPERED'}: {after.message}")
    if not (before.ok and after.ok):
        raise typer.Exit(1)


def reviewed_rows(store: AuditStore, scope: Scope = NATIONAL) -> pd.DataFrame:
    """The reviewed cases inside ``scope`` as contract rows with outcomes, for the next training.

    The latest review of the latest reviewed prediction per case: accepted = granted at the
    reference amount, adjusted = granted at the reviewer's amount, rejected = not granted;
    the other outcomes unknown.
    """
    rows: dict[str, dict[str, Any]] = {}
    for prediction, review in store.reviewed_predictions():
        record = dict(prediction.payload["request"]["record"])
        if not scope.covers(prediction.province_code, record.get("office_code")):
            continue
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
    scope: Annotated[
        str, typer.Option(help="only cases of this scope: national, or a 2-, 4- or 6-digit code")
    ] = "national",
) -> None:
    """Write the reviewed cases as contract rows with outcomes, ready for the next training."""
    settings = _store_settings(ctx, url)
    within = _scope(scope)
    try:
        table_format(out)
        store = open_audit_store(settings)
        frame = reviewed_rows(store, within)
        if frame.empty:
            typer.echo("no reviewed predictions yet: nothing written")
            return
        parsed = parse_records(frame)
        for violation in parsed.violations:
            typer.echo(f"refused: {violation.describe()}", err=True)
        good = parsed.frame.loc[~parsed.invalid_rows].reset_index(drop=True)
        if good.empty:
            raise TableError("every reviewed case breaks the contract: nothing written")
        write_table(good, out)
    except (TableError, AuditError, AuditKeyError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    refused = int(parsed.invalid_rows.sum())
    typer.echo(
        f"{len(good)} reviewed cases written to {out}"
        + (f" ({refused} refused, named above)" if refused else "")
    )
