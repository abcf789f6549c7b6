"""What consumes windowed aggregates: on-demand featurizers bound to aggregate features (a
training set at t == an online read at t == a plain-Python oracle, bit for bit, empty
windows included) and Store.verify, which compares the online path with the training-set
path at sampled (key, time) pairs and reports a difference."""

from __future__ import annotations

import math
import struct
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import featurelite as fl
from featurelite import window_buffer

T0 = datetime(2024, 5, 1)
user = fl.Entity("user", join_keys=["user_id"])
txn = fl.FeatureView(
    "txn", entities=[user], schema={"amount": "float64"}, timestamp_field="ts",
    aggregations=[fl.Aggregation("amount", "sum", "10us"), fl.Aggregation("amount", "count", "10us"),
                  fl.Aggregation("amount", "max", "3us")],
)


@fl.featurizer
def spend_per_txn(amount_sum_10us: float, amount_count_10us: int) -> float:
    return amount_sum_10us / amount_count_10us if amount_count_10us > 0 else -1.0


@fl.featurizer
def latest_share(amount: float, amount_sum_10us: float, amount_max_3us: float = -7.0) -> float:
    return amount / amount_sum_10us + amount_max_3us


ratios = fl.OnDemandFeatureView("ratios", sources=[txn], featurizers={"spend_per_txn": spend_per_txn})
mixed = fl.OnDemandFeatureView("mixed", sources=[txn], featurizers={"latest_share": latest_share})


def at(us: int) -> datetime:
    return T0 + timedelta(microseconds=us)


def events(rows: list[tuple[int, int, float | None]]) -> pa.Table:
    """rows: (user_id, time in us, amount)."""
    return pa.table({
        "user_id": pa.array([r[0] for r in rows], pa.int64()),
        "amount": pa.array([r[2] for r in rows], pa.float64()),
        "ts": pa.array([at(r[1]) for r in rows], pa.timestamp("us")),
    })


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    return type(a) is type(b) and a == b


def spend_oracle(rows: list[tuple[int, int, float | None]], key: int, t: int) -> float:
    """Shares no code with the store: integer-valued amounts, so the plain sum is exact."""
    inside = [r[2] for r in rows if r[0] == key and t - 10 < r[1] <= t and r[2] is not None]
    return float(sum(inside)) / len(inside) if inside else -1.0


