"""featurelite.spark at the edges: windowed aggregations, split_keys_by and as_of against
``store.get_historical_features`` bit for bit (times before 1970 and at the years 1 and
9999, bucket edges, 1us and 3650-day windows, ties decided by created time and ingest
order, NaN payloads, int overflow, bool, string and two-column keys, empty histories,
pinned versions), and bad input that gets a featurelite error naming the fix.

The cases marked "Once a bug" were found by an adversarial review and fixed; each says
what went wrong, so the test keeps it fixed."""

from __future__ import annotations

import math
import struct
import warnings
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from spark_helpers import assert_same_bits, collect, frame

import featurelite as fl

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from featurelite import spark as fls

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
UTC = pa.timestamp("us", tz="UTC")


def times(*moments: Any) -> pa.Array:
    return pa.array(list(moments), UTC)


def both(spark: SparkSession, folder: Path, definitions: Sequence[Any], ingests: Sequence[tuple[str, pa.Table]],
         spine: pa.Table, features: Any = None, *, spark_spine: Any = None, **kwargs: Any) -> tuple[pa.Table, pa.Table]:
    """(Spark's table, the store's table) for the same request."""
    split = kwargs.pop("split_keys_by", None)
    with fl.open(folder / "s.duckdb") as store:
        store.apply(list(definitions))
        for view, table in ingests:
            store.ingest(view, table)
        expected = store.get_historical_features(spine, features, **kwargs)
        store.export(folder / "export")
    entity = spark_spine if spark_spine is not None else frame(spark, spine)
    got = collect(fls.get_historical_features(spark, entity, features, history=folder / "export",
                                              split_keys_by=split, **kwargs))
    return got, expected


user = fl.Entity("user", join_keys=["user_id"])
ALL = ("sum", "mean", "std", "var", "min", "max", "last", "count")


def agg_view(window: str, *, ttl: str | None = None, created: bool = False, extra: Sequence[Any] = ()) -> Any:
    return fl.FeatureView(
        "v", entities=[user], timestamp_field="ts", created_timestamp_field="created" if created else None, ttl=ttl,
        schema={"x": "float64"},
        aggregations=[*(fl.Aggregation("x", f, window, name=f"x_{f}") for f in ALL), *extra],
    )


FEATS = ["v:x", *(f"v:x_{f}" for f in ALL)]


# -- time bounds ---------------------------------------------------------------------------


@pytest.mark.parametrize("base", [
    datetime(1969, 12, 31, 23, 0, tzinfo=timezone.utc),
    datetime(1, 1, 1, 1, tzinfo=timezone.utc),
])
def test_pre_1970_and_bound_years(spark, tmp_path, base):
    view = agg_view("2h", ttl="90m")
    history = pa.table({"user_id": pa.array([1, 1, 1, 2], pa.int64()), "x": [1.5, 2.0, -0.0, 7.0],
                        "ts": times(base, base + timedelta(minutes=30), base + timedelta(hours=2), base)})
    spine = pa.table({"user_id": pa.array([1, 1, 1, 2, 3], pa.int64()),
                      "event_timestamp": times(base + timedelta(minutes=10), base + timedelta(hours=2),
                                               base + timedelta(hours=3, minutes=59, seconds=59), base, base)})
    got, expected = both(spark, tmp_path, [user, view], [("v", history)], spine, FEATS, split_keys_by="1h")
    assert_same_bits(got, expected)


def test_events_far_before_and_windows_of_3650_days(spark, tmp_path):
    view = agg_view("3650d")
    history = pa.table({"user_id": pa.array([1, 1, 1], pa.int64()), "x": [1.0, 2.0, 4.0],
                        "ts": times(datetime(1961, 1, 1, tzinfo=timezone.utc), T0 - timedelta(days=3650),
                                    T0 - timedelta(days=3649))})
    spine = pa.table({"user_id": pa.array([1, 1, 1], pa.int64()),
                      "event_timestamp": times(T0, T0 - timedelta(days=1), datetime(1970, 1, 1, tzinfo=timezone.utc))})
    got, expected = both(spark, tmp_path, [user, view], [("v", history)], spine, FEATS, split_keys_by="3650d")
    assert_same_bits(got, expected)


def test_one_microsecond_windows(spark, tmp_path):
    us = timedelta(microseconds=1)
    view = agg_view("1us")
    history = pa.table({"user_id": pa.array([1, 1, 1, 1], pa.int64()), "x": [1.0, 2.0, 3.0, 5.0],
                        "ts": times(T0, T0, T0 + us, T0 + 3 * us)})
    spine = pa.table({"user_id": pa.array([1] * 5, pa.int64()),
                      "event_timestamp": times(T0 - us, T0, T0 + us, T0 + 2 * us, T0 + 3 * us)})
    got, expected = both(spark, tmp_path, [user, view], [("v", history)], spine, FEATS, split_keys_by="1us")
    assert_same_bits(got, expected)


def test_entity_times_exactly_a_window_after_events_at_bucket_edges(spark, tmp_path):
    """Window 1h: buckets of 4h since the epoch; events at and just before bucket edges,
    entity rows exactly w after them and at the edges."""
    us = timedelta(microseconds=1)
    edge = datetime(2026, 1, 1, 4, tzinfo=timezone.utc)  # a multiple of 4h since the epoch
    assert (edge - datetime(1970, 1, 1, tzinfo=timezone.utc)) % timedelta(hours=4) == timedelta(0)
    h = timedelta(hours=1)
    view = agg_view("1h")
    events = [edge - h, edge - h + us, edge - us, edge, edge + us, edge + 4 * h - us]
    history = pa.table({"user_id": pa.array([1] * len(events), pa.int64()),
                        "x": [float(2 ** i) for i in range(len(events))], "ts": times(*events)})
    asked = [edge - h, edge - us, edge, edge + us, edge + h - us, edge + h, edge + h + us, edge + 4 * h - us,
             edge + 4 * h, edge + 5 * h - us, edge + 5 * h, edge - 4 * h]
    spine = pa.table({"user_id": pa.array([1] * len(asked), pa.int64()), "event_timestamp": times(*asked)})
    got, expected = both(spark, tmp_path, [user, view], [("v", history)], spine, FEATS)
    assert_same_bits(got, expected)


