"""Request and response models of the API (one module, input and output kept apart).

The case record model is generated from ``features.contract.FIELDS``, so the API documents
exactly the contract: types, enums, ranges and the Chinese label of every field. Unknown
fields are refused (a deployment cannot store personal identifiers by sending them).
Cross-field rules are checked by the contract's own parser after this model.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    create_model,
    field_validator,
)

from features.contract import (
    CRIME_TYPES,
    HARM_OUTCOMES,
    INPUT_FIELDS,
    LATEST_VERSION,
    PROVINCE_CODES,
    FieldSpec,
    Kind,
)
from training.deviation import DEFAULT_MIN_CASES, DEFAULT_TOLERANCE, GROUP_BY

EXAMPLE_RECORD: dict[str, Any] = {
    "case_id": "320106-2025-0413",
    "province_code": "32",
    "office_code": "320106",
    "decision_year": 2025,
    "crime_type": "intentional_injury",
    "applicant_role": "victim",
    "harm_outcome": "severe_injury",
    "disability_grade": 6,
    "urgent_medical_need": True,
    "medical_cost_yuan": 48_000,
    "case_expense_yuan": 6_500,
    "economic_loss_yuan": None,
    "offender_status": "unable_to_pay",
    "compensation_received_yuan": 2_000,
    "court_award_yuan": 160_000,
    "other_relief_received_yuan": 0,
    "victim_age": 47,
    "victim_sex": "male",
    "household_size": 4,
    "dependants": 2,
    "minor_dependants": 1,
    "monthly_household_income_yuan": 2_600,
    "low_income_status": "marginal",
    "disability_certificate": True,
    "labor_capacity": "partial",
    "rural_hukou": True,
    "registry_flags": ["serious_illness"],
    "victim_at_fault": False,
    "refused_cooperation": False,
    "aided_before_for_this_case": False,
}


def _annotation(spec: FieldSpec) -> Any:
    if spec.kind is Kind.STRING:
        return str
    if spec.kind is Kind.ENUM:
        return Literal.__getitem__(spec.values)
    if spec.kind is Kind.LIST:
        return list[Literal.__getitem__(spec.values)]  # type: ignore[misc]
    if spec.kind is Kind.BOOL:
        return bool
    if spec.kind is Kind.INT:
        return int
    return float


def _field(spec: FieldSpec) -> tuple[Any, Any]:
    annotation = _annotation(spec)
    if not spec.required:
        annotation = annotation | None
    labels = ""
    if spec.labels_zh:
        labels = (
            " ("
            + ", ".join(f"{v}={z}" for v, z in zip(spec.values, spec.labels_zh, strict=True))
            + ")"
        )
    description = f"{spec.zh}{labels}. {spec.description}".strip()
    constraints: dict[str, Any] = {}
    if spec.kind in (Kind.INT, Kind.NUMBER):
        if spec.minimum is not None:
            constraints["ge"] = spec.minimum
        if spec.maximum is not None:
            constraints["le"] = spec.maximum
    if spec.kind is Kind.STRING:
        constraints.update(min_length=1, max_length=spec.max_length, pattern=spec.pattern)
    default = ... if spec.required else None
    return annotation, Field(default, description=description, **constraints)


CaseRecord = create_model(  # type: ignore[call-overload]
    "CaseRecord",
    __config__=ConfigDict(
        extra="forbid", allow_inf_nan=False, json_schema_extra={"example": EXAMPLE_RECORD}
    ),
    __doc__=f"One case record (contract {LATEST_VERSION}; docs/case-record.md), outcomes "
    "excluded: 案件记录。",
    **{spec.name: _field(spec) for spec in INPUT_FIELDS},
)


def _known_province(value: str) -> str:
    """A query's province code must be one the wage table knows."""
    if value not in PROVINCE_CODES:
        raise ValueError(f"{value!r} is not a province code")
    return value


