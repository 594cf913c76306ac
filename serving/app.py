"""The FastAPI application: built by :func:`create_app` from settings (no globals).

The lifespan opens the audit store and its API keys (importing a key file's new keys) and
loads the model in a background thread, so ``/healthz`` answers at once and ``/readyz``
turns 200 when the model is in. Pure-ASGI middlewares (cheap on the hot path) count
requests for ``/metrics``, add the security headers, check the API key and each key's bounds
before any body is read, and read bodies whole within a size and time limit
(``serving.guards``).
The reviewers' pages (``serving.pages``) are served by the same app under ``/ui``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aidrec.settings import Settings
from serving import pages
from serving.errors import install_handlers
from serving.guards import BodyGuard, KeyGate, KeyLimits, SecurityHeaders
from serving.keys import KeyStore
from serving.lead_routes import router as lead_router
from serving.leads import LeadStore
from serving.metrics import Metrics
from serving.routes import router
from serving.sessions import SessionSigner
from serving.state import ModelLoader, ServiceState, registry_loader
from serving.stores import open_audit_store

log = logging.getLogger(__name__)

DESCRIPTION = """
Reference amounts and leads for state judicial assistance (国家司法救助).

For one case record (the contract of `docs/case-record.md`) the service answers with a
**reference amount** (参考救助金额) learned from similar historical cases, in yuan and in months
of the province's wage base, with an 80 % interval and the statutory ceiling; the probability
that the case is a **lead** (线索) for judicial aid, a social-assistance referral and civil
support-prosecution; the **statutory rules** that apply; the **reasons** (per-feature
contributions); the most **similar past cases**; and, given the amount granted, the
**deviation** from the reference (同案不同救). Every answer is audited before it is returned.

Authenticate with the `X-API-Key` header: `case_system` scores, `reviewer` reads and reviews,
`admin` reloads.
"""


class RequestMetrics:
    """Count and time every request by route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, counting and timing it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(path, scope["method"], str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)
            if status >= 400:
                self.metrics.errors.labels(path, str(status)).inc()


def create_app(settings: Settings, loader: ModelLoader | None = None) -> FastAPI:
    """The application for ``settings``; ``loader`` replaces the registry (tests, tools)."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        audit = open_audit_store(settings)
        keys = KeyStore(audit)
        if settings.api_keys_path.is_file():
            keys.import_file(settings.api_keys_path, "aidrec serve (key file)")
        if not keys.count():
            log.warning("no API keys: create one with `aidrec keys create`")
        state = ServiceState(
            settings=settings,
            audit=audit,
            keys=keys,
            metrics=metrics,
            loader=loader or registry_loader(settings.tracking_store_uri),
            sessions=SessionSigner.from_settings(settings),
        )
        state.leads = LeadStore(audit, state.lead_deadlines)
        app.state.service = state
        threading.Thread(target=state.load_initial, name="model-loader", daemon=True).start()
        yield
        try:
            state.audit.checkpoint()  # anchor the chain as the service stops
        except Exception as exc:  # a failing store must not stop the shutdown
            log.error("no checkpoint at shutdown: %s", exc)
        state.audit.engine.dispose()
        if state.registry_store is not None:
            state.registry_store.close()

    app = FastAPI(
        title="aidrec: judicial-assistance reference amounts and leads",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.include_router(router)
    app.include_router(lead_router)
    install_handlers(app)
    pages.install(app)
    # outermost last: metrics see everything; headers go on every answer; the key is checked
    # before a byte of the body is read
    app.add_middleware(BodyGuard, limit=settings.max_body_bytes, deadline_s=settings.body_timeout_s)
    limits = KeyLimits(
        settings.rate_per_second, settings.rate_burst, settings.max_concurrent_per_key
    )
    app.add_middleware(KeyGate, limits=limits, metrics_need_key=settings.metrics_require_key)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestMetrics, metrics=metrics)
    return app
