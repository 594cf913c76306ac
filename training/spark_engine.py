"""Screening on Spark: the champion applied through MLflow's ``spark_udf``, not a second engine.

A provincial or national platform keeps its case cards and the departments' registries in a
Spark/Hadoop estate; this module runs the screening there. Spark does the reading, the
joining and the writing; the model is the same pyfunc that ``mlflow models serve`` and
``score-file`` use (:mod:`training.pyfunc`), so its answers are the local engine's answers.

The session is configured for a machine with no network beyond loopback (driver bound to
127.0.0.1, no UI) unless the caller's ``--conf`` says otherwise; executors run the Python
that runs this module (``PYSPARK_PYTHON``), which on a cluster must hold the same packages
(or use ``env_manager="virtualenv"`` with the model's ``python_env.yaml``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from mlflow.types import DataType

from features.contract import OUTCOME_NAMES, parse_records
from features.department_rules import (
    All,
    Col,
    Compare,
    Condition,
    Const,
    DepartmentRule,
    DepartmentRules,
    IsIn,
    IsNull,
    Not,
    Value,
    department_facts,
)
from features.registries import (
    JOINED_FIELDS,
    REGISTRY_COLUMNS,
    DibaoTable,
    RegistryConfig,
    card_dates,
    join_registries,
)
from features.rules import RULES
from training.bundle import ModelBundle
from training.pyfunc import OUTPUT_COLUMNS, TEXT_COLUMNS, signature
from training.screening import (
    DEPARTMENT_FAILURE_ZH,
    MODEL_KINDS_ZH,
    model_sources,
    rule_sources,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

log = logging.getLogger(__name__)

LOCAL_DEFAULTS: Mapping[str, str] = {
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.ui.enabled": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
}
"""Settings for a session on one machine; any ``--conf`` of the caller overrides them."""

SCORES = "_scores"
"""The struct column the model's UDF fills; flattened into the output columns."""


class SparkEngineError(ValueError):
    """The Spark job cannot run: a missing table, a registry with the wrong schema, bad options."""


@dataclass(frozen=True)
class SparkOptions:
    """How to reach Spark and size the job; every value passes through to the session."""

    master: str = "local[2]"
    driver_memory: str | None = None
    shuffle_partitions: int | None = None
    conf: Mapping[str, str] = field(default_factory=dict)
    env_manager: str = "local"
    """How executors get the model's Python: ``local`` (the same environment) or
    ``virtualenv`` (built from the model's ``python_env.yaml`` on each executor)."""

    def settings(self) -> dict[str, str]:
        """Every Spark setting of the session, the caller's last."""
        out = dict(LOCAL_DEFAULTS) if self.master.startswith("local") else {}
        if self.driver_memory:
            out["spark.driver.memory"] = self.driver_memory
        if self.shuffle_partitions:
            out["spark.sql.shuffle.partitions"] = str(self.shuffle_partitions)
        out.update(self.conf)
        return out


