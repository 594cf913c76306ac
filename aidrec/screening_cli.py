"""Thin commands of the screening path: pseudonymise, registries, generate-registries, screen.

They compose ``features`` (person keys, registries, department rules), ``serving`` (the
registry store) and ``training`` (screening with the champion); each is a thin layer over a
package function.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path
from typing import Annotated

import typer

from aidrec.settings import Settings, settings_of
from features.persons import (
    BadIdentifiersError,
    PersonKeyError,
    load_secret,
    secret_check,
)
from features.persons import (
    pseudonymise as pseudonymise_frame,
)
from features.registries import (
    ExtractError,
    RegistryConfig,
    RegistryConfigError,
    extract_digest,
    validate_extract,
)
from features.tables import TableError, read_table, table_format, write_table
from serving.registry_store import RegistryStore, RegistryStoreError

log = logging.getLogger(__name__)
MAX_LISTED = 20
"""Refused rows listed on the terminal before a summary line."""


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def person_key_secret(settings: Settings) -> bytes:
    """The deployment's person-key secret (raises PersonKeyError when absent or short)."""
    value = settings.person_key_secret.get_secret_value() if settings.person_key_secret else None
    return load_secret(value, settings.person_key_secret_path)


def pseudonymise(
    ctx: typer.Context,
    input: Annotated[Path, typer.Option("--input", help="a table with ID numbers, CSV/Parquet")],
    column: Annotated[str, typer.Option(help="the 身份证号 column")],
    out: Annotated[Path, typer.Option(help="the same table with person_key instead")],
) -> None:
    """Replace a 身份证号 column by person_key (HMAC-SHA256 under the deployment secret).

    Refuses without a secret, and refuses the whole file (exit 1, nothing written) when any ID
    fails the GB 11643 check, listing the rows. Neither the secret nor an ID is ever logged.
    """
    settings = settings_of(ctx)
    try:
        secret = person_key_secret(settings)
        table_format(out)
        frame = read_table(input)
        keyed = pseudonymise_frame(frame, column, secret)
    except (PersonKeyError, TableError) as exc:
        raise _fail(str(exc)) from None
    except BadIdentifiersError as exc:
        for problem in exc.problems[:MAX_LISTED]:
            typer.echo(problem.describe(), err=True)
        hidden = len(exc.problems) - MAX_LISTED
        if hidden > 0:
            typer.echo(f"... and {hidden} more", err=True)
        raise _fail(f"{exc}; nothing written (身份证号校验失败)", code=1) from None
    write_table(keyed, out)
    typer.echo(f"{len(keyed)} rows pseudonymised → {out}")


def parse_date(text: str, option: str) -> dt.date:
    """An ISO date (YYYY-MM-DD) from an option, or a clear error."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise _fail(f"{option}: {text!r} is not a date (YYYY-MM-DD)") from None


registries_app = typer.Typer(
    help="Other departments' registries (数据管理): import extracts, list snapshots.",
    no_args_is_help=True,
)


def open_registries(settings: Settings) -> RegistryStore:
    """The configured registry store (the audit database unless AIDREC_REGISTRY_URL)."""
    try:
        return RegistryStore.open(settings.registry_database_url)
    except RegistryStoreError as exc:
        raise _fail(str(exc)) from None


@registries_app.command("import")
def import_registry(
    ctx: typer.Context,
    department: Annotated[str, typer.Option(help="the registry kind, e.g. dibao, disability")],
    file: Annotated[Path, typer.Option(help="the department's extract, CSV or Parquet")],
    as_of: Annotated[str, typer.Option(help="the date the extract describes, YYYY-MM-DD")],
) -> None:
    """Import one department's extract as a new snapshot (all rows or none).

    Every row is checked first (columns, person keys, statuses, dates, attributes); any
    problem refuses the whole extract (exit 1), listing row, column and rule. The person-key
    secret must be configured and be the one earlier imports used.
    """
    settings = settings_of(ctx)
    on = parse_date(as_of, "--as-of")
    try:
        config = RegistryConfig.load()
        spec = config.department(department)
        secret = person_key_secret(settings)
        raw = read_table(file)
        canonical = validate_extract(raw, spec, on)
    except (RegistryConfigError, PersonKeyError, TableError) as exc:
        raise _fail(str(exc)) from None
    except ExtractError as exc:
        for problem in exc.problems[:MAX_LISTED]:
            typer.echo(problem.describe(), err=True)
        if exc.total > MAX_LISTED:
            typer.echo(f"... and {exc.total - MAX_LISTED} more", err=True)
        raise _fail(str(exc), code=1) from None
    store = open_registries(settings)
    try:
        store.check_secret(secret_check(secret))
        started = time.perf_counter()
        result = store.import_extract(
            department, on, canonical, extract_digest(canonical), file.name, config.version
        )
    except RegistryStoreError as exc:
        raise _fail(str(exc)) from None
    finally:
        store.close()
    seconds = time.perf_counter() - started
    snapshot = result.snapshot
    if result.created:
        typer.echo(
            f"{spec.zh} ({department}) as of {on}: {snapshot.rows} rows imported as snapshot "
            f"{snapshot.id} ({snapshot.rows / max(seconds, 1e-9):,.0f} rows/s)"
        )
    else:
        typer.echo(
            f"{spec.zh} ({department}) as of {on}: the same extract is snapshot "
            f"{snapshot.id}; nothing changed"
        )


@registries_app.command("list")
def list_registries(ctx: typer.Context) -> None:
    """Each department: its snapshots, the current one's date and rows."""
    settings = settings_of(ctx)
    config = RegistryConfig.load()
    store = open_registries(settings)
    try:
        current = store.current(dt.date.max)
        counts = list(store.counts())
    finally:
        store.close()
    if not counts:
        typer.echo("no registry imported yet (尚未导入部门数据)")
        return
    for department, count, rows in counts:
        zh = config.departments[department].zh if department in config.departments else "?"
        typer.echo(
            f"{department:<24} {zh}: {count} snapshot(s); current as of "
            f"{current[department].as_of} with {rows} rows"
        )
