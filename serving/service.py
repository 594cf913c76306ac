"""What the service does for each request, one function per use.

Score, score a batch, reload, read stored answers, review, replay.

Routes (and the pages) validate the request, call one of these and return what it returns.
Each function canonicalises records once, audits an answer before it returns it, and counts
what the metrics show.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
from fastapi import HTTPException
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from features.contract import canonical_from_typed, cross_field_problems, rule_zh
from features.vectors import columns_from_records
from serving import data_sources, lead_service, schemas
from serving.answer_index import UNREVIEWED, AnswerQuery
from serving.answers import LoadedModel, build_answers, comparable, differences, is_flagged
from serving.audit import PREDICTION, RELOAD, REVIEW, AuditEntry, AuditError, AuditRecord
from serving.errors import ContractViolation, Unavailable, describe_error, problem
from serving.security import ApiKey
from serving.state import ModelRefused, ServiceState

log = logging.getLogger(__name__)


def _checked_columns(
    records: Sequence[schemas.CaseRecord], where: Sequence[list[str | int]]
) -> tuple[dict[str, np.ndarray], list[list[schemas.ProblemDetail]]]:
    """Canonical columns of validated records (made once) and each one's cross-field problems.

    The problems of record ``i`` are located at ``where[i]``.
    """
    columns = columns_from_records([canonical_from_typed(r.model_dump()) for r in records])
    problems: list[list[schemas.ProblemDetail]] = [[] for _ in records]
    for row, name, rule in cross_field_problems(columns, history=False):
        problems[row].append(problem([*where[row], name], rule, rule_zh("cross")))
    return columns, problems


def _audited(
    state: ServiceState,
    caller: ApiKey,
    requests: Sequence[schemas.ScoreRequest],
    answers: Sequence[schemas.ScoreResponse],
) -> None:
    """Store the answers before they are returned, count them, register their flagged leads.

    Without a stored record there is no answer (503). The leads are registered after the
    answers are stored, and a failure there never withholds them (``serving.lead_service``).
    """
    entries = []
    for request, answer in zip(requests, answers, strict=True):
        stored = {
            "request": request.model_dump(mode="json"),
            "response": answer.model_dump(mode="json"),
        }
        entries.append(
            AuditEntry(
                kind=PREDICTION,
                prediction_id=answer.prediction_id,
                caller=caller.name,
                case_id=answer.case_id,
                province_code=str(getattr(request.record, "province_code")),  # noqa: B009
                flagged=is_flagged(answer),
                model_version=answer.model.version,
                payload=stored,
                record_id=answer.prediction_id,
            )
        )
    try:
        state.audit.append_many(entries)
    except AuditError as exc:
        state.metrics.audit_failures.inc()
        raise Unavailable(
            "the answer could not be audited, so it is withheld (审计记录写入失败)", str(exc)
        ) from exc
    for answer in answers:
        state.metrics.scores.labels(answer.model.version).inc()
        for name, lead in answer.leads.items():
            if lead.flagged:
                state.metrics.flagged.labels(name).inc()
    lead_service.register_answers(state, caller, requests, answers)  # never withholds them


def _answers(
    state: ServiceState,
    model: LoadedModel,
    columns: dict[str, np.ndarray],
    requests: Sequence[schemas.ScoreRequest],
    explain: bool,
) -> list[schemas.ScoreResponse]:
    """The answers of validated records, the department registries joined first."""
    settings = state.settings
    granted = [request.granted_amount_yuan for request in requests]
    k, top = settings.similar_k, settings.top_contributions
    live = _joined(state, columns)
    answers = build_answers(model, live.columns, granted, k, top, explain)
    for answer, found in zip(answers, live.sources, strict=True):
        answer.data_sources = found
    return answers


def _joined(
    state: ServiceState,
    columns: dict[str, np.ndarray],
    pins: Sequence[data_sources.Pin] | None = None,
) -> data_sources.LiveJoin:
    """The registries joined to the records (the store opened only when a record has a key)."""
    keyed = any(isinstance(v, str) for v in columns["person_key"])
    store = state.registries() if keyed else None
    return data_sources.join_live(columns, store, state.registry_config(), pins)


def score(
    state: ServiceState,
    model: LoadedModel,
    request: schemas.ScoreRequest,
    caller: ApiKey,
    explain: bool = True,
) -> schemas.ScoreResponse:
    """One case: refused (422) if it breaks a cross-field rule, else answered and audited."""
    columns, problems = _checked_columns([request.record], [["body", "record"]])
    if problems[0]:
        raise ContractViolation(problems[0])
    answer = _answers(state, model, columns, [request], explain)[0]
    _audited(state, caller, [request], [answer])
    return answer


def score_batch(
    state: ServiceState,
    model: LoadedModel,
    body: schemas.BatchRequest,
    caller: ApiKey,
    explain: bool = True,
) -> schemas.BatchResponse:
    """Each item is answered or given its own errors; one bad item fails no other."""
    limit = state.settings.max_batch
    if len(body.items) > limit:
        raise ContractViolation(
            [
                problem(
                    ["body", "items"],
                    f"at most {limit} items per batch, got {len(body.items)}",
                    "批量条数超过上限",
                )
            ]
        )
    results = [schemas.BatchItemResult(index=i) for i in range(len(body.items))]
    valid: list[tuple[int, schemas.ScoreRequest]] = []
    for i, item in enumerate(body.items):
        try:
            valid.append((i, schemas.ScoreRequest.model_validate(item)))
        except ValidationError as exc:
            results[i].errors = [
                describe_error(dict(e), ["body", "items", i]) for e in exc.errors()
            ]
    columns, problems = _checked_columns(
        [request.record for _, request in valid], [["body", "items", i, "record"] for i, _ in valid]
    )
    for (i, _), found in zip(valid, problems, strict=True):
        if found:
            results[i].errors = found
    keep = np.array([not found for found in problems], dtype=bool)
    scorable = [pair for pair, ok in zip(valid, keep, strict=True) if ok]
    if scorable:
        requests = [request for _, request in scorable]
        subset = {name: values[keep] for name, values in columns.items()}
        answers = _answers(state, model, subset, requests, explain)
        _audited(state, caller, requests, answers)
        for (i, _), answer in zip(scorable, answers, strict=True):
            results[i].result = answer
    return schemas.BatchResponse(
        results=results, scored=len(scorable), refused=len(body.items) - len(scorable)
    )


def _record_reload(state: ServiceState, caller: ApiKey, payload: dict[str, Any]) -> None:
    """A reload, done or refused, is itself a record of the chain (logged if it cannot be)."""
    serving = state.model
    entry = AuditEntry(
        kind=RELOAD,
        prediction_id=str(uuid.uuid4()),
        caller=caller.name,
        case_id="-",
        province_code="00",
        flagged=False,
        model_version=serving.version if serving else "none",
        payload=payload,
    )
    try:
        state.audit.append(entry)
    except AuditError as exc:
        state.metrics.audit_failures.inc()
        log.error("the reload could not be recorded in the audit chain: %s", exc)


def reload(state: ServiceState, caller: ApiKey) -> schemas.ReloadResponse:
    """Swap to the alias's current version; a refused version leaves the old one serving."""
    try:
        previous, current = state.reload()
    except ModelRefused as exc:
        _record_reload(state, caller, {"outcome": "refused", "reason": str(exc)[:2000]})
        raise HTTPException(
            409, f"reload refused, the previous version keeps serving: {exc}"
        ) from exc
    _record_reload(
        state,
        caller,
        {
            "outcome": "reloaded",
            "previous": (previous or current).ref.model_dump(),
            "current": current.ref.model_dump(),
        },
    )
    changed = previous is None or previous.version != current.version
    return schemas.ReloadResponse(
        reloaded=changed,
        previous=(previous or current).ref,
        current=current.ref,
        message=f"serving version {current.version}",
    )


