"""The policy: the numbers a procuratorate decides rather than learns, in one versioned file.

A policy holds the lead thresholds (at or above which a lead is flagged), the deadlines of
the lead register (transfer within N days of discovery, feedback within M), the reading
of the rules' vague words (:class:`features.rules.RuleConstants`) and the aid grades
(:class:`training.grades.AidGrades`: bands over the reference amount, urgency facts).
Every registered version carries the policy it answers with, every answer names its version, and
``training/config/policy.yaml`` is the one shipped. A file with an unknown key, a value of
the wrong type, a threshold outside (0, 1) or overlapping grade bands is refused with its
line and the rule, before anything uses it.

Sections added by later work (aid grades, department-failure rules) extend
:data:`SECTIONS` and :class:`Policy` here, so that the file stays the one home.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from features.rules import RuleConstants
from features.urgency import URGENCY_FACTS
from training.grades import DEFAULT_AID_GRADES, AidGrades, GradeBand

LEADS = ("judicial_aid", "social_assistance", "civil_support")


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the line and the rule."""


@dataclass(frozen=True)
class LeadDeadlines:
    """How long a lead may wait at each step before it is overdue (督办)."""

    transfer_days: int = 7
    feedback_days: int = 30


@dataclass(frozen=True)
class Policy:
    """One version of the policy."""

    version: str
    lead_thresholds: dict[str, float]
    lead_deadlines: LeadDeadlines = field(default_factory=LeadDeadlines)
    rules: RuleConstants = field(default_factory=RuleConstants)
    digest: str = ""
    source: str = ""
    aid_grades: AidGrades = DEFAULT_AID_GRADES  # a plain default: older pickled policies get it

    def summary(self) -> dict[str, Any]:
        """The policy as plain values, for the model card and the answers."""
        return {
            "version": self.version,
            "digest": self.digest,
            "lead_thresholds": dict(self.lead_thresholds),
            "lead_deadlines": vars(self.lead_deadlines).copy(),
            "rules": vars(self.rules).copy(),
            "aid_grades": self.aid_grades.summary(),
        }


def default_policy_path() -> Path:
    """The policy shipped with the project."""
    return Path(str(resources.files("training") / "config" / "policy.yaml"))


def _numbers_of(cls: type) -> dict[str, type]:
    return {f.name: (int if f.type in ("int", int) else float) for f in fields(cls)}


BAND_KEYS = {"grade": int, "label": str, "min_months": float, "max_months": float}


def _read_band(node: yaml.Node, source: str) -> tuple[GradeBand, int]:
    """One grade band and its line."""
    values: dict[str, Any] = {}
    for key_node, value_node in _mapping(node, "aid_grades.bands[]", source):
        name = key_node.value
        if name not in BAND_KEYS:
            raise PolicyError(
                f"{source}: line {_line(key_node)}: unknown key aid_grades.bands[].{name!r}; "
                "a band has " + ", ".join(BAND_KEYS)
            )
        values[name] = _scalar(value_node, BAND_KEYS[name], f"aid_grades.bands[].{name}", source)
    line = _line(node)
    for needed in ("grade", "label"):
        if needed not in values:
            raise PolicyError(f"{source}: line {line}: a grade band needs {needed}")
    band = GradeBand(
        values["grade"],
        values["label"],
        values.get("min_months", 0.0),
        values.get("max_months", math.inf),
    )
    if band.grade < 1 or band.min_months < 0 or not band.max_months > band.min_months:
        raise PolicyError(
            f"{source}: line {line}: grade band {band.grade}: a grade is ≥ 1 and a band is "
            "[min_months, max_months) with 0 ≤ min_months < max_months"
        )
    return band, line