def _utc_unless_offset(value: dt.datetime) -> dt.datetime:
    """A moment without an offset is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


ProvinceCode = Annotated[
    str, StringConstraints(pattern=r"^[0-9]{2}$"), AfterValidator(_known_province)
]
"""A province code in a query (the filters of lists, reports and leads)."""
Moment = Annotated[dt.datetime, AfterValidator(_utc_unless_offset)]
"""A moment in a query's range; one without an offset is UTC."""


class ScoreRequest(BaseModel):
    """A case to score, and optionally what the office granted or proposes."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={"example": {"record": EXAMPLE_RECORD, "granted_amount_yuan": 30_000}},
    )
    record: CaseRecord
    granted_amount_yuan: float | None = Field(
        None,
        ge=0,
        description="拟救助或已救助金额: the amount granted or proposed, for the "
        "deviation from the reference (同案不同救)",
    )


class BatchRequest(BaseModel):
    """Up to ``max_batch`` items; each is answered or given its own error."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"items": [{"record": EXAMPLE_RECORD}]}},
    )
    items: list[dict[str, Any]] = Field(
        ..., min_length=1, description="批量评分: each item has the shape of ScoreRequest"
    )


class ModelRef(BaseModel):
    """Which registered version answered, and under which policy."""

    name: str
    version: str
    run_id: str
    policy_version: str = Field(description="the policy (thresholds, rules' reading) it used")


class WageBaseOut(BaseModel):
    """The base of the amount."""

    base_monthly_wage_yuan: float = Field(description="上一年度职工月平均工资")
    wage_year: int = Field(description="the year of the figure used")
    estimated: bool = Field(description="true when that year is not the previous year")


class ReferenceAmount(BaseModel):
    """参考救助金额."""

    yuan: float
    months_of_wage: float
    wage_base: WageBaseOut
    interval_80_yuan: tuple[float, float] = Field(description="80 % prediction interval")
    ceiling_yuan: float = Field(description="statutory ceiling (36 months, or the exception)")
    ceiling_bound: bool = Field(description="true when the ceiling cut the model's amount")


class RuleHitOut(BaseModel):
    """A statutory rule that applies, with the facts that triggered it."""

    id: str
    kind: str
    zh: str
    en: str
    facts: dict[str, Any]


class Eligibility(BaseModel):
    """The rules' verdict before any model."""

    status: Literal["eligible", "excluded", "needs_review"]
    rule_hits: list[RuleHitOut]


class Lead(BaseModel):
    """A lead's calibrated probability and whether it is flagged."""

    probability: float
    flagged: bool
    threshold: float


class ContributionOut(BaseModel):
    """One feature's contribution."""

    feature: str
    label_zh: str
    value: Any
    contribution: float
    contribution_yuan: float | None = Field(None, description="amount only: months × base")


class ExplanationOut(BaseModel):
    """Top contributions; base_value + Σ top + rest = output exactly."""

    unit: Literal["months", "log-odds"]
    base_value: float
    output: float
    top: list[ContributionOut]
    rest: float = Field(description="sum of the contributions not listed in top")


class SimilarCase(BaseModel):
    """A historical aided case near this one."""

    case_id: str
    decision_year: int
    province_code: str
    crime_type: str
    harm_outcome: str
    amount_yuan: float
    months_of_wage: float
    similarity: float


class Deviation(BaseModel):
    """How the granted amount compares with the reference (同案不同救)."""

    granted_amount_yuan: float
    ratio_to_reference: float
    outside_interval: bool


class AidGrade(BaseModel):
    """救助等级: the policy's band of the reference amount, raised by urgency facts."""

    grade: int = Field(description="1 is the gravest (一级)")
    label_zh: str = Field(description="一级, 二级, ...")
    band_months: tuple[float, float | None] = Field(
        description="the months of the wage base the reference amount's band covers "
        "[from, to); to is null for the top band"
    )
    raised_by: list[str] = Field(
        description="the urgency facts that raised the grade one step (empty: the band's grade)"
    )
    policy_version: str


DataSourceStatus: TypeAlias = Literal["joined", "no_person_key", "no_registries", "unavailable"]


