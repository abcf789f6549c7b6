"""Windowed aggregations through the store: a training set at t, an online read at t and a
brute-force oracle (exact sums with Fraction) agree bit for bit, for every function, with
ties, late events, nulls, NaN, +-inf, -0.0 and magnitudes where a naive sum goes wrong."""

from __future__ import annotations

import math
import struct
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import featurelite as fl

T0 = datetime(2024, 5, 1)
user = fl.Entity("user", join_keys=["user_id"])
FUNCTIONS = ("count", "sum", "mean", "min", "max", "last", "std", "var")
WINDOWS = ("3us", "10us", "1h")


def view(windows: tuple[str, ...] = WINDOWS) -> fl.FeatureView:
    aggs = [fl.Aggregation("x", f, w) for f in FUNCTIONS for w in windows]
    aggs += [fl.Aggregation("tag", "count", "10us"), fl.Aggregation("tag", "last", "10us")]
    return fl.FeatureView(
        "ev", entities=[user], schema={"x": "float64", "tag": "string"}, timestamp_field="ts",
        created_timestamp_field="created", aggregations=aggs,
    )


def at(us: int) -> datetime:
    return T0 + timedelta(microseconds=us)


def events_table(rows: list[tuple[int, float | None, int, int | None, str | None]]) -> pa.Table:
    return pa.table({
        "user_id": pa.array([r[0] for r in rows], pa.int64()),
        "x": pa.array([r[1] for r in rows], pa.float64()),
        "tag": pa.array([r[4] for r in rows], pa.string()),
        "ts": pa.array([at(r[2]) for r in rows], pa.timestamp("us")),
        "created": pa.array([None if r[3] is None else at(r[3]) for r in rows], pa.timestamp("us")),
    })


# -- the oracle: shares no code with the store -----------------------------------------------


def exact_sum(values: list[float]) -> float:
    if any(math.isnan(v) for v in values) or (math.inf in values and -math.inf in values):
        return math.nan
    if math.inf in values:
        return math.inf
    if -math.inf in values:
        return -math.inf
    total = sum((Fraction(v) for v in values), Fraction(0))
    try:
        return float(total) + 0.0  # + 0.0: an exact zero is +0.0, as math.fsum gives it
    except OverflowError:
        return math.inf if total > 0 else -math.inf


def total_order(v: float) -> tuple[bool, float, bool]:
    """NaN above everything, then by value, -0.0 below +0.0."""
    return (True, 0.0, True) if math.isnan(v) else (False, v, math.copysign(1.0, v) > 0)


def oracle(events: list[tuple[int, float | None, int, int | None, str | None, int]], key: int, t: int,
           window: int, function: str, column: str) -> Any:
    """events: (key, x, ts, created, tag, seq)."""
    inside = [e for e in events if e[0] == key and t - window < e[2] <= t]
    inside.sort(key=lambda e: (e[2], -(2**63) if e[3] is None else e[3], e[5]))
    pick = 1 if column == "x" else 4
    present = [e for e in inside if e[pick] is not None]
    xs = [e[pick] for e in present]
    if function == "count":
        return len(xs)
    if function == "sum":
        return exact_sum(xs)
    if not xs:
        return None
    if function == "last":
        return xs[-1]
    if function in ("min", "max"):
        if any(math.isnan(v) for v in xs):
            return [v for v in xs if math.isnan(v)][-1]
        best = max(total_order(v) for v in xs) if function == "max" else min(total_order(v) for v in xs)
        return [v for v in xs if total_order(v) == best][-1]
    mean = exact_sum(xs) / len(xs)
    if function == "mean":
        return mean
    if len(xs) < 2:
        return None
    var = exact_sum([(v - mean) * (v - mean) for v in xs]) / (len(xs) - 1)
    return var if function == "var" else math.sqrt(var)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    return type(a) is type(b) and a == b if a is not None else b is None


VALUES = st.one_of(
    st.none(), st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e16, -1e16, 1e308, -1e308, 5e-324, math.inf, -math.inf, math.nan]),
    st.floats(allow_nan=True, allow_infinity=True),
)
EVENT = st.tuples(st.integers(0, 2), VALUES, st.integers(0, 12), st.one_of(st.none(), st.integers(0, 3)),
                  st.one_of(st.none(), st.sampled_from(["a", "b", ""])))


