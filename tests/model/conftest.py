"""A bundle trained once per session on a small seeded history (seconds, not minutes)."""

from __future__ import annotations

import pandas as pd
import pytest

from features.synthetic import generate_history
from training.bundle import ModelBundle
from training.config import load_config
from training.train import TimeSplit, train_bundle


@pytest.fixture(scope="session")
def model_history() -> pd.DataFrame:
    return generate_history(16_000, seed=21)


@pytest.fixture(scope="session")
def trained(model_history: pd.DataFrame) -> tuple[ModelBundle, TimeSplit]:
    return train_bundle(model_history, load_config())


@pytest.fixture(scope="session")
def bundle(trained: tuple[ModelBundle, TimeSplit]) -> ModelBundle:
    return trained[0]
