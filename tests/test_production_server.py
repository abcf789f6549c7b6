"""The serving log, freshness metrics and the served-file error, against a real
``featurelite serve`` subprocess: kill -9 while it logs loses at most the reads not yet
flushed, never a pushed row and never part of a read."""

from __future__ import annotations

import signal
import threading
import time
from datetime import datetime, timedelta, timezone

import httpx
import pyarrow as pa
import pytest
from test_server_hardening import launch

import featurelite as fl

user = fl.Entity("user", join_keys=["user_id"])
stats = fl.FeatureView(
    "stats", entities=[user], timestamp_field="ts", schema={"version": "int64", "batch": "int64"},
    log=True, freshness="1h",
)
ENTITIES = 3


def logged_store(tmp_path):
    path = tmp_path / "served.duckdb"  # the path launch() serves
    with fl.open(path) as store:
        store.apply([user, stats])
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        store.ingest("stats", pa.table({"user_id": [0, 1, 2], "version": [1, 1, 1], "batch": [0, 0, 0],
                                        "ts": pa.array([now - timedelta(minutes=5)] * 3, pa.timestamp("us"))}))
    return path


def read(client, url, first):
    return client.post(url + "/get-online-features", json={
        "features": ["stats:version"], "entities": {"user_id": list(range(first, first + ENTITIES))}})


def test_kill_9_while_logging_loses_only_unflushed_reads_and_never_a_push_or_part_of_a_read(tmp_path):
    logged_store(tmp_path)
    pushed: list[int] = []
    stop = threading.Event()
    with launch(tmp_path, expect_clean_exit=False) as server, httpx.Client(timeout=30) as client:
        for i in range(50):
            assert read(client, server.url, i).status_code == 200
        time.sleep(2.5)  # the writer flushes every second: these 50 reads are in the file

        def reader() -> None:
            with httpx.Client(timeout=30) as c:
                i = 0
                while not stop.is_set():
                    i += 1
                    try:
                        read(c, server.url, i % 100)
                    except httpx.TransportError:
                        return

        thread = threading.Thread(target=reader)
        thread.start()
        for batch in range(1, 30):
            now = datetime.now(timezone.utc).replace(tzinfo=None).isoformat()
            response = client.post(server.url + "/push", json={"view": "stats", "rows": [
                {"user_id": 1000 + batch, "version": batch, "batch": batch, "ts": now}]})
            assert response.status_code == 200
            pushed.append(batch)
        server.proc.send_signal(signal.SIGKILL)
        assert server.proc.wait(timeout=30) == -signal.SIGKILL
        stop.set()
        thread.join(timeout=60)
    with fl.open(server.path, read_only=True) as store:
        batches = {b for (b,) in store.con.sql("SELECT batch FROM fl_history__stats").fetchall()}
        per_read = store.con.sql("SELECT request_id, count(*) FROM fl_serving_log__view__stats "
                                 "GROUP BY request_id").fetchall()
    assert set(pushed) <= batches  # every acknowledged push survived
    assert len(per_read) >= 50  # the reads flushed before the kill
    assert all(n == ENTITIES for _, n in per_read), per_read  # no read is in the log in part


def test_opening_a_served_file_points_to_connect_and_metrics_show_freshness(tmp_path):
    logged_store(tmp_path)
    with launch(tmp_path) as server:
        try:
            fl.open(server.path)
            raise AssertionError("a served file opened")
        except fl.StoreLockedError as exc:
            assert f"featurelite.connect({server.url!r})" in str(exc), str(exc)
        with pytest.raises(fl.StoreLockedError, match=r"featurelite\.connect"):
            fl.open(server.path, read_only=True)
        with httpx.Client(timeout=30) as client:
            for _ in range(5):
                assert read(client, server.url, 0).status_code == 200
            now = datetime.now(timezone.utc).replace(tzinfo=None).isoformat()
            assert client.post(server.url + "/push", json={"view": "stats", "rows": [
                {"user_id": 7, "version": 2, "batch": 1, "ts": now}]}).status_code == 200
            text = client.get(server.url + "/metrics").text
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert float(lines['featurelite_view_freshness_slo_seconds{view="stats"}']) == 3600.0
    assert float(lines['featurelite_view_freshness_breached{view="stats"}']) == 0.0
    assert 0 <= float(lines['featurelite_view_newest_value_age_seconds{view="stats"}']) < 600
    # 5 reads x 3 entities, each value ~5 minutes old
    assert float(lines['featurelite_served_value_age_seconds_count{view="stats"}']) == 15.0
    assert float(lines['featurelite_served_value_age_seconds_bucket{le="300.0",view="stats"}']) == 0.0
    assert float(lines['featurelite_served_value_age_seconds_bucket{le="900.0",view="stats"}']) == 15.0
    assert float(lines['featurelite_push_to_visible_seconds_count{view="stats"}']) == 1.0
    assert float(lines['featurelite_serving_log_rows_total{log="view:stats"}']) == 15.0
