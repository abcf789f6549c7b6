"""Shared fixtures and the Hypothesis profiles (``dev`` locally, ``ci`` under CI=true, ``soak`` on demand)."""

from __future__ import annotations

import os
import tempfile

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