def test_bucket_edges_before_1970(spark, tmp_path):
    us = timedelta(microseconds=1)
    edge = datetime(1969, 12, 31, 20, tzinfo=timezone.utc)  # -4h: a bucket edge
    h = timedelta(hours=1)
    view = agg_view("1h")
    events = [edge - h, edge - us, edge, edge + 3 * h + us]
    history = pa.table({"user_id": pa.array([1] * len(events), pa.int64()),
                        "x": [1.0, 2.0, 4.0, 8.0], "ts": times(*events)})
    asked = [edge - us, edge, edge + h - us, edge + h, edge + 4 * h, edge + 4 * h + h - us]
    spine = pa.table({"user_id": pa.array([1] * len(asked), pa.int64()), "event_timestamp": times(*asked)})
    got, expected = both(spark, tmp_path, [user, view], [("v", history)], spine, FEATS)
    assert_same_bits(got, expected)


# -- keys ----------------------------------------------------------------------------------


def test_two_key_view_int_and_string_keys_with_nulls_and_missing_keys(spark, tmp_path):
    shop = fl.Entity("shop", join_keys=["shop"], dtype="string")
    view = fl.FeatureView("v", entities=[user, shop], timestamp_field="ts", schema={"x": "int32", "s": "string"},
                          aggregations=[fl.Aggregation("x", "sum", "2h"), fl.Aggregation("s", "last", "2h"),
                                        fl.Aggregation("x", "max", "1h"), fl.Aggregation("s", "count", "1h")])
    history = pa.table({"user_id": pa.array([1, 1, 1, 2, 1], pa.int64()),
                        "shop": pa.array(["a", "b", "a", "a", ""]),
                        "x": pa.array([1, 2, None, 4, 8], pa.int32()), "s": pa.array(["p", None, "q", "r", "é"]),
                        "ts": times(T0, T0, T0 + timedelta(minutes=30), T0, T0)})
    spine = pa.table({"user_id": pa.array([1, 1, None, 1, 2, 9, 1], pa.int64()),
                      "shop": pa.array(["a", "b", "a", None, "a", "a", ""]),
                      "event_timestamp": times(*[T0 + timedelta(hours=1)] * 7)})
    features = ["v:x", "v:s", "v:x_sum_2h", "v:s_last_2h", "v:x_max_1h", "v:s_count_1h"]
    got, expected = both(spark, tmp_path, [user, shop, view], [("v", history)], spine, features, split_keys_by="30m")
    assert_same_bits(got, expected)


def test_bool_join_keys(spark, tmp_path):
    flag = fl.Entity("flag", join_keys=["flag"], dtype="bool")
    view = fl.FeatureView("v", entities=[flag], timestamp_field="ts", schema={"x": "int64"},
                          aggregations=[fl.Aggregation("x", "sum", "2h"), fl.Aggregation("x", "last", "2h")])
    history = pa.table({"flag": pa.array([True, False, True]), "x": pa.array([1, 2, 4], pa.int64()),
                        "ts": times(T0, T0, T0 + timedelta(minutes=1))})
    spine = pa.table({"flag": pa.array([True, False, None, True]),
                      "event_timestamp": times(T0 + timedelta(hours=1), T0, T0, T0 + timedelta(hours=3))})
    got, expected = both(spark, tmp_path, [flag, view], [("v", history)], spine,
                         ["v:x", "v:x_sum_2h", "v:x_last_2h"], split_keys_by="1h")
    assert_same_bits(got, expected)


def test_entity_rows_with_null_event_times(spark, tmp_path):
    view = agg_view("1h")
    history = pa.table({"user_id": pa.array([1], pa.int64()), "x": [1.0], "ts": times(T0)})
    spine = pa.table({"user_id": pa.array([1, 1, None], pa.int64()), "event_timestamp": times(None, T0, None)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got, expected = both(spark, tmp_path, [user, view], [("v", history)], spine, FEATS)
    assert_same_bits(got, expected)


# -- empty and degenerate histories -----------------------------------------------------------


def test_a_view_with_no_rows_and_aggregations(spark, tmp_path):
    view = agg_view("1h", created=True)
    spine = pa.table({"user_id": pa.array([1, None], pa.int64()), "event_timestamp": times(T0, T0)})
    got, expected = both(spark, tmp_path, [user, view], [], spine, FEATS, split_keys_by="1h")
    assert_same_bits(got, expected)


def test_a_view_with_no_rows_given_as_an_empty_dataframe(spark, tmp_path):
    view = agg_view("1h")
    spine = pa.table({"user_id": pa.array([1], pa.int64()), "event_timestamp": times(T0)})
    with fl.open(tmp_path / "s.duckdb") as store:
        store.apply([user, view])
        expected = store.get_historical_features(spine, FEATS)
    empty = spark.createDataFrame([], "user_id bigint, x double, ts timestamp, _fl_seq bigint")
    got = collect(fls.get_historical_features(spark, frame(spark, spine), FEATS, history={"v": empty},
                                              registry=tmp_path / "s.duckdb"))
    assert_same_bits(got, expected)


def test_integer_sum_overflow_wraps_and_int32_columns(spark, tmp_path):
    big = 2 ** 62
    view = fl.FeatureView("v", entities=[user], timestamp_field="ts", schema={"a": "int64", "b": "int32"},
                          aggregations=[fl.Aggregation(c, f, "1h") for c in "ab" for f in ALL])
    history = pa.table({"user_id": pa.array([1] * 4, pa.int64()),
                        "a": pa.array([big, big, big, -5], pa.int64()),
                        "b": pa.array([2 ** 31 - 1, 2 ** 31 - 1, -2 ** 31, 3], pa.int32()),
                        "ts": times(T0, T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2))})
    spine = pa.table({"user_id": pa.array([1, 1, 1], pa.int64()),
                      "event_timestamp": times(T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2))})
    feats = [f"v:{c}_{f}_1h" for c in "ab" for f in ALL]
    got, expected = both(spark, tmp_path, [user, view], [("v", history)], spine, feats)
    assert_same_bits(got, expected)


