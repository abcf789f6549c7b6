"""The HTTP feature server, started for real as a subprocess on a free loopback port and
exercised over HTTP: reads, pushes (read-your-writes), auth, every error status, metrics,
the CLI's message while a server holds the store, SIGTERM during pushes, and concurrent
readers while one client pushes."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pyarrow as pa
from click.testing import CliRunner
from live_server import wait_until_healthy

import featurelite as fl
from featurelite.cli import load_definitions, main

DEFINITIONS = '''
import featurelite as fl

@fl.featurizer
def doubled(version: int) -> int:
    return version * 2

user = fl.Entity("user", join_keys=["user_id"])
stats = fl.FeatureView("stats", entities=[user], timestamp_field="ts", schema={"version": "int64", "batch": "int64"})
twice = fl.OnDemandFeatureView("twice", sources=[stats], featurizers={"doubled": doubled})
'''
T0 = datetime(2026, 1, 1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    path: Path
    proc: subprocess.Popen[str]
    headers: dict[str, str]

    def post(self, endpoint: str, payload: dict, **kwargs) -> httpx.Response:
        return httpx.post(self.url + endpoint, json=payload, headers={**self.headers, **kwargs.pop("headers", {})},
                          timeout=30, **kwargs)


@contextlib.contextmanager
def serving(tmp_path: Path, *extra: str, token: str | None = None) -> Iterator[Server]:
    path = tmp_path / "served.duckdb"
    if not path.exists():
        (tmp_path / "defs.py").write_text(DEFINITIONS)
        with fl.open(path) as store:
            store.apply(load_definitions(str(tmp_path / "defs.py")))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "FEATURELITE_TOKEN"}  # an empty one is refused
    if token:
        env["FEATURELITE_TOKEN"] = token
    proc = subprocess.Popen(
        [sys.executable, "-m", "featurelite", "serve", str(path), "--port", str(port), *extra],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(url, proc, lambda: proc.communicate()[1])
    try:
        yield Server(url, path, proc, {"Authorization": f"Bearer {token}"} if token else {})
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        assert "Traceback" not in err, err


def rows(version: int, keys: range, batch: int = 0) -> list[dict]:
    ts = (T0 + timedelta(seconds=version)).isoformat()
    return [{"user_id": k, "version": version, "batch": batch, "ts": ts} for k in keys]


def test_get_push_read_your_writes_and_error_statuses(tmp_path):
    with serving(tmp_path, "--max-body", "20000") as server:
        get = {"features": ["stats:version", "twice:doubled"], "entities": [{"user_id": 1}, {"user_id": 2}]}
        first = server.post("/get-online-features", get)
        assert first.status_code == 200
        assert first.json() == {"values": {"user_id": [1, 2], "version": [None, None], "doubled": [None, None]},
                                "statuses": {"version": ["NOT_FOUND"] * 2, "doubled": ["NULL_VALUE"] * 2}}
        pushed = server.post("/push", {"view": "stats", "rows": rows(5, range(1, 3))})
        assert pushed.status_code == 200 and pushed.json() == {"view": "stats", "rows": 2}
        after = server.post("/get-online-features", get).json()  # read-your-writes
        assert after["values"]["version"] == [5, 5] and after["values"]["doubled"] == [10, 10]
        columns = {"user_id": [2], "version": [6], "batch": [0], "ts": [(T0 + timedelta(seconds=6)).isoformat()]}
        assert server.post("/push", {"view": "stats", "columns": columns}).status_code == 200
        sink = io.BytesIO()
        table = pa.table({"user_id": [1], "version": [7], "batch": [0], "ts": pa.array([T0 + timedelta(seconds=7)])})
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        arrow = httpx.post(server.url + "/push?view=stats", content=sink.getvalue(),
                           headers={"content-type": "application/vnd.apache.arrow.stream"}, timeout=30)
        assert arrow.status_code == 200 and arrow.json()["rows"] == 1
        assert server.post("/get-online-features", get).json()["values"]["version"] == [7, 6]

        def error(response: httpx.Response, status: int, kind: str) -> None:
            assert response.status_code == status, response.text
            body = response.json()["error"]
            assert body["type"] == kind and body["message"] and "Traceback" not in response.text

        error(server.post("/get-online-features", {**get, "features": ["stats:nope"]}), 404, "UnknownFeatureError")
        error(server.post("/get-online-features", {**get, "features": ["ghost:x"]}), 404, "UnknownFeatureViewError")
        error(server.post("/get-online-features", {"features": ["stats:version"]}), 422, "InputError")
        error(server.post("/get-online-features", {**get, "entities": [{"customer": 1}]}), 422, "InputError")
        error(httpx.post(server.url + "/get-online-features", content=b"{not json", timeout=30), 422, "InputError")
        error(server.post("/push", {"view": "stats", "rows": [{"user_id": "x", "version": 1}]}), 422, "SchemaError")
        error(server.post("/push", {"view": "ghost", "rows": rows(9, range(1))}), 404, "UnknownFeatureViewError")
        error(server.post("/push", {"view": "stats", "rows": rows(9, range(2000))}), 413, "PayloadTooLarge")
        error(httpx.get(server.url + "/nowhere", timeout=30), 404, "NotFound")
        error(httpx.get(server.url + "/push", timeout=30), 405, "MethodNotAllowed")
        # nothing of the rejected pushes was written
        assert server.post("/get-online-features", get).json()["values"]["version"] == [7, 6]
        metrics = httpx.get(server.url + "/metrics", timeout=30).text
        assert 'featurelite_requests_total{endpoint="push",status="200"} 3.0' in metrics
        assert 'featurelite_view_history_rows{view="stats"} 4.0' in metrics
        assert 'featurelite_request_seconds_bucket{endpoint="get-online-features",le="0.001"}' in metrics
        assert "featurelite_view_last_event_timestamp_seconds" in metrics
        spec = httpx.get(server.url + "/openapi.json", timeout=30).json()
        unversioned = {p for p in spec["paths"] if not p.startswith("/v1/")}
        assert unversioned == {"/get-online-features", "/push", "/health", "/metrics", "/openapi.json"}
        assert {"/v1/get-online-features", "/v1/get-historical-features", "/v1/freshness"} <= set(spec["paths"])


def test_a_bearer_token_guards_everything_but_health(tmp_path):
    with serving(tmp_path, token="s3cret") as server:
        get = {"features": ["stats:version"], "entities": [{"user_id": 1}]}
        assert httpx.get(server.url + "/health", timeout=30).status_code == 200
        assert httpx.post(server.url + "/get-online-features", json=get, timeout=30).status_code == 401
        wrong = httpx.post(server.url + "/push", json={"view": "stats", "rows": rows(1, range(1))},
                           headers={"Authorization": "Bearer nope"}, timeout=30)
        assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "Unauthorized"
        assert httpx.get(server.url + "/metrics", timeout=30).status_code == 401
        assert server.post("/get-online-features", get).status_code == 200
        assert httpx.get(server.url + "/metrics", headers=server.headers, timeout=30).status_code == 200


def test_the_command_line_says_the_server_holds_the_store(tmp_path):
    with serving(tmp_path) as server:
        result = CliRunner().invoke(main, ["materialize", str(server.path)])
        assert result.exit_code == 1
        assert f"held by `featurelite serve` (pid {server.proc.pid}, {server.url})" in result.stderr
        assert f"POST {server.url}/push" in result.stderr
        # A command that reads goes through the server that holds the store, and says so.
        read = CliRunner().invoke(main, ["list", str(server.path)])
        assert read.exit_code == 0, read.stderr
        assert f"using the server at {server.url}, which holds {server.path}" in read.stderr
        assert '"name": "stats"' in read.stdout
    assert not Path(f"{server.path}.serve.json").exists()


def test_sigterm_during_pushes_keeps_every_acknowledged_push_and_no_partial_one(tmp_path):
    acknowledged: list[int] = []
    stop = threading.Event()

    with serving(tmp_path) as server:
        def pusher() -> None:
            batch = 0
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    batch += 1
                    try:
                        response = client.post(server.url + "/push",
                                               json={"view": "stats", "rows": rows(batch, range(50), batch)})
                    except httpx.TransportError:
                        return  # the server has gone
                    if response.status_code == 200:
                        acknowledged.append(batch)

        thread = threading.Thread(target=pusher)
        thread.start()
        time.sleep(1.5)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=60) == 0  # a clean exit, after in-flight pushes finished
        stop.set()
        thread.join(timeout=60)
    assert len(acknowledged) > 3
    with fl.open(server.path, read_only=True) as store:
        counts = dict(store.con.sql("SELECT batch, count(*) FROM fl_history__stats GROUP BY batch").fetchall())
    assert set(acknowledged) <= set(counts)  # every acknowledged push is there
    assert all(n == 50 for n in counts.values())  # and no push is there in part


def test_readers_see_every_acknowledged_push_while_one_client_pushes(tmp_path):
    """Four readers and one pusher for a few seconds: no errors, and every read returns a
    version at least as new as the last push acknowledged before the read was sent."""
    keys = range(20)
    acked = {k: -1 for k in keys}
    lock = threading.Lock()
    errors: list[str] = []
    reads = [0]
    stop = threading.Event()
    with serving(tmp_path) as server:
        def pusher() -> None:
            version = 0
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    version += 1
                    response = client.post(server.url + "/push", json={"view": "stats", "rows": rows(version, keys)})
                    if response.status_code != 200:
                        errors.append(response.text)
                        return
                    with lock:
                        acked.update((k, version) for k in keys)

        def reader(seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    key = rng.choice(keys)
                    with lock:
                        floor = acked[key]
                    response = client.post(server.url + "/get-online-features",
                                           json={"features": ["stats:version"], "entities": [{"user_id": key}]})
                    if response.status_code != 200:
                        errors.append(response.text)
                        return
                    value = response.json()["values"]["version"][0]
                    if (value if value is not None else -1) < floor:
                        errors.append(f"key {key}: read {value} after version {floor} was acknowledged")
                    reads[0] += 1

        threads = [threading.Thread(target=pusher)] + [threading.Thread(target=reader, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(3)
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert errors == []
    assert reads[0] > 100 and max(acked.values()) > 3
    print(json.dumps({"reads": reads[0], "pushes": max(acked.values())}))


AGGREGATING = '''
import featurelite as fl

@fl.featurizer
def spend_per_txn(amount_sum_1d: float, amount_count_1d: int) -> float:
    return amount_sum_1d / amount_count_1d if amount_count_1d > 0 else 0.0

user = fl.Entity("user", join_keys=["user_id"])
txn = fl.FeatureView(
    "txn", entities=[user], timestamp_field="ts", schema={"amount": "float64"},
    aggregations=[fl.Aggregation("amount", "sum", "1d"), fl.Aggregation("amount", "count", "1d")],
)
ratios = fl.OnDemandFeatureView("ratios", sources=[txn], featurizers={"spend_per_txn": spend_per_txn})
'''


def test_aggregates_over_http_empty_windows_and_a_push_seen_by_the_next_read(tmp_path):
    (tmp_path / "aggs.py").write_text(AGGREGATING)
    with fl.open(tmp_path / "served.duckdb") as store:
        store.apply(load_definitions(str(tmp_path / "aggs.py")))
    now = (T0 + timedelta(hours=12)).isoformat()
    with serving(tmp_path) as server:
        get = {"features": ["txn:amount_sum_1d", "txn:amount_count_1d", "ratios:spend_per_txn"],
               "entities": [{"user_id": 1}, {"user_id": 2}], "now": now}
        empty = server.post("/get-online-features", get)
        assert empty.status_code == 200, empty.text
        assert empty.json() == {
            "values": {"user_id": [1, 2], "amount_sum_1d": [0.0, 0.0], "amount_count_1d": [0, 0],
                       "spend_per_txn": [0.0, 0.0]},
            "statuses": {"amount_sum_1d": ["EMPTY_WINDOW"] * 2, "amount_count_1d": ["EMPTY_WINDOW"] * 2,
                         "spend_per_txn": ["PRESENT"] * 2},
        }
        for hours, amount in ((1, 4.0), (2, 5.0)):
            pushed = server.post("/push", {"view": "txn", "rows": [
                {"user_id": 1, "amount": amount, "ts": (T0 + timedelta(hours=hours)).isoformat()}]})
            assert pushed.status_code == 200, pushed.text
            after = server.post("/get-online-features", get).json()  # the push is in the next read's window
            assert after["values"]["amount_count_1d"] == [hours, 0]
        assert after["values"]["amount_sum_1d"] == [9.0, 0.0] and after["values"]["spend_per_txn"] == [4.5, 0.0]
        assert after["statuses"]["amount_sum_1d"] == ["PRESENT", "EMPTY_WINDOW"]
        later = server.post("/get-online-features", {**get, "now": (T0 + timedelta(days=3)).isoformat()}).json()
        assert later["statuses"]["amount_count_1d"] == ["EMPTY_WINDOW"] * 2  # the window slid past both events
        spec = httpx.get(server.url + "/openapi.json", timeout=30).json()
        ok = spec["paths"]["/get-online-features"]["post"]["responses"]["200"]["content"]["application/json"]
        assert "EMPTY_WINDOW" in ok["schema"]["properties"]["statuses"]["additionalProperties"]["items"]["enum"]
