"""The serving log, freshness, consistency replay and snapshots at their edges: sample
rates of several logs on one read, values served from history, callers that reuse their
buffers, reads racing pushes, join keys named like the log's own columns, services that
grew a view, replays of multi-key / typed / windowed / tied views, freshness in other time
zones, and snapshots next to leftover files or of a read-only store."""

from __future__ import annotations

import logging
import os
import shutil
import threading
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import featurelite as fl
import featurelite.store as store_module
from featurelite import servinglog

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
H = timedelta(hours=1)
MIN = timedelta(minutes=1)
user = fl.Entity("user", join_keys=["user_id"])
basket = fl.RequestSource("req", schema={"basket": "float64"})


@fl.featurizer
def share(basket: float, x: float = 0.0) -> float:
    return basket / (basket + x)


def logged_view(**kwargs) -> fl.FeatureView:
    return fl.FeatureView("v", entities=[user], **{"schema": {"x": "float64"}, "log": True, **kwargs})


def rows(user_ids, xs, times, view_ts="event_timestamp") -> pa.Table:
    return pa.table({
        "user_id": pa.array(user_ids, pa.int64()), "x": pa.array(xs, pa.float64()),
        view_ts: pa.array(times, pa.timestamp("us", tz="UTC")),
    })


def log_rows(store, table: str, columns: str = "*") -> list[tuple]:
    return store.con.sql(f"SELECT {columns} FROM {table} ORDER BY request_id, entity_row").fetchall()


# -- what the log records -------------------------------------------------------------


def test_a_service_log_keeps_its_own_sample_rate_when_a_view_log_takes_every_read():
    # The docs' own example: the view logs every read, the service half of them. One draw
    # decides for every log of a read, and it is 0.0 whenever some log takes every read,
    # so the service logged every read too.
    service = fl.FeatureService("s", ["v:x"], log=fl.ServingLog(sample_rate=0.25))
    with fl.open() as store:
        store.apply([user, logged_view(), service])
        store.ingest("v", rows([1], [1.0], [T0]))
        for _ in range(2000):
            store.get_online_features([{"user_id": 1}], service="s", now=T0 + H)
        store.flush_log()
        assert store.con.sql("SELECT count(*) FROM fl_serving_log__view__v").fetchall() == [(2000,)]
        service_rows = store.con.sql("SELECT count(*) FROM fl_serving_log__service__s").fetchall()[0][0]
        assert 380 < service_rows < 620  # 500 expected; about 6 standard deviations either side


def test_the_event_time_logged_is_that_of_the_value_served_from_history():
    # The newest event lies after the read time: the read serves the older value, resolved
    # from history, and the log must say when that value's event was (not the newer one's).
    with fl.open() as store:
        store.apply([user, logged_view(freshness="1d")])
        store.ingest("v", rows([1, 1], [1.0, 2.0], [T0, T0 + 2 * H]))
        served = store.get_online_features({"user_id": [1, 1]}, ["v:x"], now=T0 + H)  # two: the batch path too
        store.get_online_features([{"user_id": 1}], ["v:x"], now=T0 + H)  # one: the single-key path
        assert served.to_dict()["x"] == [1.0, 1.0]
        store.flush_log()
        logged = log_rows(store, "fl_serving_log__view__v", '"v:x", "v#event_time"')
        assert logged == [(1.0, T0.replace(tzinfo=None))] * 3


def test_the_log_records_the_request_data_served_not_what_the_caller_wrote_into_it_later():
    odfv = fl.OnDemandFeatureView("o", sources=[logged_view(), basket], featurizers={"share": share})
    service = fl.FeatureService("s", ["v:x", "o:share"], log=True)
    with fl.open() as store:
        store.apply([user, logged_view(), odfv, service])
        store.ingest("v", rows([1], [1.0], [T0]))
        data = {"basket": [1.0]}  # a request buffer the caller reuses
        assert store.get_online_features([{"user_id": 1}], service="s", request_data=data,
                                         now=T0 + H).to_dict()["share"] == [0.5]
        data["basket"][0] = 3.0
        store.flush_log()
        assert log_rows(store, "fl_serving_log__service__s", '"request:basket", "o:share"') == [(1.0, 0.5)]
        assert store.consistency("s").consistency == 1.0


