"""Thin commands of the screening path: pseudonymise, registries, generate-registries, screen.

They compose ``features`` (person keys, registries, department rules), ``serving`` (the
registry store) and ``training`` (screening with the champion); each is a thin layer over a
package function.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Annotated

import typer

from aidrec.settings import Settings, settings_of
from features.persons import (
    BadIdentifiersError,
    PersonKeyError,
    load_secret,
)
from features.persons import (
    pseudonymise as pseudonymise_frame,
)
from features.tables import TableError, read_table, table_format, write_table

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
