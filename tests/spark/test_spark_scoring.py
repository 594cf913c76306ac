"""The champion applied through ``spark_udf`` gives exactly the pyfunc's (score-file's) answers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from training.pyfunc import OUTPUT_COLUMNS, TEXT_COLUMNS, as_pyfunc_input, score_table
from training.registry import configure_tracking, load_bundle
from training.spark_engine import SparkEngineError, SparkOptions, parse_conf, score


def test_udf_scores_equal_the_local_scores(spark: Any, registry: dict[str, Any]) -> None:
    configure_tracking(registry["tracking_uri"])
    history = pd.read_parquet(registry["history"]).head(3000)
    broken = history.copy()
    broken.loc[5, "victim_age"] = 300  # breaks the contract: an error row, the rest scored
    cards = spark.createDataFrame(as_pyfunc_input(broken))
    uri = "models:/judicial-aid@champion"
    remote = score(cards, uri, SparkOptions()).toPandas().set_index("case_id")
    bundle, _ = load_bundle(uri)
    local = score_table(bundle, as_pyfunc_input(broken)).set_index("case_id")
    remote = remote.loc[local.index]
    assert "victim_age" in str(remote.loc[broken.loc[5, "case_id"], "error"])
    assert remote["error"].notna().sum() == local["error"].notna().sum() == 1
    for column in OUTPUT_COLUMNS:
        if column == "case_id":
            continue
        if column in TEXT_COLUMNS:
            same = remote[column].fillna("") == local[column].fillna("")
            assert same.all(), column
        else:
            np.testing.assert_allclose(
                remote[column].astype(float), local[column].astype(float), rtol=0, atol=1e-9
            )


def test_conf_pairs_must_be_key_value() -> None:
    assert parse_conf(["spark.executor.memory=4g"]) == {"spark.executor.memory": "4g"}
    with pytest.raises(SparkEngineError, match=r"spark\.executor\.memory"):
        parse_conf(["spark.executor.memory"])


def test_caller_conf_overrides_the_local_defaults() -> None:
    options = SparkOptions(
        master="local[2]",
        driver_memory="2g",
        shuffle_partitions=8,
        conf={"spark.ui.enabled": "true"},
    )
    settings = options.settings()
    assert settings["spark.ui.enabled"] == "true"
    assert settings["spark.driver.memory"] == "2g"
    assert settings["spark.sql.shuffle.partitions"] == "8"
    assert "spark.driver.host" not in SparkOptions(master="spark://h:7077").settings()