def test_float32_columns_with_nan_and_negative_zero(spark, tmp_path):
    view = fl.FeatureView("v", entities=[user], timestamp_field="ts", schema={"f": "float32"},
                          aggregations=[fl.Aggregation("f", fn, "1h") for fn in ALL])
    history = pa.table({"user_id": pa.array([1] * 6, pa.int64()),
                        "f": pa.array([0.1, -0.0, 0.0, math.nan, 3.4e38, 3.4e38], pa.float32()),
                        "ts": times(*(T0 + timedelta(minutes=m) for m in range(6)))})
    spine = pa.table({"user_id": pa.array([1] * 6, pa.int64()),
                      "event_timestamp": times(*(T0 + timedelta(minutes=m) for m in range(6)))})
    got, expected = both(spark, tmp_path, [user, view], [("v", history)], spine,
                         ["v:f", *(f"v:f_{fn}_1h" for fn in ALL)], split_keys_by="2m")
    assert_same_bits(got, expected)


# -- ties -----------------------------------------------------------------------------------


def test_last_min_max_ties_decided_by_created_then_ingest_order(spark, tmp_path):
    """Rows at the same event time: created time decides (a missing one first), then the
    ingest order; several ingests."""
    view = fl.FeatureView(
        "v", entities=[user], timestamp_field="ts", created_timestamp_field="created", schema={"x": "float64",
                                                                                                 "s": "string"},
        aggregations=[*(fl.Aggregation("x", f, "1h", name=f"x_{f}") for f in ALL), fl.Aggregation("s", "last", "1h")],
    )

    def batch(xs: list[float], ss: list[str | None], created: list[Any]) -> pa.Table:
        return pa.table({"user_id": pa.array([1] * len(xs), pa.int64()), "x": xs, "s": pa.array(ss, pa.string()),
                         "ts": times(*[T0] * len(xs)), "created": times(*created)})

    c1, c2 = T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)
    ingests = [("v", batch([5.0, 1.0, 3.0], ["late-created", "null-created", "first"], [c2, None, c1])),
               ("v", batch([2.0, 4.0], [None, "again"], [c2, None])),
               ("v", batch([5.0], ["second-ingest-same-created"], [c2]))]
    spine = pa.table({"user_id": pa.array([1, 1], pa.int64()), "event_timestamp": times(T0, T0 + timedelta(minutes=59))})
    feats = ["v:x", "v:s", *(f"v:x_{f}" for f in ALL), "v:s_last_1h"]
    for split in (None, "1us"):
        folder = tmp_path / str(split)
        folder.mkdir()
        got, expected = both(spark, folder, [user, view], ingests, spine, feats, split_keys_by=split)
        assert_same_bits(got, expected)


# -- several views, on-demand, full names ------------------------------------------------------


@fl.featurizer
def ratio(x: float, y_total: int) -> float:
    return x / y_total if y_total else -1.0


def test_two_views_on_demand_over_aggregates_full_feature_names(spark, tmp_path):
    shop = fl.Entity("shop", join_keys=["shop_id"], dtype="int32")
    a = fl.FeatureView("a", entities=[user], timestamp_field="ts", ttl="1h", schema={"x": "float64"},
                       aggregations=[fl.Aggregation("x", "sum", "2h", name="x_sum")])
    b = fl.FeatureView("b", entities=[shop], timestamp_field="ts", schema={"y": "int64"},
                       aggregations=[fl.Aggregation("y", "sum", "30m", name="y_total"),
                                     fl.Aggregation("y", "count", "3h", name="x_sum")])
    od = fl.OnDemandFeatureView("od", sources=[a, b], featurizers={"r": ratio})
    ha = pa.table({"user_id": pa.array([1, 1, 2], pa.int64()), "x": [1.0, 2.0, 3.0],
                   "ts": times(T0, T0 + timedelta(hours=1), T0)})
    hb = pa.table({"shop_id": pa.array([1, 1, 2], pa.int32()), "y": pa.array([3, 4, 0], pa.int64()),
                   "ts": times(T0, T0 + timedelta(minutes=45), T0)})
    spine = pa.table({"user_id": pa.array([1, 1, 2, 3], pa.int64()), "shop_id": pa.array([1, 1, 2, 1], pa.int32()),
                      "event_timestamp": times(T0 + timedelta(minutes=50), T0 + timedelta(hours=2), T0, T0)})
    feats = ["od:r", "a:x_sum", "b:x_sum", "b:y_total", "a:x"]
    got, expected = both(spark, tmp_path, [user, shop, a, b, od], [("a", ha), ("b", hb)], spine, feats,
                         full_feature_names=True)
    assert_same_bits(got, expected)


def test_a_service_pinning_an_older_version_with_other_aggregations(spark, tmp_path):
    old = fl.FeatureView("v", entities=[user], timestamp_field="ts", schema={"x": "float64"},
                         aggregations=[fl.Aggregation("x", "sum", "1h", name="agg"),
                                       fl.Aggregation("x", "max", "10m", name="peak")])
    new = fl.FeatureView("v", entities=[user], timestamp_field="ts", schema={"x": "float64", "z": "int64"},
                         aggregations=[fl.Aggregation("x", "mean", "3h", name="agg")])
    service = fl.FeatureService("svc", ["v:agg", "v:peak", "v:x"])
    history = pa.table({"user_id": pa.array([1, 1, 1], pa.int64()), "x": [1.0, 10.0, 100.0],
                        "ts": times(T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2))})
    spine = pa.table({"user_id": pa.array([1, 1], pa.int64()),
                      "event_timestamp": times(T0 + timedelta(hours=2), T0 + timedelta(minutes=30))})
    with fl.open(tmp_path / "s.duckdb") as store:
        store.apply([user, old, service])
        store.ingest("v", history)
        store.apply([new])
        store.ingest("v", pa.table({"user_id": pa.array([1], pa.int64()), "x": [1000.0], "z": pa.array([1]),
                                    "ts": times(T0 + timedelta(hours=2))}))
        expected = store.get_historical_features(spine, service="svc")
        current = store.get_historical_features(spine, ["v:agg", "v:z"])
        store.export(tmp_path / "export")
    got = collect(fls.get_historical_features(spark, frame(spark, spine), service="svc", history=tmp_path / "export"))
    assert_same_bits(got, expected)
    got = collect(fls.get_historical_features(spark, frame(spark, spine), ["v:agg", "v:z"],
                                              history=tmp_path / "export"))
    assert_same_bits(got, current)


# -- split_keys_by --------------------------------------------------------------------------


