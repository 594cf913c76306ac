"""Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass
class Metrics:
    """Requests, latency, errors, flagged leads and scores by model version."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "aidrec_requests_total",
            "HTTP requests",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "aidrec_request_seconds",
            "HTTP request latency",
            ["route"],
            registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )
        self.errors = Counter(
            "aidrec_errors_total",
            "answers with status >= 400",
            ["route", "status"],
            registry=self.registry,
        )
        self.flagged = Counter(
            "aidrec_flagged_leads_total", "leads flagged", ["lead"], registry=self.registry
        )
        self.scores = Counter(
            "aidrec_scores_total", "cases scored", ["model_version"], registry=self.registry
        )
        self.rate_limited = Counter(
            "aidrec_rate_limited_total",
            "requests refused because a key was over its rate or concurrency",
            registry=self.registry,
        )
        self.lead_register_failures = Counter(
            "aidrec_lead_register_failures_total",
            "answers whose flagged leads could not be registered (the answers stood)",
            registry=self.registry,
        )
        self.audit_failures = Counter(
            "aidrec_audit_failures_total",
            "answers refused because the audit write failed",
            registry=self.registry,
        )
