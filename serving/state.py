"""What a running service holds: settings, the audit store, keys, metrics, the model.

The model is swapped atomically on reload: a request takes :attr:`ServiceState.model` once
and keeps that reference, so requests in flight finish on the version they started with.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError

from aidrec.settings import Settings
from features.contract import canonical_from_typed
from features.registries import RegistryConfig
from features.vectors import columns_from_records
from serving.answers import CANARY_RECORD, LoadedModel, build_answers
from serving.audit import AuditStore
from serving.keys import KeyStore
from serving.leads import LeadStore
from serving.metrics import Metrics
from serving.registry_store import RegistryStore, RegistryStoreError
from serving.sessions import SessionSigner
from training.policy import LeadDeadlines, load_policy

log = logging.getLogger(__name__)

ModelLoader = Callable[[str], LoadedModel]


class ModelRefused(RuntimeError):
    """A version failed to load or to score the canary record."""


def registry_loader(tracking_uri: str) -> ModelLoader:
    """A loader of bundles from the MLflow registry at ``tracking_uri``.

    MLflow is imported and the store opened in the loading thread, not while the service
    starts: ``/healthz`` answers while they run.
    """

    def load(model_uri: str) -> LoadedModel:
        from training.registry import configure_tracking, load_bundle

        configure_tracking(tracking_uri)
        bundle, info = load_bundle(model_uri)
        return LoadedModel(bundle, info["name"], info["version"], info["run_id"])

    return load


def checked(loader: ModelLoader, model_uri: str) -> LoadedModel:
    """Load a version and make it score the canary record before it may serve."""
    try:
        model = loader(model_uri)
        columns = columns_from_records([canonical_from_typed(CANARY_RECORD)])
        answer = build_answers(model, columns, [None], similar_k=1, top_k=1)[0]
    except Exception as exc:  # any failure means: do not serve this version
        raise ModelRefused(f"{model_uri}: {type(exc).__name__}: {exc}") from exc
    if not answer.reference_amount.yuan >= 0:
        raise ModelRefused(f"{model_uri}: the canary record got no reference amount")
    return model


REGISTRY_RETRY_S = 30.0
"""Seconds between attempts to open a registry store that could not be opened (meanwhile
answers are given from the card alone, ``data_sources.status`` = ``unavailable``)."""

REPLAY_VERSIONS = 3
"""Registered versions kept loaded for replay besides the serving one (least recently used
go first): each holds a whole bundle in memory."""


@dataclass
class ServiceState:
    """Everything the routes need, built in the app's lifespan."""

    settings: Settings
    audit: AuditStore
    keys: KeyStore
    metrics: Metrics
    loader: ModelLoader
    model: LoadedModel | None = None
    load_error: str | None = None
    versions: OrderedDict[str, LoadedModel] = field(default_factory=OrderedDict)
    reload_lock: threading.Lock = field(default_factory=threading.Lock)
    versions_lock: threading.Lock = field(default_factory=threading.Lock)
    sessions: SessionSigner | None = None  # the pages' session cookies (None: no pages)
    leads: LeadStore | None = None  # the lead register (None: not opened)
    shipped_deadlines: LeadDeadlines | None = None
    registry_store: RegistryStore | None = None  # the department registries (opened on use)
    registry_retry_at: float = 0.0
    registry_lock: threading.Lock = field(default_factory=threading.Lock)
    _registry_config: RegistryConfig | None = None

    def registries(self) -> RegistryStore | None:
        """The department registries' store, opened on first use (the live join reads it).

        None while it cannot be opened: the failure is logged and opening is tried again
        after :data:`REGISTRY_RETRY_S`, so an unreachable store costs no time per request.
        """
        if self.registry_store is not None:
            return self.registry_store
        with self.registry_lock:
            if self.registry_store is not None or time.monotonic() < self.registry_retry_at:
                return self.registry_store
            try:
                self.registry_store = RegistryStore.open(
                    self.settings.registry_database_url, self.settings.audit_timeout_s
                )
            except (RegistryStoreError, SQLAlchemyError, OSError) as exc:
                self.registry_retry_at = time.monotonic() + REGISTRY_RETRY_S
                log.error("the registry store cannot be opened (answers from the card): %s", exc)
            return self.registry_store

    def registry_config(self) -> RegistryConfig:
        """The registries' config (names, what each department supplies), read once."""
        if self._registry_config is None:
            self._registry_config = RegistryConfig.load()
        return self._registry_config

    def lead_deadlines(self) -> LeadDeadlines:
        """The lead register's deadlines: the serving model's policy, else the shipped one."""
        model = self.model
        found = getattr(model.bundle.policy, "lead_deadlines", None) if model else None
        if isinstance(found, LeadDeadlines):
            return found
        if self.shipped_deadlines is None:
            self.shipped_deadlines = load_policy().lead_deadlines
        return self.shipped_deadlines

    def load_initial(self) -> None:
        """Load the configured model (run in a background thread at start-up).

        It takes the reload lock, so a reload asked for meanwhile waits for it instead of
        racing it.
        """
        with self.reload_lock:
            try:
                self.model = checked(self.loader, self.settings.model_uri)
                log.info("serving %s version %s", self.model.name, self.model.version)
            except ModelRefused as exc:
                self.load_error = str(exc)
                log.error("no model loaded: %s", exc)

    def reload(self) -> tuple[LoadedModel | None, LoadedModel]:
        """Swap to the current version of the alias; the old one serves if this fails."""
        with self.reload_lock:
            try:
                fresh = checked(self.loader, self.settings.model_uri)
            except ModelRefused as exc:
                log.error("reload refused, version %s keeps serving: %s", self._serving(), exc)
                raise
            previous = self.model
            self.model = fresh
            self.load_error = None
            log.info("reloaded: version %s → %s", self._serving(previous), fresh.version)
            return previous, fresh

    def _serving(self, model: LoadedModel | None = None) -> str:
        model = model or self.model
        return model.version if model else "none"

    def version(self, name: str, version: str) -> LoadedModel:
        """A specific registered version, for replay.

        The serving one, or one of a few kept loaded (least recently used dropped first).
        """
        serving = self.model
        if serving is not None and serving.version == version and serving.name == name:
            return serving
        with self.versions_lock:
            if version in self.versions:
                self.versions.move_to_end(version)
                return self.versions[version]
            loaded = self.loader(f"models:/{name}/{version}")
            self.versions[version] = loaded
            while len(self.versions) > REPLAY_VERSIONS:
                dropped, _ = self.versions.popitem(last=False)
                log.info("replay cache: dropped version %s", dropped)
            return loaded
