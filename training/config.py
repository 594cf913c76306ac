"""The training config (``training/config/targets.yaml``): targets, features, parameters."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from features.vectors import FEATURE_NAMES

AMOUNT = "amount"
LEAD = "lead"
SHAPE_MINIMUM = {"num_leaves": 2, "max_depth": 1, "knots": 2, "sample_rows": 1}
"""The settings of ``monotone_shapes`` (training.shapes) and the least each can be: a shape
needs two knots and a tree two leaves, or the shapes would be constants."""
SHAPE_KEYS = tuple(SHAPE_MINIMUM)


class ConfigError(ValueError):
    """The training config is unusable; the message names the key."""


@dataclass(frozen=True)
class TargetConfig:
    """One model of the bundle."""

    name: str
    kind: str
    label: str
    features: tuple[str, ...]
    objective: str
    params: dict[str, Any]
    monotone: dict[str, int] = field(default_factory=dict)
    interval: float | None = None
    oracle: str | None = None  # a synthetic history's column holding the true value
    shapes: dict[str, int] = field(default_factory=dict)  # the monotone main effects first

    def monotone_constraints(self) -> list[int]:
        """LightGBM's per-feature constraint list, in feature order."""
        return [int(self.monotone.get(name, 0)) for name in self.features]


@dataclass(frozen=True)
class TrainingConfig:
    """The whole config, parsed and checked."""

    version: int
    validation_years: int
    holdout_years: int
    num_boost_round: int
    early_stopping_rounds: int
    targets: dict[str, TargetConfig]
    promotion: dict[str, float]
    raw: dict[str, Any]
    digest: str

    @property
    def amount(self) -> TargetConfig:
        """The reference-amount target (exactly one)."""
        return next(t for t in self.targets.values() if t.kind == AMOUNT)

    @property
    def leads(self) -> list[TargetConfig]:
        """The lead targets, in config order."""
        return [t for t in self.targets.values() if t.kind == LEAD]


def default_config_path() -> Path:
    """The config shipped with the project."""
    return Path(str(resources.files("training") / "config" / "targets.yaml"))


def _flatten(items: list[Any]) -> list[str]:
    out: list[str] = []
    for item in items:
        out.extend(_flatten(item) if isinstance(item, list) else [str(item)])
    return out


def _shapes(
    path: Path, name: str, spec: dict[str, Any], monotone: dict[str, int]
) -> dict[str, int]:
    """The checked ``monotone_shapes`` of a target (empty when it has none)."""
    shapes = spec.get("monotone_shapes")
    where = f"{path}: targets.{name}.monotone_shapes"
    if shapes is None:
        return {}
    if not isinstance(shapes, dict) or set(shapes) != set(SHAPE_KEYS):
        raise ConfigError(f"{where}: a mapping with exactly {list(SHAPE_KEYS)} is required")
    if spec.get("kind") != AMOUNT or not monotone:
        raise ConfigError(f"{where}: only the amount target with monotone features has shapes")
    bad = [
        key
        for key, value in shapes.items()
        if not isinstance(value, int) or isinstance(value, bool) or value < SHAPE_MINIMUM[key]
    ]
    if bad:
        minimum = {key: SHAPE_MINIMUM[key] for key in bad}
        raise ConfigError(f"{where}: {bad} must be integers of at least {minimum}")
    return {str(k): int(v) for k, v in shapes.items()}


def load_config(path: Path | str | None = None) -> TrainingConfig:
    """Read and check a training config; ``None`` is the shipped one."""
    path = Path(path) if path is not None else default_config_path()
    try:
        text = path.read_text(encoding="utf-8")
        raw = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the training config: {exc}") from exc
    if not isinstance(raw, dict) or "targets" not in raw:
        raise ConfigError(f"{path}: a mapping with 'targets' is required")
    targets: dict[str, TargetConfig] = {}
    for name, spec in raw["targets"].items():
        features = tuple(dict.fromkeys(_flatten(spec.get("features", []))))
        unknown = [f for f in features if f not in FEATURE_NAMES]
        if unknown:
            raise ConfigError(f"{path}: targets.{name}.features: unknown feature(s) {unknown}")
        monotone = {str(k): int(v) for k, v in (spec.get("monotone") or {}).items()}
        stray = [f for f in monotone if f not in features]
        if stray:
            raise ConfigError(f"{path}: targets.{name}.monotone: not among its features: {stray}")
        if spec.get("kind") not in (AMOUNT, LEAD):
            raise ConfigError(f"{path}: targets.{name}.kind must be '{AMOUNT}' or '{LEAD}'")
        shapes = _shapes(path, name, spec, monotone)
        targets[name] = TargetConfig(
            name=name,
            kind=spec["kind"],
            label=spec["label"],
            features=features,
            objective=spec["objective"],
            params=dict(spec.get("params") or {}),
            monotone=monotone,
            interval=spec.get("interval"),
            oracle=spec.get("oracle"),
            shapes=shapes,
        )
    if sum(t.kind == AMOUNT for t in targets.values()) != 1:
        raise ConfigError(f"{path}: exactly one target of kind '{AMOUNT}' is required")
    split = raw.get("split", {})
    return TrainingConfig(
        version=int(raw.get("version", 0)),
        validation_years=int(split.get("validation_years", 1)),
        holdout_years=int(split.get("holdout_years", 1)),
        num_boost_round=int(raw.get("num_boost_round", 1000)),
        early_stopping_rounds=int(raw.get("early_stopping_rounds", 50)),
        targets=targets,
        promotion={str(k): float(v) for k, v in raw.get("promotion", {}).items()},
        raw=raw,
        digest=hashlib.sha256(text.encode("utf-8")).hexdigest()[:12],
    )
