"""What stands between the network and the service: nothing unbounded reaches the answers.

- :class:`StrictJSONRoute`: request bodies are parsed strictly — duplicate keys, non-finite
  numbers, integers of more than :data:`MAX_INT_DIGITS` digits, nesting deeper than
  :data:`MAX_DEPTH` and invalid UTF-8 are all a 422 ``json_invalid`` naming what is wrong
  (never a 400 for some and a 422 for others).
- :class:`KeyGate`: the API key is checked before any body is read (no key + a bad body is a
  401), and each key is bounded in rate (a token bucket) and in requests at once (429 with
  ``Retry-After``).
- :class:`BodyGuard`: a body is read whole before the route sees it, refused past the size
  limit (413) or when it trickles in slower than the deadline allows (408).
- :class:`SecurityHeaders`: ``nosniff`` and friends on every response.
- :class:`GuardedH11Protocol`: uvicorn's HTTP/1.1 protocol that closes a connection whose
  request headers are not complete within the header deadline (half-sent headers).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from serving.audit import AuditError
from serving.errors import Unavailable, error_response, unavailable_handler

MAX_DEPTH = 32
"""Deepest nesting of arrays and objects a request body may have."""
MAX_INT_DIGITS = 30
"""Longest integer literal a request body may hold (no field of the contract needs more)."""
API_PREFIX = "/v1/"
"""Requests under this path need an API key."""


def _refuse(message: str, text: str = "") -> json.JSONDecodeError:
    return json.JSONDecodeError(message, text, 0)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _refuse(f"duplicate key {key!r} in one object")
        out[key] = value
    return out


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _refuse(f"number {text[:20]} is out of range (not finite)")
    return value


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _refuse(f"integer of {digits} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _no_constant(text: str) -> Any:
    raise _refuse(f"{text} is not JSON (numbers must be finite)")


def _depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` outside strings (a cheap scan before parsing)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def strict_loads(body: bytes) -> Any:
    """Parse a request body, refusing what :mod:`json` lets through (see the module doc)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refuse(f"the body is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    if text.count("[") + text.count("{") > MAX_DEPTH and _depth(text) > MAX_DEPTH:
        raise _refuse(f"nested deeper than {MAX_DEPTH} levels", text)
    return json.loads(
        text,
        object_pairs_hook=_no_duplicates,
        parse_float=_finite,
        parse_int=_bounded_int,
        parse_constant=_no_constant,
    )


class StrictJSONRequest(Request):
    """A request whose JSON body is parsed by :func:`strict_loads`."""

    async def json(self) -> Any:
        """The parsed body; any refusal is a ``json.JSONDecodeError`` (FastAPI: 422)."""
        if not hasattr(self, "_json"):
            self._json = strict_loads(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """A route whose handler reads :class:`StrictJSONRequest` bodies."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The route's handler, given a strict request."""
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler


@dataclass
class _Budget:
    """One key's token bucket and requests in flight."""

    tokens: float
    updated: float
    in_flight: int = 0


@dataclass
class KeyLimits:
    """Per-key bounds: requests a second (with a burst) and requests at once."""

    rate_per_second: float
    burst: int
    concurrent: int
    _budgets: dict[str, _Budget] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self, key: str) -> float:
        """0 if ``key`` may start a request now (and it is counted), else seconds to wait."""
        now = time.monotonic()
        with self._lock:
            budget = self._budgets.setdefault(key, _Budget(float(self.burst), now))
            budget.tokens = min(
                float(self.burst), budget.tokens + (now - budget.updated) * self.rate_per_second
            )
            budget.updated = now
            if budget.in_flight >= self.concurrent:
                return 1.0
            if budget.tokens < 1.0:
                return (1.0 - budget.tokens) / self.rate_per_second
            budget.tokens -= 1.0
            budget.in_flight += 1
            return 0.0

    def done(self, key: str) -> None:
        """A request of ``key`` finished."""
        with self._lock:
            self._budgets[key].in_flight -= 1


class KeyGate:
    """Check the API key before the body is read; bound each key's rate and concurrency.

    The identified key travels in ``scope["state"]["api_key"]`` so that the role check does
    not hash it again. Roles are still checked by each route.
    """

    def __init__(self, app: ASGIApp, limits: KeyLimits, metrics_need_key: bool) -> None:
        self.app, self.limits, self.metrics_need_key = app, limits, metrics_need_key

    def _guarded(self, path: str) -> bool:
        return path.startswith(API_PREFIX) or (self.metrics_need_key and path == "/metrics")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse an unknown key (401) or one over its bounds (429); pass the rest on."""
        if scope["type"] != "http" or not self._guarded(scope["path"]):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state.service
        presented = dict(scope["headers"]).get(b"x-api-key", b"").decode("latin-1")
        try:
            key = state.keys.identify(presented)
        except AuditError as exc:
            response = await unavailable_handler(
                Request(scope), Unavailable("the API keys cannot be read (密钥库不可用)", str(exc))
            )
            await response(scope, receive, send)
            return
        if key is None:
            response = error_response(
                401, "a valid API key is required in the X-API-Key header (需要有效的API密钥)"
            )
            await response(scope, receive, send)
            return
        wait = self.limits.admit(key.name)
        if wait:
            state.metrics.rate_limited.inc()
            response = error_response(
                429,
                "too many requests for this key; retry later (请求过于频繁)",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["api_key"] = key
        try:
            await self.app(scope, receive, send)
        finally:
            self.limits.done(key.name)


class BodyGuard:
    """Read a request body whole: 413 past ``limit`` bytes, 408 when slower than ``deadline``."""

    def __init__(self, app: ASGIApp, limit: int, deadline_s: float) -> None:
        self.app, self.limit, self.deadline_s = app, limit, deadline_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with its body read (or refuse it)."""
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(
                413, f"the body is larger than {self.limit} bytes (请求体过大)", scope, send
            )
            return
        chunks: list[bytes] = []
        size, more = 0, True
        ends = time.monotonic() + self.deadline_s
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, ends - time.monotonic()))
            except TimeoutError:
                await self._refuse(
                    408,
                    f"the body did not arrive within {self.deadline_s:g} s (请求超时)",
                    scope,
                    send,
                )
                return
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(
                    413, f"the body is larger than {self.limit} bytes (请求体过大)", scope, send
                )
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, sent = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        text = f"the body is larger than {self.limit} bytes (请求体过大)"
        await self._refuse(413, text, scope, send)

    async def _refuse(self, status: int, text: str, scope: Scope, send: Send) -> None:
        headers = {"Connection": "close"}
        await error_response(status, text, headers=headers)(scope, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
CONTENT_SECURITY_POLICY = (
    b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
CSP_EXEMPT = ("/docs", "/docs/oauth2-redirect", "/redoc")
"""FastAPI's Swagger UI and ReDoc load their scripts from a CDN with an inline bootstrap
script: the strict policy would blank them, so these pages (the API's docs, no data) go
without it."""


class SecurityHeaders:
    """Add :data:`SECURITY_HEADERS` and the Content-Security-Policy to every response.

    The policy allows only the app's own scripts and styles (the pages ship theirs).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the headers to its response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        headers: tuple[tuple[bytes, bytes], ...] = SECURITY_HEADERS
        if scope["path"] not in CSP_EXEMPT:
            headers = (*headers, (b"content-security-policy", CONTENT_SECURITY_POLICY))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in headers if n not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing connections whose request headers stall.

    From the moment a connection opens (and after each response), a request's headers must
    be complete within :attr:`header_timeout` seconds; a client that sends nothing, or half
    its headers a byte at a time, is disconnected instead of holding a connection open.
    """

    header_timeout = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the header deadline with the connection."""
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        """Start the deadline again for the next request on this connection."""
        super().on_response_complete()
        self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        previous = getattr(self, "_header_deadline", None)
        if previous is not None:
            previous.cancel()
        self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_late)

    def _headers_late(self) -> None:
        waiting_for_headers = self.cycle is None or self.cycle.response_complete
        if waiting_for_headers and not self.transport.is_closing():
            self.logger.info("closing a connection whose request headers stalled")
            self.transport.close()
