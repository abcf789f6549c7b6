"""Production (issue 14): serving and training at once through the remote client, what the
serving log costs per read, and how fast a serving log replays against the history.

One served store of its own (``production.duckdb``): the main suite's history (the same
seed, so the same rows) ingested into two identical feature views, ``user_stats`` and
``stats_logged`` (declared ``log=True``). Before serving, ``store.snapshot()`` writes an
identical copy (the same rows, the same store identity); ``featurelite serve`` then serves
the original as a subprocess on loopback, and the in-process sides read the copy:

- ``production_training``: a training set through ``fl.connect(url)`` against the same call
  in-process on the copy, alternating; the two results must be equal;
- ``production_client_online``: one-entity reads through the client against a raw
  ``httpx`` POST of the same request to the same endpoint plus ``response.json()``, call by
  call;
- ``production_log_http``: the server answering reads of ``stats_logged`` against the same
  reads of ``user_stats``, call by call; the server's log is replayed afterwards (a check);
- ``production_log``: the same comparison in-process, on the copy (opened for writing: a
  read-only store logs nothing), after the server stopped.

``production_replay`` builds one more store: a logged view fed the history in time order,
in :data:`REPLAY_CHUNKS` ingests, with one-entity reads after each at the end of the time the
ingested rows cover (so every read sees exactly what a training set at that moment sees: no
late events), then times ``store.consistency()`` over those logged reads.
"""

from __future__ import annotations

import gc
import http.client
import json
import statistics
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa

import featurelite as fl
from featurelite.servinglog import FLUSH_ROWS, log_table

from . import data
from .config import ENTITY, FEATURES, KEY, TS, VIEW
from .measure import alternate_bulk, alternate_latency, bulk_summary, stopwatch
from .model import Target, metric_row, workload
from .serving import _post, _Process
from .workloads import Context, _check, _log_runs, _remove_db, _timer_floor

__all__ = ["NAMES", "run"]

#: The view declared ``log=True``; its twin without a log is the main suite's ``user_stats``.
LOGGED = "stats_logged"
#: The logged view of the replay store.
REPLAYED = "replayed"
#: Ingests (each followed by its share of the logged reads) the replay store's history arrives in.
REPLAY_CHUNKS = 100
#: Timed replays of the same log (the median is judged).
REPLAY_RUNS = 3
#: Keys checked before timing (the sides return the same values).
CHECK_KEYS = 100
#: Logged reads per measurement of the log writer's cost (fewer than the writer's batch trigger).
WRITER_BURST = FLUSH_ROWS - 96
WRITER_ROUNDS = 5
#: Alternating rounds of the sustained comparison (blocks of back-to-back reads, each block
#: timed through the log's flush at its end), and reads per block in-process / over HTTP.
SUSTAINED_ROUNDS = 5
SUSTAINED_BLOCK = 20_000
SUSTAINED_HTTP_BLOCK = 5_000
#: Issue 14's targets.
TRAINING_RATIO = 1.5
CLIENT_RATIO = 1.2
LOG_OVERHEAD_US = 2.0
LOG_HTTP_RATIO = 1.05
REPLAY_SECONDS = 10.0
#: The random stream of this module's data (``default_rng([seed, _STREAM, part])``).
_STREAM = 14
_EPOCH = datetime(1970, 1, 1)

#: The workloads of this module, in the order the page shows them.
NAMES = [
    "production_training",
    "production_client_online",
    "production_log",
    "production_log_http",
    "production_replay",
]


def _rng(seed: int, part: int) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAM, part])


def _keys(ctx: Context, part: int, count: int) -> list[int]:
    keys: list[int] = _rng(ctx.seed, part).integers(0, ctx.scale.entities, count, dtype=np.int64).tolist()
    return keys


def _refs(view: str) -> list[str]:
    return [f"{view}:{f}" for f in FEATURES]


def _view(name: str, user: fl.Entity, log: bool) -> fl.FeatureView:
    return fl.FeatureView(
        name, entities=[user], timestamp_field=TS, schema={f: "float64" for f in FEATURES}, log=True if log else None
    )