def test_the_log_records_the_values_served_not_what_the_caller_imputed_into_the_response():
    with fl.open() as store:
        store.apply([user, logged_view()])
        store.ingest("v", rows([1], [1.0], [T0]))
        response = store.get_online_features({"user_id": [1, 2]}, ["v:x"], now=T0 + H)
        values = response.to_dict()
        values["x"] = [0.0 if v is None else v for v in values["x"]]  # reassigned: fine
        response.to_dict()["x"][1] = 0.0  # imputed in place: a common pattern
        store.flush_log()
        assert log_rows(store, "fl_serving_log__view__v", '"v:x", "v:x#status"') == [
            (1.0, "PRESENT"), (None, "NOT_FOUND"),
        ]
        assert store.consistency("v").consistency == 1.0


def test_a_caller_growing_a_response_loses_no_other_read_from_the_log():
    with fl.open() as store:
        store.apply([user, logged_view()])
        store.ingest("v", rows([1], [1.0], [T0]))
        store.get_online_features([{"user_id": 1}], ["v:x"], now=T0 + H)
        grown = store.get_online_features([{"user_id": 1}], ["v:x"], now=T0 + H)
        grown.to_dict()["x"].append(99.0)  # the caller's business, after the read
        store.get_online_features([{"user_id": 1}], ["v:x"], now=T0 + H)
        assert store.flush_log() == 3
        assert store.serving_stats.dropped == 0


def test_a_push_committing_between_a_read_and_its_capture_is_a_late_event_not_skew(monkeypatch):
    # The ingest position is taken after the read: a push landing in between (another
    # thread) is counted as seen, and the replay calls the difference unexplained skew.
    real = store_module.read_online
    with fl.open() as store:
        store.apply([user, logged_view()])
        store.ingest("v", rows([1], [1.0], [T0]))

        def racing(*args, **kwargs):
            response = real(*args, **kwargs)
            store.ingest("v", rows([1], [2.0], [T0 + MIN]))  # as another thread would, right now
            return response

        monkeypatch.setattr(store_module, "read_online", racing)
        assert store.get_online_features([{"user_id": 1}], ["v:x"], now=T0 + H).to_dict()["x"] == [1.0]
        monkeypatch.setattr(store_module, "read_online", real)
        x = store.consistency("v")["x"]
        assert (x.compared, x.equal, x.reasons) == (1, 0, {"late_event": 1})


def test_reads_from_threads_while_pushing_and_flushing_log_every_read_and_explain_every_difference():
    with fl.open() as store:
        store.apply([user, logged_view()])
        store.ingest("v", rows([0, 1, 2, 3], [0.0] * 4, [T0] * 4))
        errors: list[BaseException] = []
        stop = threading.Event()
        reads_per_thread = 300

        def reader(seed: int) -> None:
            try:
                for i in range(reads_per_thread):
                    store.get_online_features({"user_id": [(seed + i) % 4, 9]}, ["v:x"], now=T0 + 10 * H)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        def pusher() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                store.ingest("v", rows([n % 4], [float(n)], [T0 + n * timedelta(seconds=1)]))
                if n % 7 == 0:
                    store.flush_log()

        threads = [threading.Thread(target=reader, args=(s,)) for s in range(4)]
        push = threading.Thread(target=pusher)
        push.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        push.join()
        assert not errors
        report = store.consistency("v", examples=0)
        assert (report.requests, report.rows) == (4 * reads_per_thread, 8 * reads_per_thread)
        assert sorted(set(report["x"].reasons)) in ([], ["late_event"])
        ids = store.con.sql("SELECT count(DISTINCT request_id) FROM fl_serving_log__view__v").fetchall()
        assert ids == [(4 * reads_per_thread,)]


