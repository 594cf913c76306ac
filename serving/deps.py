"""Request dependencies: the state, the model, the caller's role, the body, stored records.

"The stored prediction or 404" is a dependency too, so that routes never look it up.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader

from serving.answers import LoadedModel
from serving.audit import AuditError, AuditRecord
from serving.errors import Unavailable
from serving.security import ADMIN, CASE_SYSTEM, HEADER, REVIEWER, ApiKey
from serving.state import ServiceState

api_key_header = APIKeyHeader(name=HEADER, auto_error=False, description="API key (角色密钥)")


def get_state(request: Request) -> ServiceState:
    """The running service's state."""
    state: ServiceState = request.app.state.service
    return state


State = Annotated[ServiceState, Depends(get_state)]


def require(*roles: str) -> object:
    """A dependency admitting callers whose key has one of ``roles`` (admin always)."""

    def check(
        request: Request, state: State, presented: Annotated[str | None, Depends(api_key_header)]
    ) -> ApiKey:
        key = getattr(request.state, "api_key", None)
        if key is None:
            try:
                key = state.keys.identify(presented)
            except AuditError as exc:
                raise Unavailable("the API keys cannot be read (密钥库不可用)", str(exc)) from exc
        if key is None:
            raise HTTPException(
                401, f"a valid API key is required in the {HEADER} header (需要有效的API密钥)"
            )
        if key.role not in roles and key.role != ADMIN:
            raise HTTPException(
                403, f"role {key.role!r} may not do this; allowed: {', '.join(roles)} (无权限)"
            )
        return key

    return Depends(check)


CaseSystem = Annotated[ApiKey, require(CASE_SYSTEM)]
Reviewer = Annotated[ApiKey, require(REVIEWER)]
Reader = Annotated[ApiKey, require(CASE_SYSTEM, REVIEWER)]
Admin = Annotated[ApiKey, require(ADMIN)]


def json_body(request: Request) -> None:
    """Refuse a request body that is not JSON (415)."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise HTTPException(
            415, f"the body must be application/json, not {content_type!r} (请求体须为JSON)"
        )


def current_model(state: State) -> LoadedModel:
    """The model serving now (503 while none is loaded)."""
    model = state.model
    if model is None:
        raise Unavailable("no model is loaded yet (模型尚未加载)", state.load_error or "loading")
    return model


Model = Annotated[LoadedModel, Depends(current_model)]


def visible_prediction(state: ServiceState, caller: ApiKey, prediction_id: str) -> AuditRecord:
    """The stored prediction of that id, or 404 (pages resolve theirs through this too).

    Also 404 when it lies outside the caller's scope, exactly as if it did not exist.
    """
    record = state.audit.prediction(prediction_id)
    office = record.payload["request"]["record"].get("office_code") if record else None
    if record is None or not caller.scope.covers(record.province_code, office):
        raise HTTPException(404, f"no prediction {prediction_id!r} (未找到该评分记录)")
    return record


def stored_prediction(prediction_id: str, state: State, caller: Reviewer) -> AuditRecord:
    """The stored prediction the path names, or 404 (outside the caller's scope too)."""
    return visible_prediction(state, caller, prediction_id)


StoredPrediction = Annotated[AuditRecord, Depends(stored_prediction)]
