"""The policy: the numbers a procuratorate decides rather than learns, in one versioned file.

A policy holds the lead thresholds (at or above which a lead is flagged), the deadlines of
the lead register (transfer within N days of discovery, feedback within M), and the reading
of the rules' vague words (:class:`features.rules.RuleConstants`). Every registered version
carries the policy it answers with, every answer names its version, and
``training/config/policy.yaml`` is the one shipped. A file with an unknown key, a value of
the wrong type or a threshold outside (0, 1) is refused with its line and the rule, before
anything uses it.

Sections added by later work (aid grades, department-failure rules) extend
:data:`SECTIONS` and :class:`Policy` here, so that the file stays the one home.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from features.rules import RuleConstants

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

    def summary(self) -> dict[str, Any]:
        """The policy as plain values, for the model card and the answers."""
        return {
            "version": self.version,
            "digest": self.digest,
            "lead_thresholds": dict(self.lead_thresholds),
            "lead_deadlines": vars(self.lead_deadlines).copy(),
            "rules": vars(self.rules).copy(),
        }


def default_policy_path() -> Path:
    """The policy shipped with the project."""
    return Path(str(resources.files("training") / "config" / "policy.yaml"))


def _numbers_of(cls: type) -> dict[str, type]:
    return {f.name: (int if f.type in ("int", int) else float) for f in fields(cls)}


SECTIONS: dict[str, dict[str, type] | type] = {
    "version": str,
    "lead_thresholds": dict.fromkeys(LEADS, float),
    "lead_deadlines": _numbers_of(LeadDeadlines),
    "rules": _numbers_of(RuleConstants),
}
"""The keys a policy file may have, and the type of each value."""


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
        if not isinstance(spec, dict):
            out[key] = _scalar(value_node, spec, key, source)
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