def readiness(state: ServiceState) -> JSONResponse:
    """Ready: a model is loaded and the audit store accepts a write (a bounded no-op write)."""
    if state.model is None:
        return JSONResponse({"detail": "no model loaded yet (模型尚未加载)"}, status_code=503)
    problem_text = state.audit.writable()
    if problem_text is not None:
        log.error("not ready: the audit store cannot write: %s", problem_text)
        return JSONResponse(
            {"detail": "the audit store cannot record answers (审计库不可写)"}, status_code=503
        )
    return JSONResponse({"status": "ready", "model": state.model.ref.model_dump()})


def _review_out(record: AuditRecord) -> schemas.ReviewOut:
    payload = record.payload
    return schemas.ReviewOut(
        review_id=record.record_id,
        prediction_id=record.prediction_id,
        created_at=record.created_at,
        reviewer=record.caller,
        decision=payload["decision"],
        amount_yuan=payload.get("amount_yuan"),
        reason=payload["reason"],
    )


def _prediction_out(
    record: AuditRecord, reviews: Sequence[AuditRecord] = (), status: str | None = None
) -> schemas.PredictionRecord:
    if status is None:
        status = reviews[-1].payload["decision"] if reviews else UNREVIEWED
    return schemas.PredictionRecord(
        prediction_id=record.record_id,
        created_at=record.created_at,
        caller=record.caller,
        case_id=record.case_id,
        province_code=record.province_code,
        office_code=record.payload["request"]["record"].get("office_code"),
        flagged=record.flagged,
        model_version=record.model_version,
        request=record.payload["request"],
        response=record.payload["response"],
        reviews=[_review_out(review) for review in reviews],
        review_status=status,
    )


