"""The remote client's overheads, side by side with their limits (issue 14):

- an online read of one entity through ``featurelite.connect`` against the same request
  sent with a bare ``httpx.Client.post(url, content=json_bytes)`` + ``response.json()``
  (the same body bytes, the same endpoint, the same server), interleaved in rounds;
- a training set of N entity rows (default 1,000,000) through ``connect`` (Arrow streams
  both ways) against ``store.get_historical_features`` in process, on a copy of the file
  taken before the server started (the server holds the original).

``python -m benchmarks.remote_probe [--rows N] [--reads N] [--folder DIR]``; prints JSON.
The server is a real ``featurelite serve`` subprocess on a free loopback port. Numbers from
a shared machine are noisy: both sides of each ratio run in the same rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

import featurelite as fl
from featurelite.demo import definitions, example_events, example_spine
from featurelite.http_client import connect

__all__ = ["main", "measure_historical", "measure_online"]

FEATURES = ["user_stats:spend_7d", "user_stats:country", "shares:basket_share"]
ENTITY = [{"user_id": 42}]
REQUEST = {"basket": [12.5]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _build(folder: Path, users: int) -> Path:
    path = folder / "remote.duckdb"
    with fl.open(path) as store:
        store.apply([*definitions(), fl.FeatureService("fraud", ["user_stats:spend_7d", "shares:basket_share"])])
        store.ingest("user_stats", example_events(users=users, events=users * 5))
    return path


def _serve(path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "featurelite", "serve", str(path), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/v1/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the server did not start")
        time.sleep(0.1)


def _timed(call: Callable[[], Any], n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter_ns()
        call()
        times.append((time.perf_counter_ns() - start) / 1000)
    return times


def measure_online(url: str, reads: int = 5000, rounds: int = 10) -> dict[str, Any]:
    """p50 / p99 in microseconds of one-entity reads: the client against bare httpx."""
    client_times: list[float] = []
    raw_times: list[float] = []
    with connect(url) as remote, httpx.Client() as raw:
        payload = {"entities": ENTITY, "arrow_schema": True, "features": FEATURES, "request_data": REQUEST}
        body = json.dumps(payload, separators=(",", ":")).encode()
        endpoint = url + "/v1/get-online-features"
        headers = {"content-type": "application/json"}

        def client_read() -> Any:
            return remote.get_online_features(ENTITY, FEATURES, request_data=REQUEST)

        def raw_read() -> Any:
            return raw.post(endpoint, content=body, headers=headers).json()

        assert raw_read()["values"] == client_read().to_dict()
        for _ in range(500):  # warm-up: connections, caches, the server's plan cache
            client_read()
            raw_read()
        per_round = max(1, reads // rounds)
        for _ in range(rounds):  # interleaved, so drift on a shared machine hits both sides
            raw_times += _timed(raw_read, per_round)
            client_times += _timed(client_read, per_round)

    def summary(times: list[float]) -> dict[str, float]:
        ordered = sorted(times)
        return {"p50_us": round(statistics.median(ordered), 1), "p99_us": round(ordered[int(len(ordered) * 0.99)], 1)}

    client, raw_ = summary(client_times), summary(raw_times)
    return {"reads": len(client_times), "client": client, "raw_httpx": raw_,
            "p50_ratio": round(client["p50_us"] / raw_["p50_us"], 3)}


def measure_historical(url: str, copy: Path, rows: int, users: int, repeats: int = 5) -> dict[str, Any]:
    """Seconds for a training set of ``rows`` entity rows: in process (on ``copy``) and
    through the client; medians of ``repeats``, the two alternating."""
    spine = example_spine(users=users, rows=rows)
    local_times, remote_times = [], []
    with fl.open(copy, read_only=True) as store, connect(url) as remote:
        expected = store.get_historical_features(spine, service="fraud")  # warm-up, both sides
        got = remote.get_historical_features(spine, service="fraud")
        assert got.replace_schema_metadata(None).equals(expected.replace_schema_metadata(None))
        assert fl.Manifest.from_table(got).digest == fl.Manifest.from_table(expected).digest
        for _ in range(repeats):
            start = time.perf_counter()
            store.get_historical_features(spine, service="fraud")
            local_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            remote.get_historical_features(spine, service="fraud")
            remote_times.append(time.perf_counter() - start)
    local, through = statistics.median(local_times), statistics.median(remote_times)
    return {"rows": rows, "in_process_s": round(local, 3), "connect_s": round(through, 3),
            "ratio": round(through / local, 3), "all_in_process_s": [round(t, 3) for t in local_times],
            "all_connect_s": [round(t, 3) for t in remote_times]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="entity rows of the training set")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--reads", type=int, default=5000, help="one-entity reads per side")
    parser.add_argument("--folder", type=Path, help="where to build the store (default: a temporary folder)")
    args = parser.parse_args(argv)
    folder = args.folder or Path(tempfile.mkdtemp(prefix="remote-probe-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = _build(folder, args.users)
    copy = folder / "copy.duckdb"
    shutil.copyfile(path, copy)
    proc, url = _serve(path)
    try:
        result = {
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "featurelite": fl.__version__,
                        "httpx": httpx.__version__},
            "online": measure_online(url, args.reads),
            "historical": measure_historical(url, copy, args.rows, args.users),
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        if args.folder is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