def parse_conf(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs of ``--conf``; a pair without ``=`` is named in the error."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SparkEngineError(f"--conf {pair!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def spark_session(options: SparkOptions) -> SparkSession:
    """A session for the job (or the running one, reconfigured where Spark allows)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if options.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(options.master).appName("aidrec-screen")
    for key, value in options.settings().items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


@contextlib.contextmanager
def spark_for(options: SparkOptions) -> Iterator[SparkSession]:
    """A session for one job, stopped afterwards unless it was already running (a notebook's)."""
    from pyspark.sql import SparkSession

    running = SparkSession.getActiveSession()
    spark = spark_session(options)
    try:
        yield spark
    finally:
        if running is None:
            spark.stop()


def read_source(spark: SparkSession, source: str) -> DataFrame:
    """A path (Parquet file or directory, CSV) or, failing that, a table of the catalogue."""
    path = Path(source)
    if path.suffix.lower() == ".csv":
        return spark.read.csv(str(path), header=True, inferSchema=False)
    if path.exists():
        return spark.read.parquet(str(path))
    if spark.catalog.tableExists(source):
        return spark.table(source)
    raise SparkEngineError(f"{source}: no such file, directory or table")


def model_input(cards: DataFrame) -> list[Column]:
    """The cards' columns in the pyfunc signature's names and types (lists ``|``-joined)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType

    types = {f.name: f.dataType for f in cards.schema.fields}
    columns: list[Column] = []
    for spec in signature().inputs.inputs:
        name = spec.name
        if name is None or name not in types:
            continue
        column = F.col(name)
        if isinstance(types[name], ArrayType):
            column = F.concat_ws("|", column)
        wanted = "double" if spec.type == DataType.double else "string"
        columns.append(column.cast(wanted).alias(name))
    return columns


def score(cards: DataFrame, model_uri: str, options: SparkOptions) -> DataFrame:
    """Every card with the champion's output columns beside it (``error`` for a broken row).

    The UDF's result type is the model signature's output schema (MLflow infers it), so no
    schema is written here: a column the pyfunc adds appears without a change in this module.
    """
    import mlflow.pyfunc
    from pyspark.sql import functions as F

    spark = cards.sparkSession
    udf = mlflow.pyfunc.spark_udf(spark, model_uri, env_manager=options.env_manager)
    inputs = model_input(cards)
    scored = cards.withColumn(SCORES, udf(F.struct(*inputs)))
    produced = [c for c in (*OUTPUT_COLUMNS, "error") if c != "case_id"]
    keep = [c for c in cards.columns if c not in produced]
    return scored.select(*keep, *[_output(c) for c in produced])


def _output(name: str) -> Column:
    """One output column of the UDF's struct.

    MLflow casts a text column holding None to the string ``"nan"`` in a batch where some
    row has text; no output text is ever ``"nan"``, so it is made empty (null) again.
    """
    from pyspark.sql import functions as F

    column = F.col(f"{SCORES}.{name}")
    if name in (*TEXT_COLUMNS, "error"):
        column = F.when(column == "nan", F.lit(None)).otherwise(column)
    return column.alias(name)


# --- the registries, joined as of each card's date ---------------------------------------------

ROW = "_card_row"
DATE = "_card_date"
MATCHED = "_registry_rows"


def check_registries(registries: DataFrame) -> None:
    """Stop before any scoring when the registries table lacks a column, naming every one."""
    missing = [c for c in REGISTRY_COLUMNS if c not in registries.columns]
    if missing:
        raise SparkEngineError(
            f"the registries table lacks column(s) {', '.join(missing)}; "
            f"expected {', '.join(REGISTRY_COLUMNS)}"
        )


def current_snapshots(registries: DataFrame, as_of: dt.date | None) -> dict[str, str]:
    """Each department's snapshot known on ``as_of`` (the latest when none is given)."""
    from pyspark.sql import functions as F

    known = registries.select("department", F.col("snapshot").cast("string").alias("snapshot"))
    if as_of is not None:
        known = known.where(F.col("snapshot") <= F.lit(as_of.isoformat()))
    latest = known.groupBy("department").agg(F.max("snapshot").alias("snapshot")).collect()
    return {str(row["department"]): str(row["snapshot"]) for row in latest}


def card_date(as_of: dt.date | None) -> Column:
    """The date a card's registries are read at (as :func:`features.registries.card_dates`)."""
    from pyspark.sql import functions as F

    if as_of is not None:
        return F.lit(as_of.isoformat()).cast("date")
    year = F.col("decision_year").cast("int").cast("string")
    return F.to_date(F.concat(year, F.lit("-12-31")))


def join_on_spark(
    cards: DataFrame,
    registries: DataFrame,
    as_of: dt.date | None,
    context: JoinContext,
) -> tuple[DataFrame, dict[str, str]]:
    """Cards with what the registries knew of each applicant on its date, and the rules' facts.

    Spark SQL narrows the registries to the rows valid on each card's date for its person
    (an equi-join on ``person_key`` and a range condition on the dates, over the snapshots
    current on ``as_of``); each batch of cards then goes through the local engine's own
    functions with its rows (:func:`features.registries.join_registries`, then
    :func:`features.department_rules.department_facts`, as ``fact_<name>`` columns), so what a
    card gets is defined once, for both engines. The joined fields replace the card's.
    """
    from pyspark.sql import functions as F

    check_registries(registries)
    snapshots = current_snapshots(registries, as_of)
    wanted = F.lit(False)
    for department, snapshot in snapshots.items():
        wanted = wanted | (
            (F.col("department") == department) & (F.col("snapshot").cast("string") == snapshot)
        )
    current = registries.where(wanted).select(
        "department",
        "person_key",
        "status",
        F.col("valid_from").cast("string").alias("valid_from"),
        F.col("valid_to").cast("string").alias("valid_to"),
        "attributes",
    )
    keyed = cards.withColumn(ROW, F.monotonically_increasing_id()).withColumn(
        DATE, card_date(as_of)
    )
    on_date = (F.col("r.valid_from").cast("date") <= F.col(f"c.{DATE}")) & (
        F.col("r.valid_to").isNull() | (F.col("r.valid_to").cast("date") >= F.col(f"c.{DATE}"))
    )
    matched = (
        keyed.select(ROW, "person_key", DATE)
        .alias("c")
        .join(current.alias("r"), F.col("c.person_key") == F.col("r.person_key"))
        .where(on_date)
        .groupBy(F.col(f"c.{ROW}").alias(ROW))
        .agg(F.collect_list(F.struct(*[f"r.{c}" for c in _MATCHED_FIELDS])).alias(MATCHED))
    )
    with_rows = keyed.join(matched, ROW, "left")
    step = functools.partial(_joined_batch, snapshots=snapshots, context=context, as_of=as_of)
    empty = cards.limit(0).toPandas().assign(**{MATCHED: pd.Series([], dtype=object)})
    schema = _schema_of(step(empty), cards)
    names = [f.name for f in schema.fields]
    batches = functools.partial(_join_batches, step=step, names=names)
    return with_rows.mapInPandas(batches, schema), snapshots


@dataclass(frozen=True)
class JoinContext:
    """What the join, the facts and the sources read besides the cards."""

    registry_config: RegistryConfig
    dibao: DibaoTable
    rules: DepartmentRules


_MATCHED_FIELDS = ("department", "person_key", "status", "valid_from", "valid_to", "attributes")
FACT = "fact_"
"""Prefix of the department rules' facts in the joined cards (they share names with fields)."""


def _join_batches(
    batches: Iterator[pd.DataFrame],
    step: Callable[[pd.DataFrame], pd.DataFrame],
    names: list[str],
) -> Iterator[pd.DataFrame]:
    for batch in batches:
        yield step(batch)[names]


def _joined_batch(
    batch: pd.DataFrame,
    snapshots: dict[str, str],
    context: JoinContext,
    as_of: dt.date | None,
) -> pd.DataFrame:
    """One batch of cards (with their matched rows) through the local engine's join and facts."""
    cards = batch.drop(columns=[ROW, DATE, MATCHED], errors="ignore").reset_index(drop=True)
    inputs = cards.drop(columns=[c for c in OUTCOME_NAMES if c in cards.columns])
    if "registry_flags" in inputs:
        inputs = inputs.assign(registry_flags=inputs["registry_flags"].map(_flags_text))
    canonical = parse_records(inputs, scoring=True).frame.reset_index(drop=True)
    matched = batch[MATCHED] if MATCHED in batch else pd.Series([None] * len(batch))
    found = [row for rows in matched if isinstance(rows, list | np.ndarray) for row in rows]
    frame = pd.DataFrame([dict(row) for row in found], columns=list(_MATCHED_FIELDS))
    rows = {
        str(department): part.drop(columns="department").reset_index(drop=True)
        for department, part in frame.groupby("department")
    }
    dates = card_dates(canonical["decision_year"].to_numpy(dtype=float), as_of)
    joined = join_registries(canonical, rows, snapshots, dates, context.registry_config)
    facts = department_facts(canonical, joined, context.dibao).add_prefix(FACT)
    every = np.arange(len(canonical))
    sources = {MODEL_SOURCES: model_sources(joined, every)}
    for rule in context.rules.rules:
        sources[_sources_of(rule)] = rule_sources(
            rule, joined, snapshots, context.registry_config, context.dibao.version, every
        )
    return pd.concat(
        [
            cards.drop(columns=list(JOINED_FIELDS)),
            joined,
            facts,
            pd.DataFrame(sources, dtype=object),
        ],
        axis=1,
    )


MODEL_SOURCES = "_sources_model"


def _sources_of(rule: DepartmentRule) -> str:
    """The column holding each card's 数据来源 should ``rule`` fire on it."""
    return f"_sources_{rule.id}"


def _flags_text(value: Any) -> Any:
    """A card's flags as ``|``-joined text (Parquet keeps them as a list)."""
    if isinstance(value, list | tuple | np.ndarray):
        return "|".join(str(v) for v in value)
    return value


def _schema_of(example: pd.DataFrame, cards: DataFrame) -> Any:
    """The joined cards' schema: the cards' own columns as they were, the join's as text/double."""
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    own = {f.name: f for f in cards.schema.fields}
    fields = []
    for name, dtype in example.dtypes.items():
        if name in own and name not in JOINED_FIELDS:
            fields.append(own[str(name)])
        else:
            numeric = np.issubdtype(dtype, np.number) if isinstance(dtype, np.dtype) else False
            fields.append(StructField(str(name), DoubleType() if numeric else StringType(), True))
    return StructType(fields)


# --- the department-failure rules as Spark columns ----------------------------------------------

_SPARK_COMPARE = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
}


def spark_value(node: Value, column: Callable[[str], Column], numeric: set[str]) -> Column:
    """A value node of a department rule as a Spark column (NaN read as unknown, like numpy)."""
    from pyspark.sql import functions as F

    if isinstance(node, Col):
        source = column(node.name)
        if node.name in numeric:
            return F.when(F.isnan(source), F.lit(None)).otherwise(source)
        return source
    if isinstance(node, Const):
        return F.lit(node.value)
    left = spark_value(node.left, column, numeric)
    right = spark_value(node.right, column, numeric)
    if node.op == "add":
        return left + right
    if node.op == "sub":
        return left - right
    if node.op == "mul":
        return left * right
    return F.try_divide(left, right)  # a division by zero is unknown, as in the rule's text


def spark_condition(node: Condition, column: Callable[[str], Column], numeric: set[str]) -> Column:
    """A condition node as a Spark column; Spark's three-valued logic is the rules' own."""
    if isinstance(node, Compare):
        left = spark_value(node.left, column, numeric)
        right = spark_value(node.right, column, numeric)
        result: Column = _SPARK_COMPARE[node.op](left, right)
        return result
    if isinstance(node, IsNull):
        return spark_value(node.operand, column, numeric).isNull()
    if isinstance(node, IsIn):
        return spark_value(node.operand, column, numeric).isin(list(node.values))
    if isinstance(node, Not):
        return ~spark_condition(node.item, column, numeric)
    parts = [spark_condition(item, column, numeric) for item in node.items]
    combined = parts[0]
    for part in parts[1:]:
        combined = (combined & part) if isinstance(node, All) else (combined | part)
    return combined


def fires(node: Condition, column: Callable[[str], Column], numeric: set[str]) -> Column:
    """Where a rule fires: its condition known true (unknown counts as not firing)."""
    from pyspark.sql import functions as F

    return F.coalesce(spark_condition(node, column, numeric), F.lit(False))


# --- the screening run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SparkScreening:
    """What a Spark screening run wrote and found."""

    leads_path: Path
    errors_path: Path
    cards: int
    refused: int
    leads_by_kind: dict[str, int]

    @property
    def leads(self) -> int:
        """Leads written (one per case and kind)."""
        return sum(self.leads_by_kind.values())


@dataclass(frozen=True)
class SparkJob:
    """One screening run on Spark: its inputs, its model and where it writes."""

    cards: str
    registries: str
    out: Path
    model_uri: str
    run_id: str
    as_of: dt.date | None
    options: SparkOptions


def screen_on_spark(
    spark: SparkSession,
    job: SparkJob,
    bundle: ModelBundle,
    context: JoinContext,
) -> SparkScreening:
    """The local engine's screening (:class:`training.screening.Screener`) on Spark.

    Reads the cards and the registries (paths or tables), joins them as of each card's date
    (:func:`join_on_spark`; a registries table with the wrong schema stops the job before any
    scoring), applies the champion through ``spark_udf`` and the department-failure rules as
    Spark columns, and writes the leads (the local engine's columns, partitioned by
    ``province_code``, highest priority first within each partition) and the refused cards
    (``errors``: case id and the field and rule each broke).
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    cards = read_source(spark, job.cards)
    registries = read_source(spark, job.registries)
    joined, _ = join_on_spark(cards, registries, job.as_of, context)
    scored = score(joined, job.model_uri, job.options)
    scored = scored.withColumns(
        {_rounded_name(t): _rounded(F.col(f"p_{t}")) for t in bundle.lead_thresholds}
    ).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        valid = scored.where(F.col("error").isNull())
        parts = [
            _model_leads(valid, target, threshold, bundle, job.run_id)
            for target, threshold in bundle.lead_thresholds.items()
        ]
        facts = {f.name for f in joined.schema.fields if f.name.startswith(FACT)}
        numeric = {
            f.name[len(FACT) :]
            for f in joined.schema.fields
            if f.name in facts and f.dataType.typeName() == "double"
        }
        parts += [
            _rule_leads(valid, rule, context.rules.version, numeric, bundle, job.run_id)
            for rule in context.rules.rules
        ]
        leads = functools.reduce(lambda a, b: a.unionByName(b), parts)
        leads_path, errors_path = job.out / "leads", job.out / "errors"
        (
            leads.repartition("province_code")
            .sortWithinPartitions(F.desc("priority"), "case_id", "kind")
            .write.mode("overwrite")
            .partitionBy("province_code")
            .parquet(str(leads_path))
        )
        errors = scored.where(F.col("error").isNotNull()).select("case_id", "error")
        errors.write.mode("overwrite").parquet(str(errors_path))
        total = scored.count()
        refused = spark.read.parquet(str(errors_path)).count()
        by_kind = {
            str(row["kind"]): int(row["count"])
            for row in spark.read.parquet(str(leads_path)).groupBy("kind").count().collect()
        }
    finally:
        scored.unpersist()
    log.info(
        "screened %d cards on Spark: %d leads, %d refused", total, sum(by_kind.values()), refused
    )
    return SparkScreening(leads_path, errors_path, total, refused, by_kind)


@functools.cache
def _round6() -> Any:
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("double")  # type: ignore[call-overload]
    def round6(values: pd.Series) -> pd.Series:
        return values.round(6)

    return round6


def _rounded_name(target: str) -> str:
    return f"_p_{target}_6"


def _rounded(column: Column) -> Column:
    """Rounded to 6 decimals by numpy, exactly as the local engine rounds (half to even)."""
    result: Column = _round6()(column)
    return result


def _common() -> list[Column]:
    from pyspark.sql import functions as F

    return [
        F.col("person_key").cast("string").alias("person_key"),
        F.col("province_code").cast("string").alias("province_code"),
        F.col("office_code").cast("string").alias("office_code"),
        F.col("decision_year").cast("double").alias("decision_year"),
        F.col("p_judicial_aid").alias("p_judicial_aid"),
    ]


def _tail(run_id: str, bundle: ModelBundle) -> list[Column]:
    from pyspark.sql import functions as F

    return [
        F.lit(bundle.policy.version).alias("policy_version"),
        F.lit(f"screening:{run_id}").alias("origin"),
        F.lit(None).cast("string").alias("error"),
    ]


def _model_leads(
    valid: DataFrame, target: str, threshold: float, bundle: ModelBundle, run_id: str
) -> DataFrame:
    """One lead per card whose calibrated probability reaches the policy's threshold."""
    from pyspark.sql import functions as F

    probability = F.col(f"p_{target}")
    names = F.create_map(*[F.lit(v) for rule in RULES for v in (rule.id, rule.zh)])
    ids = F.when(F.col("rule_hits") == "", F.array().cast("array<string>")).otherwise(
        F.split(F.col("rule_hits"), ";")
    )
    hits = F.transform(ids, lambda i: F.struct(i.alias("id"), F.coalesce(names[i], i).alias("zh")))
    reasons = F.to_json(
        F.struct(
            F.bround(probability, 4).alias("probability"),
            F.lit(round(float(threshold), 4)).alias("threshold"),
            F.col("eligibility_status").alias("eligibility_status"),
            hits.alias("rule_hits"),
            F.array().cast("array<string>").alias("top"),  # no contributions on Spark
            F.lit("log-odds").alias("contribution_unit"),
        )
    )
    return valid.where(probability >= F.lit(float(threshold))).select(
        "case_id",
        F.lit(target).alias("kind"),
        F.lit(MODEL_KINDS_ZH.get(target, target)).alias("kind_zh"),
        F.col(_rounded_name(target)).alias("score"),
        F.col(_rounded_name(target)).alias("priority"),
        *_common(),
        reasons.alias("reasons"),
        F.col(MODEL_SOURCES).alias("sources"),
        *_tail(run_id, bundle),
    )


def _rule_leads(
    valid: DataFrame,
    rule: DepartmentRule,
    version: str,
    numeric: set[str],
    bundle: ModelBundle,
    run_id: str,
) -> DataFrame:
    """One lead per card where a department-failure rule fires, with the facts it read."""
    from pyspark.sql import functions as F

    def fact(name: str) -> Column:
        return F.col(f"{FACT}{name}")

    facts = F.struct(*[spark_value(Col(name), fact, numeric).alias(name) for name in rule.facts])
    reasons = F.to_json(
        F.struct(
            F.lit(rule.id).alias("rule"),
            F.lit(rule.zh).alias("rule_zh"),
            F.lit(rule.act_department_zh).alias("act_department_zh"),
            F.lit(version).alias("rules_version"),
            facts.alias("facts"),
        ),
        {"ignoreNullFields": "false"},
    )
    return valid.where(fires(rule.when, fact, numeric)).select(
        "case_id",
        F.lit(rule.kind).alias("kind"),
        F.lit(f"{DEPARTMENT_FAILURE_ZH}：{rule.zh}").alias("kind_zh"),
        F.lit(None).cast("double").alias("score"),
        F.col(_rounded_name("judicial_aid")).alias("priority"),
        *_common(),
        reasons.alias("reasons"),
        F.col(_sources_of(rule)).alias("sources"),
        *_tail(run_id, bundle),
    )