def _checked_bands(found: list[tuple[GradeBand, int]], source: str, line: int) -> None:
    """Bands cover [0, ∞) months without overlap or gap; more months, a graver grade."""
    if not found:
        raise PolicyError(f"{source}: line {line}: aid_grades.bands lists no band")
    ordered = sorted(found, key=lambda pair: pair[0].min_months)
    grades = sorted(band.grade for band, _ in found)
    if grades != list(range(1, len(found) + 1)):
        raise PolicyError(
            f"{source}: line {line}: the grades are {grades}; they must be 1, 2, ... without "
            "repeats or gaps (1 is the gravest)"
        )
    first, first_line = ordered[0]
    if first.min_months != 0:
        raise PolicyError(
            f"{source}: line {first_line}: no band covers amounts below "
            f"{first.min_months:g} months; the lowest band must start at 0"
        )
    for (below, below_line), (above, above_line) in itertools.pairwise(ordered):
        if above.min_months < below.max_months:
            raise PolicyError(
                f"{source}: line {above_line}: grade band {above.grade} "
                f"[{above.min_months:g}, {above.max_months:g}) overlaps grade band "
                f"{below.grade} (line {below_line}) [{below.min_months:g}, "
                f"{below.max_months:g}); bands must not overlap"
            )
        if above.min_months > below.max_months:
            raise PolicyError(
                f"{source}: line {above_line}: no band covers {below.max_months:g} to "
                f"{above.min_months:g} months; bands must leave no gap"
            )
        if above.grade >= below.grade:
            raise PolicyError(
                f"{source}: line {above_line}: grade band {above.grade} covers more months "
                f"than grade band {below.grade} (line {below_line}); more months must be a "
                "graver grade (a smaller number)"
            )
    last, last_line = ordered[-1]
    if not math.isinf(last.max_months):
        raise PolicyError(
            f"{source}: line {last_line}: no band covers amounts of {last.max_months:g} "
            "months or more; the highest band must have no max_months"
        )


def _read_aid_grades(node: yaml.Node, source: str) -> AidGrades:
    """The aid_grades section: bands (a list) and raise_when (a list of urgency facts)."""
    bands: list[tuple[GradeBand, int]] | None = None
    raise_when: tuple[str, ...] = ()
    for key_node, value_node in _mapping(node, "aid_grades", source):
        key = key_node.value
        if key == "bands":
            if not isinstance(value_node, yaml.SequenceNode):
                raise PolicyError(
                    f"{source}: line {_line(value_node)}: aid_grades.bands must be a list of bands"
                )
            bands = [_read_band(item, source) for item in value_node.value]
            _checked_bands(bands, source, _line(value_node))
        elif key == "raise_when":
            if not isinstance(value_node, yaml.SequenceNode):
                raise PolicyError(
                    f"{source}: line {_line(value_node)}: aid_grades.raise_when must be a list "
                    "of urgency facts"
                )
            names = []
            for item in value_node.value:
                name = _scalar(item, str, "aid_grades.raise_when[]", source)
                if name not in URGENCY_FACTS:
                    raise PolicyError(
                        f"{source}: line {_line(item)}: unknown urgency fact {name!r}; one of "
                        + ", ".join(URGENCY_FACTS)
                    )
                names.append(name)
            raise_when = tuple(names)
        else:
            raise PolicyError(
                f"{source}: line {_line(key_node)}: unknown key aid_grades.{key!r}; aid_grades "
                "has bands, raise_when"
            )
    if bands is None:
        raise PolicyError(f"{source}: line {_line(node)}: aid_grades needs bands")
    return AidGrades(tuple(band for band, _ in bands), raise_when)


SectionReader = Callable[[yaml.Node, str], Any]
"""A section with a structure of its own, read (and checked) by a function of its own."""

