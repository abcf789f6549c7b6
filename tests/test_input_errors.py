"""Bad input through the Python API: each case raises a featurelite error that names the
argument and the fix, and leaves the store as it was (issue 10's reproducers, one test
each). The random search for more lives in test_api_fuzz.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

import featurelite as fl
from featurelite.definitions import MAX_TTL

T0 = datetime(2026, 1, 1)
user = fl.Entity("user", join_keys=["user_id"])


@pytest.mark.parametrize("name", ["user\n", "user\r\n", "a b", "", "1abc", "ü", "user\x00"])
def test_names_are_whole_identifiers(name):
    with pytest.raises(fl.DefinitionError, match="is not valid"):
        fl.Entity(name)
    with pytest.raises(fl.DefinitionError, match="is not valid"):
        fl.FeatureView(name, entities=[user], schema={"x": "float64"}, timestamp_field="ts")


@pytest.mark.parametrize("ttl", ["1000000000d", "106751992d", "99999999999999999999w", timedelta(days=999_999_999), MAX_TTL + timedelta(microseconds=1)])
def test_a_ttl_past_the_longest_is_refused_at_definition(ttl):
    with pytest.raises(fl.DefinitionError, match="longest ttl") as caught:
        fl.FeatureView("v", entities=[user], schema={"x": "float64"}, timestamp_field="ts", ttl=ttl)
    assert caught.value.ttl == ttl


def test_the_longest_ttl_serves_training_sets_and_online_reads_at_both_ends_of_time(store):
    view = fl.FeatureView("v", entities=[user], schema={"x": "float64"}, timestamp_field="ts", ttl=MAX_TTL)
    store.apply([user, view])
    first, last = datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999)
    store.ingest("v", pa.table({"user_id": [1, 2], "x": [1.0, 2.0], "ts": pa.array([first, last], pa.timestamp("us"))}))
    spine = pa.table({"user_id": [1, 1, 2], "event_timestamp": pa.array([first, last, last], pa.timestamp("us"))})
    assert store.get_historical_features(spine, ["v:x"]).column("x").to_pylist() == [1.0, 1.0, 2.0]
    assert store.get_online_features({"user_id": [1, 2]}, ["v:x"], now=last).to_dict()["x"] == [1.0, 2.0]
