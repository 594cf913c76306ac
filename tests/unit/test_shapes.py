"""The monotone shapes the amount's median starts from (training.shapes) and their config."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from training.config import ConfigError, default_config_path, load_config
from training.shapes import MonotoneShape, fit_monotone_shapes, shape_contributions

FEATURES = ("harm", "received", "free")


@pytest.fixture(scope="module")
def booster_and_sample() -> tuple[lgb.Booster, np.ndarray]:
    """An unconstrained booster on y = 2·harm − received + a wiggle in ``free``.

    The noise makes its fitted effect of ``harm`` dip here and there.
    """
    rng = np.random.default_rng(0)
    x = np.column_stack(
        [rng.integers(0, 5, 20_000), rng.uniform(0, 3, 20_000), rng.uniform(0, 1, 20_000)]
    ).astype(float)
    x[rng.random(20_000) < 0.1, 1] = np.nan  # received unknown on some cards
    y = 2 * x[:, 0] - np.nan_to_num(x[:, 1]) + np.sin(6 * x[:, 2]) + rng.normal(0, 1.0, 20_000)
    params = {"num_leaves": 3, "max_depth": 2, "learning_rate": 0.1, "verbose": -1, "seed": 1}
    booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=300)
    return booster, x[:2_000]


def test_shapes_follow_their_direction_and_recover_the_effects(
    booster_and_sample: tuple[lgb.Booster, np.ndarray],
) -> None:
    booster, sample = booster_and_sample
    shapes, intercept = fit_monotone_shapes(booster, sample, FEATURES, [1, -1, 0], knots=16)
    assert [s.feature for s in shapes] == ["harm", "received"]  # none for the free feature
    harm, received = shapes
    assert np.all(np.diff(harm.values) >= 0) and np.all(np.diff(received.values) <= 0)
    # the effects the booster learned: +2 a harm level, −1 a month received
    assert harm(np.array([4.0]))[0] - harm(np.array([0.0]))[0] == pytest.approx(8.0, abs=0.5)
    assert received(np.array([0.0]))[0] - received(np.array([3.0]))[0] == pytest.approx(
        3.0, abs=0.5
    )
    # centred on the sample, so the intercept is the mean prediction there
    assert np.mean(harm(sample[:, 0])) == pytest.approx(0.0, abs=1e-9)
    assert intercept == pytest.approx(float(np.mean(booster.predict(sample))))


def test_an_unknown_value_gets_its_own_effect_inside_the_shape_range(
    booster_and_sample: tuple[lgb.Booster, np.ndarray],
) -> None:
    booster, sample = booster_and_sample
    (_, received), _ = fit_monotone_shapes(booster, sample, FEATURES, [1, -1, 0], knots=16)
    unknown = received(np.array([np.nan]))[0]
    assert received.values.min() <= unknown <= received.values.max()
    assert not np.isnan(unknown)


def test_shape_contributions_fill_the_shaped_columns_only() -> None:
    shape = MonotoneShape("harm", 0, 1, np.array([0.0, 4.0]), np.array([-1.0, 1.0]), 0.0)
    x = np.array([[2.0, 7.0, 1.0], [np.nan, 7.0, 1.0], [9.0, 7.0, 1.0]])
    effects = shape_contributions((shape,), x)
    # linear between the knots, flat beyond them, the unknown value where missing
    assert effects[:, 0].tolist() == [0.0, 0.0, 1.0]
    assert np.all(effects[:, 1:] == 0.0)
    assert np.all(shape_contributions((), x) == 0.0)


def _config_with(tmp_path: Path, old: str, new: str) -> Path:
    text = default_config_path().read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "targets.yaml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def test_the_shipped_config_shapes_the_amount_only() -> None:
    config = load_config()
    assert set(config.amount.shapes) == {"num_leaves", "max_depth", "knots", "sample_rows"}
    assert all(not lead.shapes for lead in config.leads)


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("      knots: 32", "      knots: 1", "knots"),  # one knot: a constant, no shape
        ("      num_leaves: 3", "      num_leaves: 1", "num_leaves"),
        ("      knots: 32", "      knot: 32", "exactly"),
        ("      sample_rows: 2000", "      sample_rows: lots", "sample_rows"),
    ],
)
def test_bad_monotone_shapes_are_refused_naming_the_key(
    tmp_path: Path, old: str, new: str, named: str
) -> None:
    with pytest.raises(ConfigError, match=f"monotone_shapes.*{named}"):
        load_config(_config_with(tmp_path, old, new))
