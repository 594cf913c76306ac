"""The monotone features' main effects, learned before the constrained median booster.

LightGBM keeps each tree monotone in a constrained feature, so a boosted sum can never take
back a step an early tree overshot. On the amount it does: the first trees give the harm the
effect of the costs that grow with it, and later trees cannot lower the harm's steps once the
costs have their own (measured in #11: a noise-free fit of depth 2 stalls at 0.082 log-months
RMSE with the constraints against 0.007 without; on the amount's MAE ratio to the oracle, the
shapes take 1.0101 to 1.0048 at depth 5 and 1.0151 to 1.0036 at depth 2, three seeds in
bench/RESULTS.md). So the median is fitted in two stages:

1. an unconstrained booster of shallow trees learns every feature's effect; each monotone
   feature's partial dependence on it (the mean prediction with the feature set to a knot,
   over a sample of training cases) is made monotone by isotonic regression: a *shape*;
2. the constrained booster starts from the sum of the shapes (``init_score``) and fits the
   rest, the monotone features still constrained.

The sum of monotone shapes and of monotone trees is monotone, so the law's directions hold
exactly; the shapes are part of the explanation (each feature's contribution is its shape
plus its TreeSHAP value).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import lightgbm as lgb
import numpy as np
from sklearn.isotonic import IsotonicRegression


@dataclass(frozen=True)
class MonotoneShape:
    """One feature's main effect on log(months): piecewise linear through knots, monotone.

    ``values`` are centred on the training sample (their mean there is 0), so a shape is a
    contribution like a TreeSHAP value; ``unknown`` is the effect when the value is missing
    (not ordered, so not constrained, but kept within the shape's range).
    """

    feature: str
    position: int  # index among the amount model's features
    direction: int  # +1 never down as the value grows, -1 never up
    knots: np.ndarray
    values: np.ndarray
    unknown: float

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """The effect for each value (NaN: unknown)."""
        known = ~np.isnan(values)
        curve = np.interp(np.where(known, values, self.knots[0]), self.knots, self.values)
        return np.where(known, curve, self.unknown)


def fit_monotone_shapes(
    booster: lgb.Booster,
    sample: np.ndarray,
    features: tuple[str, ...],
    constraints: list[int],
    knots: int,
) -> tuple[tuple[MonotoneShape, ...], float]:
    """Monotone shapes of the constrained features, and the intercept.

    Each shape is the partial dependence of an unconstrained ``booster`` on ``sample`` (rows
    of the model's feature matrix), made monotone in the constraint's direction. The
    intercept is the booster's mean prediction on the sample; with the centred shapes it is
    where the constrained booster starts.
    """
    intercept = float(np.mean(booster.predict(sample)))
    shapes = []
    for position, direction in enumerate(constraints):
        if direction == 0:
            continue
        column = sample[:, position]
        known = column[~np.isnan(column)]
        if len(known) == 0:
            continue
        grid = np.unique(np.quantile(known, np.linspace(0.0, 1.0, knots)))
        probe = sample.copy()
        dependence = []
        for value in (*grid, np.nan):
            probe[:, position] = value
            dependence.append(float(np.mean(booster.predict(probe))))
        curve = np.asarray(dependence[:-1])
        if len(grid) > 1:
            curve = IsotonicRegression(increasing=direction > 0).fit(grid, curve).predict(grid)
        shape = MonotoneShape(
            features[position],
            position,
            direction,
            grid,
            curve,
            float(np.clip(dependence[-1], curve.min(), curve.max())),
        )
        centre = float(np.mean(shape(column)))
        shapes.append(replace(shape, values=curve - centre, unknown=shape.unknown - centre))
    return tuple(shapes), intercept


def booster_start(shapes: tuple[MonotoneShape, ...], intercept: float, x: np.ndarray) -> np.ndarray:
    """Where the constrained booster starts for rows ``x``, in its output's units."""
    return np.asarray(intercept + shape_contributions(shapes, x).sum(axis=1))


def shape_contributions(shapes: tuple[MonotoneShape, ...], x: np.ndarray) -> np.ndarray:
    """Each feature's shape effect, one column per feature of ``x`` (0 where it has none)."""
    effects = np.zeros(x.shape, dtype=float)
    for shape in shapes:
        effects[:, shape.position] = shape(x[:, shape.position])
    return effects
