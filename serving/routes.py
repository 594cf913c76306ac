"""Thin HTTP routes: validate, call the service, audit, answer. CPU work runs in plain ``def``
handlers (FastAPI's thread pool), never on the event loop."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from features.contract import PROVINCE_CODES, canonical_from_typed
from serving import schemas
from serving.audit import PREDICTION, REVIEW, AuditEntry, AuditError, AuditRecord
from serving.deps import Model, State, json_body, require
from serving.errors import describe_error
from serving.security import ADMIN, CASE_SYSTEM, REVIEWER, ApiKey
from serving.service import (
    Problem,
    answer_batch,
    comparable,
    cross_field_errors,
    differences,
    is_flagged,
)
from serving.state import ModelRefused

router = APIRouter()
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorResponse, "description": text}
    for code, text in {
        401: "no or unknown API key", 403: "the key's role may not do this",
        413: "the body is too large", 415: "the body is not JSON",
        422: "the record breaks the contract: field path and rule, in English and Chinese",
        503: "no model loaded, or the audit store could not record the answer",
    }.items()
}  # fmt: skip


class ContractViolation(Exception):
    """Cross-field problems found after type validation (answered as 422)."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__("contract violation")
        self.problems = problems


def _problem_dicts(problems: list[Problem], prefix: list[str | int]) -> list[dict[str, Any]]:
    return [{"loc": [*prefix, p.field], "field": ".".join(map(str, [*prefix[1:], p.field])),
             "rule": p.rule, "rule_zh": p.rule_zh} for p in problems]  # fmt: skip


def _entry(caller: ApiKey, request: dict[str, Any], answer: dict[str, Any]) -> AuditEntry:
    return AuditEntry(
        kind=PREDICTION, prediction_id=answer["prediction_id"], caller=caller.name,
        case_id=answer["case_id"], province_code=request["record"]["province_code"],
        flagged=is_flagged(answer), model_version=answer["model"]["version"],
        payload={"request": request, "response": answer}, record_id=answer["prediction_id"],
    )  # fmt: skip


def _audited(state: State, entries: list[AuditEntry]) -> None:
    """Store before answering; without a stored record there is no answer (503)."""
    try:
        state.audit.append_many(entries)
    except AuditError as exc:
        state.metrics.audit_failures.inc()
        raise HTTPException(503, f"the answer could not be audited, so it is withheld: {exc} "
                                 "(审计记录写入失败)") from exc  # fmt: skip


def _count(state: State, answers: list[dict[str, Any]]) -> None:
    for answer in answers:
        state.metrics.scores.labels(answer["model"]["version"]).inc()
        for name, lead in answer["leads"].items():
            if lead["flagged"]:
                state.metrics.flagged.labels(name).inc()


@router.post(
    "/v1/score", response_model=schemas.ScoreResponse, responses=ERRORS,
    dependencies=[Depends(json_body)], tags=["scoring"],
    summary="Score one case: reference amount, leads, reasons, similar cases (评分)",
)  # fmt: skip
def score(
    body: schemas.ScoreRequest, state: State, model: Model,
    caller: Annotated[ApiKey, require(CASE_SYSTEM)],
) -> JSONResponse:  # fmt: skip
    """One case record of the contract (outcomes refused) and optionally the amount granted."""
    record = body.record.model_dump()
    problems = cross_field_errors([canonical_from_typed(record)])[0]
    if problems:
        raise ContractViolation(_problem_dicts(problems, ["body", "record"]))
    settings = state.settings
    answer = answer_batch(model, [record], [body.granted_amount_yuan], settings.similar_k,
                          settings.top_contributions)[0]  # fmt: skip
    request = {"record": record, "granted_amount_yuan": body.granted_amount_yuan}
    _audited(state, [_entry(caller, request, answer)])
    _count(state, [answer])
    return JSONResponse(answer)