@pytest.mark.parametrize("split,ttl", [("1us", "30m"), ("1s", None), ("3650d", "30m")])
def test_split_keys_by_small_and_large_ranges_with_ttl_created_and_ties(spark, tmp_path, split, ttl):
    view = fl.FeatureView("v", entities=[user], timestamp_field="ts", created_timestamp_field="created", ttl=ttl,
                          schema={"x": "float64", "s": "string"})
    us = timedelta(microseconds=1)
    history = pa.table({
        "user_id": pa.array([1, 1, 1, 1, 2, 2], pa.int64()),
        "x": [1.0, 2.0, 3.0, None, -0.0, math.nan],
        "s": pa.array(["a", "b", None, "d", "e", "f"]),
        "ts": times(T0, T0, T0 + us, T0 + timedelta(hours=1), T0 - timedelta(days=5), T0 - timedelta(days=5)),
        "created": times(T0 + us, None, None, T0, None, None),
    })
    spine = pa.table({"user_id": pa.array([1, 1, 1, 1, 2, 2, 3], pa.int64()),
                      "event_timestamp": times(T0, T0 + us, T0 + timedelta(minutes=40), T0 + timedelta(hours=3),
                                               T0 - timedelta(days=5), T0, T0)})
    got, expected = both(spark, tmp_path, [user, view], [("v", history)], spine, ["v:x", "v:s"], split_keys_by=split)
    assert_same_bits(got, expected)


def test_duplicate_entity_rows(spark, tmp_path):
    view = agg_view("1h", ttl="2h")
    history = pa.table({"user_id": pa.array([1, 1], pa.int64()), "x": [1.0, 2.0],
                        "ts": times(T0, T0 + timedelta(minutes=5))})
    spine = pa.table({"user_id": pa.array([1, 1, 1, 1], pa.int64()),
                      "event_timestamp": times(T0 + timedelta(minutes=5), T0 + timedelta(minutes=5), T0,
                                               T0 + timedelta(minutes=5))})
    got, expected = both(spark, tmp_path, [user, view], [("v", history)], spine, FEATS, split_keys_by="1m")
    assert_same_bits(got, expected)


# -- as_of ----------------------------------------------------------------------------------


def test_as_of_after_a_later_ingest_with_aggregations_ties_and_created(spark, tmp_path):
    view = agg_view("1h", created=True)
    spine = pa.table({"user_id": pa.array([1, 1, 2], pa.int64()),
                      "event_timestamp": times(T0, T0 + timedelta(minutes=30), T0)})

    def rows(xs: list[float], created: list[Any]) -> pa.Table:
        return pa.table({"user_id": pa.array([1] * len(xs), pa.int64()), "x": xs, "ts": times(*[T0] * len(xs)),
                         "created": times(*created)})

    with fl.open(tmp_path / "s.duckdb") as store:
        store.apply([user, view])
        store.ingest("v", rows([1.0, 2.0], [None, None]))
        original = store.get_historical_features(spine, FEATS)
        manifest = fl.Manifest.from_table(original)
        store.ingest("v", rows([3.0, 4.0], [None, T0]))  # a later tie that wins
        rebuilt = store.get_historical_features(spine, as_of=manifest)
        store.export(tmp_path / "export")
    got = collect(fls.get_historical_features(spark, frame(spark, spine), history=tmp_path / "export",
                                              as_of=manifest, split_keys_by="1us"))
    assert_same_bits(got, rebuilt)
    assert_same_bits(got, original)


# -- bad input ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("small")
    with fl.open(folder / "s.duckdb") as store:
        store.apply([user, agg_view("1h")])
        store.ingest("v", pa.table({"user_id": pa.array([1], pa.int64()), "x": [1.0], "ts": times(T0)}))
        store.export(folder / "export")
    return folder


@pytest.mark.parametrize("value,message", [
    (0, "split_keys_by must be a timedelta"),
    (timedelta(0), "must be positive"),
    (timedelta(hours=-1), "must be positive"),
    ("-1h", "not a duration"),
    ("0d", "must be positive"),
    (True, "split_keys_by must be a timedelta"),
    ("0.4us", "must be positive"),
    ("5000000d", "longer than the longest"),
])
def test_bad_split_keys_by(spark, small_export, value, message):
    spine = pa.table({"user_id": pa.array([1], pa.int64()), "event_timestamp": times(T0)})
    with pytest.raises(fl.InputError, match=message):
        fls.get_historical_features(spark, frame(spark, spine), FEATS, history=small_export / "export",
                                    split_keys_by=value)


def test_history_dataframe_with_a_string_timestamp_column(spark, small_export):
    spine = pa.table({"user_id": pa.array([1], pa.int64()), "event_timestamp": times(T0)})
    table = spark.read.parquet(str(small_export / "export" / "views" / "v"))
    bad = table.withColumn("ts", F.col("ts").cast("string"))
    with pytest.raises(fl.SchemaError, match="'ts' is string, not timestamp"):
        fls.get_historical_features(spark, frame(spark, spine), FEATS, history={"v": bad},
                                    registry=small_export / "s.duckdb")


def test_entity_timestamp_column_as_string(spark, small_export):
    spine = pa.table({"user_id": pa.array([1], pa.int64()), "event_timestamp": pa.array(["2026-01-01"])})
    with pytest.raises(fl.SchemaError, match="not a timestamp; cast it"):
        fls.get_historical_features(spark, frame(spark, spine), FEATS, history=small_export / "export")


# -- second round ---------------------------------------------------------------------------


