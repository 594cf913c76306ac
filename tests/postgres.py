"""PostgreSQL for tests: a fresh database per use.

Skipped where none is reachable, unless AIDREC_REQUIRE_POSTGRES=1 (CI), where its absence
fails the run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from tests.parts import missing

SERVER = os.environ.get("AIDREC_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432")


@contextmanager
def fresh_database() -> Iterator[str]:
    """The URL of a new, empty database, dropped afterwards."""
    admin = create_engine(f"{SERVER}/test", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            name = f"aidrec_test_{uuid.uuid4().hex[:12]}"
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        missing("POSTGRES", "PostgreSQL", f"no PostgreSQL reachable at {SERVER}: {exc}")
    try:
        yield f"{SERVER}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
