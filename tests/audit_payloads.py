"""Stored-answer payloads in the shape the service writes, for audit-store tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from serving.audit import PREDICTION, AuditEntry
from serving.checkpoints import AuditSecrets


def answer_payload(
    case_id: str,
    province_code: str = "32",
    office_code: str | None = None,
    flagged: bool = False,
    reference_yuan: float = 10_000.0,
    granted_yuan: float | None = None,
) -> dict[str, Any]:
    """The request and response of one stored answer, with only the parts the index reads."""
    low, high = reference_yuan * 0.5, reference_yuan * 2.0
    deviation = None
    if granted_yuan is not None:
        deviation = {
            "granted_amount_yuan": granted_yuan,
            "ratio_to_reference": granted_yuan / reference_yuan,
            "outside_interval": not low <= granted_yuan <= high,
        }
    probability = 0.9 if flagged else 0.1
    return {
        "request": {
            "record": {
                "case_id": case_id,
                "province_code": province_code,
                "office_code": office_code,
                "decision_year": 2025,
                "crime_type": "intentional_injury",
                "harm_outcome": "severe_injury",
            },
            "granted_amount_yuan": granted_yuan,
        },
        "response": {
            "reference_amount": {
                "yuan": reference_yuan,
                "interval_80_yuan": [low, high],
                "ceiling_yuan": 300_000.0,
                "ceiling_bound": False,
            },
            "leads": {
                "judicial_aid": {"probability": probability, "flagged": flagged},
                "social_assistance": {"probability": 0.2, "flagged": False},
            },
            "deviation": deviation,
        },
    }


def answer_entry(i: int, **kwargs: Any) -> AuditEntry:
    """The audit entry of answer ``i`` (odd or even flagged, as tests need)."""
    kwargs.setdefault("flagged", i % 2 == 0)
    payload = answer_payload(f"C-{i}", **kwargs)
    return AuditEntry(
        PREDICTION,
        f"p-{i}",
        "test",
        f"C-{i}",
        payload["request"]["record"]["province_code"],
        kwargs["flagged"],
        "1",
        payload,
    )


def make_secrets(folder: Path, name: str = "audit") -> AuditSecrets:
    """A store's keys and checkpoint file in ``folder`` (made on first use)."""
    return AuditSecrets.load(
        None,
        folder / f"{name}.key",
        folder / f"{name}-signing.key",
        folder / f"{name}.checkpoints.jsonl",
        create=True,
    )