def test_applying_a_logged_view_while_threads_read_logs_every_read():
    def view(extra: int) -> fl.FeatureView:
        return logged_view(schema={"x": "float64", **{f"f{j}": "int64" for j in range(extra)}}, description=str(extra))

    with fl.open() as store:
        store.apply([user, view(0)])
        store.ingest("v", rows([1], [1.0], [T0]))
        errors: list[BaseException] = []

        def reader() -> None:
            try:
                for _ in range(200):
                    store.get_online_features([{"user_id": 1}], ["v:x"], now=T0 + H)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        for extra in range(1, 6):
            store.apply(view(extra))
            store.flush_log()
        for t in threads:
            t.join()
        assert not errors
        report = store.consistency("v")
        assert (report.requests, report.consistency, store.serving_stats.dropped) == (600, 1.0, 0)


@pytest.mark.parametrize("key", ["request_id", "versions", "served_at"])
def test_a_join_key_named_like_a_log_column_keeps_both(key):
    entity = fl.Entity("thing", join_keys={key: "string" if key == "versions" else "int64"})
    view = fl.FeatureView("v", entities=[entity], schema={"x": "float64"}, log=True)
    with fl.open() as store:
        store.apply([entity, view])
        key_values = {"request_id": [10, 11], "versions": ["a", "b"], "served_at": [10, 11]}[key]
        store.ingest("v", pa.table({key: key_values, "x": [1.0, 2.0],
                                    "event_timestamp": pa.array([T0, T0], pa.timestamp("us", tz="UTC"))}))
        for k in [key_values[0], key_values[0], key_values[1]]:
            assert store.get_online_features([{key: k}], ["v:x"], now=T0 + H).to_dict()["x"] != [None]
        report = store.consistency("v")
        assert (report.requests, report.rows, report.consistency) == (3, 3, 1.0)


def test_request_ids_keep_counting_across_reopening(tmp_path):
    path = tmp_path / "s.duckdb"
    for _ in range(2):
        with fl.open(path) as store:
            store.apply([user, logged_view()])
            store.get_online_features({"user_id": [1, 2]}, ["v:x"], now=T0)
            store.get_online_features({"user_id": [3]}, ["v:x"], now=T0)
    with fl.open(path, read_only=True) as store:
        assert log_rows(store, "fl_serving_log__view__v", "request_id, entity_row, \"key:user_id\"") == [
            (0, 0, 1), (0, 1, 2), (1, 0, 3), (2, 0, 1), (2, 1, 2), (3, 0, 3),
        ]


def test_request_ids_follow_the_order_reads_were_served_across_plans_feeding_one_log():
    with fl.open() as store:
        store.apply([user, logged_view(), fl.FeatureService("s", ["v:x"])])
        store.get_online_features([{"user_id": 1}], ["v:x"], now=T0)  # one plan
        store.get_online_features([{"user_id": 2}], service="s", now=T0)  # another plan, same log
        store.get_online_features([{"user_id": 3}], ["v:x"], now=T0)
        store.flush_log()
        assert log_rows(store, "fl_serving_log__view__v", "request_id, \"key:user_id\"") == [(0, 1), (1, 2), (2, 3)]


def test_a_read_that_raises_is_not_logged():
    odfv = fl.OnDemandFeatureView("o", sources=[logged_view(), basket], featurizers={"share": share})
    service = fl.FeatureService("s", ["v:x", "o:share"], log=True)
    with fl.open() as store:
        store.apply([user, logged_view(), odfv, service])
        with pytest.raises(fl.InputError, match="has 2 values for 1 entities"):
            store.get_online_features([{"user_id": 1}], service="s", request_data={"basket": [1.0, 2.0]}, now=T0)
        with pytest.raises(fl.InputError, match="user_id"):
            store.get_online_features([{"user_id": "one"}], ["v:x"], now=T0)
        with pytest.raises(fl.InputError, match="lack join key"):
            store.get_online_features([{"id": 1}], ["v:x"], now=T0)
        store.get_online_features([{"user_id": 1}], service="s", request_data={"basket": [1.0]}, now=T0)
        assert store.flush_log() == 2  # the good read, in the view's log and the service's
        assert log_rows(store, "fl_serving_log__service__s", '"request:basket"') == [(1.0,)]


