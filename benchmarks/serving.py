"""HTTP serving workloads (issue 4): ``featurelite serve`` on loopback.

- :func:`http_online`: single-entity reads of 10 features from 4 concurrent clients, in
  rounds alternating with the limit, a bare uvicorn app that answers every request with a
  fixed body of the same size (the HTTP stack's floor on this machine).
- :func:`push`: 1,000-row pushes (Arrow IPC, then JSON rows) while 2 clients keep reading;
  the reference is the same batches ingested in-process with the index loaded, no HTTP.

Clients are threads using ``http.client`` (keep-alive, one connection each), the leanest
client the standard library has, in this process; the server is another process.
"""

from __future__ import annotations

import http.client
import io
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa

import featurelite as fl

from . import data
from .config import FEATURE_REFS, FEATURES, KEY, REPO, TS, VIEW
from .measure import latency_summary, stopwatch
from .model import Target, metric_row, workload
from .workloads import Context, _check

__all__ = ["http_online", "push"]

CLIENTS = 4
READERS_DURING_PUSH = 2
#: Reads per second each reader sends during the push workload (a model server's steady
#: load, not a flood: the flood is the latency workload's).
READ_RATE_DURING_PUSH = 500
PUSH_ROWS = 1_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Process:
    """A server subprocess on a free loopback port, stopped with SIGTERM."""

    def __init__(self, args: list[str]) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, *args, "--port", str(self.port)], cwd=REPO,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError(f"server {args} did not start: {self.proc.communicate()[1][-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM; featurelite exits 0 after closing its store (a bare uvicorn re-raises
        the signal, so -SIGTERM is a clean exit for the limit)."""
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=120)
        clean = self.proc.returncode in (0, -signal.SIGTERM) and "Traceback" not in err
        _check(clean, f"the server did not stop cleanly (exit {self.proc.returncode}): {err[-2000:]}")


def _post(conn: http.client.HTTPConnection, path: str, body: bytes, content_type: str = "application/json") -> bytes:
    conn.request("POST", path, body=body, headers={"Content-Type": content_type})
    response = conn.getresponse()
    payload = response.read()
    if response.status != 200:
        raise RuntimeError(f"{path} answered {response.status}: {payload[:500]!r}")
    return payload


def _read_bodies(keys: Iterable[int] | np.ndarray) -> list[bytes]:
    return [json.dumps({"features": list(FEATURE_REFS), "entities": [{KEY: int(k)}]}).encode() for k in keys]


def _clients(
    port: int, bodies: list[bytes], per_client: int | None, stop: threading.Event | None = None, clients: int = CLIENTS,
    rate: float | None = None,
) -> np.ndarray:
    """``clients`` threads, each sending its share of ``bodies`` (``per_client`` requests, or
    until ``stop`` is set), back to back or, with ``rate``, at that many requests per second
    per client; latencies (ns)."""
    samples: list[list[int]] = [[] for _ in range(clients)]
    errors: list[str] = []

    def client(c: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        clock = time.perf_counter_ns
        mine = samples[c]
        i = 0
        next_at = time.perf_counter()
        try:
            while (per_client is None or i < per_client) and not (stop is not None and stop.is_set()):
                if rate is not None:
                    next_at += 1.0 / rate
                    time.sleep(max(0.0, next_at - time.perf_counter()))
                body = bodies[(c * 7919 + i) % len(bodies)]
                t0 = clock()
                _post(conn, "/get-online-features", body)
                mine.append(clock() - t0)
                i += 1
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _check(not errors, f"HTTP clients failed: {errors[:3]}")
    return np.array([v for per in samples for v in per], dtype=np.int64)


def http_online(ctx: Context) -> dict[str, Any]:
    """Issue 4 latency target: 1 entity x 10 features over HTTP, 4 concurrent clients."""
    keys = data.request_keys(ctx.scale, ctx.seed + 4, ctx.scale.http_requests)
    bodies = _read_bodies(keys)
    server = _Process(["-m", "featurelite", "serve", str(ctx.store_path)])
    try:
        # The limit answers with a body of the same size as featurelite's.
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        sample = _post(conn, "/get-online-features", bodies[0])
        conn.close()
        floor = _Process(["-m", "benchmarks.http_floor", "--size", str(len(sample))])
        try:
            warm = max(50, ctx.scale.http_requests // 20)
            _clients(server.port, bodies, warm)
            _clients(floor.port, bodies, warm)
            rounds = 3
            per_round = ctx.scale.http_requests // (CLIENTS * rounds)
            mine: list[np.ndarray] = []
            limit: list[np.ndarray] = []
            for r in range(rounds):  # alternate whole rounds: the two servers cannot share a call
                mine.append(_clients(server.port, bodies[r::rounds], per_round))
                limit.append(_clients(floor.port, bodies[r::rounds], per_round))
        finally:
            floor.stop()
        got = json.loads(sample)
    finally:
        server.stop()
    with fl.open(ctx.store_path, read_only=True) as store:
        expected = store.get_online_features([{KEY: int(keys[0])}], list(FEATURE_REFS)).to_dict()
    _check(got["values"] == expected, "the server answered other values than the store")
    stats = {"featurelite": latency_summary(np.concatenate(mine)), "limit": latency_summary(np.concatenate(limit))}
    a, b = stats["featurelite"], stats["limit"]
    rows = [
        metric_row("p50", "us", a["p50_us"], b["p50_us"], Target("featurelite", "<=", 1000.0)),
        metric_row("p99", "us", a["p99_us"], b["p99_us"], Target("featurelite", "<=", 3000.0)),
        metric_row("mean", "us", a["mean_us"], b["mean_us"]),
        metric_row("requests/s (all clients)", "req/s", CLIENTS * 1e6 / a["mean_us"], CLIENTS * 1e6 / b["mean_us"]),
    ]
    return workload(
        "HTTP serving, 1 entity x 10 features, 4 concurrent clients",
        f"`featurelite serve` on loopback, `POST /get-online-features` for one random entity of {ctx.scale.entities:,} "
        f"and {len(FEATURES)} features; {CLIENTS} client threads (`http.client`, one keep-alive connection each) "
        f"sending requests back to back, {stats['featurelite']['iterations']:,} timed requests in 3 rounds "
        "alternating with the limit, after a warm-up round each. Latency as the client sees it (send to full "
        "response read), so it includes the client's own work and waiting for the 2 cores the clients and the "
        "server share.",
        "the HTTP stack alone: a bare uvicorn app (same server options: httptools, one worker) answering every "
        "request with a fixed JSON body of the same size, no routing, no store",
        rows,
        stats,
    )


def _push_batches(ctx: Context, count: int, first_ts_us: int) -> list[pa.Table]:
    """``count`` batches of ``PUSH_ROWS`` fresh events for random existing entities."""
    rng = np.random.default_rng(ctx.seed + 5)
    batches = []
    for b in range(count):
        keys = rng.choice(ctx.scale.entities, PUSH_ROWS, replace=False)
        ts = pa.array(np.full(PUSH_ROWS, first_ts_us + b, dtype=np.int64)).cast(pa.timestamp("us"))
        columns: dict[str, Any] = {KEY: keys.astype(np.int64)}
        columns.update({f: rng.standard_normal(PUSH_ROWS) for f in FEATURES})
        columns[TS] = ts
        batches.append(pa.table(columns))
    return batches


def _ipc(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def push(ctx: Context) -> dict[str, Any]:
    """Issue 4 throughput target: 1,000-row pushes while reads continue."""
    count = ctx.scale.push_batches
    with fl.open(ctx.store_path, read_only=True) as store:
        last = store.describe(VIEW)["last_event"]
    start_us = int(last.timestamp() * 1e6) + 1_000_000
    arrow_batches = _push_batches(ctx, count, start_us)
    json_batches = _push_batches(ctx, count // 4, start_us + 10 * count)
    arrow_bodies = [_ipc(t) for t in arrow_batches]
    json_bodies = [
        json.dumps({"view": VIEW, "columns": {
            **{c: t.column(c).to_pylist() for c in t.column_names if c != TS},
            TS: [v.isoformat() for v in t.column(TS).to_pylist()],
        }}).encode()
        for t in json_batches
    ]
    read_bodies = _read_bodies(data.request_keys(ctx.scale, ctx.seed + 6, 2_000))
    server = _Process(["-m", "featurelite", "serve", str(ctx.store_path)])
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)  # the pusher thread must not wait 5 ms for the readers' GIL
    try:
        stop = threading.Event()
        read_latencies: list[np.ndarray] = []

        def readers() -> None:
            read_latencies.append(
                _clients(server.port, read_bodies, None, stop, READERS_DURING_PUSH, READ_RATE_DURING_PUSH)
            )

        reading = threading.Thread(target=readers)
        reading.start()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            watch = stopwatch()
            for body in arrow_bodies:
                _post(conn, f"/push?view={VIEW}", body, "application/vnd.apache.arrow.stream")
            arrow_s = watch()
            watch = stopwatch()
            for body in json_bodies:
                _post(conn, "/push", body)
            json_s = watch()
        finally:
            conn.close()
            stop.set()
            reading.join()
    finally:
        sys.setswitchinterval(switch)
        server.stop()
    # The reference: as many fresh batches ingested in-process, index loaded, no HTTP.
    reference = _push_batches(ctx, count, start_us + 100 * count)
    with fl.open(ctx.store_path) as store:
        store.get_online_features([{KEY: 0}], [FEATURE_REFS[0]])  # load the index, as the server has
        watch = stopwatch()
        for table in reference:
            store.ingest(VIEW, table)
        in_process_s = watch()
    reads = latency_summary(np.concatenate(read_latencies)) if read_latencies else None
    rows_arrow, rows_json = count * PUSH_ROWS, len(json_batches) * PUSH_ROWS
    rows = [
        metric_row("push throughput, Arrow IPC bodies", "rows/s", rows_arrow / arrow_s, rows_arrow / in_process_s,
                   Target("featurelite", ">=", 200_000.0)),
        metric_row("push throughput, JSON bodies (columns)", "rows/s", rows_json / json_s, rows_arrow / in_process_s),
        metric_row("time per 1,000-row push, Arrow IPC", "s", arrow_s / count, in_process_s / count),
    ]
    if reads is not None:
        rows.append(metric_row("reads during the pushes: p50", "us", reads["p50_us"], None))
        rows.append(metric_row("reads during the pushes: p99", "us", reads["p99_us"], None))
    return workload(
        "Push while serving: 1,000-row batches, reads continuing",
        f"`POST /push` of {count:,} batches of {PUSH_ROWS:,} fresh events (random existing entities of "
        f"{ctx.scale.entities:,}, {len(FEATURES)} float64 features) into the served store, one after the other "
        f"from one client, as Arrow IPC streams and then {len(json_batches):,} batches as JSON columns, while "
        f"{READERS_DURING_PUSH} client threads keep sending single-entity reads, {READ_RATE_DURING_PUSH} per second "
        "each (their latency is reported). Each push is "
        "acknowledged only after it is committed and visible to reads.",
        "a reference rather than a limit: the same number of 1,000-row batches ingested in-process with "
        "`store.ingest` (index loaded, as in the server), after the server stopped; no HTTP",
        rows,
        {"arrow_s": arrow_s, "json_s": json_s, "in_process_s": in_process_s, "reads": reads},
    )