def prediction(state: ServiceState, stored: AuditRecord) -> schemas.PredictionRecord:
    """A stored answer with its reviews."""
    return _prediction_out(stored, state.audit.reviews(stored.record_id))


def answer_query(caller: ApiKey, filters: schemas.PredictionFilters) -> AnswerQuery:
    """The index query of a caller's filters: always inside the caller's scope."""
    return AnswerQuery(
        scope=caller.scope,
        case_id=filters.case_id,
        province_code=filters.province_code,
        office_code=filters.office_code,
        flagged=filters.flagged,
        lead_flagged=filters.lead,
        outside_interval=filters.outside_interval,
        review_status=filters.review_status,
        decision_year=filters.decision_year,
        crime_type=filters.crime_type,
        harm_outcome=filters.harm_outcome,
        aid_grade=filters.aid_grade,
        granted=filters.granted,
        since=filters.since,
        until=filters.until,
        order_by_lead=filters.order_lead if filters.order == "lead_probability" else None,
    )


def predictions(
    state: ServiceState, caller: ApiKey, filters: schemas.PredictionFilters
) -> schemas.PredictionPage:
    """A page of stored answers inside the caller's scope, newest (or likeliest) first."""
    limit, offset = filters.limit, filters.offset
    records, total = state.audit.predictions(answer_query(caller, filters), limit, offset)
    indexed = state.audit.indexed([r.record_id for r in records])
    items = [
        _prediction_out(
            r, status=indexed[r.record_id].review_status if r.record_id in indexed else None
        )
        for r in records
    ]
    return schemas.PredictionPage(total=total, limit=limit, offset=offset, items=items)


