"""Opening the service's stores from the settings: the audit store with its keys.

Kept apart from ``serving.state`` so that every module that needs a store (the key store,
the commands) opens it the same way without importing the running service's state.
"""

from __future__ import annotations

from aidrec.settings import Settings
from serving.audit import AuditStore, CheckpointPolicy, is_new_store
from serving.checkpoints import AuditSecrets
from serving.leads import LeadStore
from training.policy import LeadDeadlines, load_policy


def audit_secrets(settings: Settings, create: bool) -> AuditSecrets:
    """The audit store's keys and checkpoint file; ``create`` makes missing keys (mode 600)."""
    key = settings.audit_key.get_secret_value().encode() if settings.audit_key else None
    return AuditSecrets.load(
        key,
        settings.audit_key_path,
        settings.audit_signing_key_path,
        settings.audit_checkpoint_path,
        create,
    )


def open_audit_store(settings: Settings) -> AuditStore:
    """The configured audit store, keyed; keys are made only for a store that is still new."""
    url = settings.audit_database_url
    secrets = audit_secrets(settings, create=is_new_store(url))
    policy = CheckpointPolicy(settings.audit_checkpoint_every, settings.audit_checkpoint_seconds)
    return AuditStore.open(url, secrets, settings.audit_timeout_s, policy)


def open_lead_store(
    settings: Settings,
    deadlines: LeadDeadlines | None = None,
    audit: AuditStore | None = None,
) -> LeadStore:
    """The lead register in the audit store's database (``settings.audit_database_url``).

    ``deadlines`` default to the shipped policy's ``lead_deadlines``; the service passes the
    serving model's. ``audit`` reuses an open audit store (the service's) instead of opening
    another.
    """
    if deadlines is None:
        deadlines = load_policy().lead_deadlines
    return LeadStore(audit or open_audit_store(settings), deadlines)
