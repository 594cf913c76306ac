"""The FastAPI application: built by :func:`create_app` from settings (no globals).

The lifespan opens the audit store, reads the API keys and loads the model in a background
thread, so ``/healthz`` answers at once and ``/readyz`` turns 200 when the model is in.
Pure-ASGI middlewares (cheap on the hot path) count requests for ``/metrics``, refuse
bodies over the configured size with 413 and put the security headers on every response.
The reviewers' pages (``serving.pages``) are served by the same app under ``/ui``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aidrec.settings import Settings
from serving import pages
from serving.audit import AuditStore
from serving.errors import error_response, install_handlers
from serving.metrics import Metrics
from serving.routes import router
from serving.security import KeyRing
from serving.sessions import SessionSigner
from serving.state import ModelLoader, ServiceState, load_registered

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


class BodyLimit:
    """Refuse request bodies larger than ``limit`` bytes with 413 (declared or streamed)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer 413 once its body is over the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.limit
            except ValueError:
                too_large = False
            if too_large:
                await self._refuse(scope, send)
                return
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                await self._refuse(scope, send)
                return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        response = error_response(413, f"the body is larger than {self.limit} bytes (请求体过大)")
        await response(scope, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


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


CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
# FastAPI's Swagger UI and ReDoc load their scripts from a CDN with an inline bootstrap
# script: a strict policy would blank them, so these pages (the API's docs, no data) go without.
CSP_EXEMPT = ("/docs", "/docs/oauth2-redirect", "/redoc")


class SecurityHeaders:
    """Content-Security-Policy (own scripts and styles only), nosniff and no referrer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, adding the headers to its response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        strict = scope["path"] not in CSP_EXEMPT

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if strict:
                    headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(settings: Settings, loader: ModelLoader | None = None) -> FastAPI:
    """The application for ``settings``; ``loader`` replaces the registry (tests, tools)."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from training.registry import configure_tracking

        configure_tracking(settings.tracking_store_uri)
        state = ServiceState(
            settings=settings,
            audit=AuditStore.open(settings.audit_database_url),
            keys=KeyRing.load(settings.api_keys_path),
            metrics=metrics,
            loader=loader or load_registered,
            sessions=SessionSigner.from_settings(settings),
        )
        app.state.service = state
        threading.Thread(target=state.load_initial, name="model-loader", daemon=True).start()
        yield
        state.audit.engine.dispose()

    app = FastAPI(
        title="aidrec: judicial-assistance reference amounts and leads",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.include_router(router)
    install_handlers(app)
    pages.install(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_middleware(SecurityHeaders)
    return app