def review(
    state: ServiceState, stored: AuditRecord, body: schemas.ReviewRequest, reviewer: ApiKey
) -> schemas.ReviewOut:
    """Append a reviewer's decision to the audit trail (never overwriting an earlier one)."""
    if (body.decision == "adjusted") != (body.amount_yuan is not None):
        raise ContractViolation(
            [
                problem(
                    ["body", "amount_yuan"],
                    "is required with decision 'adjusted' and only then",
                    "调整决定须填写金额，其他决定不得填写",
                )
            ]
        )
    ceiling = stored.payload["response"]["reference_amount"]["ceiling_yuan"]
    if body.amount_yuan is not None and not 0 < body.amount_yuan <= ceiling:
        raise ContractViolation(
            [
                problem(
                    ["body", "amount_yuan"],
                    f"{body.amount_yuan:g} is out of range: an adjusted amount is above 0 and "
                    f"at most this case's statutory ceiling of {ceiling:,.0f} yuan",
                    "调整金额须大于0且不超过本案救助上限",
                )
            ]
        )
    entry = AuditEntry(
        kind=REVIEW,
        prediction_id=stored.record_id,
        caller=reviewer.name,
        case_id=stored.case_id,
        province_code=stored.province_code,
        flagged=stored.flagged,
        model_version=stored.model_version,
        payload=body.model_dump(mode="json"),
    )
    try:
        return _review_out(state.audit.append(entry))
    except AuditError as exc:
        state.metrics.audit_failures.inc()
        raise Unavailable("the review could not be stored (复核记录写入失败)", str(exc)) from exc


def replay(state: ServiceState, stored: AuditRecord) -> schemas.ReplayResponse:
    """Re-score a stored input with its stored version; say whether the answer is identical.

    The registries are read from the snapshots the answer read (pinned by their ids), so
    an import since then does not change the replay.
    """
    answer = stored.payload["response"]
    request = schemas.ScoreRequest.model_validate(stored.payload["request"])
    try:
        model = state.version(answer["model"]["name"], stored.model_version)
    except Exception as exc:  # the version may have been deleted from the registry
        raise Unavailable(
            f"version {stored.model_version} cannot be loaded for replay (无法加载该模型版本)",
            f"{type(exc).__name__}: {exc}",
        ) from exc
    columns, _ = _checked_columns([request.record], [["body", "record"]])
    read = answer.get("data_sources")  # None: stored before the live join, nothing to join
    live = _joined(state, columns, [data_sources.pin_of(read)]) if read else None
    shown = len(answer["explanations"].get("reference_amount", {}).get("top", []))
    fresh = build_answers(
        model,
        live.columns if live else columns,
        [request.granted_amount_yuan],
        len(answer["similar_cases"]),
        shown,
        explain=bool(answer["explanations"]),
    )[0]
    fresh.data_sources = live.sources[0] if live else None
    found = differences(comparable(answer), comparable(fresh.model_dump(mode="json")))
    return schemas.ReplayResponse(
        prediction_id=stored.record_id,
        model_version=stored.model_version,
        identical=not found,
        differences=found[:50],
    )


def model_versions(model: LoadedModel) -> list[schemas.RegisteredVersion]:
    """Every registered version of the serving model, newest first, with aliases and reasons."""
    from training.registry import RegistryError, list_versions  # MLflow: only when asked

    try:
        found = list_versions(model.name)
    except RegistryError as exc:
        raise Unavailable("the registry cannot be read (模型注册表不可用)", str(exc)) from exc
    return [
        schemas.RegisteredVersion.model_validate({**asdict(v), "aliases": list(v.aliases)})
        for v in found
    ]


def model_overview(model: LoadedModel) -> schemas.ModelOverview:
    """The serving version's card and plots, and the registry's versions (the model page)."""
    from training.registry import RegistryError, run_plots

    try:
        plots = run_plots(model.run_id)
    except RegistryError as exc:
        log.warning("no plots for run %s: %s", model.run_id, exc)
        plots = []
    return schemas.ModelOverview(card=model.card(), plots=plots, versions=model_versions(model))


def model_plot(model: LoadedModel, name: str) -> bytes:
    """A plot the serving version's run logged (PNG), or 404."""
    from training.registry import RegistryError, read_run_plot

    try:
        return read_run_plot(model.run_id, name)
    except RegistryError as exc:
        raise HTTPException(404, f"no plot {name!r} for this version (未找到该图)") from exc