def test_null_event_times_with_split_keys_by_and_all_null_times(spark, tmp_path):
    view = agg_view("1h", ttl="2h")
    history = pa.table({"user_id": pa.array([1, 1], pa.int64()), "x": [1.0, 2.0],
                        "ts": times(T0 - timedelta(days=1), T0)})
    spine = pa.table({"user_id": pa.array([1, 1, 2], pa.int64()), "event_timestamp": times(None, None, None)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got, expected = both(spark, tmp_path, [user, view], [("v", history)], spine, FEATS, split_keys_by="1h")
    assert_same_bits(got, expected)


def test_window_of_the_longest_duration_from_year_1_to_9999(spark, tmp_path):
    from featurelite.definitions import MAX_TTL

    view = fl.FeatureView("v", entities=[user], timestamp_field="ts", ttl=MAX_TTL, schema={"x": "float64"},
                          aggregations=[fl.Aggregation("x", f, MAX_TTL, name=f"x_{f}") for f in ALL])
    first = datetime(1, 1, 1, tzinfo=timezone.utc)
    last = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)
    history = pa.table({"user_id": pa.array([1, 1], pa.int64()), "x": [1.0, 2.0], "ts": times(first, last)})
    spine = pa.table({"user_id": pa.array([1, 1, 1], pa.int64()),
                      "event_timestamp": times(first, last, T0)})
    got, expected = both(spark, tmp_path, [user, view], [("v", history)], spine, FEATS, split_keys_by=MAX_TTL)
    assert_same_bits(got, expected)


def test_nan_payloads_in_min_max_last_and_the_join(spark, tmp_path):
    """NaNs with different payloads at different times: max/min give the latest NaN event,
    last the latest; the point-in-time join carries the bits."""
    nan1 = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000001))[0]
    nan2 = struct.unpack("<d", struct.pack("<Q", 0xFFF8000000000002))[0]
    view = agg_view("1h")
    history = pa.table({"user_id": pa.array([1, 1, 1], pa.int64()), "x": pa.array([nan1, nan2, 1.0], pa.float64()),
                        "ts": times(T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2))})
    spine = pa.table({"user_id": pa.array([1, 1, 1], pa.int64()),
                      "event_timestamp": times(T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2))})
    got, expected = both(spark, tmp_path, [user, view], [("v", history)], spine, FEATS)
    assert_same_bits(got, expected)


def test_float32_nan_payloads(spark, tmp_path):
    nan1 = pa.array([0x7FC00001, 0xFFC00003], pa.uint32()).view(pa.float32())
    view = fl.FeatureView("v", entities=[user], timestamp_field="ts", schema={"f": "float32"},
                          aggregations=[fl.Aggregation("f", fn, "1h") for fn in ("min", "max", "last", "sum")])
    history = pa.table({"user_id": pa.array([1, 1], pa.int64()), "f": nan1,
                        "ts": times(T0, T0 + timedelta(minutes=1))})
    spine = pa.table({"user_id": pa.array([1, 1], pa.int64()),
                      "event_timestamp": times(T0, T0 + timedelta(minutes=1))})
    got, expected = both(spark, tmp_path, [user, view], [("v", history)], spine,
                         ["v:f", *(f"v:f_{fn}_1h" for fn in ("min", "max", "last", "sum"))], split_keys_by="1m")
    assert_same_bits(got, expected)


@fl.featurizer
def age(seen_last: fl.Timestamp, now: fl.Timestamp) -> int:
    return now - seen_last


def test_on_demand_over_a_timestamp_aggregate_and_a_timestamp_request_field(spark, tmp_path):
    view = fl.FeatureView("v", entities=[user], timestamp_field="ts", schema={"seen": "timestamp"},
                          aggregations=[fl.Aggregation("seen", "last", "1h", name="seen_last")])
    od = fl.OnDemandFeatureView("od", sources=[view, fl.RequestSource("r", schema={"now": "timestamp"})],
                                featurizers={"age": age})
    history = pa.table({"user_id": pa.array([1, 1], pa.int64()),
                        "seen": times(datetime(1950, 1, 1, tzinfo=timezone.utc), T0),
                        "ts": times(T0, T0 + timedelta(minutes=1))})
    spine = pa.table({"user_id": pa.array([1, 1, 2], pa.int64()),
                      "now": times(T0 + timedelta(days=1), None, T0),
                      "event_timestamp": times(T0, T0 + timedelta(minutes=5), T0)})
    got, expected = both(spark, tmp_path, [user, view, od], [("v", history)], spine,
                         ["v:seen_last", "od:age", "v:seen"])
    assert_same_bits(got, expected)


def _two_views_int32_key(tmp_path: Path) -> pa.Table:
    shop = fl.Entity("shop", join_keys=["shop_id"], dtype="int32")
    view = fl.FeatureView("v", entities=[shop], timestamp_field="ts", schema={"x": "int64"},
                          aggregations=[fl.Aggregation("x", "sum", "1h")])
    spine = pa.table({"shop_id": pa.array([1, 2 ** 32 + 1], pa.int64()), "event_timestamp": times(T0, T0)})
    with fl.open(tmp_path / "s.duckdb") as store:
        store.apply([shop, view])
        store.ingest("v", pa.table({"shop_id": pa.array([1], pa.int32()), "x": [5], "ts": times(T0)}))
        expected = store.get_historical_features(spine, ["v:x", "v:x_sum_1h"])
        store.export(tmp_path / "export")
    return spine, expected


# Once a bug: an int64 entity key beyond the int32 range, against an int32 join key: in process
# it matches nothing (null, sum 0); on Spark the key is cast to int (spark.py `_probe`):
# with ANSI on (Spark 4's default) the job dies with SparkArithmeticException
# [CAST_OVERFLOW] (no featurelite error); with ANSI off it wraps to 1 and reads shop 1.
@pytest.mark.parametrize("ansi", ["true", "false"])
def test_an_int64_entity_key_beyond_an_int32_join_key(spark, tmp_path, ansi):
    spine, expected = _two_views_int32_key(tmp_path)
    spark.conf.set("spark.sql.ansi.enabled", ansi)
    try:
        got = collect(fls.get_historical_features(spark, frame(spark, spine), ["v:x", "v:x_sum_1h"],
                                                  history=tmp_path / "export", split_keys_by="1h"))
    finally:
        spark.conf.unset("spark.sql.ansi.enabled")
    assert_same_bits(got, expected)


# Once a bug: an entity_df column whose name has a dot (a label column "a.b"): in process it is
# carried through; on Spark `F.col(c)` (spark.py get_historical_features, `selected`) reads
# it as a struct field and Spark raises AnalysisException.
def test_an_entity_column_with_a_dot_in_its_name(spark, small_export):
    spine = pa.table({"user_id": pa.array([1], pa.int64()), "event_timestamp": times(T0),
                      "a.b": pa.array([7], pa.int64())})
    with fl.open(small_export / "s.duckdb", read_only=True) as store:
        expected = store.get_historical_features(spine, FEATS)
    got = collect(fls.get_historical_features(spark, frame(spark, spine), FEATS, history=small_export / "export"))
    assert_same_bits(got, expected)


