"""Online reads: statuses, ttl, late and future events, composite keys, threads, materialize."""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from model import ts_array

import featurelite as fl

T0 = datetime(2024, 5, 1)
user = fl.Entity("user", join_keys=["user_id"])
store_e = fl.Entity("shop", join_keys={"shop_id": "string", "region": "int32"})
stats = fl.FeatureView("stats", entities=[user], schema={"spend": "float64", "seen": "timestamp", "vip": "bool"}, timestamp_field="ts", ttl="1d")
sales = fl.FeatureView("sales", entities=[store_e], schema={"revenue": "float64"}, timestamp_field="ts")


def rows(uids, spend, ts) -> pa.Table:
    n = len(uids)
    return pa.table({
        "user_id": pa.array(uids, pa.int64()), "spend": pa.array(spend, pa.float64()),
        "seen": pa.array([T0] * n, pa.timestamp("us")), "vip": [True] * n,
        "ts": pa.array(ts, pa.timestamp("us")),
    })


@pytest.fixture
def ready(store):
    store.apply([user, store_e, stats, sales])
    store.ingest("stats", rows([1, 2], [10.0, 20.0], [T0, T0 - timedelta(days=3)]))
    return store


def test_values_statuses_and_types(ready):
    got = ready.get_online_features(
        [{"user_id": 1}, {"user_id": 2}, {"user_id": 3}], ["stats:spend", "stats:seen", "stats:vip"], now=T0 + timedelta(hours=1)
    )
    assert got.to_dict() == {
        "user_id": [1, 2, 3],
        "spend": [10.0, None, None],
        "seen": [T0.replace(tzinfo=timezone.utc), None, None],
        "vip": [True, None, None],
    }
    assert got.statuses["spend"] == [fl.Status.PRESENT, fl.Status.OUTSIDE_MAX_AGE, fl.Status.NOT_FOUND]
    table = got.to_arrow()
    assert table.schema.field("seen").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("vip").type == pa.bool_()
    assert len(got) == 3 and got.to_pandas().shape == (3, 4)


def test_ttl_boundary_is_inclusive(ready):
    at_edge = ready.get_online_features([{"user_id": 1}], ["stats:spend"], now=T0 + timedelta(days=1))
    assert at_edge.statuses["spend"] == [fl.Status.PRESENT]
    past = ready.get_online_features([{"user_id": 1}], ["stats:spend"], now=T0 + timedelta(days=1, microseconds=1))
    assert past.statuses["spend"] == [fl.Status.OUTSIDE_MAX_AGE]


def test_default_now_is_the_clock(ready):
    # The rows are from 2024 and the ttl is a day: by the real clock they are stale.
    assert ready.get_online_features([{"user_id": 1}], ["stats:spend"]).statuses["spend"] == [fl.Status.OUTSIDE_MAX_AGE]


def test_late_older_event_does_not_overwrite_and_ties_go_to_the_last_ingested(ready):
    ready.get_online_features([{"user_id": 1}], ["stats:spend"])
    ready.ingest("stats", rows([1], [5.0], [T0 - timedelta(hours=1)]))
    now = T0 + timedelta(hours=1)
    assert ready.get_online_features([{"user_id": 1}], ["stats:spend"], now=now).to_dict()["spend"] == [10.0]
    ready.ingest("stats", rows([1], [11.0], [T0]))
    assert ready.get_online_features([{"user_id": 1}], ["stats:spend"], now=now).to_dict()["spend"] == [11.0]


def test_a_newer_negative_zero_replaces_zero(ready):
    """DuckDB's UPDATE treats 0.0 and -0.0 as equal and keeps the old bits; the online
    table must not."""
    ready.get_online_features([{"user_id": 5}], ["stats:spend"])
    ready.ingest("stats", rows([5, 6], [0.0, 0.0], [T0, T0]))
    ready.ingest("stats", rows([5, 6], [-0.0, 0.0], [T0 + timedelta(seconds=1), T0 + timedelta(seconds=1)]))
    served = ready.get_online_features({"user_id": [5, 6]}, ["stats:spend"], now=T0 + timedelta(hours=1)).to_dict()["spend"]
    assert [math.copysign(1, v) for v in served] == [-1.0, 1.0]