@pytest.fixture(params=["buffer", "history"])
def held(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Online reads from the in-memory buffer (holding every event), or from history (the
    buffer holding only what the longest window reaches before the latest event)."""
    from featurelite import window_buffer

    if request.param == "buffer":
        monkeypatch.setattr(window_buffer, "EXTRA_RETENTION_US", 10**15)
    return str(request.param)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(EVENT, min_size=1, max_size=8), min_size=1, max_size=4),
       queries=st.lists(st.tuples(st.integers(0, 3), st.integers(-2, 16)), min_size=1, max_size=6))
def test_online_training_and_oracle_agree_bit_for_bit(held: str, batches: list[list[tuple[Any, ...]]],
                                                      queries: list[tuple[int, int]]) -> None:
    events: list[tuple[Any, ...]] = []
    with fl.open() as store:
        store.apply([user, view()])
        for i, batch in enumerate(batches):
            if i == 1:  # from the second batch on, pushes land in a loaded buffer
                store.get_online_features([{"user_id": 0}], ["ev:x_sum_1h"], now=at(100))
            store.ingest("ev", events_table(batch))
            events += [(*e, len(events) + j) for j, e in enumerate(batch)]
        names = [a.name for a in store.get_feature_view("ev").aggregations]
        spine = pa.table({"user_id": pa.array([q[0] for q in queries], pa.int64()),
                          "event_timestamp": pa.array([at(q[1]) for q in queries], pa.timestamp("us"))})
        train = store.get_historical_features(spine, [f"ev:{n}" for n in names])
        for row, (key, t) in enumerate(queries):
            online = store.get_online_features([{"user_id": key}], [f"ev:{n}" for n in names], now=at(t))
            got = online.to_dict()
            for agg in store.get_feature_view("ev").aggregations:
                want = oracle(events, key, t, agg.window_us, agg.function, agg.column)
                trained = train.column(agg.name)[row].as_py()
                served = got[agg.name][0]
                assert same(trained, want), (agg.name, key, t, trained, want)
                assert same(served, want), (agg.name, key, t, served, want)
                status = online.statuses[agg.name][0]
                held = any(e[0] == key and t - agg.window_us < e[2] <= t and e[1 if agg.column == "x" else 4] is not None
                           for e in events)
                assert (status == fl.Status.EMPTY_WINDOW) == (not held), (agg.name, status)


def test_a_naive_sum_would_differ_and_the_store_does_not() -> None:
    xs = [1e16, 1.0, -1e16, 1.0]
    assert sum(xs) != math.fsum(xs)  # the case this test exists for
    with fl.open() as store:
        store.apply([user, view()])
        store.ingest("ev", events_table([(1, x, i, None, None) for i, x in enumerate(xs)]))
        got = store.get_online_features([{"user_id": 1}], ["ev:x_sum_1h", "ev:x_count_1h"], now=at(10)).to_dict()
        assert got["x_sum_1h"] == [2.0] and got["x_count_1h"] == [4]


def test_windows_slide_without_a_write_and_empty_windows_say_so() -> None:
    with fl.open() as store:
        store.apply([user, view()])
        store.ingest("ev", events_table([(1, 2.0, 0, None, "a"), (1, 3.0, 5, None, "b")]))
        refs = ["ev:x_sum_10us", "ev:x_count_10us", "ev:x_mean_10us", "ev:x_max_10us", "ev:tag_last_10us"]
        assert store.get_online_features([{"user_id": 1}], refs, now=at(6)).to_dict()["x_sum_10us"] == [5.0]
        later = store.get_online_features([{"user_id": 1}], refs, now=at(12))
        assert later.to_dict()["x_sum_10us"] == [3.0] and later.to_dict()["tag_last_10us"] == ["b"]
        gone = store.get_online_features([{"user_id": 1}], refs, now=at(30))
        assert gone.to_dict() == {"user_id": [1], "x_sum_10us": [0.0], "x_count_10us": [0], "x_mean_10us": [None],
                                  "x_max_10us": [None], "tag_last_10us": [None]}
        assert all(s == [fl.Status.EMPTY_WINDOW] for s in gone.statuses.values()), gone.statuses


@pytest.mark.parametrize("reopen", [False, True])
def test_an_aggregation_added_to_a_view_with_events_sees_them(tmp_path: Any, reopen: bool) -> None:
    plain = fl.FeatureView("ev", entities=[user], schema={"x": "float64", "tag": "string"}, timestamp_field="ts",
                           created_timestamp_field="created")
    path = tmp_path / "s.duckdb"
    with fl.open(path) as store:
        store.apply([user, plain])
        store.ingest("ev", events_table([(1, 2.0, 0, None, "a"), (1, 3.0, 5, None, "b")]))
        if not reopen:
            store.apply([view()])
            assert store.get_online_features([{"user_id": 1}], ["ev:x_sum_1h"], now=at(6)).to_dict()["x_sum_1h"] == [5.0]
    if reopen:
        with fl.open(path) as store:
            store.apply([view()])
            assert store.get_online_features([{"user_id": 1}], ["ev:x_sum_1h"], now=at(6)).to_dict()["x_sum_1h"] == [5.0]


def test_the_online_buffer_drops_what_no_window_reaches_and_stays_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long run of pushes with advancing event times: the buffer keeps only what the
    longest window (here 1h) can reach, and reads still equal the training set."""
    from featurelite import window_buffer

    monkeypatch.setattr(window_buffer, "_COMPACT_MIN", 64)
    hour = 3_600_000_000
    with fl.open() as store:
        store.apply([user, view()])
        store.ingest("ev", events_table([(1, 1.0, 0, None, "a")]))
        refs = ["ev:x_sum_1h", "ev:x_count_1h", "ev:x_max_1h", "ev:tag_last_10us"]
        store.get_online_features([{"user_id": 1}], refs, now=at(0))  # loads the buffer
        sizes = []
        for step in range(1, 60):
            t = step * hour // 10  # ten pushes an hour
            store.ingest("ev", events_table([(k, float(step), t, None, "b") for k in range(1, 4)]))
            sizes.append(store._states["ev"].window.size)
        assert max(sizes[-20:]) <= 3 * 11 * 2 + 64  # about an hour's events, not all 178
        now = 59 * hour // 10
        online = store.get_online_features({"user_id": [1, 2, 3]}, refs, now=at(now)).to_dict()
        spine = pa.table({"user_id": pa.array([1, 2, 3], pa.int64()), "event_timestamp": pa.array([at(now)] * 3, pa.timestamp("us"))})
        train = store.get_historical_features(spine, refs)
        for ref in refs:
            name = ref.split(":")[1]
            assert online[name] == train.column(name).to_pylist(), name