class SourceRef(BaseModel):
    """One department's snapshot an answer read (数据来源)."""

    department: str = Field(description="the registry kind (features/config/registries.yaml)")
    department_zh: str = Field(description="its Chinese name, e.g. 最低生活保障（低保）")
    authority_zh: str = Field(description="the department that keeps it, e.g. 民政部门")
    snapshot_id: int = Field(description="the stored snapshot read (a replay reads it again)")
    snapshot_date: dt.date = Field(description="the date of the department's extract")
    holds_person: bool = Field(description="it covers the person on the decision date")


class FieldSource(BaseModel):
    """One field the registries answer for: the card's value beside the registry's."""

    field: str
    field_zh: str
    card: Any = Field(description="what the case card said (null: not given)")
    registry: Any = Field(description="what the registries said (null: they do not say)")
    used: Any = Field(
        description="what the model read: the registry's where it says, else "
        "the card's; registry_flags is the union of both"
    )
    conflict: bool = Field(description="the card and the registries disagree (both shown)")
    sources: list[SourceRef] = Field(description="the snapshots consulted for this field")


class DataSources(BaseModel):
    """数据来源: what the department registries said of the person on the decision date."""

    status: DataSourceStatus = Field(
        description="joined; no_person_key (the card has none); no_registries (no snapshot "
        "known on the date); unavailable (the registry store could not be read: the answer "
        "is the card's alone)"
    )
    status_zh: str
    read_on: dt.date | None = Field(
        None,
        description="the decision date the registries were read at (31 December of "
        "the decision year)",
    )
    snapshots: list[SourceRef] = Field(
        default_factory=list, description="every snapshot read (pinned by a replay)"
    )
    fields: list[FieldSource] = Field(default_factory=list)


class ScoreResponse(BaseModel):
    """The whole answer for one case."""

    prediction_id: str
    case_id: str
    created_at: dt.datetime
    model: ModelRef
    reference_amount: ReferenceAmount
    eligibility: Eligibility
    leads: dict[str, Lead]
    explanations: dict[str, ExplanationOut] = Field(
        description="the reasons of each number; empty when asked with explain=false"
    )
    similar_cases: list[SimilarCase]
    aid_grade: AidGrade
    deviation: Deviation | None = None
    notes: list[str] = Field(description="what the reviewer should know (estimated base...)")
    data_sources: DataSources | None = Field(
        None,
        description="数据来源: the department registries joined on the card's person_key "
        "(null on answers stored before the live join)",
    )


class ProblemDetail(BaseModel):
    """One thing wrong with a request."""

    loc: list[str | int]
    field: str
    rule: str
    rule_zh: str


class ErrorResponse(BaseModel):
    """Every error answer."""

    detail: list[ProblemDetail] | str
    error_id: str | None = Field(
        None, description="5xx only: quote it to the operators; the details are in their log"
    )


class BatchItemResult(BaseModel):
    """One item of a batch: its answer or its errors."""

    index: int
    result: ScoreResponse | None = None
    errors: list[ProblemDetail] | None = None


class BatchResponse(BaseModel):
    """A batch's answers in input order."""

    results: list[BatchItemResult]
    scored: int
    refused: int


