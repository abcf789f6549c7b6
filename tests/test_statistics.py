"""Store.stats (issue 15): statistics computed by DuckDB over a view's history and online
values, checked against a plain NumPy/Python oracle, cached in the file, never holding up
ingests, and refusing bad input with the fix.

The oracle shares no code with featurelite.statistics: it recomputes every number from the
rows that were ingested, in Python.
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import featurelite as fl
from featurelite import statistics
from featurelite.cli import main

T0 = datetime(2026, 3, 2, tzinfo=timezone.utc)  # a Monday: weeks start on it
user = fl.Entity("user", join_keys=["user_id"])


def view(description: str = "") -> fl.FeatureView:
    return fl.FeatureView(
        "events", entities=[user], timestamp_field="ts", description=description,
        schema={"amount": "float64", "count": "int64", "country": "string", "flag": "bool", "seen": "timestamp"},
    )


def table(rows: list[dict]) -> pa.Table:
    return pa.table({
        "user_id": pa.array([r["user_id"] for r in rows], pa.int64()),
        "amount": pa.array([r["amount"] for r in rows], pa.float64()),
        "count": pa.array([r["count"] for r in rows], pa.int64()),
        "country": pa.array([r["country"] for r in rows], pa.string()),
        "flag": pa.array([r["flag"] for r in rows], pa.bool_()),
        "seen": pa.array([r["seen"] for r in rows], pa.timestamp("us", tz="UTC")),
        "ts": pa.array([r["ts"] for r in rows], pa.timestamp("us", tz="UTC")),
    })


floats = st.one_of(
    st.none(), st.floats(-1e6, 1e6, allow_nan=False), st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0]),
)
rows_strategy = st.lists(st.fixed_dictionaries({
    "user_id": st.integers(0, 30),
    "amount": floats,
    "count": st.one_of(st.none(), st.integers(-50, 50)),
    "country": st.one_of(st.none(), st.sampled_from(["de", "fr", "us", "<b>x</b>"])),
    "flag": st.one_of(st.none(), st.booleans()),
    "seen": st.one_of(st.none(), st.integers(0, 10 * 86_400).map(lambda s: T0 + timedelta(seconds=s))),
    # Distinct event times per row (a key may repeat): microseconds over 20 days.
    "ts": st.integers(0, 20 * 86_400 * 10**6).map(lambda us: T0 + timedelta(microseconds=us)),
}), min_size=0, max_size=60, unique_by=lambda r: (r["user_id"], r["ts"]))


def finite(values: list) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def check_numeric(found: fl.FeatureStats, values: list, *, epoch: bool = False) -> None:
    present = [v for v in values if v is not None]
    numbers = finite([v.timestamp() for v in present] if epoch else present)
    assert (found.count, found.nulls) == (len(values), len(values) - len(present))
    if not epoch:
        assert found.nans == sum(1 for v in present if math.isnan(v))
        assert found.infinities == sum(1 for v in present if math.isinf(v))
    if not numbers:
        assert found.mean is None and found.histogram is None and found.quantiles == {}
        return
    if epoch:
        assert found.min == min(present).isoformat() and found.max == max(present).isoformat()
    else:
        assert (found.min, found.max) == (min(numbers), max(numbers))
    assert found.mean == pytest.approx(float(np.mean(numbers)), rel=1e-9, abs=1e-6)
    if len(numbers) > 1:
        assert found.std == pytest.approx(float(np.std(numbers, ddof=1)), rel=1e-6, abs=1e-6)
    else:
        assert found.std is None
    # Quantiles are estimates (t-digest), but always values between min and max, in order.
    qs = [found.quantiles[repr(q)] for q in statistics.QUANTILES]
    assert qs == sorted(qs) and min(numbers) - 1e-6 <= qs[0] and qs[-1] <= max(numbers) + 1e-6
    # Every finite value is in exactly one bin: the bin its value falls in by the edges.
    histogram = found.histogram
    assert histogram is not None and len(histogram.edges) == len(histogram.counts) + 1
    assert sum(histogram.counts) == len(numbers)
    expected = Counter()
    for v in numbers:
        index = int(np.searchsorted(histogram.edges, v, side="right")) - 1
        expected[min(max(index, 0), len(histogram.counts) - 1)] += 1
    assert dict(expected) == {i: c for i, c in enumerate(histogram.counts) if c}


def oracle_days(rows: list[dict], feature: str) -> dict[datetime, tuple[int, int]]:
    days: dict[datetime, list[int]] = {}
    for r in rows:
        day = r["ts"].replace(hour=0, minute=0, second=0, microsecond=0)
        entry = days.setdefault(day, [0, 0])
        entry[0] += 1
        entry[1] += r[feature] is None
    return {d: (n, nulls) for d, (n, nulls) in days.items()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy)
def test_statistics_equal_an_oracle_over_the_rows_ingested(tmp_path_factory, rows):
    with fl.open(tmp_path_factory.mktemp("s") / "s.duckdb") as store:
        store.apply([user, view()])
        if rows:
            store.ingest("events", table(rows))
        found = store.stats("events", period="day")
    assert found.rows == len(rows) and found.period == "day" and not found.cached
    assert set(found.features) == {"amount", "count", "country", "flag", "seen"}
    check_numeric(found.features["amount"], [r["amount"] for r in rows])
    check_numeric(found.features["count"], [r["count"] for r in rows])
    check_numeric(found.features["seen"], [r["seen"] for r in rows], epoch=True)
    for name in ("country", "flag"):
        values = [r[name] for r in rows]
        got = found.features[name]
        assert (got.count, got.nulls) == (len(values), values.count(None))
        counts = Counter(str(v).lower() if isinstance(v, bool) else v for v in values if v is not None)
        assert {t.value: t.count for t in got.top} == dict(counts)  # <= TOP distinct values here
    flags = [r["flag"] for r in rows if r["flag"] is not None]
    assert found.features["flag"].mean == (pytest.approx(sum(flags) / len(flags)) if flags else None)
    # Drift: per day, the rows and nulls of each feature; the timeline's rows add up.
    days = oracle_days(rows, "amount")
    assert {p.start: (p.count, p.nulls) for p in found.features["amount"].periods} == days
    assert sum(p.rows for p in found.timeline) == len(rows)
    newest = None
    for point in found.timeline:
        day_max = max(r["ts"] for r in rows if point.start <= r["ts"] < point.start + timedelta(days=1))
        newest = day_max if newest is None else max(newest, day_max)
        assert point.newest_event == newest
    # Online: one row per key, its winner (the latest event), as the online table holds it.
    latest: dict[int, dict] = {}
    for r in sorted(rows, key=lambda r: r["ts"]):
        latest[r["user_id"]] = r
    assert found.online_rows == len(latest)
    check_numeric(found.online["count"], [r["count"] for r in latest.values()])
    # Round trip through JSON (the cache and the HTTP answer) keeps every number.
    assert fl.ViewStats.from_dict(json.loads(json.dumps(found.to_dict()))) == found


def rows_over(days: int, per_day: int, start: datetime = T0) -> list[dict]:
    return [{"user_id": i % 7, "amount": float(i), "count": i % 5, "country": "de", "flag": i % 2 == 0,
             "seen": None, "ts": start + timedelta(days=d, seconds=i)} for d in range(days) for i in range(per_day)]


def test_since_and_until_bound_the_rows_and_periods_group_by_week(tmp_path):
    with fl.open(tmp_path / "s.duckdb") as store:
        store.apply([user, view()])
        store.ingest("events", table(rows_over(21, 10)))
        bounded = store.stats("events", since=T0 + timedelta(days=7), until=T0 + timedelta(days=14), period="week")
        assert bounded.rows == 70 and bounded.features["amount"].count == 70
        assert [p.start for p in bounded.features["amount"].periods] == [T0 + timedelta(days=7)]
        assert bounded.first_event == T0 + timedelta(days=7)
        weekly = store.stats("events", period="week")
        assert [(p.start, p.rows) for p in weekly.timeline] == [(T0 + timedelta(days=7 * w), 70) for w in range(3)]
        # Without a period: days over a short history, weeks over a long one.
        assert store.stats("events").period == "day"
        store.ingest("events", table(rows_over(1, 3, T0 + timedelta(days=400))))
        assert store.stats("events", refresh=True).period == "week"


def test_results_are_cached_in_the_file_until_a_tenth_more_rows_arrive(tmp_path):
    path = tmp_path / "s.duckdb"
    with fl.open(path) as store:
        store.apply([user, view()])
        store.ingest("events", table(rows_over(10, 10)))  # 100 rows
        first = store.stats("events")
        again = store.stats("events")
        assert not first.cached and again.cached and again.computed_at == first.computed_at
        store.ingest("events", table(rows_over(1, 9, T0 + timedelta(days=30))))  # 9 new rows: under a tenth
        assert store.stats("events").computed_at == first.computed_at
        store.ingest("events", table(rows_over(1, 1, T0 + timedelta(days=31))))  # 10 new rows: a tenth
        fresh = store.stats("events")
        assert not fresh.cached and fresh.rows == 110
        store.ingest("events", table(rows_over(1, 50, T0 + timedelta(days=32))))
        assert store.stats("events", refresh=False).rows == 110  # any cached result, however old
        assert store.stats("events", refresh=True).rows == 160  # computed now
    with fl.open(path) as store:  # the cache is in the file
        reopened = store.stats("events")
        assert reopened.cached and reopened.rows == 160
        assert store.con.execute("SELECT count(*) FROM fl_stats").fetchone()[0] == 1


def test_a_read_only_store_computes_and_caches_in_memory_only(tmp_path):
    path = tmp_path / "s.duckdb"
    with fl.open(path) as store:
        store.apply([user, view()])
        store.ingest("events", table(rows_over(3, 5)))
    with fl.open(path, read_only=True) as store:
        first, again = store.stats("events"), store.stats("events")
        assert first.rows == again.rows == 15 and not first.cached and again.cached  # from the memo, not the file
        assert not store.con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'fl_stats'").fetchone()[0]


def test_a_new_version_or_a_view_created_again_is_never_answered_from_an_old_cache(tmp_path):
    with fl.open(tmp_path / "s.duckdb") as store:
        store.apply([user, view()])
        store.ingest("events", table(rows_over(3, 5)))
        old = store.stats("events")
        store.apply(view(description="metadata only"))  # a new version (not breaking)
        changed = store.stats("events")
        assert not changed.cached and changed.version != old.version
        store.delete_feature_view("events")
        store.apply(view(description="metadata only"))
        store.ingest("events", table(rows_over(1, 2)))
        again = store.stats("events")
        assert again.rows == 2 and not again.cached


def test_computing_never_holds_the_store_lock(tmp_path, monkeypatch):
    """Statistics are computed on a cursor of their own, outside the store's lock: an ingest
    and an online read finish while a computation is under way (they would wait for it, and
    this test would time out, if it held the lock)."""
    with fl.open(tmp_path / "s.duckdb") as store:
        store.apply([user, view()])
        store.ingest("events", table(rows_over(2, 5)))
        started, release = threading.Event(), threading.Event()
        compute = statistics.compute

        def slow(*args, **kwargs):
            started.set()
            assert release.wait(30), "the test never released the computation"
            return compute(*args, **kwargs)

        monkeypatch.setattr(statistics, "compute", slow)
        results: list = []
        worker = threading.Thread(target=lambda: results.append(store.stats("events", refresh=True)))
        worker.start()
        try:
            assert started.wait(30)
            done = threading.Event()

            def write_and_read():
                store.ingest("events", table(rows_over(1, 3, T0 + timedelta(days=5))))
                store.get_online_features([{"user_id": 1}], ["events:amount"])
                done.set()

            writer = threading.Thread(target=write_and_read)
            writer.start()
            assert done.wait(20), "an ingest waited for a statistics computation"
        finally:
            release.set()
            worker.join(30)
        assert results and results[0].rows in (10, 13)  # its own snapshot, whichever it saw


def test_an_empty_view_has_statistics_of_nothing(tmp_path):
    with fl.open(tmp_path / "s.duckdb") as store:
        store.apply([user, view()])
        empty = store.stats("events")
    assert (empty.rows, empty.online_rows, empty.first_event, empty.timeline) == (0, 0, None, ())
    amount = empty.features["amount"]
    assert (amount.count, amount.null_rate, amount.mean, amount.histogram, amount.periods) == (0, 0.0, None, None, ())


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda s: s.stats("nope"), fl.UnknownFeatureViewError, r"'nope' is not registered \(registered: events\)"),
    (lambda s: s.stats("shares"), fl.InputError, r"'shares' is an on-demand view.*feature views it reads \(events\)"),
    (lambda s: s.stats("events", period="month"), fl.InputError, r"period 'month' is not one of day, week"),
    (lambda s: s.stats("events", refresh="yes"), fl.InputError, r"refresh must be True, False or None"),
    (lambda s: s.stats("events", since=T0, until=T0), fl.InputError, r"since .* must be before until"),
    (lambda s: s.stats("events", since="2026-01-01"), fl.InputError, r"since"),
    (lambda s: s.stats(""), fl.UnknownFeatureViewError, r"feature view '' is not registered"),
])
def test_bad_input_is_refused_with_the_fix_and_changes_nothing(tmp_path, call, error, match):
    @fl.featurizer
    def double(amount: float) -> float:
        return amount * 2

    with fl.open(tmp_path / "s.duckdb") as store:
        events = view()
        store.apply([user, events, fl.OnDemandFeatureView("shares", sources=[events],
                                                          featurizers={"doubled": double})])
        with pytest.raises(error, match=match):
            call(store)
        assert not store.con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'fl_stats'").fetchone()[0]


def test_the_cli_prints_statistics_as_json_and_as_a_table(tmp_path):
    from click.testing import CliRunner

    path = tmp_path / "s.duckdb"
    with fl.open(path) as store:
        store.apply([user, view()])
        store.ingest("events", table(rows_over(3, 4)))
    runner = CliRunner()
    result = runner.invoke(main, ["stats", str(path), "events", "--period", "week"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["rows"] == 12 and data["period"] == "week" and data["features"]["amount"]["count"] == 12
    table_out = runner.invoke(main, ["stats", str(path), "events", "--format", "table", "--cached"])
    assert table_out.exit_code == 0 and "amount" in table_out.output and "country" in table_out.output
    bad = runner.invoke(main, ["stats", str(path), "missing"])
    assert bad.exit_code == 1 and "'missing' is not registered" in bad.output
    with fl.open(path, read_only=True) as store:  # the command kept its result in the file
        assert store.stats("events", period="week").cached


def test_quantiles_of_a_large_feature_come_from_a_deterministic_sample_and_sparse_periods_from_all(tmp_path,
                                                                                                   monkeypatch):
    """Over QUANTILE_SAMPLE * 2 finite values or more, quantiles and per-period medians read
    a sample (one row in finite // QUANTILE_SAMPLE, by hashed ingest position): the same
    answer every time, close in rank to the exact quantiles; a period whose sample is too
    small has its median from all its values."""
    monkeypatch.setattr(statistics, "QUANTILE_SAMPLE", 200)
    monkeypatch.setattr(statistics, "PERIOD_SAMPLE_MIN", 30)
    rng = np.random.default_rng(7)
    amounts = rng.lognormal(2.0, 1.0, 3_000)
    days = [0] * 2_990 + [1] * 10  # day 1: ten values, a sample of about one
    rows = [{"user_id": i % 7, "amount": float(a), "count": int(i % 5), "country": "de", "flag": True, "seen": None,
             "ts": T0 + timedelta(days=d, seconds=i)} for i, (a, d) in enumerate(zip(amounts, days, strict=True))]
    with fl.open(tmp_path / "s.duckdb") as store:
        store.apply([user, view()])
        store.ingest("events", table(rows))
        first, again = (store.stats("events", refresh=True, period="day").features["amount"] for _ in range(2))
        assert first.quantiles == again.quantiles and first.periods == again.periods  # deterministic
        for q, estimate in first.quantiles.items():
            assert abs(np.mean(amounts <= estimate) - float(q)) <= 0.05, (q, estimate)
        sparse = first.periods[1]
        assert sparse.count == 10 and sparse.p50 is not None
        assert abs(np.mean(amounts[-10:] <= sparse.p50) - 0.5) <= 0.2  # from all ten values, not a sample of one
        assert statistics._every({"count": 3_000, "nulls": 0}) == 15  # the sample: one row in fifteen