def test_the_writer_survives_a_failed_flush_and_close_writes_the_rest(monkeypatch, caplog, tmp_path):
    monkeypatch.setattr(servinglog, "FLUSH_SECONDS", 0.02)
    path = tmp_path / "s.duckdb"
    store = fl.open(path)
    store.apply([user, logged_view()])
    log = store._log
    real = log._write
    failures = [1]

    def failing_once(write):
        if failures:
            failures.pop()
            raise fl.StoreError("disk hiccup")
        real(write)

    monkeypatch.setattr(log, "_write", failing_once)
    with caplog.at_level(logging.ERROR, logger="featurelite.servinglog"):
        store.get_online_features([{"user_id": 1}], ["v:x"], now=T0)
        for _ in range(500):  # the writer's first flush fails (logged), the thread goes on
            if not failures and log.pending == 0:
                break
            threading.Event().wait(0.01)
        store.get_online_features([{"user_id": 2}], ["v:x"], now=T0)
        store.close()
        store.close()  # twice: nothing more
    assert "disk hiccup" in caplog.text
    assert store.serving_stats.dropped == 1
    assert not any(t.name == "featurelite-serving-log" and t.is_alive() for t in threading.enumerate())
    with fl.open(path, read_only=True) as again:
        assert log_rows(again, "fl_serving_log__view__v", '"key:user_id"') == [(2,)]


def test_a_service_of_request_features_only_logs_its_reads():
    # No stored view: the response has no key column, and len(response) is 0 for 2 rows.
    @fl.featurizer
    def doubled(basket: float) -> float:
        return basket * 2

    odfv = fl.OnDemandFeatureView("o", sources=[basket], featurizers={"d": doubled})
    with fl.open() as store:
        store.apply([odfv, fl.FeatureService("s", ["o:d"], log=True)])
        served = store.get_online_features({"user_id": [1, 2]}, service="s", request_data={"basket": [1.5, 2.0]},
                                           now=T0)
        assert served.to_dict()["d"] == [3.0, 4.0]
        assert store.flush_log() == 2
        assert log_rows(store, "fl_serving_log__service__s", '"request:basket", "o:d"') == [(1.5, 3.0), (2.0, 4.0)]
        assert store.consistency("s").rows == 2


def test_freshness_still_reports_when_the_log_cannot_be_written(monkeypatch):
    monkeypatch.setattr(servinglog, "FLUSH_SECONDS", 60.0)  # the writer thread stays out of it
    with fl.open() as store:
        store.apply([user, logged_view(freshness="1h")])
        store.ingest("v", rows([1], [1.0], [T0]))

        def failing(write):
            raise fl.StoreError("disk full")

        monkeypatch.setattr(store._log, "_write", failing)
        store.get_online_features([{"user_id": 1}], ["v:x"], now=T0 + 10 * MIN)
        report = store.freshness(now=T0 + 30 * MIN)  # what /metrics shows, exactly when it matters
        assert report["v"].newest_age == 30 * MIN and report["v"].served_ages.count == 1
        assert store.serving_stats.dropped == 1


def test_closing_a_store_a_fatal_error_closed_stops_its_log_writer():
    store = fl.open()
    store.apply([user, logged_view()])
    store.get_online_features([{"user_id": 1}], ["v:x"], now=T0)
    thread = store._log._thread
    assert thread is not None and thread.is_alive()
    store._conn.shut("simulated fatal DuckDB error")  # what closing_if_fatal does
    store.close()
    thread.join(timeout=2)
    assert not thread.is_alive()