# Once a bug: an entity_df with a repeated column name: in process a SchemaError ("has column
# 'label' more than once; keep one", historical.check_entity_df); spark.py has no such
# check, so `F.col(c)` in the final select raises AnalysisException [AMBIGUOUS_REFERENCE].
def test_an_entity_dataframe_with_a_repeated_column_is_a_featurelite_error(spark, small_export):
    spine = pa.table({"user_id": pa.array([1], pa.int64()), "event_timestamp": times(T0),
                      "label": pa.array([7], pa.int64())})
    entity = frame(spark, spine)
    entity = entity.select("user_id", "event_timestamp", "label", F.col("label").alias("label"))
    with pytest.raises(fl.SchemaError, match="more than once"):
        collect(fls.get_historical_features(spark, entity, FEATS, history=small_export / "export"))


def test_a_registry_that_is_not_a_store_file(spark, small_export, tmp_path):
    junk = tmp_path / "junk.txt"
    junk.write_text("not a store")
    spine = pa.table({"user_id": pa.array([1], pa.int64()), "event_timestamp": times(T0)})
    with pytest.raises(fl.FeatureliteError):
        fls.get_historical_features(spark, frame(spark, spine), FEATS, history=small_export / "export",
                                    registry=junk)
    assert junk.read_text() == "not a store"


def test_registry_from_a_store_file_open_for_writing_in_this_process(spark, small_export):
    """A featurelite error (StoreLockedError), though its hint "use that Store object" does
    not apply: featurelite.spark takes no Store object."""
    spine = pa.table({"user_id": pa.array([1], pa.int64()), "event_timestamp": times(T0)})
    with fl.open(small_export / "s.duckdb"), pytest.raises(fl.StoreLockedError, match="already open"):
        fls.get_historical_features(spark, frame(spark, spine), FEATS, history=small_export / "export",
                                    registry=small_export / "s.duckdb")


# Once a bug (a history DataFrame only): a history DataFrame row with a null event time is
# neither refused nor dropped: `_keyed_events` filters only null keys, the window sort puts
# a null _TIME first (asc nulls first), so with no ttl it wins for every entity row with no
# other event before it (here 99.0 instead of null). `_aggregates` drops it (explode of a
# null sequence), so the two paths disagree too.
def test_history_dataframe_with_null_event_times_is_refused_or_ignored(spark, small_export):
    """A history DataFrame (mapping) row with a null event time: the store never holds one;
    Spark should refuse it or ignore it, never let it win."""
    spine = pa.table({"user_id": pa.array([1], pa.int64()), "event_timestamp": times(T0 - timedelta(days=1))})
    table = spark.read.parquet(str(small_export / "export" / "views" / "v")).drop("fl_event_date")
    bad = table.unionByName(table.withColumn("ts", F.lit(None).cast("timestamp")).withColumn("x", F.lit(99.0)))
    try:
        got = collect(fls.get_historical_features(spark, frame(spark, spine), ["v:x"], history={"v": bad},
                                                  registry=small_export / "s.duckdb"))
    except fl.FeatureliteError:
        return
    assert got.column("x").to_pylist() == [None]


# -- third round ----------------------------------------------------------------------------


# Once a bug: the internal value column `_fl_value__{view}__{feature}` (spark.py `_value_column`)
# is the same for view "a" feature "b__c" and view "a__b" feature "c" (names may hold
# double underscores): the two joined columns collide and Spark raises AMBIGUOUS_REFERENCE
# (or reads one view's value for the other); in process the request works.
def test_view_and_feature_names_whose_internal_columns_collide(spark, tmp_path):
    a = fl.FeatureView("a", entities=[user], timestamp_field="ts", schema={"b__c": "float64"},
                       aggregations=[fl.Aggregation("b__c", "sum", "1h", name="s")])
    ab = fl.FeatureView("a__b", entities=[user], timestamp_field="ts", schema={"c": "float64"})
    history = pa.table({"user_id": pa.array([1], pa.int64()), "b__c": [1.0], "ts": times(T0)})
    other = pa.table({"user_id": pa.array([1], pa.int64()), "c": [2.0], "ts": times(T0)})
    spine = pa.table({"user_id": pa.array([1], pa.int64()), "event_timestamp": times(T0)})
    got, expected = both(spark, tmp_path, [user, a, ab], [("a", history), ("a__b", other)], spine,
                         ["a:b__c", "a__b:c", "a:s"])
    assert_same_bits(got, expected)


def test_an_empty_entity_dataframe(spark, small_export):
    spine = pa.table({"user_id": pa.array([], pa.int64()), "event_timestamp": times()})
    with fl.open(small_export / "s.duckdb", read_only=True) as store:
        expected = store.get_historical_features(spine, FEATS)
    got = collect(fls.get_historical_features(spark, frame(spark, spine), FEATS, history=small_export / "export",
                                              split_keys_by="1h"))
    assert_same_bits(got, expected)


@fl.featurizer
def tag(s_last: str, prefix: str) -> str:
    return prefix + s_last


def test_on_demand_string_output_over_aggregates_and_request_strings(spark, tmp_path):
    view = fl.FeatureView("v", entities=[user], timestamp_field="ts", schema={"s": "string", "x": "float64"},
                          aggregations=[fl.Aggregation("s", "last", "1h", name="s_last"),
                                        fl.Aggregation("x", "count", "1h", name="x_count")])
    od = fl.OnDemandFeatureView("od", sources=[view, fl.RequestSource("r", schema={"prefix": "string"})],
                                featurizers={"t": tag})
    history = pa.table({"user_id": pa.array([1, 1, 2], pa.int64()), "s": pa.array(["ü", None, "z"]),
                        "x": [1.0, None, 2.0], "ts": times(T0, T0 + timedelta(minutes=1), T0)})
    spine = pa.table({"user_id": pa.array([1, 2, 3], pa.int64()), "prefix": pa.array(["p", None, "q"]),
                      "event_timestamp": times(T0 + timedelta(minutes=2), T0, T0)})
    got, expected = both(spark, tmp_path, [user, view, od], [("v", history)], spine, ["od:t", "v:s_last"])
    assert_same_bits(got, expected)


def test_an_all_null_key_column(spark, small_export):
    spine = pa.table({"user_id": pa.array([None, None], pa.int64()), "event_timestamp": times(T0, T0)})
    with fl.open(small_export / "s.duckdb", read_only=True) as store:
        expected = store.get_historical_features(spine, FEATS)
    got = collect(fls.get_historical_features(spark, frame(spark, spine), FEATS, history=small_export / "export"))
    assert_same_bits(got, expected)


@fl.featurizer
def doubled(x: float) -> float:
    return 2 * x


