"""Local Spark (``local[2]``) for the Spark engine's tests.

Skipped where Java or pyspark is missing, unless AIDREC_REQUIRE_SPARK=1 (CI), where their
absence fails the run. One session serves the whole test run: starting the JVM costs seconds.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.parts import missing


def _missing() -> str | None:
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no Java (Spark needs Java 17: apt-get install openjdk-17-jre-headless)"
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "the pyspark package is missing (make setup installs the dev extras)"
    return None


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """A local[2] session, stopped at the end of the run."""
    reason = _missing()
    if reason is not None:
        missing("SPARK", "Spark", reason)
    from training.spark_engine import SparkOptions, spark_session

    session = spark_session(SparkOptions(master="local[2]", shuffle_partitions=4))
    yield session
    session.stop()