def test_future_dated_events_are_not_served_before_their_time(ready):
    ready.ingest("stats", rows([1], [99.0], [T0 + timedelta(days=2)]))
    before = ready.get_online_features([{"user_id": 1}, {"user_id": 2}], ["stats:spend"], now=T0 + timedelta(hours=1))
    assert before.to_dict()["spend"] == [10.0, None]
    after = ready.get_online_features([{"user_id": 1}], ["stats:spend"], now=T0 + timedelta(days=2))
    assert after.to_dict()["spend"] == [99.0]
    ready.ingest("stats", rows([3], [1.0], [T0 + timedelta(days=5)]))
    early = ready.get_online_features([{"user_id": 3}], ["stats:spend"], now=T0)
    assert early.statuses["spend"] == [fl.Status.NOT_FOUND]


def test_composite_keys_and_columnar_entity_rows(ready):
    ready.ingest("sales", pa.table({
        "shop_id": ["a", "a", "b"], "region": pa.array([1, 2, 1], pa.int32()), "revenue": [1.0, 2.0, 3.0],
        "ts": pa.array([T0] * 3, pa.timestamp("us")),
    }))
    got = ready.get_online_features({"shop_id": ["a", "b", "a"], "region": [2, 1, 9]}, ["sales:revenue"], now=T0)
    assert got.to_dict() == {"shop_id": ["a", "b", "a"], "region": [2, 1, 9], "revenue": [2.0, 3.0, None]}


def test_no_entities_gives_an_empty_typed_response(ready):
    got = ready.get_online_features([], ["stats:spend", "sales:revenue"])
    assert got.to_dict() == {"user_id": [], "spend": [], "shop_id": [], "region": [], "revenue": []}
    schema = got.to_arrow().schema
    assert schema.field("region").type == pa.int32() and schema.field("spend").type == pa.float64()


def test_features_come_back_in_the_order_asked(ready):
    got = ready.get_online_features([{"user_id": 1, "shop_id": "a", "region": 1}], ["stats:spend", "sales:revenue", "stats:vip"], now=T0)
    assert list(got.to_dict()) == ["user_id", "shop_id", "region", "spend", "revenue", "vip"]
    assert list(got.statuses) == ["spend", "revenue", "vip"]


def test_bad_now_and_entity_rows(ready):
    with pytest.raises(fl.InputError, match="now must be a datetime"):
        ready.get_online_features([{"user_id": 1}], ["stats:spend"], now=T0.date())
    with pytest.raises(fl.InputError, match="end_date must be a datetime"):
        ready.materialize(end_date="2024-01-01")
    with pytest.raises(fl.InputError, match="entity_rows must be"):
        ready.get_online_features(None, ["stats:spend"])
    # A key of another type is converted where nothing is lost, else refused: never
    # reported NOT_FOUND without having been looked up as the key it stands for.
    as_text = ready.get_online_features({"user_id": ["1", 1.0, 1]}, ["stats:spend"], now=T0)
    assert as_text.to_dict()["user_id"] == [1, 1, 1]
    assert as_text.statuses["spend"] == [fl.Status.PRESENT] * 3
    assert as_text.to_arrow().column("user_id").type == pa.int64()
    for bad in (True, 1.5, "1.0", " 1", "one", [1], {"id": 1}):
        with pytest.raises(fl.InputError, match="join key 'user_id' of view 'stats' is int64"):
            ready.get_online_features({"user_id": [bad]}, ["stats:spend"], now=T0)


def test_several_views_in_one_call_and_full_names(ready):
    got = ready.get_online_features(
        [{"user_id": 1, "shop_id": "a", "region": 1}], ["stats:spend", "sales:revenue"], now=T0, full_feature_names=True
    )
    assert got.to_dict() == {"user_id": [1], "stats__spend": [10.0], "shop_id": ["a"], "region": [1], "sales__revenue": [None]}


@pytest.mark.parametrize(
    "entity_rows, features, error, message",
    [
        ([{"user_id": 1}], ["stats:nope"], fl.UnknownFeatureError, "has no feature 'nope'"),
        ([{"user_id": 1}], ["nope:spend"], fl.UnknownFeatureViewError, "'nope' is not registered"),
        ([{"user_id": 1}], ["spend"], fl.UnknownFeatureError, "form 'view:feature'"),
        ([{"user_id": 1}], [], fl.InputError, "no features requested"),
        ([{"uid": 1}], ["stats:spend"], fl.InputError, "lack join key 'user_id'"),
        ([{"user_id": 1}, {"x": 2}], ["stats:spend"], fl.InputError, "entity row 1 has no key 'user_id'"),
        ({"user_id": [1, 2], "shop_id": ["a"]}, ["stats:spend"], fl.InputError, "different lengths"),
    ],
)
def test_bad_requests(ready, entity_rows, features, error, message):
    with pytest.raises(error, match=message):
        ready.get_online_features(entity_rows, features)


