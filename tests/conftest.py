"""Shared fixtures: small seeded histories, made in memory (no network, no shared state)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from features.contract import INPUT_NAMES, wire_value
from features.synthetic import generate_history


@pytest.fixture(scope="session")
def small_history() -> pd.DataFrame:
    """2,000 synthetic cases (canonical frame with outcomes and oracle columns)."""
    return generate_history(2_000, seed=11)


def wire_record(frame: pd.DataFrame, row: int) -> dict[str, Any]:
    """One row of a canonical frame as a JSON-style scoring record (inputs only)."""
    return {name: wire_value(name, frame[name].iloc[row]) for name in INPUT_NAMES}


@pytest.fixture
def record(small_history: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """A valid scoring record in wire form."""
    yield wire_record(small_history, 0)
