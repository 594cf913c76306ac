"""Thin HTTP routes: each validates, makes one service call and returns its response model.

CPU work runs in plain ``def`` handlers (FastAPI's thread pool), never on the event loop.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving import reports, schemas, service
from serving.deps import Admin, CaseSystem, Model, Reader, Reviewer, State, StoredPrediction
from serving.deps import json_body as require_json
from serving.guards import StrictJSONRoute

router = APIRouter(route_class=StrictJSONRoute)
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorResponse, "description": text}
    for code, text in {
        401: "no or unknown API key",
        403: "the key's role may not do this",
        408: "the body did not arrive in time",
        413: "the body is too large",
        415: "the body is not JSON",
        422: "the body is not strict JSON (json_invalid: duplicate keys, non-finite numbers, "
        "too deep, too long an integer), or the record breaks the contract: field path and "
        "rule, in English and Chinese",
        429: "too many requests for this key at once or per second (Retry-After)",
        503: "no model loaded, or the audit store could not record the answer (an error id)",
    }.items()
}
Explain = Annotated[
    bool,
    Query(
        description="false: scores, rules and similar cases without the reasons (for case "
        "systems that only screen; faster)"
    ),
]
NOT_FOUND = {**ERRORS, 404: {"model": schemas.ErrorResponse, "description": "no such record"}}
JSON_BODY = [Depends(require_json)]


@router.post(
    "/v1/score",
    response_model=schemas.ScoreResponse,
    responses=ERRORS,
    dependencies=JSON_BODY,
    tags=["scoring"],
    summary="Score one case: reference amount, leads, reasons, similar cases (评分)",
)
def score(
    body: schemas.ScoreRequest,
    state: State,
    model: Model,
    caller: CaseSystem,
    explain: Explain = True,
) -> schemas.ScoreResponse:
    """One case record of the contract (outcomes refused) and optionally the amount granted."""
    return service.score(state, model, body, caller, explain)


@router.post(
    "/v1/score/batch",
    response_model=schemas.BatchResponse,
    responses=ERRORS,
    dependencies=JSON_BODY,
    tags=["scoring"],
    summary="Score up to max_batch cases in one vectorised call (批量评分)",
)
def score_batch(
    body: schemas.BatchRequest,
    state: State,
    model: Model,
    caller: CaseSystem,
    explain: Explain = True,
) -> schemas.BatchResponse:
    """Each item is answered or given its own errors; one bad item fails no other."""
    return service.score_batch(state, model, body, caller, explain)


@router.get(
    "/v1/model",
    response_model=schemas.ModelCard,
    responses=ERRORS,
    tags=["model"],
    summary="The model card of the version serving now (模型说明)",
)
def model_card(model: Model, _: Reader) -> schemas.ModelCard:
    """Version, training data, the evaluation it was promoted on, features and constraints."""
    return model.card()


@router.get(
    "/v1/model/versions",
    response_model=list[schemas.RegisteredVersion],
    responses=ERRORS,
    tags=["model"],
    summary="Every registered version, its aliases and why it was promoted (模型版本)",
)
def model_versions(model: Model, _: Reader) -> list[schemas.RegisteredVersion]:
    """Newest first; the champion alias marks the version the service should be serving."""
    return service.model_versions(model)


@router.post(
    "/v1/admin/reload",
    response_model=schemas.ReloadResponse,
    tags=["model"],
    responses={
        **ERRORS,
        409: {"model": schemas.ErrorResponse, "description": "the new version was refused"},
    },
    summary="Swap to the champion without dropping requests (重新加载模型)",
)
def reload_model(state: State, caller: Admin) -> schemas.ReloadResponse:
    """A version that fails to load or to score the canary is refused; the old one serves."""
    return service.reload(state, caller)


@router.get(
    "/v1/predictions/{prediction_id}",
    response_model=schemas.PredictionRecord,
    responses=NOT_FOUND,
    tags=["audit"],
    summary="One stored answer with its reviews (评分记录)",
)
def get_prediction(stored: StoredPrediction, state: State) -> schemas.PredictionRecord:
    """The input, the model version and the full answer, as stored before it was returned."""
    return service.prediction(state, stored)


@router.get(
    "/v1/predictions",
    response_model=schemas.PredictionPage,
    responses=ERRORS,
    tags=["audit"],
    summary="Stored answers, newest first (评分记录查询)",
)
def list_predictions(
    state: State, caller: Reviewer, filters: Annotated[schemas.PredictionFilters, Query()]
) -> schemas.PredictionPage:
    """Filter by case, place, leads, deviation, review and time, inside the caller's scope."""
    return service.predictions(state, caller, filters)


@router.post(
    "/v1/predictions/{prediction_id}/reviews",
    response_model=schemas.ReviewOut,
    status_code=201,
    dependencies=JSON_BODY,
    responses=NOT_FOUND,
    tags=["audit"],
    summary="Record a reviewer's decision, appended (复核)",
)
def add_review(
    stored: StoredPrediction, body: schemas.ReviewRequest, state: State, reviewer: Reviewer
) -> schemas.ReviewOut:
    """Accepted / adjusted (with the amount) / rejected, and a reason."""
    return service.review(state, stored, body, reviewer)


@router.post(
    "/v1/predictions/{prediction_id}/replay",
    response_model=schemas.ReplayResponse,
    responses=NOT_FOUND,
    tags=["audit"],
    summary="Re-score a stored input with its stored model version (复现)",
)
def replay(stored: StoredPrediction, state: State) -> schemas.ReplayResponse:
    """Says whether today's answer from the same version is identical to the stored one."""
    return service.replay(state, stored)


@router.get(
    "/v1/reports/deviation",
    response_model=schemas.DeviationReportOut,
    responses=ERRORS,
    tags=["reports"],
    summary="Granted amounts against the reference, by group (同案不同救监督)",
)
def deviation_report(
    state: State, caller: Reviewer, query: Annotated[schemas.DeviationQuery, Query()]
) -> schemas.DeviationReportOut:
    """Served answers with a granted amount, inside the caller's scope, grouped and flagged."""
    return reports.deviation(state, caller, query)


@router.get("/healthz", tags=["operations"], summary="The process lives")
def healthz() -> dict[str, str]:
    """Always 200 while the process answers."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    tags=["operations"],
    summary="A model is loaded and the audit store accepts writes",
    responses={503: {"model": schemas.ErrorResponse}},
)
def readyz(state: State) -> JSONResponse:
    """200 only while a model is loaded and the audit store can record an answer."""
    return service.readiness(state)


@router.get("/metrics", tags=["operations"], summary="Prometheus metrics")
def metrics(state: State) -> Response:
    """Requests, latency, errors, flagged leads, scores by model version."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