SECTIONS: dict[str, dict[str, type] | type | SectionReader] = {
    "version": str,
    "lead_thresholds": dict.fromkeys(LEADS, float),
    "lead_deadlines": _numbers_of(LeadDeadlines),
    "rules": _numbers_of(RuleConstants),
    "aid_grades": _read_aid_grades,
}
"""The keys a policy file may have: the type of each value, or the section's reader."""


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _scalar(node: yaml.Node, kind: type, where: str, source: str) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise PolicyError(f"{source}: line {_line(node)}: {where} must be a single value")
    value = yaml.safe_load(node.value) if node.tag != "tag:yaml.org,2002:str" else node.value
    if kind is str:
        return str(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(f"{source}: line {_line(node)}: {where} must be a number, got {value!r}")
    if kind is int and not float(value).is_integer():
        raise PolicyError(
            f"{source}: line {_line(node)}: {where} must be a whole number, got {value!r}"
        )
    return kind(value)


def _mapping(node: yaml.Node, where: str, source: str) -> list[tuple[yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise PolicyError(f"{source}: line {_line(node)}: {where} must be a mapping of keys")
    return list(node.value)


def _read(node: yaml.Node, source: str) -> dict[str, Any]:
    """Every value of the file, typed, with unknown keys refused (line and allowed keys)."""
    out: dict[str, Any] = {}
    for key_node, value_node in _mapping(node, "the policy", source):
        key = key_node.value
        if key not in SECTIONS:
            raise PolicyError(
                f"{source}: line {_line(key_node)}: unknown key {key!r}; a policy has "
                + ", ".join(SECTIONS)
            )
        spec = SECTIONS[key]
        if isinstance(spec, type):
            out[key] = _scalar(value_node, spec, key, source)
            continue
        if not isinstance(spec, dict):
            out[key] = spec(value_node, source)
            continue
        section: dict[str, Any] = {}
        for item_node, item_value in _mapping(value_node, key, source):
            name = item_node.value
            if name not in spec:
                raise PolicyError(
                    f"{source}: line {_line(item_node)}: unknown key {key}.{name!r}; "
                    f"{key} has " + ", ".join(spec)
                )
            section[name] = _scalar(item_value, spec[name], f"{key}.{name}", source)
            section[f"__line_{name}"] = _line(item_value)
        out[key] = section
    return out


def _checked(values: Mapping[str, Any], source: str) -> None:
    for name, threshold in _plain(values.get("lead_thresholds", {})).items():
        if not 0.0 < threshold < 1.0:
            line = values["lead_thresholds"][f"__line_{name}"]
            raise PolicyError(
                f"{source}: line {line}: lead_thresholds.{name} is {threshold:g}; a threshold "
                "is a probability strictly between 0 and 1"
            )
    for name, days in _plain(values.get("lead_deadlines", {})).items():
        if days < 1:
            line = values["lead_deadlines"][f"__line_{name}"]
            raise PolicyError(f"{source}: line {line}: lead_deadlines.{name} must be ≥ 1 day")


def _plain(section: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in section.items() if not k.startswith("__line_")}


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """A policy from the text of a policy file (see the module docstring for what is refused)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not YAML: {exc}") from exc
    if node is None:
        raise PolicyError(f"{source}: the policy file is empty")
    values = _read(node, source)
    _checked(values, source)
    missing = [lead for lead in LEADS if lead not in values.get("lead_thresholds", {})]
    if "version" not in values or missing:
        what = ["version"] if "version" not in values else []
        what += [f"lead_thresholds.{lead}" for lead in missing]
        raise PolicyError(f"{source}: missing " + ", ".join(what))
    return Policy(
        version=values["version"],
        lead_thresholds=_plain(values["lead_thresholds"]),
        lead_deadlines=LeadDeadlines(**_plain(values.get("lead_deadlines", {}))),
        rules=RuleConstants(**_plain(values.get("rules", {}))),
        aid_grades=values.get("aid_grades", DEFAULT_AID_GRADES),
        digest=hashlib.sha256(text.encode("utf-8")).hexdigest()[:12],
        source=source,
    )


def load_policy(path: Path | str | None = None) -> Policy:
    """Read and check a policy file; ``None`` is the shipped one."""
    path = Path(path) if path is not None else default_policy_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy: {exc}") from exc
    return parse_policy(text, str(path))


def _flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def policy_changes(old: Policy, new: Policy) -> list[str]:
    """What differs from ``old`` to ``new``, one ``key: old → new`` line per value."""
    before = _flat({k: v for k, v in old.summary().items() if k != "digest"})
    after = _flat({k: v for k, v in new.summary().items() if k != "digest"})
    return [
        f"{key}: {before.get(key)!r} → {after.get(key)!r}"
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]