# -- consistency replay ----------------------------------------------------------------


def test_a_service_that_grew_a_view_of_another_entity_still_replays_its_older_rows():
    merchant = fl.Entity("merchant", join_keys=["merchant_id"])
    m = fl.FeatureView("m", entities=[merchant], schema={"y": "float64"})
    with fl.open() as store:
        store.apply([user, merchant, logged_view(), m, fl.FeatureService("s", ["v:x"], log=True)])
        store.ingest("v", rows([1], [1.0], [T0]))
        store.get_online_features([{"user_id": 1}], service="s", now=T0 + H)
        store.apply(fl.FeatureService("s", ["v:x", "m:y"], log=True))
        report = store.consistency("s")  # the log has no merchant_id column yet
        assert (report.rows, report["v:x"].compared, report.consistency) == (1, 1, 1.0)


def test_replaying_an_on_demand_view_says_to_replay_a_service_that_serves_it():
    odfv = fl.OnDemandFeatureView("o", sources=[logged_view(), basket], featurizers={"share": share})
    with fl.open() as store:
        store.apply([user, logged_view(), odfv, fl.FeatureService("s", ["o:share"], log=True)])
        with pytest.raises(fl.FeatureliteError, match="on-demand") as caught:
            store.consistency("o")
        assert "service" in str(caught.value)


def test_consistency_refuses_since_after_until():
    with fl.open() as store:
        store.apply([user, logged_view()])
        store.get_online_features([{"user_id": 1}], ["v:x"], now=T0)
        with pytest.raises(fl.InputError, match="since"):
            store.consistency("v", since=T0 + H, until=T0)


def test_consistency_takes_naive_and_zoned_bounds_alike_and_keeps_the_store_unchanged():
    with fl.open() as store:
        store.apply([user, logged_view()])
        zone = timezone(timedelta(hours=-5))
        for hours in range(4):
            store.get_online_features([{"user_id": 1}], ["v:x"], now=(T0 + hours * H).astimezone(zone))
        store.flush_log()
        assert log_rows(store, "fl_serving_log__view__v", "request_time")[1] == ((T0 + H).replace(tzinfo=None),)
        naive = store.consistency("v", since=datetime(2026, 1, 1, 1), until=datetime(2026, 1, 1, 3))
        zoned = store.consistency("v", since=(T0 + H).astimezone(zone), until=(T0 + 3 * H).astimezone(zone))
        assert naive.rows == zoned.rows == 2 and naive.since == zoned.since == T0 + H
        assert store.consistency("v", examples=0)["x"].differences == ()
        with pytest.raises(fl.InputError, match="examples"):
            store.consistency("v", examples=1.5)
        with pytest.raises(fl.InputError, match="since"):
            store.consistency("v", since="yesterday")
        assert store.con.sql("SELECT count(*) FROM fl_serving_log__view__v").fetchall() == [(4,)]


def test_a_log_whose_definition_stopped_logging_still_replays():
    with fl.open() as store:
        store.apply([user, logged_view()])
        store.ingest("v", rows([1], [1.0], [T0]))
        store.get_online_features([{"user_id": 1}], ["v:x"], now=T0 + H)
        store.apply(logged_view(log=None))
        store.get_online_features([{"user_id": 1}], ["v:x"], now=T0 + H)  # not logged any more
        report = store.consistency("v")
        assert (report.rows, report["x"].compared, report["x"].equal) == (1, 1, 1)


