"""Fixtures shared by the unit tests of the registries and the live join."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.registry_store import RegistryStore
from tests.postgres import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegistryStore]:
    """An empty registry store on SQLite and on PostgreSQL (test_leads has a store of its own)."""
    if request.param == "sqlite":
        opened = RegistryStore.open(f"sqlite:///{tmp_path / 'r.db'}")
        yield opened
        opened.close()
        return
    with fresh_database() as url:
        opened = RegistryStore.open(url)
        yield opened
        opened.close()