def test_on_demand_carries_entity_columns_of_other_types(spark, tmp_path):
    """Extra entity columns (decimal, date, list, map, binary) are carried through untouched
    when on-demand features run (the whole row passes through mapInArrow)."""
    from decimal import Decimal

    view = fl.FeatureView("v", entities=[user], timestamp_field="ts", schema={"x": "float64"},
                          aggregations=[fl.Aggregation("x", "sum", "1h", name="x_sum")])
    od = fl.OnDemandFeatureView("od", sources=[view], featurizers={"d": doubled})
    history = pa.table({"user_id": pa.array([1], pa.int64()), "x": [1.5], "ts": times(T0)})
    spine = pa.table({
        "user_id": pa.array([1, 2], pa.int64()), "event_timestamp": times(T0, T0),
        "dec": pa.array([Decimal("1.25"), None], pa.decimal128(10, 2)),
        "day": pa.array([datetime(2020, 1, 1).date(), None], pa.date32()),
        "tags": pa.array([["a", "b"], []], pa.list_(pa.string())),
        "raw": pa.array([b"\x00\x01", None], pa.binary()),
    })
    got, expected = both(spark, tmp_path, [user, view, od], [("v", history)], spine, ["od:d", "v:x_sum"])
    assert_same_bits(got, expected)


# Once a bug: an export directory whose path holds glob characters ([...], {a,b}): DuckDB writes it,
# Path.is_dir() finds it, but `_history_frame` hands the path to spark.read.parquet, which
# globs it: AnalysisException [PATH_NOT_FOUND] (escape the path, or refuse it by name).
@pytest.mark.parametrize("name", [
    "export:2026-01-01T00:00",
    "export[1]", "export {a,b}",
])
def test_export_directories_with_special_characters_in_their_path(spark, tmp_path, name):
    """An export written (by DuckDB) to a directory whose name has a colon (a timestamped
    name), brackets, braces or a percent sign: Spark reads the history (or a featurelite
    error says what to rename)."""
    view = agg_view("1h")
    history = pa.table({"user_id": pa.array([1], pa.int64()), "x": [1.0], "ts": times(T0)})
    spine = pa.table({"user_id": pa.array([1], pa.int64()), "event_timestamp": times(T0)})
    with fl.open(tmp_path / "s.duckdb") as store:
        store.apply([user, view])
        store.ingest("v", history)
        expected = store.get_historical_features(spine, FEATS)
        store.export(tmp_path / name)
    try:
        got = collect(fls.get_historical_features(spark, frame(spark, spine), FEATS, history=tmp_path / name))
    except fl.FeatureliteError:
        return
    assert_same_bits(got, expected)


# Once a bug (in process, which broke its own rule): min/max over a window holding
# NaNs give "the latest NaN event". Spark sorts same-time events by the winner order
# (created time, then ingest order); the store's aggregates_at (window_history.py) sorts
# by event time only unless a `last` aggregation is asked ("every other function gives the
# same bits in any such order"), which is false for NaNs with different payloads: the two
# paths pick different NaNs.
def test_max_over_same_time_nans_with_different_payloads_and_created_times(spark, tmp_path):
    nan1 = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000001))[0]
    nan2 = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000002))[0]
    view = fl.FeatureView("v", entities=[user], timestamp_field="ts", created_timestamp_field="created",
                          schema={"x": "float64"}, aggregations=[fl.Aggregation("x", "max", "1h", name="top")])
    history = pa.table({"user_id": pa.array([1, 1], pa.int64()), "x": pa.array([nan1, nan2], pa.float64()),
                        "ts": times(T0, T0), "created": times(T0 + timedelta(seconds=2), T0 + timedelta(seconds=1))})
    spine = pa.table({"user_id": pa.array([1], pa.int64()), "event_timestamp": times(T0)})
    got, expected = both(spark, tmp_path, [user, view], [("v", history)], spine, ["v:top", "v:x"])
    # The winner order's latest row (created T0+2s) holds nan1: the point-in-time join gives it.
    assert struct.pack("<d", expected.column("x")[0].as_py()) == struct.pack("<d", nan1)
    assert_same_bits(got, expected)


# Once a bug: a session with spark.sql.timestampType=TIMESTAMP_NTZ (a documented Spark setting):
# every `cast("timestamp")` and the DDL/type strings built from DType.spark ("timestamp")
# become TIMESTAMP_NTZ, so timestamp features (stored and `last` aggregates) come back as
# timestamp[us] without a zone, not timestamp[us, tz=UTC] as the store gives them;
# `_check_session` checks only the time zone. Fix: use TimestampType() / "timestamp_ltz".
def test_a_session_whose_default_timestamp_type_is_ntz(spark, tmp_path):
    """spark.sql.timestampType=TIMESTAMP_NTZ makes `cast('timestamp')` and DDL 'timestamp'
    time-zone-less: the table must still equal the store's (or a featurelite error say
    what to set)."""
    view = fl.FeatureView("v", entities=[user], timestamp_field="ts", ttl="2h", schema={"seen": "timestamp"},
                          aggregations=[fl.Aggregation("seen", "last", "1h", name="seen_last"),
                                        fl.Aggregation("seen", "count", "1h", name="seen_count")])
    history = pa.table({"user_id": pa.array([1, 1], pa.int64()),
                        "seen": times(datetime(1950, 1, 1, tzinfo=timezone.utc), T0),
                        "ts": times(T0, T0 + timedelta(minutes=1))})
    spine = pa.table({"user_id": pa.array([1, 1, 2], pa.int64()),
                      "event_timestamp": times(T0, T0 + timedelta(minutes=5), T0)})
    with fl.open(tmp_path / "s.duckdb") as store:
        store.apply([user, view])
        store.ingest("v", history)
        expected = store.get_historical_features(spine, ["v:seen", "v:seen_last", "v:seen_count"])
        store.export(tmp_path / "export")
    spark.conf.set("spark.sql.timestampType", "TIMESTAMP_NTZ")
    try:
        got = collect(fls.get_historical_features(spark, frame(spark, spine), ["v:seen", "v:seen_last", "v:seen_count"],
                                                  history=tmp_path / "export", split_keys_by="1h"))
    except fl.FeatureliteError:
        return
    finally:
        spark.conf.unset("spark.sql.timestampType")
    assert_same_bits(got, expected)