@pytest.fixture(params=["buffer", "history"])
def held(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Online aggregates from the in-memory buffer, or (for older read times) history."""
    if request.param == "buffer":
        monkeypatch.setattr(window_buffer, "EXTRA_RETENTION_US", 10**15)
    return str(request.param)


def test_an_on_demand_view_binds_aggregates_by_name_and_type() -> None:
    with fl.open() as store:
        store.apply([user, txn, ratios])
        assert store.describe("ratios")
        with pytest.raises(fl.DefinitionError, match="amount_count_10us"):

            @fl.featurizer
            def wrong(amount_count_10us: float) -> float:  # count is int64: it feeds an int input only
                return amount_count_10us

            store.apply([fl.OnDemandFeatureView("wrong", sources=[txn], featurizers={"w": wrong})])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 20),
                            st.one_of(st.none(), st.integers(-5, 5).map(float))), min_size=1, max_size=12),
    times=st.lists(st.integers(-2, 40), min_size=1, max_size=4),
)
def test_online_equals_training_for_featurizers_over_aggregates(held: str, rows: list[Any], times: list[int]) -> None:
    features = ["ratios:spend_per_txn", "mixed:latest_share", "txn:amount_count_10us"]
    keys = [0, 1, 2, 3]
    with fl.open() as store:
        store.apply([user, txn, ratios, mixed])
        store.ingest("txn", events(rows))
        spine = pa.table({
            "user_id": pa.array([k for _ in times for k in keys], pa.int64()),
            "event_timestamp": pa.array([at(t) for t in times for _ in keys], pa.timestamp("us")),
        })
        train = store.get_historical_features(spine, features).to_pydict()
        row = 0
        for t in times:
            several = store.get_online_features({"user_id": keys}, features, now=at(t))
            for i, key in enumerate(keys):
                one = store.get_online_features([{"user_id": key}], features, now=at(t))
                for name in ("spend_per_txn", "latest_share", "amount_count_10us"):
                    want = train[name][row]
                    assert same(one.to_dict()[name][0], want), (name, key, t, one.to_dict(), want)
                    assert same(several.to_dict()[name][i], want), (name, key, t)
                assert same(want_spend := train["spend_per_txn"][row], spend_oracle(rows, key, t)), want_spend
                count = train["amount_count_10us"][row]
                empty = one.statuses["amount_count_10us"][0] == fl.Status.EMPTY_WINDOW
                assert empty == (count == 0)
                if empty:  # the featurizer still runs: count 0 -> its own answer
                    assert one.to_dict()["spend_per_txn"] == [-1.0]
                    assert one.statuses["spend_per_txn"] == [fl.Status.PRESENT]
                row += 1


def test_an_empty_window_feeds_the_featurizer_zero_and_a_null_falls_to_the_default() -> None:
    with fl.open() as store:
        store.apply([user, txn, ratios, mixed])
        store.ingest("txn", events([(1, 0, 2.0), (1, 5, 4.0)]))
        got = store.get_online_features([{"user_id": 1}, {"user_id": 9}], ["ratios:spend_per_txn", "mixed:latest_share"],
                                        now=at(9))
        # user 1: sum 6 over 2 events; max over (6, 9] is empty -> the default -7.0
        assert got.to_dict()["spend_per_txn"] == [3.0, -1.0]
        assert got.to_dict()["latest_share"][0] == 4.0 / 6.0 - 7.0
        gone = store.get_online_features([{"user_id": 1}], ["ratios:spend_per_txn", "txn:amount_sum_10us"], now=at(30))
        assert gone.to_dict() == {"user_id": [1], "spend_per_txn": [-1.0], "amount_sum_10us": [0.0]}
        assert gone.statuses == {"spend_per_txn": [fl.Status.PRESENT], "amount_sum_10us": [fl.Status.EMPTY_WINDOW]}


def test_a_pick_over_a_view_without_events_reads_an_empty_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(window_buffer, "EXTRA_RETENTION_US", 10**15)  # the buffer answers
    with fl.open() as store:
        store.apply([user, txn])
        got = store.get_online_features([{"user_id": 1}], ["txn:amount_max_3us"], now=at(5))
        assert got.to_dict()["amount_max_3us"] == [None]
        assert got.statuses["amount_max_3us"] == [fl.Status.EMPTY_WINDOW]


# -- verify ---------------------------------------------------------------------------------


def busy_store(store: fl.Store) -> None:
    store.apply([user, txn, ratios])
    rows = [(k, t, float((k * 7 + t) % 5) - 2.0) for k in range(4) for t in range(0, 60, 3)]
    rows += [(1, 61, math.inf), (1, 62, None), (2, 61, -0.0)]
    store.ingest("txn", events(rows))


def test_verify_checks_the_aggregates_of_a_view_and_passes_on_a_real_store() -> None:
    with fl.open() as store:
        busy_store(store)
        [result] = store.verify("txn", examples=200)
        assert result.ok, str(result.mismatch)
        assert result.view == "txn" and result.features == ("amount_sum_10us", "amount_count_10us", "amount_max_3us")
        assert 0 < result.examples <= 200
        everything = store.verify(examples=100)
        assert {(r.view, r.featurizer) for r in everything} == {("txn", "aggregations"), ("ratios", "spend_per_txn")}
        assert all(r.ok for r in everything)


def test_verify_of_a_view_without_history_compares_nothing_and_passes() -> None:
    with fl.open() as store:
        store.apply([user, txn])
        [result] = store.verify("txn")
        assert result.ok and result.examples == 0


@pytest.mark.parametrize("wrong", ["value", "status"])
def test_verify_detects_an_online_engine_that_is_wrong(monkeypatch: pytest.MonkeyPatch, wrong: str) -> None:
    right = window_buffer.WindowBuffer.read

    def skewed(self: Any, keys: Any, aggregations: Any, now_us: int) -> Any:
        values, present, counts = right(self, keys, aggregations, now_us)
        if wrong == "value":  # key 0's sums off by one ulp
            values = [[math.nextafter(v, math.inf) if a.name == "amount_sum_10us" and k == 0 else v
                       for k, v in zip(keys, vals, strict=True)] for a, vals in zip(aggregations, values, strict=True)]
        else:  # an empty window reported as holding an event
            counts = [[n or 1 for n in ns] for ns in counts]
        return values, present, counts

    with fl.open() as store:
        busy_store(store)
        monkeypatch.setattr(window_buffer.WindowBuffer, "read", skewed)
        results = store.verify("txn", examples=300)
        [result] = results
        assert not result.ok
        text = str(result.mismatch)
        assert "txn:" in text and "the training set gives" in text and "an online read gives" in text
        if wrong == "value":
            assert result.mismatch.feature == "amount_sum_10us" and result.mismatch.key == 0
        else:
            assert fl.Status.EMPTY_WINDOW in (result.mismatch.training_status, result.mismatch.online_status)
