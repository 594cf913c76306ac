"""What a running service holds: settings, the audit store, keys, metrics, the model.

The model is swapped atomically on reload: a request takes :attr:`ServiceState.model` once
and keeps that reference, so requests in flight finish on the version they started with.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from aidrec.settings import Settings
from features.contract import canonical_from_typed
from features.vectors import columns_from_records
from serving.answers import CANARY_RECORD, LoadedModel, build_answers
from serving.audit import AuditStore
from serving.metrics import Metrics
from serving.security import KeyRing
from serving.sessions import SessionSigner

log = logging.getLogger(__name__)

ModelLoader = Callable[[str], LoadedModel]


class ModelRefused(RuntimeError):
    """A version failed to load or to score the canary record."""


def load_registered(model_uri: str) -> LoadedModel:
    """Load a bundle from the MLflow registry."""
    from training.registry import load_bundle

    bundle, info = load_bundle(model_uri)
    return LoadedModel(bundle, info["name"], info["version"], info["run_id"])


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


@dataclass
class ServiceState:
    """Everything the routes need, built in the app's lifespan."""

    settings: Settings
    audit: AuditStore
    keys: KeyRing
    metrics: Metrics
    loader: ModelLoader
    model: LoadedModel | None = None
    load_error: str | None = None
    versions: dict[str, LoadedModel] = field(default_factory=dict)
    reload_lock: threading.Lock = field(default_factory=threading.Lock)
    sessions: SessionSigner | None = None  # the pages' session cookies (None: no pages)

    def load_initial(self) -> None:
        """Load the configured model (run in a background thread at start-up)."""
        try:
            self.model = checked(self.loader, self.settings.model_uri)
            self.versions[self.model.version] = self.model
            log.info("serving %s version %s", self.model.name, self.model.version)
        except ModelRefused as exc:
            self.load_error = str(exc)
            log.error("no model loaded: %s", exc)

    def reload(self) -> tuple[LoadedModel | None, LoadedModel]:
        """Swap to the current version of the alias; the old one serves if this fails."""
        with self.reload_lock:
            fresh = checked(self.loader, self.settings.model_uri)
            previous = self.model
            self.model = fresh
            self.versions[fresh.version] = fresh
            self.load_error = None
            return previous, fresh

    def version(self, name: str, version: str) -> LoadedModel:
        """A specific registered version (for replay), loaded once."""
        if version not in self.versions:
            self.versions[version] = self.loader(f"models:/{name}/{version}")
        return self.versions[version]
