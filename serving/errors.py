"""Error answers: every refusal names the field path and the rule, in English and Chinese.

The exceptions the service raises and the handlers that turn them (and FastAPI's own) into
:class:`~serving.schemas.ErrorResponse` bodies live here together.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from features.contract import FIELD_BY_NAME, rule_zh
from serving.schemas import ErrorResponse, ProblemDetail

log = logging.getLogger(__name__)

_SOURCES = ("body", "query", "path")


class Unavailable(Exception):
    """A part the answer needs is down (the audit store, the model): 503 with an error id.

    ``sentence`` is what the caller reads; ``detail`` (driver messages, paths) goes only to
    the log, under the error id the caller can quote.
    """

    def __init__(self, sentence: str, detail: str = "") -> None:
        super().__init__(sentence)
        self.sentence, self.detail = sentence, detail


class ContractViolation(Exception):
    """A request that passed type validation but breaks a rule of the contract (422)."""

    def __init__(self, problems: list[ProblemDetail]) -> None:
        super().__init__("contract violation")
        self.problems = problems


def problem(loc: Sequence[str | int], rule: str, zh: str) -> ProblemDetail:
    """One thing wrong with a request, at ``loc`` (``["body", "record", "victim_age"]``).

    ``field`` is the path inside the source (``record.victim_age``).
    """
    names = loc[1:] if loc and loc[0] in _SOURCES else loc
    field = ".".join(str(part) for part in names) or "body"
    return ProblemDetail(loc=list(loc), field=field, rule=rule, rule_zh=zh)


def describe_error(error: dict[str, Any], prefix: list[str | int] | None = None) -> ProblemDetail:
    """One pydantic error as a problem; the contract's own rule text where the field is one."""
    loc = [*(prefix or []), *error.get("loc", ())]
    kind = str(error.get("type"))
    rule = str(error.get("msg", "invalid"))
    last = next((str(p) for p in reversed(loc) if isinstance(p, str)), "")
    spec = FIELD_BY_NAME.get(last)
    if kind == "json_invalid":
        why = (error.get("ctx") or {}).get("error", "")
        return problem(["body"], f"the body is not valid JSON: {why}".rstrip(": "), rule_zh(kind))
    if kind == "extra_forbidden":
        rule = "is not a field of the contract and is refused (no personal identifiers)"
    elif spec is not None:
        rule = f"{rule}; must be {spec.rule_text()}"
    return problem(loc, rule, rule_zh(kind))


def error_response(
    status: int,
    detail: list[ProblemDetail] | str,
    error_id: str | None = None,
    **kwargs: Any,
) -> JSONResponse:
    """An :class:`ErrorResponse` with ``status``."""
    body = ErrorResponse(detail=detail, error_id=error_id).model_dump(
        mode="json", exclude_none=True
    )
    return JSONResponse(body, status_code=status, **kwargs)


async def validation_handler(request: Request, exc: Exception) -> JSONResponse:
    """422 for a request that breaks the contract's types."""
    assert isinstance(exc, RequestValidationError)
    return error_response(422, [describe_error(e) for e in exc.errors()])


async def contract_handler(request: Request, exc: Exception) -> JSONResponse:
    """422 for a request that breaks a cross-field rule of the contract."""
    assert isinstance(exc, ContractViolation)
    return error_response(422, exc.problems)


async def http_handler(request: Request, exc: Exception) -> JSONResponse:
    """Every HTTP error as {"detail": text}."""
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no such route: {request.method} {request.url.path} (路径不存在)"
    if exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path} (请求方法不允许)"
    return error_response(exc.status_code, str(detail), headers=exc.headers)


def _error_id() -> str:
    return uuid.uuid4().hex[:12]


async def unavailable_handler(request: Request, exc: Exception) -> JSONResponse:
    """503 with a plain sentence and an error id; the details go to the log under that id."""
    assert isinstance(exc, Unavailable)
    error_id = _error_id()
    log.error("503 %s %s [error %s]: %s", request.method, request.url.path, error_id, exc.detail)
    return error_response(
        503,
        f"{exc.sentence} (error id {error_id})",
        error_id=error_id,
        headers={"Retry-After": "1"},
    )


async def unexpected_handler(request: Request, exc: Exception) -> JSONResponse:
    """500 for a fault of ours: an error id for the caller, the traceback in the log."""
    error_id = _error_id()
    log.exception("500 %s %s [error %s]", request.method, request.url.path, error_id)
    return error_response(
        500,
        f"the service failed on this request; quote error id {error_id} (服务内部错误)",
        error_id=error_id,
    )


def install_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` through these handlers."""
    app.add_exception_handler(RequestValidationError, validation_handler)
    app.add_exception_handler(StarletteHTTPException, http_handler)
    app.add_exception_handler(ContractViolation, contract_handler)
    app.add_exception_handler(Unavailable, unavailable_handler)
    app.add_exception_handler(Exception, unexpected_handler)
