"""The engines' tests. The Spark engine's (``test_spark_*.py``) share one local SparkSession
(``local[2]``, the ``spark`` fixture); they are marked ``spark`` (``-m "not spark"`` leaves them
out) and skip, saying why, when pyspark (the ``[spark]`` extra) or a Java runtime is missing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

#: small and quick: two cores, few shuffle partitions, no UI
SPARK_CONF = {
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "1g",
    "spark.sql.adaptive.enabled": "false",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "spark: runs Apache Spark (local[2]; needs pyspark, Java)")
    # pyspark checks the pandas version even where only Arrow is exchanged
    config.addinivalue_line(
        "filterwarnings", "ignore:PySpark does not yet fully support pandas:FutureWarning"
    )


def spark_missing() -> str | None:
    """Why the Spark tests cannot run here, or None."""
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (pip install 'unbacked[spark]')"
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        return "no Java runtime for Spark (apt-get install default-jre-headless)"
    return None


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    reason = spark_missing()
    if reason:
        pytest.skip(reason)
    from unbacked.engine.spark import spark_session

    session = spark_session("local[2]", SPARK_CONF, app_name="unbacked-tests")
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
