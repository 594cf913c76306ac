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

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow.types import DataType

from training.pyfunc import OUTPUT_COLUMNS, TEXT_COLUMNS, signature

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