class ReviewRequest(BaseModel):
    """A reviewer's decision on a prediction (appended, never overwritten)."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "example": {"decision": "adjusted", "amount_yuan": 28_000, "reason": "医疗费票据核减"}
        },
    )
    decision: Literal["accepted", "adjusted", "rejected"] = Field(
        description="accepted=采纳, adjusted=调整, rejected=不予救助"
    )
    amount_yuan: float | None = Field(None, ge=0, description="required when adjusted")
    reason: str = Field(
        ...,
        min_length=1,
        max_length=2000,
        pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$",
        description="理由 (text; no control characters but tab and line breaks)",
    )


class ReviewOut(BaseModel):
    """A stored review."""

    review_id: str
    prediction_id: str
    created_at: dt.datetime
    reviewer: str
    decision: str
    amount_yuan: float | None
    reason: str


class PredictionRecord(BaseModel):
    """A stored prediction as a reviewer reads it."""

    prediction_id: str
    created_at: dt.datetime
    caller: str
    case_id: str
    province_code: str
    office_code: str | None = None
    flagged: bool
    model_version: str
    request: dict[str, Any]
    response: dict[str, Any]
    reviews: list[ReviewOut] = []
    review_status: Literal["unreviewed", "accepted", "adjusted", "rejected"] = Field(
        "unreviewed", description="the latest review's decision (复核状态)"
    )


LeadName = Literal["judicial_aid", "social_assistance", "civil_support"]
if TYPE_CHECKING:  # the tokens are the contract's; mypy cannot read a Literal built from them
    CrimeType: TypeAlias = str
    HarmOutcome: TypeAlias = str
    GroupBy: TypeAlias = str
else:
    CrimeType = Literal.__getitem__(CRIME_TYPES)
    HarmOutcome = Literal.__getitem__(HARM_OUTCOMES)
    GroupBy = Literal.__getitem__(GROUP_BY)


class PredictionFilters(BaseModel):
    """What stored answers can be filtered and ordered by (the API's query and the page's form).

    Every filter narrows the caller's scope; none widens it.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    case_id: str | None = Field(None, max_length=64, description="案件编号")
    province_code: ProvinceCode | None = Field(None, description="省份代码")
    office_code: str | None = Field(None, pattern=r"^[0-9]{6}$", description="办案检察院代码")
    flagged: bool | None = Field(None, description="any lead flagged (有线索)")
    lead: LeadName | None = Field(None, description="this lead flagged (线索类型)")
    outside_interval: bool | None = Field(
        None, description="the granted amount lies outside the 80 % interval (偏离区间)"
    )
    review_status: Literal["unreviewed", "accepted", "adjusted", "rejected"] | None = Field(
        None, description="the latest review's decision (复核状态)"
    )
    aid_grade: int | None = Field(None, ge=1, le=9, description="救助等级 (1 = 一级)")
    decision_year: int | None = Field(None, ge=2014, le=2035, description="决定年度")
    crime_type: CrimeType | None = Field(None, description="案由")
    harm_outcome: HarmOutcome | None = Field(None, description="损害后果")
    granted: bool | None = Field(None, description="the answer carries a granted amount")
    since: Moment | None = Field(None, alias="from", description="from (inclusive)")
    until: Moment | None = Field(None, alias="to", description="to (exclusive)")
    order: Literal["newest", "lead_probability"] = Field(
        "newest", description="newest first, or the highest probability of `order_lead` first"
    )
    order_lead: LeadName = "judicial_aid"
    limit: int = Field(50, ge=1, le=200)
    offset: int = Field(0, ge=0, le=10_000_000)


class PredictionPage(BaseModel):
    """A page of predictions."""

    total: int
    limit: int
    offset: int
    items: list[PredictionRecord]


class ReplayResponse(BaseModel):
    """A stored prediction re-scored with its stored model version."""

    prediction_id: str
    model_version: str
    identical: bool
    differences: list[str]


class ModelCard(BaseModel):
    """What the service is running."""

    model: ModelRef
    trained_at: str | None
    training_data: dict[str, Any]
    evaluation: dict[str, float]
    evaluation_by_group: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="per group (minors, women, elderly, rural, dibao, veteran_family; `all` "
        "beside them): lead recall at the flagging threshold, amount MAE and ratios to the oracle",
    )
    features: dict[str, list[str]]
    monotone_constraints: dict[str, int]
    monotone_shapes: list[str] = Field(
        default_factory=list,
        description="the monotone features whose main effect the median starts from "
        "(learned first, made monotone; training/shapes.py); empty for versions before #11's",
    )
    flag_thresholds: dict[str, float]
    policy: dict[str, Any] = Field(description="the policy this version answers with")
    loaded_at: dt.datetime


class RegisteredVersion(BaseModel):
    """A version of the registered model, its aliases and why it was (not) promoted."""

    version: str
    aliases: list[str]
    run_id: str | None
    created_at: dt.datetime | None
    promotion_decision: str | None = Field(description="promoted or refused by the gate")
    promotion_reason: str | None
    rolled_back_from: str | None = Field(description="the version champion left on a rollback")