def test_a_deleted_view_cannot_be_replayed_and_a_recreated_one_replays_only_what_it_can():
    with fl.open() as store:
        store.apply([user, logged_view()])
        store.ingest("v", rows([1], [1.0], [T0]))
        store.get_online_features([{"user_id": 1}], ["v:x"], now=T0 + H)
        store.flush_log()
        store.delete_feature_view("v")
        with pytest.raises(fl.UnknownFeatureViewError, match="no feature view or feature service is named 'v'"):
            store.consistency("v")
        store.apply(fl.FeatureView("v", entities=[user], schema={"x": "int64"}, log=True))
        store.ingest("v", pa.table({"user_id": [1], "x": [5], "event_timestamp": pa.array([T0], pa.timestamp("us"))}))
        store.get_online_features([{"user_id": 1}], ["v:x"], now=T0 + H)
        x = store.consistency("v")["x"]
        # The row served as float64 (its value now in column "v:x~1") must not be shown as
        # having served null: its status column was left under the new column's name.
        assert x.equal == 1 and all(d.served == 1.0 for d in x.differences)
        assert x.compared == 1 or x.differences


KEYS = st.sampled_from(["a", "b", "é", ""]) | st.none()
FLOATS = st.sampled_from([None, 0.0, -0.0, 1.5, float("nan"), float("inf"), -float("inf"), 5e-324])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(st.tuples(st.sampled_from(["a", "b", "é", ""]), st.integers(0, 2), FLOATS,
                              st.sampled_from([None, "x", "ÿ"]), st.booleans(), st.integers(-1, 1),
                              st.integers(0, 12), st.integers(0, 2)), max_size=20),
    reads=st.lists(st.tuples(st.lists(st.tuples(KEYS, st.integers(0, 3) | st.none()), min_size=1, max_size=4),
                             st.integers(0, 16), st.booleans(), st.booleans()), min_size=1, max_size=6),
)
def test_replays_of_multi_key_typed_tied_ttl_and_windowed_views_are_fully_consistent(events, reads):
    # An entity with two join keys (text and int), every dtype, a created timestamp with
    # ties, a ttl whose edge reads hit exactly, several windows; reads of duplicated and
    # None keys, before any event, with full feature names and through a service.
    shop = fl.Entity("shop", join_keys={"region": "string", "shop_id": "int32"})
    view = fl.FeatureView(
        "shops", entities=[shop],
        schema={"f": "float64", "g": "float32", "s": "string", "b": "bool", "i": "int32", "t": "timestamp"},
        timestamp_field="ts", created_timestamp_field="created", ttl="4h",
        aggregations=[fl.Aggregation("f", "sum", "2h"), fl.Aggregation("i", "max", "6h"),
                      fl.Aggregation("f", "count", "30m", name="n_30m")],
        log=True,
    )
    service = fl.FeatureService("svc", ["shops:f", "shops:s", "shops:f_sum_2h", "shops:n_30m"], log=True)
    with fl.open() as store:
        store.apply([shop, view, service])
        if events:
            store.ingest("shops", pa.table({
                "region": [e[0] for e in events], "shop_id": pa.array([e[1] for e in events], pa.int32()),
                "f": pa.array([e[2] for e in events], pa.float64()),
                "g": pa.array([e[2] for e in events], pa.float32()),
                "s": [e[3] for e in events], "b": [e[4] for e in events],
                "i": pa.array([e[5] for e in events], pa.int32()),
                "t": pa.array([T0 + e[6] * H for e in events], pa.timestamp("us", tz="UTC")),
                "ts": pa.array([T0 + e[6] * H for e in events], pa.timestamp("us", tz="UTC")),
                "created": pa.array([T0 + e[7] * MIN for e in events], pa.timestamp("us", tz="UTC")),
            }))
        features = [f"shops:{f}" for f in [*view.schema, *view.aggregation_schema]]
        for keys, hours, through_service, full in reads:
            entities = {"region": [k[0] for k in keys], "shop_id": [k[1] for k in keys]}
            if through_service:
                store.get_online_features(entities, service="svc", now=T0 + hours * H)
            else:
                store.get_online_features(entities, features, now=T0 + hours * H, full_feature_names=full)
        for target in ("shops", "svc"):
            report = store.consistency(target, examples=3)
            assert report.consistency == 1.0, [f.differences for f in report.features if f.different]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    xs=st.lists(FLOATS, min_size=1, max_size=4),
    hours=st.lists(st.integers(-2, 6), min_size=1, max_size=4),
)
def test_reads_through_a_manifest_and_a_pinned_service_replay_fully_consistent(xs, hours):
    view = logged_view(ttl="3h")
    odfv = fl.OnDemandFeatureView("o", sources=[view, basket], featurizers={"share": share})
    with fl.open() as store:
        store.apply([user, view, odfv, fl.FeatureService("s", ["v:x", "o:share"], log=True)])
        store.ingest("v", rows(list(range(len(xs))), xs, [T0 + i * H for i in range(len(xs))]))
        training = store.get_historical_features(
            pa.table({"user_id": [0], "event_timestamp": pa.array([T0], pa.timestamp("us", tz="UTC"))}), ["v:x"])
        manifest = fl.Manifest.from_table(training)
        # A new version whose stored data is the same: the service stays pinned to the old one.
        store.apply([logged_view(ttl="3h", description="now described")])
        ids = list(range(len(xs) + 1))
        for h in hours:
            store.get_online_features({"user_id": ids}, manifest=manifest, now=T0 + h * H)
            store.get_online_features({"user_id": ids}, service="s", now=T0 + h * H,
                                      request_data={"basket": [1.0] * len(ids)})
        for target in ("v", "s"):
            report = store.consistency(target)
            assert report.consistency == 1.0, [f.differences for f in report.features if f.different]


