"""The serving log and consistency replay: what online reads served is recorded in the
file, and replaying it against the training-set path agrees bit for bit unless something
(a late event, a changed definition) explains why not."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model import ts_array

import featurelite as fl
from featurelite import servinglog

DAY = 86_400_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
user = fl.Entity("user", join_keys=["user_id"])
basket = fl.RequestSource("req", schema={"basket": "float64"})


@fl.featurizer
def basket_share(basket: float, spend: float = 0.0) -> float:
    return basket / (basket + spend)


def definitions(*, view_log=True, service_log=True, ttl="2d"):
    stats = fl.FeatureView(
        "stats", entities=[user], schema={"spend": "float64", "orders": "int32"}, timestamp_field="ts", ttl=ttl,
        aggregations=[fl.Aggregation("orders", "sum", "3d")], log=view_log,
    )
    ratios = fl.OnDemandFeatureView("ratios", sources=[stats, basket], featurizers={"basket_share": basket_share})
    fraud = fl.FeatureService(
        "fraud", ["stats:spend", "stats:orders_sum_3d", "ratios:basket_share"], log=service_log
    )
    return [user, stats, ratios, fraud]


FLOATS = st.sampled_from([None, 0.0, -0.0, 1.5, -2.0, float("nan"), float("inf"), 5e-324, 1e308])
ROW = st.fixed_dictionaries({
    "user_id": st.integers(-1, 3),
    "spend": FLOATS,
    "orders": st.one_of(st.none(), st.integers(-5, 5)),
    "ts": st.integers(0, 6 * 24).map(lambda h: h * DAY // 24),
})
READ = st.fixed_dictionaries({
    "ids": st.lists(st.one_of(st.integers(-1, 4), st.none()), min_size=1, max_size=3),
    "now": st.integers(0, 8 * 24).map(lambda h: h * DAY // 24),
    "baskets": st.sampled_from([1.0, 0.0, 2.5, float("nan")]),
    "service": st.booleans(),
})


def events(rows: list[dict]) -> pa.Table:
    return pa.table({
        "user_id": pa.array([r["user_id"] for r in rows], pa.int64()),
        "spend": pa.array([r["spend"] for r in rows], pa.float64()),
        "orders": pa.array([r["orders"] for r in rows], pa.int32()),
        "ts": ts_array([r["ts"] for r in rows]),
    })


def at(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def serve(store, reads):
    for read in reads:
        entities = {"user_id": read["ids"]}
        if read["service"]:
            store.get_online_features(entities, service="fraud", now=at(read["now"]),
                                      request_data={"basket": [read["baskets"]] * len(read["ids"])})
        else:
            store.get_online_features(entities, ["stats:spend", "stats:orders", "stats:orders_sum_3d"],
                                      now=at(read["now"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(ROW, min_size=1, max_size=25), reads=st.lists(READ, min_size=1, max_size=8),
       planted=st.data())
def test_a_clean_replay_is_fully_consistent_and_a_planted_late_event_is_found(rows, reads, planted):
    with fl.open() as store:
        store.apply(definitions())
        store.ingest("stats", events(rows))
        serve(store, reads)
        served_rows = sum(len(r["ids"]) for r in reads)
        by_view = [r for r in reads if not r["service"]]
        for target in ("stats", "fraud"):
            report = store.consistency(target, examples=1000)
            assert report.consistency == 1.0, [f.differences[:2] for f in report.features]
            assert all(f.different == 0 for f in report.features)
        # every read fed the view's log (the service's reads of stats too), one row per entity
        report = store.consistency("stats")
        assert report.rows == served_rows and report.requests == len(reads)
        assert report["stats:spend"].compared == served_rows
        assert report["stats:orders"].compared == sum(len(r["ids"]) for r in by_view)
        service_report = store.consistency("fraud")
        assert service_report.rows == served_rows - sum(len(r["ids"]) for r in by_view)

        # A late event: an event for an entity a read asked for, dated at that read's time
        # (so it wins the lookup), ingested after the read.
        candidates = [(r, i) for r in reads for i in r["ids"] if i is not None]
        if not candidates:
            return
        read, entity = planted.draw(st.sampled_from(candidates))
        store.ingest("stats", events([{"user_id": entity, "spend": 12345.0, "orders": 1, "ts": read["now"]}]))
        report = store.consistency("stats", examples=1000)
        spend = report["stats:spend"]
        assert spend.different >= 1 and set(spend.reasons) == {"late_event"}
        assert any(d.keys == {"user_id": entity} and d.request_time == at(read["now"]) and d.training == 12345.0
                   for d in spend.differences)
        assert all("ingested after the request" in d.detail for d in spend.differences)


def test_log_rows_record_what_was_served():
    with fl.open() as store:
        store.apply(definitions())
        store.ingest("stats", events([{"user_id": 1, "spend": 2.5, "orders": 3, "ts": DAY}]))
        store.get_online_features({"user_id": [1, 7]}, ["stats:spend"], now=at(2 * DAY))
        store.get_online_features({"user_id": [1]}, service="fraud", request_data={"basket": [1.0]}, now=at(2 * DAY))
        assert store.flush_log() == 3 + 1
        rows = store.con.sql("SELECT * FROM fl_serving_log__view__stats ORDER BY request_id, entity_row").fetchall()
        names = [d[0] for d in store.con.sql("SELECT * FROM fl_serving_log__view__stats").description]
        first, second, third = (dict(zip(names, row, strict=True)) for row in rows)
        assert (first["request_id"], first["entity_row"], second["request_id"], second["entity_row"]) == (0, 0, 0, 1)
        assert third["request_id"] == 1
        assert first["key:user_id"] == 1 and second["key:user_id"] == 7
        assert first["stats:spend"] == 2.5 and first["stats:spend#status"] == "PRESENT"
        assert second["stats:spend"] is None and second["stats:spend#status"] == "NOT_FOUND"
        assert first["request_time"] == datetime(1970, 1, 3) and first["stats#event_time"] == datetime(1970, 1, 2)
        assert second["stats#event_time"] is None
        assert first["ingest_position"] == 0  # the one ingested row's sequence number
        assert '"stats"' in first["versions"]
        service = store.con.sql('SELECT "request:basket", "ratios:basket_share", "key:user_id" '
                                "FROM fl_serving_log__service__fraud").fetchall()
        assert service == [(1.0, 1.0 / 3.5, 1)]


def test_sample_rate_logs_about_that_share_of_reads():
    with fl.open() as store:
        store.apply(definitions(view_log=fl.ServingLog(sample_rate=0.25), service_log=False))
        store.ingest("stats", events([{"user_id": 1, "spend": 2.5, "orders": 3, "ts": DAY}]))
        for _ in range(4000):
            store.get_online_features([{"user_id": 1}], ["stats:spend"])
        store.flush_log()
        logged = store.con.sql("SELECT count(*) FROM fl_serving_log__view__stats").fetchall()[0][0]
        assert 800 < logged < 1200  # 1,000 expected; 6 standard deviations either side


def test_retention_deletes_rows_older_than_it(monkeypatch):
    monkeypatch.setattr(servinglog, "RETENTION_EVERY", 0.0)
    with fl.open() as store:
        store.apply(definitions(view_log=fl.ServingLog(retention="200ms"), service_log=False))
        store.get_online_features([{"user_id": 1}], ["stats:spend"])
        store.flush_log()
        time.sleep(0.3)
        store.get_online_features([{"user_id": 2}], ["stats:spend"])
        store.flush_log()
        assert store.con.sql('SELECT "key:user_id" FROM fl_serving_log__view__stats').fetchall() == [(2,)]


def test_the_writer_thread_flushes_on_its_own(monkeypatch):
    monkeypatch.setattr(servinglog, "FLUSH_SECONDS", 0.05)
    with fl.open() as store:
        store.apply(definitions())
        store.get_online_features([{"user_id": 1}], ["stats:spend"])
        deadline = time.monotonic() + 10
        while store.serving_stats.logged.get("view:stats", 0) == 0:
            assert time.monotonic() < deadline, "the writer never flushed"
            time.sleep(0.02)
        count = store.con.sql("SELECT count(*) FROM fl_serving_log__view__stats").fetchall()[0][0]
        assert count == 1


def test_closing_writes_what_is_queued(tmp_path):
    path = tmp_path / "s.duckdb"
    with fl.open(path) as store:
        store.apply(definitions())
        for i in range(10):
            store.get_online_features([{"user_id": i}], ["stats:spend"])
    with fl.open(path, read_only=True) as store:
        assert store.con.sql("SELECT count(*) FROM fl_serving_log__view__stats").fetchall()[0][0] == 10


def test_a_read_only_store_logs_nothing_and_reads_fine(tmp_path):
    path = tmp_path / "s.duckdb"
    with fl.open(path) as store:
        store.apply(definitions())
        store.ingest("stats", events([{"user_id": 1, "spend": 2.5, "orders": 3, "ts": DAY}]))
    with fl.open(path, read_only=True) as store:
        assert store.get_online_features([{"user_id": 1}], ["stats:spend"], now=at(2 * DAY)).to_dict()["spend"] == [2.5]
        assert store.flush_log() == 0
        assert "fl_serving_log__view__stats" not in {r[0] for r in store.con.sql("SHOW TABLES").fetchall()}


def test_views_without_a_log_are_not_logged():
    with fl.open() as store:
        store.apply(definitions(view_log=None, service_log=None))
        store.get_online_features([{"user_id": 1}], ["stats:spend"])
        store.get_online_features([{"user_id": 1}], service="fraud", request_data={"basket": [1.0]})
        assert store.flush_log() == 0
        assert not [r for r in store.con.sql("SHOW TABLES").fetchall() if r[0].startswith("fl_serving_log")]


def test_a_new_feature_adds_a_column_and_a_changed_dtype_keeps_the_old_rows_apart():
    with fl.open() as store:
        store.apply(definitions())
        store.get_online_features([{"user_id": 1}], service="fraud", request_data={"basket": [1.0]})
        store.flush_log()

        @fl.featurizer
        def basket_share(basket: float, spend: float = 0.0) -> int:  # same name, another output dtype
            return 1 if basket > spend else 0

        stats = fl.FeatureView(
            "stats", entities=[user], schema={"spend": "float64", "orders": "int32", "extra": "int64"},
            timestamp_field="ts", ttl="2d", aggregations=[fl.Aggregation("orders", "sum", "3d")], log=True,
        )
        ratios = fl.OnDemandFeatureView("ratios", sources=[stats, basket], featurizers={"basket_share": basket_share})
        fraud = fl.FeatureService("fraud", ["stats:spend", "stats:extra", "ratios:basket_share"], log=True)
        store.apply([stats, ratios, fraud])
        store.get_online_features([{"user_id": 1}], service="fraud", request_data={"basket": [1.0]})
        store.flush_log()
        columns = dict(store.con.sql("SELECT column_name, data_type FROM duckdb_columns() "
                                     "WHERE table_name = 'fl_serving_log__service__fraud'").fetchall())
        assert columns["ratios:basket_share"] == "BIGINT" and columns["ratios:basket_share~1"] == "DOUBLE"
        assert columns["stats:extra"] == "BIGINT"
        rows = store.con.sql('SELECT "ratios:basket_share", "ratios:basket_share~1" FROM fl_serving_log__service__fraud '
                             "ORDER BY request_id").fetchall()
        assert rows == [(None, 1.0), (1, None)]


def test_a_changed_definition_is_named_as_the_reason():
    with fl.open() as store:
        store.apply(definitions())
        store.ingest("stats", events([{"user_id": 1, "spend": 2.5, "orders": 3, "ts": 0}]))
        store.get_online_features([{"user_id": 1}], ["stats:spend"], now=at(DAY))
        # A shorter ttl: the value the read served is now too old for a training set.
        store.apply(definitions(ttl="1h")[:2])
        report = store.consistency("stats")
        spend = report["stats:spend"]
        assert (spend.compared, spend.equal, spend.reasons) == (1, 0, {"definition_changed": 1})
        difference = spend.differences[0]
        assert (difference.served, difference.training) == (2.5, None)
        assert difference.detail.startswith("stats: served with version ")


def test_since_and_until_pick_the_requests_replayed():
    with fl.open() as store:
        store.apply(definitions())
        for day in range(5):
            store.get_online_features([{"user_id": 1}], ["stats:spend"], now=at(day * DAY))
        report = store.consistency("stats", since=at(DAY), until=at(3 * DAY))
        assert (report.requests, report.rows) == (2, 2)
        assert report.since == at(DAY) and report.until == at(3 * DAY)


def test_replay_errors_say_what_to_do():
    with fl.open() as store:
        store.apply(definitions(view_log=None, service_log=None))
        with pytest.raises(fl.InputError, match="has no serving log; declare it with log=True"):
            store.consistency("stats")
        with pytest.raises(fl.UnknownFeatureViewError, match="no feature view or feature service is named 'nope'"):
            store.consistency("nope")
        with pytest.raises(fl.InputError, match="examples"):
            store.consistency("stats", examples=-1)
        store.apply(definitions())
        report = store.consistency("fraud")  # declared, never read: an empty replay
        assert (report.requests, report.rows, report.consistency) == (0, 0, 1.0)


def test_definitions_check_their_log_and_freshness():
    with pytest.raises(fl.DefinitionError, match="sample_rate must be a number above 0 and at most 1"):
        fl.ServingLog(sample_rate=1.5)
    with pytest.raises(fl.DefinitionError, match="retention"):
        fl.ServingLog(retention="soon")
    with pytest.raises(fl.DefinitionError, match=r"log must be True, False, None or a featurelite\.ServingLog"):
        fl.FeatureService("s", ["stats:spend"], log="yes")
    with pytest.raises(fl.DefinitionError, match="freshness of feature view 'v' must be positive"):
        fl.FeatureView("v", entities=[user], schema={"x": "float64"}, freshness="0s")
    plain = fl.FeatureView("v", entities=[user], schema={"x": "float64"})
    slo = fl.FeatureView("v", entities=[user], schema={"x": "float64"}, freshness="15m", log=True)
    assert "freshness_us" not in plain.spec() and "log" not in plain.spec()  # old versions stay as they were
    assert slo.version != plain.version
    assert fl.FeatureView.from_spec(slo.spec()) == slo and slo.freshness == timedelta(minutes=15)
    assert slo.log == fl.ServingLog() and slo.log.retention == timedelta(days=7)