@router.post(
    "/v1/score/batch", response_model=schemas.BatchResponse, responses=ERRORS,
    dependencies=[Depends(json_body)], tags=["scoring"],
    summary="Score up to max_batch cases in one vectorised call (批量评分)",
)  # fmt: skip
def score_batch(
    body: schemas.BatchRequest, state: State, model: Model,
    caller: Annotated[ApiKey, require(CASE_SYSTEM)],
) -> JSONResponse:  # fmt: skip
    """Each item is answered or given its own errors; one bad item fails no other."""
    settings = state.settings
    if len(body.items) > settings.max_batch:
        raise ContractViolation([{"loc": ["body", "items"], "field": "items",
                                  "rule": f"at most {settings.max_batch} items per batch, "
                                          f"got {len(body.items)}",
                                  "rule_zh": "批量条数超过上限"}])  # fmt: skip
    results: list[dict[str, Any]] = [{"index": i} for i in range(len(body.items))]
    valid: list[tuple[int, schemas.ScoreRequest]] = []
    for i, item in enumerate(body.items):
        try:
            valid.append((i, schemas.ScoreRequest.model_validate(item)))
        except ValidationError as exc:
            results[i]["errors"] = [
                describe_error(dict(e), ["body", "items", i]) for e in exc.errors()
            ]
    records = [request.record.model_dump() for _, request in valid]
    cross = cross_field_errors([canonical_from_typed(r) for r in records])
    scorable = []
    for (i, request), record, problems in zip(valid, records, cross, strict=True):
        if problems:
            results[i]["errors"] = _problem_dicts(problems, ["body", "items", i, "record"])
        else:
            scorable.append((i, request, record))
    if scorable:
        answers = answer_batch(
            model, [r for _, _, r in scorable],
            [request.granted_amount_yuan for _, request, _ in scorable],
            settings.similar_k, settings.top_contributions,
        )  # fmt: skip
        entries = [
            _entry(
                caller,
                {"record": record, "granted_amount_yuan": request.granted_amount_yuan},
                answer,
            )
            for (_, request, record), answer in zip(scorable, answers, strict=True)
        ]
        _audited(state, entries)
        _count(state, answers)
        for (i, _, _), answer in zip(scorable, answers, strict=True):
            results[i]["result"] = answer
    return JSONResponse({"results": results, "scored": len(scorable),
                         "refused": len(body.items) - len(scorable)})  # fmt: skip


@router.get("/v1/model", response_model=schemas.ModelCard, responses=ERRORS, tags=["model"],
            summary="The model card of the version serving now (模型说明)")  # fmt: skip
def model_card(
    model: Model, _: Annotated[ApiKey, require(CASE_SYSTEM, REVIEWER)]
) -> dict[str, Any]:
    """Version, training data, the evaluation it was promoted on, features and constraints."""
    bundle = model.bundle
    meta = bundle.metadata
    return {
        "model": model.ref,
        "trained_at": meta.get("trained_at"),
        "training_data": {
            k: meta.get(k)
            for k in ("rows", "rows_by_part", "years", "wage_table_version", "config_version")
        },
        "evaluation": meta.get("evaluation", {}),
        "features": {
            "reference_amount": list(bundle.amount.features),
            **{n: list(lead.features) for n, lead in bundle.leads.items()},
        },
        "monotone_constraints": bundle.config.amount.monotone,
        "flag_thresholds": {n: lead.threshold for n, lead in bundle.leads.items()},
        "loaded_at": model.loaded_at,
    }


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
def reload_model(state: State, _: Annotated[ApiKey, require(ADMIN)]) -> dict[str, Any]:
    """A version that fails to load or to score the canary is refused; the old one serves."""
    try:
        previous, current = state.reload()
    except ModelRefused as exc:
        raise HTTPException(409, f"reload refused, the previous version keeps serving: {exc}") \
            from exc  # fmt: skip
    before = previous.ref if previous else current.ref
    changed = previous is None or previous.version != current.version
    return {"reloaded": changed, "previous": before, "current": current.ref,
            "message": f"serving version {current.version}"}  # fmt: skip


def _prediction_out(state: State, record: AuditRecord, with_reviews: bool) -> dict[str, Any]:
    reviews = (
        [_review_out(r) for r in state.audit.reviews(record.record_id)] if with_reviews else []
    )
    return {
        "prediction_id": record.record_id, "created_at": record.created_at,
        "caller": record.caller, "case_id": record.case_id,
        "province_code": record.province_code, "flagged": record.flagged,
        "model_version": record.model_version, "request": record.payload["request"],
        "response": record.payload["response"], "reviews": reviews,
    }  # fmt: skip


def _review_out(record: AuditRecord) -> dict[str, Any]:
    payload = record.payload
    return {"review_id": record.record_id, "prediction_id": record.prediction_id,
            "created_at": record.created_at, "reviewer": record.caller,
            "decision": payload["decision"], "amount_yuan": payload.get("amount_yuan"),
            "reason": payload["reason"]}  # fmt: skip


def _stored(state: State, prediction_id: str) -> AuditRecord:
    record = state.audit.prediction(prediction_id)
    if record is None:
        raise HTTPException(404, f"no prediction {prediction_id!r} (未找到该评分记录)")
    return record


@router.get("/v1/predictions/{prediction_id}", response_model=schemas.PredictionRecord,
            responses={**ERRORS, 404: {"model": schemas.ErrorResponse}}, tags=["audit"],
            summary="One stored answer with its reviews (评分记录)")  # fmt: skip
def get_prediction(
    prediction_id: str, state: State, _: Annotated[ApiKey, require(REVIEWER)]
) -> dict[str, Any]:
    """The input, the model version and the full answer, as stored before it was returned."""
    return _prediction_out(state, _stored(state, prediction_id), with_reviews=True)


@router.get("/v1/predictions", response_model=schemas.PredictionPage, responses=ERRORS,
            tags=["audit"], summary="Stored answers, newest first (评分记录查询)")  # fmt: skip