# -- freshness -----------------------------------------------------------------------------


def test_freshness_in_another_time_zone_and_with_future_events():
    with fl.open() as store:
        plain = fl.FeatureView("plain", entities=[user], schema={"y": "int64"})
        store.apply([user, logged_view(freshness="1h"), plain])
        store.ingest("v", rows([1, 2], [1.0, 2.0], [T0, T0 + 5 * H]))
        zone = timezone(timedelta(hours=9, minutes=30))
        report = store.freshness(now=(T0 + 30 * MIN).astimezone(zone))
        assert report.now == T0 + 30 * MIN and report.now.tzinfo == timezone.utc
        assert report["v"].last_event == T0 and report["v"].newest_age == 30 * MIN and report.ok
        assert report["plain"].last_event is None and not report["plain"].breached
        naive = store.freshness(now=datetime(2026, 1, 1, 2))
        assert naive["v"].newest_age == 2 * H and [b.view for b in naive.breaches] == ["v"]
        assert fl.FreshnessReport.from_dict(naive.to_dict()) == naive


def test_an_empty_ingest_is_no_push_to_measure():
    with fl.open() as store:
        store.apply([user, logged_view(freshness="1h")])
        assert store.ingest("v", rows([], [], [])).rows == 0
        assert store.freshness(now=T0)["v"].push_to_visible.count == 0
        store.ingest("v", rows([1], [1.0], [T0]))
        assert store.freshness(now=T0)["v"].push_to_visible.count == 1


def test_freshness_and_the_log_on_a_closed_store_say_it_is_closed():
    store = fl.open()
    store.apply([user, logged_view()])
    store.close()
    for call in (store.freshness, store.flush_log, lambda: store.consistency("v")):
        with pytest.raises(fl.StoreClosedError, match="was closed"):
            call()


# -- snapshots -------------------------------------------------------------------------------


def test_a_snapshot_holds_the_reads_served_before_it(tmp_path):
    with fl.open(tmp_path / "s.duckdb") as store:
        store.apply([user, logged_view()])
        store.ingest("v", rows([1], [1.0], [T0]))
        store.get_online_features([{"user_id": 1}], ["v:x"], now=T0 + H)
        store.snapshot(tmp_path / "copy.duckdb")
    with fl.open(tmp_path / "copy.duckdb", read_only=True) as copy:
        report = copy.consistency("v")
        assert (report.rows, report.consistency) == (1, 1.0)


