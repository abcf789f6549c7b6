"""Training sets: input handling, column naming and the errors around them. The
point-in-time rules themselves are checked against an oracle in test_equivalence.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from model import ts_array

import featurelite as fl

T0 = datetime(2024, 5, 1)
user = fl.Entity("user", join_keys=["user_id"])
stats = fl.FeatureView("stats", entities=[user], schema={"spend": "float64", "seen": "timestamp", "n": "int32"}, timestamp_field="ts", ttl="2d")
other = fl.FeatureView("other", entities=[user], schema={"spend": "float32"}, timestamp_field="ts")


@pytest.fixture
def ready(store):
    store.apply([stats, other])
    store.ingest("stats", pa.table({
        "user_id": [1, 1, 2], "spend": [1.0, 2.0, 3.0],
        "seen": pa.array([T0] * 3, pa.timestamp("us")), "n": pa.array([1, 2, 3], pa.int32()),
        "ts": pa.array([T0, T0 + timedelta(days=1), T0], pa.timestamp("us")),
    }))
    store.ingest("other", pa.table({"user_id": [1], "spend": pa.array([0.5], pa.float32()), "ts": pa.array([T0], pa.timestamp("us"))}))
    return store


def spine(**columns) -> pa.Table:
    base = {"user_id": [1, 2, 1, 3, 1], "event_timestamp": pa.array(
        [T0 + timedelta(days=1), T0, T0 + timedelta(days=1), T0, T0 + timedelta(days=4)], pa.timestamp("us"))}
    base.update(columns)
    return pa.table(base)


def test_rows_kept_in_order_with_duplicates_and_extra_columns(ready):
    result = ready.get_historical_features(spine(label=[1, 0, 1, 0, 1]), ["stats:spend", "stats:n", "stats:seen"])
    assert result.column_names == ["user_id", "event_timestamp", "label", "spend", "n", "seen"]
    assert result.column("spend").to_pylist() == [2.0, 3.0, 2.0, None, None]
    assert result.column("label").to_pylist() == [1, 0, 1, 0, 1]
    assert result.schema.field("n").type == pa.int32()
    assert result.schema.field("seen").type == pa.timestamp("us", tz="UTC")


def test_pandas_spine_with_zone_aware_times_and_a_named_timestamp_column(ready):
    frame = pd.DataFrame({
        "user_id": [1, 1],
        "when": pd.to_datetime(["2024-05-01 02:00:00+02:00", "2024-05-01 03:00:00+02:00"]),
    })
    result = ready.get_historical_features(frame, ["stats:spend"])  # the only timestamp column is used
    assert result.column("spend").to_pylist() == [1.0, 1.0]
    result = ready.get_historical_features(frame.rename(columns={"when": "at"}), ["stats:spend"], timestamp_field="at")
    assert result.column("spend").to_pylist() == [1.0, 1.0]
    early = frame.assign(when=pd.to_datetime(["2024-05-01 01:59:59+02:00"] * 2))
    assert ready.get_historical_features(early, ["stats:spend"]).column("spend").to_pylist() == [None, None]


def test_polars_spine_and_features_in_the_order_asked(ready):
    import polars as pl

    frame = pl.from_arrow(spine())
    result = ready.get_historical_features(frame, ["stats:n", "other:spend", "stats:spend"], full_feature_names=True)
    assert result.column_names[-3:] == ["stats__n", "other__spend", "stats__spend"]
    assert result.column("stats__spend").to_pylist() == [2.0, 3.0, 2.0, None, None]


def test_name_clashes_need_full_feature_names(ready):
    with pytest.raises(fl.InputError, match="full_feature_names=True"):
        ready.get_historical_features(spine(), ["stats:spend", "other:spend"])
    result = ready.get_historical_features(spine(), ["stats:spend", "other:spend"], full_feature_names=True)
    assert result.column("other__spend").to_pylist()[:2] == [0.5, None]
    with pytest.raises(fl.SchemaError, match="already has a column 'spend'"):
        ready.get_historical_features(spine(spend=[0] * 5), ["stats:spend"])


@pytest.mark.parametrize(
    "entity_df, kwargs, message",
    [
        (pa.table({"user_id": [1]}), {}, "needs an event timestamp column"),
        (pa.table({"user_id": [1], "a": pa.array([T0], pa.timestamp("us")), "b": pa.array([T0], pa.timestamp("us"))}), {}, "a, b"),
        (spine(), {"timestamp_field": "when"}, "no column 'when'"),
        (spine().drop_columns(["user_id"]), {}, "no column 'user_id'"),
        (spine(user_id=["1", "2", "1", "3", "1"]), {}, "join key is 'int64'"),
        (spine(event_timestamp=["2024-05-01", "x", "2024-05-01", "2024-05-01", "2024-05-01"]), {}, "row 1 has value 'x'"),
        (spine(event_timestamp=[1, 2, 3, 4, 5]), {}, "must hold timestamps"),
        (spine(_fl_row=[0] * 5), {}, "reserved prefix"),
    ],
)
def test_bad_entity_dataframes(ready, entity_df, kwargs, message):
    with pytest.raises(fl.SchemaError, match=message):
        ready.get_historical_features(entity_df, ["stats:spend"], **kwargs)


def test_null_entity_timestamps_and_keys_give_null_features(ready):
    result = ready.get_historical_features(
        pa.table({"user_id": pa.array([1, None], pa.int64()), "event_timestamp": pa.array([None, T0], pa.timestamp("us"))}),
        ["stats:spend"],
    )
    assert result.column("spend").to_pylist() == [None, None]


def test_empty_spine(ready):
    result = ready.get_historical_features(spine().slice(0, 0), ["stats:spend"])
    assert result.num_rows == 0 and result.column_names[-1] == "spend"


def test_timestamps_as_iso_text_and_dates(ready):
    result = ready.get_historical_features(
        pa.table({"user_id": [1, 1], "event_timestamp": ["2024-05-02T00:00:00", "2024-05-01T23:00:00-02:00"]}), ["stats:spend"]
    )
    assert result.column("spend").to_pylist() == [2.0, 2.0]
    dates = pa.table({"user_id": [1], "event_timestamp": pa.array([T0.date()], pa.date32())})
    assert ready.get_historical_features(dates, ["stats:spend"]).column("spend").to_pylist() == [1.0]


def test_aware_datetimes_compare_in_utc(ready):
    tokyo = timezone(timedelta(hours=9))
    frame = pa.table({"user_id": [1], "event_timestamp": pa.array([datetime(2024, 5, 1, 8, 59, tzinfo=tokyo)], pa.timestamp("us", tz="Asia/Tokyo"))})
    assert ready.get_historical_features(frame, ["stats:spend"]).column("spend").to_pylist() == [None]


def test_ties_found_in_a_backfill_or_within_a_batch_are_broken_by_ingest_order(tmp_path):
    """Without tied rows the join compares event times alone; an ingest that creates a tie
    (a backfill that repeats an old key and time, or a batch that repeats one) switches the
    view to the tie-breaking join, and the store remembers it across reopening."""
    view = fl.FeatureView("v", entities=[user], schema={"x": "float64"}, timestamp_field="ts")
    path = tmp_path / "ties.duckdb"

    def batch(xs, days):
        return pa.table({"user_id": [1] * len(xs), "x": xs, "ts": pa.array([T0 + timedelta(days=d) for d in days], pa.timestamp("us"))})

    probe = pa.table({"user_id": [1, 1], "event_timestamp": pa.array([T0, T0 + timedelta(days=5)], pa.timestamp("us"))})
    with fl.open(path) as store:
        store.apply([view])
        store.ingest("v", batch([1.0, 2.0], [0, 1]))
        store.ingest("v", batch([3.0], [2]))  # newer data: no tie possible, no check against history
        assert not store._states["v"].ties
        assert store.get_historical_features(probe, ["v:x"]).column("x").to_pylist() == [1.0, 3.0]
        store.ingest("v", batch([9.0], [0]))  # a backfill repeating (user 1, T0)
        assert store._states["v"].ties
        assert store.get_historical_features(probe, ["v:x"]).column("x").to_pylist() == [9.0, 3.0]
    with fl.open(path) as store:
        assert store._states["v"].ties
        assert store.get_historical_features(probe, ["v:x"]).column("x").to_pylist() == [9.0, 3.0]
        store.delete_feature_view("v")
        store.apply([view])
        store.ingest("v", batch([4.0, 5.0], [7, 7]))  # a tie inside one batch
        assert store._states["v"].ties
        later = probe.set_column(1, "event_timestamp", pa.array([T0 + timedelta(days=7)] * 2, pa.timestamp("us")))
        assert store.get_historical_features(later, ["v:x"]).column("x").to_pylist() == [5.0, 5.0]


@given(st.data())
def test_narrowing_the_history_to_the_probe_changes_nothing(data):
    """A probe much smaller than the history narrows the history to its keys and times
    first (a speed-up for small training sets); the answer must be the same either way,
    with ties, ttl and probes before, between and after the events."""
    import featurelite.historical as historical

    rows = data.draw(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 9), st.sampled_from([None, 1.0, -0.0, 2.5])),
                              min_size=1, max_size=40))
    probes = data.draw(st.lists(st.tuples(st.integers(-1, 7), st.integers(-2, 12)), min_size=1, max_size=8))
    entity = fl.Entity("user", join_keys=["user_id"])
    view = fl.FeatureView("v", entities=[entity], schema={"x": "float64"}, timestamp_field="ts", ttl="3us")
    table = pa.table({
        "user_id": pa.array([r[0] for r in rows], pa.int64()),
        "x": pa.array([r[2] for r in rows], pa.float64()),
        "ts": ts_array([r[1] for r in rows]),
    })
    spine = pa.table({"user_id": pa.array([p[0] for p in probes], pa.int64()), "event_timestamp": ts_array([p[1] for p in probes])})
    answers = []
    for ratio in (0, 10**9):  # always narrow, never narrow
        with fl.open() as store:
            store.apply([view])
            store.ingest("v", table)
            original = historical.NARROW_RATIO
            historical.NARROW_RATIO = ratio
            try:
                answers.append(repr(store.get_historical_features(spine, ["v:x"]).to_pylist()))
            finally:
                historical.NARROW_RATIO = original
    assert answers[0] == answers[1]


def test_float32_special_values_keep_their_bits_offline_and_online(store):
    """DuckDB's ASOF join canonicalises FLOAT payloads (-0.0 -> 0.0, NaN payloads reset);
    a float32 feature must come back from a training set with the bits it was stored
    with, the same bits an online read serves."""
    import numpy as np

    bits = np.array([0x80000000, 0x7FC12345, 0xFF800000, 0x00000001, 0x3FC00000], dtype=np.uint32)
    values = bits.view(np.float32)
    view = fl.FeatureView("f32", entities=[user], schema={"v": "float32"}, timestamp_field="ts")
    store.apply([user, view])
    users = list(range(len(values)))
    store.ingest("f32", pa.table({"user_id": users, "v": pa.array(values), "ts": pa.array([T0] * len(users), pa.timestamp("us"))}))
    later = pa.array([T0 + timedelta(days=1)] * len(users), pa.timestamp("us"))
    train = store.get_historical_features(pa.table({"user_id": users, "event_timestamp": later}), ["f32:v"])
    assert train.column("v").type == pa.float32()
    assert train.column("v").to_numpy().view(np.uint32).tolist() == bits.tolist()
    served = store.get_online_features({"user_id": users}, ["f32:v"], now=T0 + timedelta(days=1))
    online_bits = np.array(served.to_dict()["v"], dtype=np.float64).astype(np.float32).view(np.uint32)
    assert online_bits.tolist() == bits.tolist()