def list_predictions(
    state: State,
    _: Annotated[ApiKey, require(REVIEWER)],
    case_id: Annotated[str | None, Query(max_length=64, description="案件编号")] = None,
    province_code: Annotated[str | None, Query(pattern=r"^\d{2}$", description="省份代码")] = None,
    flagged: Annotated[bool | None, Query(description="any lead flagged")] = None,
    since: Annotated[
        dt.datetime | None, Query(alias="from", description="from (inclusive)")
    ] = None,
    until: Annotated[dt.datetime | None, Query(alias="to", description="to (exclusive)")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict[str, Any]:
    """Filter by case, province, flag and time; paginated."""
    if province_code is not None and province_code not in PROVINCE_CODES:
        raise ContractViolation([{"loc": ["query", "province_code"], "field": "province_code",
                                  "rule": f"{province_code!r} is not a province code",
                                  "rule_zh": "省份代码无效"}])  # fmt: skip
    records, total = state.audit.predictions(
        case_id, province_code, flagged, _aware(since), _aware(until), limit, offset
    )
    items = [_prediction_out(state, r, with_reviews=False) for r in records]
    return {"total": total, "limit": limit, "offset": offset, "items": items}


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=dt.UTC)


@router.post(
    "/v1/predictions/{prediction_id}/reviews",
    response_model=schemas.ReviewOut,
    status_code=201,
    dependencies=[Depends(json_body)],
    responses={**ERRORS, 404: {"model": schemas.ErrorResponse}},
    tags=["audit"],
    summary="Record a reviewer's decision, appended (复核)",
)
def add_review(
    prediction_id: str, body: schemas.ReviewRequest, state: State,
    reviewer: Annotated[ApiKey, require(REVIEWER)],
) -> dict[str, Any]:  # fmt: skip
    """accepted / adjusted (with the amount) / rejected, and a reason."""
    prediction = _stored(state, prediction_id)
    if (body.decision == "adjusted") != (body.amount_yuan is not None):
        raise ContractViolation([{"loc": ["body", "amount_yuan"], "field": "amount_yuan",
                                  "rule": "is required with decision 'adjusted' and only then",
                                  "rule_zh": "调整决定须填写金额，其他决定不得填写"}])  # fmt: skip
    payload = body.model_dump()
    try:
        stored = state.audit.append(AuditEntry(
            kind=REVIEW, prediction_id=prediction_id, caller=reviewer.name,
            case_id=prediction.case_id, province_code=prediction.province_code,
            flagged=prediction.flagged, model_version=prediction.model_version, payload=payload,
        ))  # fmt: skip
    except AuditError as exc:
        raise HTTPException(503, f"the review could not be stored: {exc}") from exc
    return _review_out(stored)


@router.post("/v1/predictions/{prediction_id}/replay", response_model=schemas.ReplayResponse,
             responses={**ERRORS, 404: {"model": schemas.ErrorResponse}}, tags=["audit"],
             summary="Re-score a stored input with its stored model version (复现)")  # fmt: skip
def replay(
    prediction_id: str, state: State, _: Annotated[ApiKey, require(REVIEWER)]
) -> dict[str, Any]:
    """Says whether today's answer from the same version is identical to the stored one."""
    stored = _stored(state, prediction_id)
    answer = stored.payload["response"]
    request = stored.payload["request"]
    try:
        model = state.version(answer["model"]["name"], stored.model_version)
    except Exception as exc:  # the version may have been deleted from the registry
        raise HTTPException(503, f"version {stored.model_version} cannot be loaded: {exc}") \
            from exc  # fmt: skip
    shown = answer["explanations"]["reference_amount"]["top"]
    fresh = answer_batch(model, [request["record"]], [request["granted_amount_yuan"]],
                         len(answer["similar_cases"]), len(shown))[0]  # fmt: skip
    fresh = json.loads(json.dumps(fresh))
    found = differences(comparable(answer), comparable(fresh))
    return {"prediction_id": prediction_id, "model_version": stored.model_version,
            "identical": not found, "differences": found[:50]}  # fmt: skip


@router.get("/healthz", tags=["operations"], summary="The process lives")
def healthz() -> dict[str, str]:
    """Always 200 while the process answers."""
    return {"status": "ok"}


@router.get("/readyz", tags=["operations"], summary="A model is loaded",
            responses={503: {"model": schemas.ErrorResponse}})  # fmt: skip
def readyz(state: State) -> JSONResponse:
    """200 only once a model is loaded."""
    if state.model is None:
        return JSONResponse({"detail": state.load_error or "loading"}, status_code=503)
    return JSONResponse({"status": "ready", "model": state.model.ref})


@router.get("/metrics", tags=["operations"], summary="Prometheus metrics")
def metrics(state: State) -> Response:
    """Requests, latency, errors, flagged leads, scores by model version."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