def test_reads_never_fail_while_definitions_change(ready):
    """apply, materialize and delete run while other threads read: readers see a view or
    a clear UnknownFeatureViewError, never a crash or a half-updated plan."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                ready.get_online_features([{"user_id": 1}], ["stats:spend"], now=T0)
                try:
                    got = ready.get_online_features([{"user_id": 1}], ["extra:y"], now=T0).to_dict()["y"]
                    assert got in ([None], [2.0])
                except fl.UnknownFeatureViewError:
                    pass
        except BaseException as exc:  # noqa: BLE001 - a thread's failure is asserted on in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    extra = fl.FeatureView("extra", entities=[user], schema={"y": "float64"}, timestamp_field="ts")
    try:
        for _ in range(15):
            ready.apply([extra])
            ready.ingest("extra", pa.table({"user_id": [1], "y": [2.0], "ts": pa.array([T0], pa.timestamp("us"))}))
            ready.materialize()
            ready.delete_feature_view("extra")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors[:3]


def test_reads_are_safe_while_another_thread_ingests(ready):
    """Readers never see an error, a torn row, or a value older than one already seen."""
    ready.get_online_features([{"user_id": 7}], ["stats:spend"])
    stop = threading.Event()
    errors: list[BaseException] = []
    written: list[float] = []

    def writer() -> None:
        try:
            for i in range(1, 60):
                ready.ingest("stats", rows([7, 8], [float(i), float(i)], [T0 + timedelta(seconds=i)] * 2))
                written.append(float(i))
        except BaseException as exc:  # noqa: BLE001  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            stop.set()

    def reader() -> None:
        last = 0.0
        try:
            while not stop.is_set():
                got = ready.get_online_features({"user_id": [7, 8]}, ["stats:spend"], now=T0 + timedelta(minutes=5)).to_dict()["spend"]
                if got[0] is not None:
                    assert got[0] >= last
                    last = got[0]
                time.sleep(0)
        except BaseException as exc:  # noqa: BLE001 - a thread's failure is asserted on in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert ready.get_online_features({"user_id": [7, 8]}, ["stats:spend"], now=T0 + timedelta(minutes=5)).to_dict()["spend"] == [59.0, 59.0]


def test_materialize_up_to_a_time(ready):
    ready.ingest("stats", rows([1], [12.0], [T0 + timedelta(hours=5)]))
    (result,) = ready.materialize("stats", end_date=T0 + timedelta(hours=1))
    assert result.view == "stats" and result.online_rows == 2
    now = T0 + timedelta(hours=6)
    assert ready.get_online_features([{"user_id": 1}], ["stats:spend"], now=now).to_dict()["spend"] == [10.0]
    ready.materialize()
    assert ready.get_online_features([{"user_id": 1}], ["stats:spend"], now=now).to_dict()["spend"] == [12.0]


def test_materialize_counts_the_rebuilt_table_even_while_the_table_lagged(ready):
    """Small pushes while the index serves leave the online table lagging; materialize up
    to an earlier time counts the entities it rebuilt, not those the lag would add."""
    ready.get_online_features([{"user_id": 1}], ["stats:spend"], now=T0)  # loads the index: pushes defer
    ready.ingest("stats", rows([3], [30.0], [T0 + timedelta(hours=5)]))  # a new entity, after end_date
    assert ready.describe("stats")["online_rows"] == 3  # the lag counts while it lasts
    (result,) = ready.materialize("stats", end_date=T0 + timedelta(hours=1))
    assert result.online_rows == 2 == ready.describe("stats")["online_rows"]


#: (key, value, event time, created time): few keys and times, so that ties and late
#: events are common; values distinct enough that a value landing on the wrong key shows.
ROW = st.tuples(
    st.integers(0, 4), st.sampled_from([None, float("nan"), -0.0, 0.0, 1.0, 2.0, 3.0]), st.integers(0, 5),
    st.sampled_from([None, 0, 1]),
)


@given(st.lists(st.lists(ROW, max_size=6), max_size=5))
def test_materialize_equals_ingest_time_maintenance(batches):
    view = fl.FeatureView("v", entities=[user], schema={"x": "float64"}, timestamp_field="ts", created_timestamp_field="c")
    with fl.open() as store:
        store.apply([view])
        for batch in batches:
            store.ingest("v", pa.table({
                "user_id": pa.array([r[0] for r in batch], pa.int64()),
                "x": pa.array([r[1] for r in batch], pa.float64()),
                "ts": ts_array([r[2] for r in batch]),
                "c": ts_array([r[3] for r in batch]),
            }))
        query = 'SELECT * FROM "fl_online__v" ORDER BY user_id'
        maintained = store.con.sql(query).fetchall()
        store.materialize()
        rebuilt = store.con.sql(query).fetchall()
    assert repr(maintained) == repr(rebuilt)


account = fl.Entity("account", join_keys={"user_id": "string"})


@given(batches=st.lists(st.lists(ROW, max_size=6), max_size=5), reopen=st.booleans(), text_keys=st.booleans())
def test_small_ingests_while_serving_defer_the_online_table_and_lose_nothing(batches, reopen, text_keys, tmp_path_factory):
    """With the online index loaded, a small ingest leaves the online table to catch up
    later and the index decides the winners. Reads then equal the point-in-time values;
    after a checkpoint (or a close and reopen, or a crash-like reopen without one) the
    online table equals what materialize rebuilds from history. Integer keys and text
    keys (the two kinds of key index) alike."""
    entity = account if text_keys else user
    view = fl.FeatureView("v", entities=[entity], schema={"x": "float64"}, timestamp_field="ts", created_timestamp_field="c")
    path = tmp_path_factory.mktemp("deferred") / "s.duckdb"
    key_type = pa.string() if text_keys else pa.int64()
    keys = {"user_id": pa.array(range(5)).cast(key_type).to_pylist()}
    now = datetime(1970, 1, 1) + timedelta(microseconds=10)
    store = fl.open(path)
    try:
        store.apply([view])
        store.get_online_features(keys, ["v:x"], now=now)  # the index is loaded: ingests defer
        for batch in batches:
            store.ingest("v", pa.table({
                "user_id": pa.array([r[0] for r in batch], pa.int64()).cast(key_type),
                "x": pa.array([r[1] for r in batch], pa.float64()),
                "ts": ts_array([r[2] for r in batch]),
                "c": ts_array([r[3] for r in batch]),
            }))
        served = store.get_online_features(keys, ["v:x"], now=now)
        spine = pa.table({"user_id": keys["user_id"], "event_timestamp": ts_array([10] * 5)})
        offline = store.get_historical_features(spine, ["v:x"]).column("x").to_pylist()
        assert repr(served.to_dict()["x"]) == repr(offline)
        if reopen:
            store.close()  # catches the online table up
            store = fl.open(path)
        else:
            store.checkpoint()
        assert store.con.sql("SELECT count(*) FROM fl_meta WHERE key LIKE 'online_pending:%'").fetchall() == [(0,)]
        query = 'SELECT * FROM "fl_online__v" ORDER BY user_id'
        maintained = store.con.sql(query).fetchall()
        again = store.get_online_features(keys, ["v:x"], now=now)
        store.materialize()
        assert repr(maintained) == repr(store.con.sql(query).fetchall())
        assert repr(again.to_dict()) == repr(served.to_dict())
    finally:
        store.close()


def test_a_store_reopened_with_a_lagging_online_table_serves_the_latest_values(tmp_path):
    """A process that dies after small ingests leaves the lag recorded in the file; the
    next open serves from the online table plus the history it lags."""
    path = tmp_path / "s.duckdb"
    script = f"""
import os, pyarrow as pa, featurelite as fl
from datetime import datetime
user = fl.Entity("user", join_keys=["user_id"])
v = fl.FeatureView("v", entities=[user], schema={{"x": "float64"}}, timestamp_field="ts")
s = fl.open({str(path)!r})
s.apply([v])
s.ingest("v", pa.table({{"user_id": [1, 2], "x": [1.0, 2.0], "ts": [datetime(2026, 1, 1)] * 2}}))
s.get_online_features([{{"user_id": 1}}], ["v:x"])
s.ingest("v", pa.table({{"user_id": [1], "x": [10.0], "ts": [datetime(2026, 1, 2)]}}))
os._exit(0)  # no close: the online table still lags
"""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with fl.open(path, read_only=True) as store:
        got = store.get_online_features({"user_id": [1, 2]}, ["v:x"], now=datetime(2026, 1, 3)).to_dict()
        assert got["x"] == [10.0, 2.0]
        assert store.describe("v")["online_rows"] == 2
    with fl.open(path) as store:
        store.checkpoint()
        assert store.con.sql('SELECT x FROM "fl_online__v" ORDER BY user_id').fetchall() == [(10.0,), (2.0,)]