def _shifted(n: int, sides: int) -> list[Callable[[int], int]]:
    """One index function per side, so that each side reads its own key in an iteration (a
    key read just before by another side would be in cache)."""
    shift = max(1, n // sides)

    def at(k: int) -> Callable[[int], int]:
        return lambda i: (i + k * shift) % n

    return [at(k) for k in range(sides)]


def _build(ctx: Context, path: Path, local: Path) -> dict[str, float]:
    """The served store (both views, the main suite's history) and its snapshot."""
    _remove_db(path)
    _remove_db(local)
    watch = stopwatch()
    history = data.history(ctx.scale, ctx.seed)
    generate_s = watch()
    user = fl.Entity(ENTITY, join_keys=[KEY])
    seconds: dict[str, float] = {"generate_s": generate_s}
    with fl.open(path) as store:
        store.apply([user, _view(VIEW, user, False), _view(LOGGED, user, True)])
        for view in (VIEW, LOGGED):
            watch = stopwatch()
            store.ingest(view, history)
            seconds[f"ingest_{view}_s"] = watch()
        watch = stopwatch()
        store.snapshot(local)
        seconds["snapshot_s"] = watch()
    seconds["file_bytes"] = float(path.stat().st_size)
    return seconds


# -- 1. training set through the client --------------------------------------------------


def _ipc_bytes(table: pa.Table) -> int:
    sink = pa.MockOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return int(sink.size())


def _training(ctx: Context, remote: Any, local: fl.Store) -> dict[str, Any]:
    spine, refs = ctx.spine, _refs(VIEW)
    sides: dict[str, Callable[[pa.Table], pa.Table]] = {
        "featurelite": lambda df: remote.get_historical_features(df, refs),
        "limit": lambda df: local.get_historical_features(df, refs),
    }
    warm = spine.slice(0, max(1, spine.num_rows // 100))
    for build in sides.values():
        build(warm)
    last: dict[str, pa.Table] = {}

    def timed(side: str) -> Callable[[], float]:
        def once() -> float:
            last.pop(side, None)
            watch = stopwatch()
            last[side] = sides[side](spine)
            return watch()

        return once

    repeats = 2 * ctx.scale.repeats - 1  # the suite's repeats are 5 at full scale: 9 here, 2 s each
    seconds = alternate_bulk({side: timed(side) for side in sides}, repeats)
    _log_runs(ctx, "production: training set, client and in-process", seconds)
    mine, limit = last["featurelite"], last["limit"]
    theirs, ours = fl.Manifest.from_table(mine), fl.Manifest.from_table(limit)
    _check(mine.num_rows == limit.num_rows == spine.num_rows, "production_training: the row counts differ")
    _check(mine.equals(limit), "production_training: the client's training set differs from the in-process one")
    _check(theirs.digest == ours.digest and theirs.matches(mine) and ours.matches(limit),
           "production_training: the two training sets' manifest digests differ")
    _check(theirs.store_id == ours.store_id, "production_training: the snapshot has another store identity")
    matched = mine.num_rows - mine.column(FEATURES[0]).null_count
    up, down = _ipc_bytes(spine), _ipc_bytes(mine)
    a, b = bulk_summary(seconds["featurelite"], spine.num_rows), bulk_summary(seconds["limit"], spine.num_rows)
    rows = [
        metric_row("time (median)", "s", a["median_s"], b["median_s"], Target("ratio", "<=", TRAINING_RATIO)),
        metric_row("time (best run)", "s", a["min_s"], b["min_s"]),
        metric_row("throughput (median)", "rows/s", a["rows_per_s"], b["rows_per_s"]),
        metric_row("entity rows sent (Arrow IPC)", "bytes", float(up), None),
        metric_row("training set received (Arrow IPC)", "bytes", float(down), None),
    ]
    return workload(
        "Production: training set through the remote client",
        f"`fl.connect(url).get_historical_features(entity_df, {len(refs)} features)` against a `featurelite serve` "
        f"subprocess on loopback: the entity_df of {spine.num_rows:,} rows (the main suite's, `user_id`, "
        f"`event_timestamp`, `label`) streamed up as Arrow IPC, the training set built by the server against "
        f"{ctx.scale.history_rows:,} history rows of `{VIEW}` and streamed back as Arrow IPC, read into a table. "
        f"{repeats} run{'s' if repeats != 1 else ''} alternating with the limit, after a "
        "warm-up on 1% of the rows each; the median "
        "is judged. Checked: the two training sets are equal (`Table.equals`, "
        f"{spine.num_rows:,} rows, {matched:,} matched), with the same manifest digest and store identity.",
        "the same call in-process, `store.get_historical_features(entity_df, features)`, on a copy of the served "
        "store written by `store.snapshot(path)` before serving (the same rows, the same store identity)",
        rows,
        {"featurelite": a, "limit": b, "rows": spine.num_rows, "matched_rows": matched, "digest": ours.digest,
         "ipc_bytes": {"entity_df": up, "training_set": down}},
    )


# -- 2. online read through the client ----------------------------------------------------


def _client_body(key: int, refs: list[str]) -> bytes:
    """The request body the client sends for one entity (``RemoteStore.get_online_features``)."""
    payload = {"entities": [{KEY: key}], "arrow_schema": True, "features": refs}
    return json.dumps(payload, separators=(",", ":")).encode("ascii")


def _plain_body(key: int, refs: list[str]) -> bytes:
    return json.dumps({"features": refs, "entities": [{KEY: key}]}).encode()


def _client_online(ctx: Context, remote: Any, url: str, local: fl.Store) -> dict[str, Any]:
    n, refs = ctx.scale.http_requests, _refs(VIEW)
    keys = _keys(ctx, 1, n)
    versioned, unversioned = f"{url}/v1/get-online-features", f"{url}/get-online-features"
    client_bodies = [_client_body(k, refs) for k in keys]
    plain_bodies = [_plain_body(k, refs) for k in keys]
    rows_of = [[{KEY: k}] for k in keys]
    with httpx.Client(headers={"content-type": "application/json"}) as raw:
        post = raw.post
        for i in range(min(CHECK_KEYS, n)):
            expected = local.get_online_features(rows_of[i], refs).to_dict()
            got = remote.get_online_features(rows_of[i], refs).to_dict()
            answer = post(versioned, content=client_bodies[i])
            _check(answer.status_code == 200, f"production_client_online: the server answered {answer.status_code}")
            _check(got == expected == answer.json()["values"] == post(unversioned, content=plain_bodies[i]).json()[
                "values"], f"production_client_online: the client, raw HTTP and in-process disagree on key {keys[i]}")
        c, r, p = _shifted(n, 3)
        get = remote.get_online_features
        stats = alternate_latency(
            {
                "featurelite": lambda i: get(rows_of[c(i)], refs),
                "limit": lambda i: post(versioned, content=client_bodies[r(i)]).json(),
                "plain": lambda i: post(unversioned, content=plain_bodies[p(i)]).json(),
            },
            n,
            min(ctx.scale.warmup_iterations, n),
            rotate=True,
        )
    mine, limit, plain = stats["featurelite"], stats["limit"], stats["plain"]
    rows = [
        metric_row("p50", "us", mine["p50_us"], limit["p50_us"], Target("ratio", "<=", CLIENT_RATIO)),
        metric_row("p99", "us", mine["p99_us"], limit["p99_us"]),
        metric_row("mean", "us", mine["mean_us"], limit["mean_us"]),
        metric_row("p50 difference (client − raw httpx): the client's own work per read", "us",
                   mine["p50_us"] - limit["p50_us"], None),
        metric_row("p50 against raw httpx to `/get-online-features` without `arrow_schema`", "us",
                   mine["p50_us"], plain["p50_us"]),
    ]
    return workload(
        "Production: online read through the remote client, 1 entity",
        f"`fl.connect(url).get_online_features([{{'{KEY}': k}}], [{len(refs)} feature refs])` of `{VIEW}` "
        "against the "
        f"`featurelite serve` subprocess: random keys of {ctx.scale.entities:,}, {n:,} timed calls, one client "
        "(its own keep-alive connection), alternating call by call (the order rotating) with the limit and a "
        "second raw request (`plain`: the body any HTTP client would send, to the unversioned endpoint, so the "
        "server also leaves out the Arrow schema the client asks for); each side reads its own key. The client "
        "encodes the request, and decodes the answer's values by the Arrow schema it carries into an "
        f"`OnlineResponse`. Checked first: on {min(CHECK_KEYS, n)} keys the client, both raw requests and the "
        "in-process read of the snapshot return the same values.",
        "a raw `httpx.Client.post(url + '/v1/get-online-features', content=body)` of the same request body the "
        "client sends (built beforehand), then `response.json()`: the same endpoint, the same server work, one "
        "`httpx.Client` of its own",
        rows,
        stats,
    )


# -- 3. what the serving log costs per read -----------------------------------------------


def _sustained(block: int, read: Callable[[str, int], object], flush: Callable[[], object]) -> dict[str, Any]:
    """What logging costs a stream of reads, the writer's work included: blocks of
    ``block`` back-to-back reads of the logged view (``featurelite``) and of the plain one
    (``limit``), alternating (the first side alternating too), each block timed through a
    ``flush()`` of the log at its end (so no block leaves log rows for the next one to
    write); µs per read, per block."""
    per_read: dict[str, list[float]] = {"featurelite": [], "limit": []}
    flush()
    for r in range(SUSTAINED_ROUNDS):
        sides = ["featurelite", "limit"] if r % 2 == 0 else ["limit", "featurelite"]
        for side in sides:
            gc.collect()
            start = r * block
            watch = stopwatch()
            for i in range(start, start + block):
                read(side, i)
            flush()
            per_read[side].append(watch() * 1e6 / block)
    return {
        "block": block, "rounds": SUSTAINED_ROUNDS, "per_read_us": per_read,
        "median_us": {side: statistics.median(v) for side, v in per_read.items()},
    }


def _sustained_rows(sustained: dict[str, Any], flushed_by: str) -> list[dict[str, Any]]:
    mine, limit = sustained["median_us"]["featurelite"], sustained["median_us"]["limit"]
    what = f"blocks of {sustained['block']:,} back-to-back reads, each timed through {flushed_by}"
    return [
        metric_row(f"sustained: time per read, the writer's work included ({what}; median of "
                   f"{sustained['rounds']} blocks)", "us", mine, limit),
        metric_row("sustained: difference per read (with log − without)", "us", mine - limit, None),
    ]


def _log_http(ctx: Context, port: int, remote: Any, earlier: int) -> dict[str, Any]:
    """``earlier``: reads of the logged view the server answered before (logged too)."""
    n = ctx.scale.http_requests
    keys = _keys(ctx, 2, n)
    logged = [_plain_body(k, _refs(LOGGED)) for k in keys]
    plain = [_plain_body(k, _refs(VIEW)) for k in keys]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        checks = min(CHECK_KEYS, n)
        for i in range(checks):
            a = json.loads(_post(conn, "/v1/get-online-features", logged[i]))
            b = json.loads(_post(conn, "/v1/get-online-features", plain[i]))
            _check(a == b, f"production_log_http: the two views answer differently for key {keys[i]}")
        warmup = min(ctx.scale.warmup_iterations, n)
        f, lim, c = _shifted(n, 3)
        stats = alternate_latency(
            {
                "featurelite": lambda i: _post(conn, "/v1/get-online-features", logged[f(i)]),
                "limit": lambda i: _post(conn, "/v1/get-online-features", plain[lim(i)]),
                "control": lambda i: _post(conn, "/v1/get-online-features", plain[c(i)]),
            },
            n,
            warmup,
            rotate=True,
        )
        bodies = {"featurelite": logged, "limit": plain}
        block = min(SUSTAINED_HTTP_BLOCK, n // SUSTAINED_ROUNDS)

        def flush() -> None:  # the server's store.freshness() writes the queued log rows first
            conn.request("GET", "/v1/freshness")
            response = conn.getresponse()
            response.read()
            _check(response.status == 200, f"production_log_http: /v1/freshness answered {response.status}")

        sustained = _sustained(block, lambda side, i: _post(conn, "/v1/get-online-features", bodies[side][i]), flush)
    finally:
        conn.close()
    # What the server logged: every read of the logged view, replayed by the server (a check).
    watch = stopwatch()
    report = remote.consistency(LOGGED)
    replay_s = watch()
    served = earlier + checks + warmup + n + SUSTAINED_ROUNDS * block
    _check(report.requests == served and report.rows == served,
           f"production_log_http: the server logged {report.requests} reads of {served}")
    _check(report.consistency == 1.0, f"production_log_http: the server's log replays at {report.consistency}")
    mine, limit, control = stats["featurelite"], stats["limit"], stats["control"]
    rows = [
        metric_row("p50", "us", mine["p50_us"], limit["p50_us"], Target("ratio", "<=", LOG_HTTP_RATIO)),
        metric_row("p99", "us", mine["p99_us"], limit["p99_us"]),
        metric_row("mean", "us", mine["mean_us"], limit["mean_us"]),
        metric_row("p50 difference (with log − without)", "us", mine["p50_us"] - limit["p50_us"], None),
        metric_row("p50 difference (without − the same read again: the noise floor)", "us",
                   control["p50_us"] - limit["p50_us"], None),
        *_sustained_rows(sustained, "`GET /v1/freshness` (the server writes the queued log rows first)"),
        metric_row(f"replay of the server's log ({served:,} reads) through the client, `consistency('{LOGGED}')`",
                   "s", replay_s, None),
    ]
    return workload(
        "Production: serving log cost over HTTP, 1 entity",
        f"`POST /v1/get-online-features` for one random entity (of {ctx.scale.entities:,}) and the {len(FEATURES)} "
        f"features of `{LOGGED}` (declared `log=True`: every read logged) to the `featurelite serve` subprocess, one "
        f"keep-alive connection (`http.client`), {n:,} timed requests alternating call by call (the order rotating) "
        f"with the limit and the limit again (a control: the difference of two identical reads' p50s is the noise "
        "of this run); each side reads its own key. The target (issue 14) is on the ratio of the p50s. The "
        "server's log writer (a thread of the server process) runs after the logged reads that wake it, during "
        "later requests of any side, so the p99 and mean rows do not weigh the log; the sustained rows do: "
        f"{SUSTAINED_ROUNDS} alternating rounds of a block of {block:,} back-to-back requests per side (the same "
        "keys for both), each block timed through a `GET /v1/freshness` at its end, which has the server write "
        "the log rows still queued (and costs both sides the same otherwise). Checked first: on "
        f"{min(CHECK_KEYS, n)} keys both views answer the same. Afterwards the server's log is replayed through the "
        f"client: it holds every read of `{LOGGED}` ({served:,}), at consistency 1.0.",
        f"the same request for the same features of `{VIEW}`, a view with the same rows and no serving log, same "
        "server",
        rows,
        {**stats, "sustained": sustained, "server_log": report.to_dict() | {"features": len(report.features)},
         "server_replay_s": replay_s},
    )


def _writer_cost(store: fl.Store, keys: list[int], refs: list[str]) -> dict[str, Any]:
    """The log writer's time per logged read: a burst of logged reads (fewer than the
    writer's batch trigger), then ``flush_log()`` timed; µs per row written."""
    per_row: list[float] = []
    get = store.get_online_features
    burst = min(WRITER_BURST, len(keys))
    for r in range(WRITER_ROUNDS):
        store.flush_log()
        for k in keys[r * 7 % len(keys):][:burst]:
            get([{KEY: k}], refs)
        watch = stopwatch()
        written = store.flush_log()
        seconds = watch()
        if written:
            per_row.append(seconds * 1e6 / written)
    _check(bool(per_row), "production_log: the log writer wrote nothing")
    return {"us_per_row": per_row, "median_us_per_row": statistics.median(per_row), "burst": burst}


def _log_inprocess(ctx: Context, local_path: Path) -> dict[str, Any]:
    n = ctx.scale.latency_iterations
    keys = _keys(ctx, 3, n)
    rows_of = [[{KEY: k}] for k in keys]
    logged, plain = _refs(LOGGED), _refs(VIEW)
    with fl.open(local_path) as store:  # for writing: a read-only store logs nothing
        get = store.get_online_features
        checks = min(CHECK_KEYS, n)
        for i in range(checks):
            _check(get(rows_of[i], logged).to_dict() == get(rows_of[i], plain).to_dict(),
                   f"production_log: the two views answer differently for key {keys[i]}")
        warmup = ctx.scale.warmup_iterations
        f, lim, c = _shifted(n, 3)
        stats = alternate_latency(
            {
                "featurelite": lambda i: get(rows_of[f(i)], logged),
                "limit": lambda i: get(rows_of[lim(i)], plain),
                "control": lambda i: get(rows_of[c(i)], plain),
                "timer": lambda i: None,
            },
            n,
            warmup,
            rotate=True,
        )
        store.flush_log()
        table = log_table("view", LOGGED)
        logged_rows = store.con.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0][0]
        served = checks + warmup + n
        _check(logged_rows == served, f"production_log: the log holds {logged_rows} rows for {served} reads")
        writer = _writer_cost(store, keys, logged)
        refs = {"featurelite": logged, "limit": plain}
        block = min(SUSTAINED_BLOCK, n // SUSTAINED_ROUNDS)
        sustained = _sustained(block, lambda side, i: get(rows_of[i], refs[side]), store.flush_log)
    mine, limit, control = stats["featurelite"], stats["limit"], stats["control"]
    rows = [
        metric_row("p50 difference (with log − without)", "us", mine["p50_us"] - limit["p50_us"], None,
                   Target("featurelite", "<=", LOG_OVERHEAD_US)),
        metric_row("p50", "us", mine["p50_us"], limit["p50_us"]),
        metric_row("p99", "us", mine["p99_us"], limit["p99_us"]),
        metric_row("mean", "us", mine["mean_us"], limit["mean_us"]),
        metric_row("p50 difference (without − the same read again: the noise floor)", "us",
                   control["p50_us"] - limit["p50_us"], None),
        *_sustained_rows(sustained, "`store.flush_log()`"),
        metric_row("the log writer's time per logged read (off the read's path: `flush_log()` of a burst, timed)",
                   "us", writer["median_us_per_row"], None),
    ]
    return workload(
        "Production: serving log cost in-process, 1 entity",
        f"`store.get_online_features([{{'{KEY}': k}}], [{len(logged)} feature refs])` of `{LOGGED}` in-process "
        "(the view "
        f"declared `log=True`: every read logged), random keys of {ctx.scale.entities:,}, {n:,} timed calls "
        "alternating call by call (the order rotating) with the limit and the limit again (a control: the "
        "difference of two identical reads' p50s is the noise of this run); each side reads its own key. The "
        "read appends what it served to the log's column buffers; the log's writer thread turns them into rows "
        "and inserts them every second (or every "
        f"{FLUSH_ROWS:,} rows), in this process, so its work lands between the timed calls of every side. "
        "The target (issue 14) is on the difference of the p50s. The p99 and mean rows do not weigh the log: "
        "the writer is woken by a logged read (the buffers reaching their batch) and takes the interpreter's lock "
        "during the calls after it, mostly another side's. The sustained rows do: "
        f"{SUSTAINED_ROUNDS} alternating rounds of a block of {sustained['block']:,} back-to-back reads per side "
        "(the same keys for both), each block timed through a `store.flush_log()` at its end, so the writer's "
        "whole work for a block's reads is in that block's time. For context too: the writer's own time per "
        f"logged read, from {WRITER_ROUNDS} bursts of {writer['burst']:,} logged reads each written by a timed "
        f"`store.flush_log()` (median). Checked: on {min(CHECK_KEYS, n)} keys both views answer the same, and "
        f"the log holds one row per read of `{LOGGED}` ({served:,}). The store is the snapshot, after the server "
        "stopped, opened for writing." + _timer_floor(stats),
        f"the same read of the same features of `{VIEW}` (same rows, no serving log), same store: a store with a "
        "logged view looks up per read whether the read is logged, so both sides pay that lookup",
        rows,
        {**stats, "writer": writer, "sustained": sustained, "logged_rows": logged_rows},
    )


# -- 4. consistency replay ----------------------------------------------------------------


def _chunks(history: pa.Table, count: int) -> list[tuple[pa.Table, datetime]]:
    """The history cut into ``count`` spans of equal time, in time order: each span's rows
    and the span's last microsecond (every row of it is at or before that moment; every
    later row after it)."""
    ordered = history.sort_by(TS)
    ts = ordered.column(TS).cast(pa.int64()).to_numpy()
    bounds = [data.START_US + (data.SPAN_US * j) // count for j in range(count + 1)]
    cuts = np.searchsorted(ts, bounds, side="left")
    cuts[-1] = len(ts)
    return [
        (ordered.slice(int(cuts[j]), int(cuts[j + 1] - cuts[j])), _EPOCH + timedelta(microseconds=bounds[j + 1] - 1))
        for j in range(count)
    ]


def _replay(ctx: Context) -> dict[str, Any]:
    path = ctx.work / "production-replay.duckdb"
    _remove_db(path)
    total = ctx.scale.replay_requests
    chunks = _chunks(data.history(ctx.scale, ctx.seed), REPLAY_CHUNKS)
    keys = _keys(ctx, 4, total)
    per_chunk = [total // REPLAY_CHUNKS + (1 if j < total % REPLAY_CHUNKS else 0) for j in range(REPLAY_CHUNKS)]
    refs = _refs(REPLAYED)
    user = fl.Entity(ENTITY, join_keys=[KEY])
    ingest_s = reads_s = 0.0
    statuses: dict[str, int] = {}
    with fl.open(path) as store:
        store.apply([user, _view(REPLAYED, user, True)])
        get, done = store.get_online_features, 0
        for (rows, now), count in zip(chunks, per_chunk, strict=True):
            watch = stopwatch()
            store.ingest(REPLAYED, rows)
            ingest_s += watch()
            watch = stopwatch()
            for k in keys[done:done + count]:
                response = get([{KEY: k}], refs, now=now)
                status = response.statuses[FEATURES[0]][0]
                statuses[status] = statuses.get(status, 0) + 1
            reads_s += watch()
            done += count
        watch = stopwatch()
        store.flush_log()
        flush_s = watch()
        seconds: list[float] = []
        report: Any = None
        for _ in range(REPLAY_RUNS):
            watch = stopwatch()
            report = store.consistency(REPLAYED)
            seconds.append(watch())
    _remove_db(path)
    ctx.log("production: replay runs (s): " + ", ".join(f"{s:.2f}" for s in seconds))
    assert report is not None
    compared = sum(f.compared for f in report.features)
    _check(report.requests == total and report.rows == total,
           f"production_replay: the log holds {report.requests} requests, {report.rows} rows for {total} reads")
    _check(compared == total * len(FEATURES), f"production_replay: {compared} values compared")
    _check(report.consistency == 1.0, f"production_replay: a clean replay is at consistency {report.consistency}, "
           f"not 1.0: {report.to_dict()['features'][:2]}")
    median = statistics.median(seconds)
    found = statuses.get("PRESENT", 0)
    rows = [
        metric_row(f"replay of {total:,} logged reads, `store.consistency('{REPLAYED}')` (median)", "s", median, None,
                   Target("featurelite", "<", REPLAY_SECONDS)),
        metric_row("replay (best run)", "s", min(seconds), None),
        metric_row("replay throughput (median)", "rows/s", total / median, None),
        metric_row("consistency (values equal / compared)", "share", report.consistency, None),
        metric_row("values compared", "values", float(compared), None),
        metric_row("the logged reads at past `now=`: mean time per read (the first after each ingest included)",
                   "us", reads_s * 1e6 / total, None),
        metric_row("`store.flush_log()` of the reads still queued", "s", flush_s, None),
    ]
    first, last = chunks[0][1], chunks[-1][1]
    return workload(
        "Production: consistency replay of the serving log",
        f"`store.consistency('{REPLAYED}')`: every logged read (one entity, {len(FEATURES)} features) asked again of "
        "the training-set path at its logged request time, each value compared bit for bit. The store: one view "
        f"`{REPLAYED}` (`log=True`), fed the main suite's history ({ctx.scale.history_rows:,} rows of "
        f"{ctx.scale.entities:,} keys over 180 days) in time order, in {REPLAY_CHUNKS} ingests of equal spans of "
        f"time; after each, {total // REPLAY_CHUNKS:,} reads of random keys with `now=` the span's last "
        f"microsecond ({first.isoformat()} to {last.isoformat()}): {total:,} logged reads spread over the history, "
        f"{found:,} of them finding a value (the others: a key without events yet). Then `store.flush_log()`, and "
        f"{REPLAY_RUNS} timed replays of the whole log (the median judged; the replay flushes the log first, here "
        "nothing). Checked: every read is in the log and the replay finds every value equal (consistency 1.0: "
        "the history arrived in time order, so no late events).",
        "none: the target is an absolute time",
        rows,
        {"runs_s": seconds, "ingest_s": ingest_s, "reads_s": reads_s, "flush_s": flush_s, "statuses": statuses,
         "report": report.to_dict() | {"features": [f.to_dict() for f in report.features][:1]}},
    )


# -- the group ----------------------------------------------------------------------------


def run(ctx: Context) -> dict[str, dict[str, Any]]:
    """All production workloads: a served store and its snapshot, then the replay store."""
    path, local_path = ctx.work / "production.duckdb", ctx.work / "production-local.duckdb"
    watch = stopwatch()
    built = _build(ctx, path, local_path)
    ctx.log(f"production: store built and snapshot in {watch():.1f} s ({built})")
    results: dict[str, dict[str, Any]] = {}
    server = _Process(["-m", "featurelite", "serve", str(path)])
    try:
        url = f"http://127.0.0.1:{server.port}"
        with fl.connect(url) as remote, fl.open(local_path, read_only=True) as local:
            for view in (VIEW, LOGGED):  # load the online indexes before timing
                remote.get_online_features([{KEY: 0}], _refs(view)[:1])
            local.get_online_features([{KEY: 0}], _refs(VIEW)[:1])
            watch = stopwatch()
            results["production_training"] = _training(ctx, remote, local)
            ctx.log(f"production: training set done in {watch():.1f} s")
            watch = stopwatch()
            results["production_client_online"] = _client_online(ctx, remote, url, local)
            ctx.log(f"production: client online reads done in {watch():.1f} s")
            watch = stopwatch()
            results["production_log_http"] = _log_http(ctx, server.port, remote, earlier=1)
            ctx.log(f"production: serving log over HTTP done in {watch():.1f} s")
    finally:
        server.stop()
    watch = stopwatch()
    results["production_log"] = _log_inprocess(ctx, local_path)
    ctx.log(f"production: serving log in-process done in {watch():.1f} s")
    _remove_db(path)
    _remove_db(local_path)
    watch = stopwatch()
    results["production_replay"] = _replay(ctx)
    ctx.log(f"production: consistency replay done in {watch():.1f} s")
    return {name: results[name] for name in NAMES}