def test_carried_winners_keep_nan_payloads_and_negative_zero(spark, tmp_path):
    """split_keys_by: a winner carried from an earlier range (through max(struct)) keeps
    its float bits: NaN payloads and -0.0, float64 and float32."""
    nan1 = struct.unpack("<d", struct.pack("<Q", 0xFFF8000000000005))[0]
    f32 = pa.array([0x7FC00007, 0x80000000], pa.uint32()).view(pa.float32())
    view = fl.FeatureView("v", entities=[user], timestamp_field="ts", created_timestamp_field="created",
                          schema={"x": "float64", "f": "float32"})
    history = pa.table({"user_id": pa.array([1, 2], pa.int64()), "x": pa.array([nan1, -0.0], pa.float64()),
                        "f": f32, "ts": times(T0, T0), "created": times(None, T0)})
    spine = pa.table({"user_id": pa.array([1, 2], pa.int64()),
                      "event_timestamp": times(T0 + timedelta(hours=1), T0 + timedelta(hours=1))})
    got, expected = both(spark, tmp_path, [user, view], [("v", history)], spine, ["v:x", "v:f"],
                         split_keys_by="1m")
    assert_same_bits(got, expected)


# Once a bug: history={view: pyarrow.Table} (or pandas) gets AttributeError ('Schema'
# has no 'fields', in `_check_history`), not an error saying history DataFrames must be
# Spark DataFrames.
def test_history_mapping_of_a_non_spark_table_is_a_featurelite_error(spark, small_export):
    spine = pa.table({"user_id": pa.array([1], pa.int64()), "event_timestamp": times(T0)})
    history = pa.table({"user_id": pa.array([1], pa.int64()), "x": [1.0], "ts": times(T0),
                        "_fl_seq": pa.array([0], pa.int64())})
    with pytest.raises(fl.FeatureliteError):
        fls.get_historical_features(spark, frame(spark, spine), FEATS, history={"v": history},
                                    registry=small_export / "s.duckdb")


# Once a bug: entity_df as a pyarrow Table (what the store takes) gets AttributeError from
# `_timestamp_column`, not an InputError saying entity_df must be a Spark DataFrame.
def test_an_entity_df_that_is_not_a_spark_dataframe_is_a_featurelite_error(spark, small_export):
    spine = pa.table({"user_id": pa.array([1], pa.int64()), "event_timestamp": times(T0)})
    with pytest.raises(fl.FeatureliteError):
        fls.get_historical_features(spark, spine, FEATS, history=small_export / "export")


@pytest.mark.parametrize("seed", [1, 2])
def test_random_microsecond_histories_across_many_buckets(spark, tmp_path, seed):
    """Windows of 1us..5us (buckets of 20us): every event is near a bucket edge; random
    ties, created times (some missing), nulls, several ingests, pre-1970 and post-1970."""
    import random

    rng = random.Random(seed)
    us = timedelta(microseconds=1)
    base = datetime(1970, 1, 1, tzinfo=timezone.utc) - 50 * us
    view = fl.FeatureView(
        "v", entities=[user], timestamp_field="ts", created_timestamp_field="created", ttl=timedelta(microseconds=3),
        schema={"x": "float64", "n": "int64", "s": "string"},
        aggregations=[*(fl.Aggregation("x", f, "5us", name=f"x5_{f}") for f in ALL),
                      *(fl.Aggregation("n", f, "2us", name=f"n2_{f}") for f in ALL),
                      fl.Aggregation("s", "last", "1us", name="s1"), fl.Aggregation("x", "max", "1us", name="x1")],
    )
    ingests = []
    for _ in range(3):
        k = 40
        ingests.append(("v", pa.table({
            "user_id": pa.array([rng.randint(1, 3) for _ in range(k)], pa.int64()),
            "x": pa.array([rng.choice([None, 0.5, -0.0, 1e308, -1e308, 3.0, math.inf]) for _ in range(k)],
                          pa.float64()),
            "n": pa.array([rng.choice([None, 1, -7, 2 ** 62]) for _ in range(k)], pa.int64()),
            "s": pa.array([rng.choice([None, "a", "b"]) for _ in range(k)]),
            "ts": times(*(base + rng.randint(0, 100) * us for _ in range(k))),
            "created": times(*(rng.choice([None, base, base + us]) for _ in range(k))),
        })))
    n = 60
    spine = pa.table({"user_id": pa.array([rng.randint(0, 3) for _ in range(n)], pa.int64()),
                      "event_timestamp": times(*(base + rng.randint(-5, 110) * us for _ in range(n)))})
    feats = ["v:x", "v:n", "v:s", *(f"v:{a.name}" for a in view.aggregations)]
    if seed == 2:  # groups spanning Arrow batches of 2 rows, over 7 shuffle partitions
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "2")
        spark.conf.set("spark.sql.shuffle.partitions", "7")
    try:
        got, expected = both(spark, tmp_path, [user, view], ingests, spine, feats, split_keys_by="7us")
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
        spark.conf.set("spark.sql.shuffle.partitions", "2")
    assert_same_bits(got, expected)


# Once a bug: a request field of the wrong type (int64 where the featurizer takes a string): in
# process a SchemaError names the on-demand view and the column; on Spark the featurizer
# fails inside the Python worker (spark.py `_run_featurizers`, no type check before the
# job) and the caller gets a PythonException.
def test_a_request_field_of_the_wrong_type(spark, tmp_path):
    view = fl.FeatureView("v", entities=[user], timestamp_field="ts", schema={"s": "string"},
                          aggregations=[fl.Aggregation("s", "last", "1h", name="s_last")])
    od = fl.OnDemandFeatureView("od", sources=[view, fl.RequestSource("r", schema={"prefix": "string"})],
                                featurizers={"t": tag})
    spine = pa.table({"user_id": pa.array([1], pa.int64()), "prefix": pa.array([5], pa.int64()),
                      "event_timestamp": times(T0)})
    with fl.open(tmp_path / "s.duckdb") as store:
        store.apply([user, view, od])
        store.ingest("v", pa.table({"user_id": pa.array([1], pa.int64()), "s": ["a"], "ts": times(T0)}))
        with pytest.raises(fl.SchemaError) as in_process:
            store.get_historical_features(spine, ["od:t"])
        store.export(tmp_path / "export")
    with pytest.raises(fl.SchemaError):
        collect(fls.get_historical_features(spark, frame(spark, spine), ["od:t"], history=tmp_path / "export"))
    assert "prefix" in str(in_process.value)
