"""Shared fixtures and the Hypothesis profiles (``dev`` locally, ``ci`` under CI=true, ``soak`` on demand)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

import featurelite as fl

# Compiled featurizer kernels go to a folder of this test run, not the user's cache, so
# every run compiles from scratch (as CI does) and leaves nothing behind.
os.environ.setdefault("FEATURELITE_CACHE_DIR", tempfile.mkdtemp(prefix="featurelite-test-cache-"))

# One number of examples locally and in CI (the suite must stay under ten minutes on two
# cores); a soak (HYPOTHESIS_PROFILE=soak) runs every property far longer.
settings.register_profile(
    "dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile(
    "soak", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture
def store():
    with fl.open(":memory:") as s:
        yield s


@pytest.fixture
def file_store(tmp_path):
    with fl.open(tmp_path / "store.duckdb") as s:
        yield s


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """A Spark session in local mode (local[2], UTC, two shuffle partitions, no UI) for one
    test module, stopped after it (pyspark is imported only by the modules that ask)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyspark warns about pandas 3 on import
        from pyspark.sql import SparkSession

        session = (SparkSession.builder.master("local[2]").appName("featurelite-tests")
                   .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false")
                   .config("spark.sql.shuffle.partitions", "2").config("spark.default.parallelism", "2")
                   .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