class ModelOverview(BaseModel):
    """The serving version's card, the plots its run logged, and every registered version."""

    card: ModelCard
    plots: list[str] = Field(description="evaluation plots logged in the serving version's run")
    versions: list[RegisteredVersion]


class ReloadResponse(BaseModel):
    """The outcome of a reload."""

    reloaded: bool
    previous: ModelRef
    current: ModelRef
    message: str


class DeviationQuery(BaseModel):
    """Which served answers the deviation report covers, and how it groups them.

    Only answers that carry a granted amount count; every filter narrows the caller's scope,
    none widens it.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    group_by: GroupBy = Field("office", description="分组: " + ", ".join(GROUP_BY))
    since: Moment | None = Field(None, alias="from", description="answered from (inclusive)")
    until: Moment | None = Field(None, alias="to", description="answered before (exclusive)")
    province_code: ProvinceCode | None = Field(None, description="省份代码")
    office_code: str | None = Field(None, pattern=r"^[0-9]{6}$", description="办案检察院代码")
    aid_grade: int | None = Field(None, ge=1, le=9, description="救助等级 (1 = 一级)")
    tolerance: float = Field(
        DEFAULT_TOLERANCE, gt=0, le=10, description="flag beyond ×(1+t) or ÷(1+t) of the parent"
    )
    min_cases: int = Field(DEFAULT_MIN_CASES, ge=1, le=100_000, description="to be flagged")
    largest: int = Field(20, ge=0, le=200, description="largest deviations listed")

    @field_validator("office_code")
    @classmethod
    def _office_in_province(cls, value: str | None, info: ValidationInfo) -> str | None:
        province = info.data.get("province_code")
        if value is not None and province is not None and value[:2] != province:
            raise ValueError(
                f"office_code {value!r} lies in province {value[:2]!r}, but province_code is "
                f"{province!r}; the office code's first two digits must equal province_code"
            )
        return value


class DeviationFigures(BaseModel):
    """The figures of a set of decisions (granted ÷ reference)."""

    count: int
    ratio_q1: float | None = None
    ratio_median: float | None = None
    ratio_q3: float | None = None
    share_outside_interval: float | None = Field(None, description="outside the 80 % interval")
    share_at_ceiling: float | None = Field(None, description="at the statutory ceiling")


class DeviationGroup(DeviationFigures):
    """One group's figures, compared with its parent (its province for an office, else all)."""

    group: str = Field(description="the group's code or token; empty: the field was not filled")
    label_zh: str
    parent: str = Field(description="a province code, or 'all'")
    parent_median: float | None
    relative_to_parent: float | None = Field(description="the median ÷ the parent's median")
    flag: Literal["generous", "stingy"] | None = Field(description="偏高 / 偏低, or null")
    flag_zh: str
    answers: dict[str, str | int | bool] | None = Field(
        description="the query of GET /v1/predictions that lists this group's answers (null "
        "for the group of answers that left the field empty)"
    )


class DeviationAnswer(BaseModel):
    """A served answer far from its reference (open it at /v1/predictions/{prediction_id})."""

    prediction_id: str
    created_at: dt.datetime
    case_id: str
    province_code: str
    office_code: str | None
    decision_year: int | None
    crime_type: str | None
    harm_outcome: str | None
    granted_yuan: float
    reference_yuan: float
    interval_80_yuan: tuple[float, float]
    ratio_to_reference: float
    outside_interval: bool
    aid_grade: int | None


class DeviationReportOut(BaseModel):
    """同案不同救: served answers with a granted amount, by group, inside the caller's scope."""

    group_by: str
    group_by_zh: str
    scope: str = Field(description="the caller's scope: national or a 2-, 4-, 6-digit code")
    since: dt.datetime | None = Field(None, serialization_alias="from")
    until: dt.datetime | None = Field(None, serialization_alias="to")
    tolerance: float
    min_cases: int
    overall: DeviationFigures
    groups: list[DeviationGroup]
    largest: list[DeviationAnswer]