def wal_of_another_store(tmp_path, into) -> None:
    """Leave at ``into`` the write-ahead log a killed writer of another store left."""
    other = fl.open(tmp_path / "other.duckdb")
    other.apply([user, logged_view()])
    other.con.execute("SET checkpoint_threshold = '1GB'")
    other.ingest("v", rows([7], [7.0], [T0]))
    shutil.copyfile(str(tmp_path / "other.duckdb") + ".wal", into)
    other.close()


def test_a_snapshot_next_to_a_leftover_wal_opens(tmp_path):
    with fl.open(tmp_path / "s.duckdb") as store:
        store.apply([user, logged_view()])
        store.ingest("v", rows([1], [1.0], [T0]))
        # The write-ahead log of an earlier file of that name (deleted without it).
        wal_of_another_store(tmp_path, tmp_path / "copy.duckdb.wal")
        try:
            written = store.snapshot(tmp_path / "copy.duckdb")
        except fl.InputError as exc:  # refusing is fine too, if it says why
            assert "copy.duckdb.wal" in str(exc)
            return
    with fl.open(written, read_only=True) as copy:
        assert copy.describe("v")["history_rows"] == 1


def test_a_read_only_store_with_a_wal_snapshots_to_one_complete_file(tmp_path):
    path = tmp_path / "s.duckdb"
    with fl.open(path) as store:
        store.apply([user, logged_view()])
    # A store left with a write-ahead log (the writer was killed): open, write, copy both
    # files while open, as a crash would leave them.
    store = fl.open(path)
    store.con.execute("SET checkpoint_threshold = '1GB'")
    store.ingest("v", rows([1, 2], [1.0, 2.0], [T0, T0]))
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    shutil.copyfile(path, crashed / "s.duckdb")
    shutil.copyfile(str(path) + ".wal", crashed / "s.duckdb.wal")
    store.close()
    with fl.open(crashed / "s.duckdb", read_only=True) as ro:
        ro.snapshot(tmp_path / "copy.duckdb")
    assert not os.path.exists(tmp_path / "copy.duckdb.wal")  # "complete on its own (no write-ahead log)"
    with fl.open(tmp_path / "copy.duckdb", read_only=True) as copy:
        assert copy.describe("v")["history_rows"] == 2


def test_snapshot_errors_name_the_fix_and_write_nothing(tmp_path):
    with fl.open(tmp_path / "s.duckdb") as store:
        store.apply([user, logged_view()])
        with pytest.raises(fl.InputError, match="exists; give a new path"):
            store.snapshot(tmp_path / "s.duckdb")
        with pytest.raises(fl.InputError, match="is the store itself"):
            store.snapshot(str(tmp_path / "s.duckdb") + ".wal")
        with pytest.raises(fl.StoreError, match="could not write the snapshot") as caught:
            store.snapshot(tmp_path / "missing" / "copy.duckdb")
        assert caught.value.details["path"] == str(tmp_path / "missing" / "copy.duckdb")
        assert sorted(os.listdir(tmp_path)) == ["s.duckdb"]
    with fl.open() as memory, pytest.raises(fl.StoreError, match="in-memory store has no file"):
        memory.snapshot(tmp_path / "m.duckdb")


def test_a_snapshot_taken_while_another_thread_ingests_holds_whole_ingests(tmp_path):
    with fl.open(tmp_path / "s.duckdb") as store:
        store.apply([user, logged_view()])
        stop = threading.Event()
        batch = 50

        def pusher() -> None:
            n = 0
            while not stop.is_set():
                store.ingest("v", rows(list(range(batch)), [float(n)] * batch, [T0 + n * MIN] * batch))
                n += 1

        thread = threading.Thread(target=pusher)
        thread.start()
        try:
            for i in range(3):
                store.snapshot(tmp_path / f"copy{i}.duckdb")
        finally:
            stop.set()
            thread.join()
    for i in range(3):
        with fl.open(tmp_path / f"copy{i}.duckdb", read_only=True) as copy:
            info = copy.describe("v")
            assert info["history_rows"] % batch == 0
            assert info["online_rows"] == (batch if info["history_rows"] else 0)
