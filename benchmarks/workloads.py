"""The workloads. Each runs featurelite and its limit on the same data, side by side, and
returns a :func:`benchmarks.model.workload` dict.

Order matters: :func:`ingest` leaves one featurelite store and one plain DuckDB file with
the full history behind; the later workloads read those.
"""

from __future__ import annotations

import gc
import json
import math
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

import featurelite as fl

from . import baseline, data
from .config import ENTITY, FEATURE_REFS, FEATURES, KEY, REPO, TS, VIEW, Scale
from .measure import alternate_bulk, alternate_latency, bulk_summary, stopwatch
from .model import Target, metric_row, workload
from .rss_probe import first_read

__all__ = ["Context", "index_memory", "ingest", "online", "training", "training_ties"]

T = TypeVar("T")
#: Limit side of the online reads: entity key -> the 10 feature values.
DictTable = dict[int, tuple[float, ...]]


class BenchmarkCheckError(RuntimeError):
    """featurelite and its limit disagreed on the data, so the comparison is void."""


@dataclass
class Context:
    """What the workloads share: scale, seed, data and the files ingest leaves behind."""

    scale: Scale
    seed: int
    work: Path
    history: pa.Table | None
    spine: pa.Table
    log: Callable[[str], None]

    @property
    def store_path(self) -> Path:
        return self.work / "featurelite.duckdb"

    @property
    def sql_path(self) -> Path:
        return self.work / "handwritten.duckdb"

    @property
    def ondemand_store_path(self) -> Path:
        """A copy of the store at :attr:`store_path` with an on-demand view applied."""
        return self.work / "featurelite-ondemand.duckdb"

    @property
    def warm_store_path(self) -> Path:
        """A small featurelite store (1% of the history) used to warm up."""
        return self.work / "warmup.duckdb"


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise BenchmarkCheckError(message)


def _remove_db(path: Path) -> None:
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)


def _definitions() -> list[fl.Entity | fl.FeatureView]:
    user = fl.Entity(ENTITY, join_keys=[KEY])
    view = fl.FeatureView(VIEW, entities=[user], timestamp_field=TS, schema={f: "float64" for f in FEATURES})
    return [user, view]


def _traced(fn: Callable[[], T]) -> tuple[T, int, int]:
    """Run ``fn`` under tracemalloc: (its result, bytes still allocated after it, peak)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = fn()
        gc.collect()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, after - before, peak - before


def _log_runs(ctx: Context, name: str, seconds: dict[str, list[float]]) -> None:
    runs = "; ".join(f"{side} " + ", ".join(f"{s:.2f}" for s in values) for side, values in seconds.items())
    ctx.log(f"{name} runs (s): {runs}")


def _bulk_rows(
    mine: dict[str, Any], limit: dict[str, Any], time_target: Target, throughput_target: Target | None = None
) -> list[dict[str, Any]]:
    """Rows of a repeated bulk workload: median time (judged), best time, throughput."""
    return [
        metric_row("time (median)", "s", mine["median_s"], limit["median_s"], time_target),
        metric_row("time (best run)", "s", mine["min_s"], limit["min_s"]),
        metric_row("throughput (median)", "rows/s", mine["rows_per_s"], limit["rows_per_s"], throughput_target),
    ]


# -- ingest ---------------------------------------------------------------------------


def _ingest_featurelite(path: Path, table: pa.Table) -> float:
    """Seconds of ``store.ingest`` into a fresh store file (apply and close untimed)."""
    _remove_db(path)
    with fl.open(path) as store:
        store.apply(_definitions())
        watch = stopwatch()
        store.ingest(VIEW, table)
        return watch()


def _ingest_limit(path: Path, table: pa.Table) -> float:
    """Seconds of the hand-written append + upsert into a fresh DuckDB file."""
    with closing(baseline.connect_fresh(path)) as con:
        baseline.create_tables(con)
        watch = stopwatch()
        baseline.ingest(con, table)
        return watch()


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    (rows,) = con.execute(f"SELECT count(*) FROM {table}").fetchall()
    return int(rows[0])


def _stored_counts(path: Path, history: str, online_table: str) -> tuple[int, int]:
    with closing(duckdb.connect(str(path), read_only=True)) as con:
        return _count(con, history), _count(con, online_table)


def ingest(ctx: Context) -> dict[str, Any]:
    """Target 3: ``store.ingest`` of the whole history vs hand-written append + upsert."""
    table = ctx.history
    assert table is not None
    warm = table.slice(0, max(1, table.num_rows // 100))
    _ingest_featurelite(ctx.warm_store_path, warm)  # kept: later workloads warm up on it
    _ingest_limit(ctx.work / "warmup-sql.duckdb", warm)
    _remove_db(ctx.work / "warmup-sql.duckdb")
    seconds = alternate_bulk(
        {
            "featurelite": lambda: _ingest_featurelite(ctx.store_path, table),
            "limit": lambda: _ingest_limit(ctx.sql_path, table),
        },
        ctx.scale.repeats,
    )
    _log_runs(ctx, "ingest", seconds)
    with fl.open(ctx.store_path, read_only=True) as store:
        described = store.describe(VIEW)
    fl_counts = (described["history_rows"], described["online_rows"])
    sql_counts = _stored_counts(ctx.sql_path, "history", "online")
    expected = (table.num_rows, ctx.scale.entities)
    _check(
        fl_counts == sql_counts == expected, f"ingest counts differ: {fl_counts} vs {sql_counts}, expected {expected}"
    )
    mine, limit = (bulk_summary(seconds[side], table.num_rows) for side in ("featurelite", "limit"))
    return workload(
        "Ingest: history append + online upsert",
        f"`store.ingest(view, table)` of {table.num_rows:,} rows from an Arrow table into a fresh store file.",
        "hand-written DuckDB SQL in a fresh file, one transaction: `INSERT INTO history SELECT * FROM "
        "arrow_table`, then the latest row per key (`QUALIFY row_number() ... = 1`) `INSERT INTO online "
        "... ON CONFLICT DO UPDATE ... WHERE newer`",
        _bulk_rows(mine, limit, Target("ratio", "<=", 1.5), Target("featurelite", ">=", 1e6)),
        {
            "featurelite": mine,
            "limit": limit,
            "file_bytes": {"featurelite": ctx.store_path.stat().st_size, "limit": ctx.sql_path.stat().st_size},
            "history_rows": expected[0],
            "online_rows": expected[1],
        },
    )


# -- online ---------------------------------------------------------------------------


def _online_values(ctx: Context) -> pa.Table:
    """The online values (keys, features, event time) from the hand-written file."""
    with closing(duckdb.connect(str(ctx.sql_path), read_only=True)) as con:
        return baseline.online_values(con)


def _dict_table(values: pa.Table) -> DictTable:
    """The limit: a plain dict from key to a tuple of the feature values."""
    keys = values.column(KEY).to_pylist()
    return dict(zip(keys, zip(*(values.column(f).to_pylist() for f in FEATURES), strict=True), strict=True))


def _rss_probe(ctx: Context) -> dict[str, Any]:
    """RSS before / after the first read, measured in a fresh process (see rss_probe)."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.rss_probe", str(ctx.warm_store_path), str(ctx.store_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    probe: dict[str, Any] = json.loads(proc.stdout)
    return probe


def index_memory(ctx: Context) -> dict[str, Any]:
    """Target 5: memory of the online index (built lazily by the first read) vs the raw
    Arrow size of the values it holds."""
    values = _online_values(ctx)
    raw = values.nbytes
    probe = _rss_probe(ctx)
    rss_delta = None if None in (probe["rss_before"], probe["rss_after"]) else probe["rss_after"] - probe["rss_before"]
    duckdb_delta = probe["duckdb_after"] - probe["duckdb_before"]
    with fl.open(ctx.warm_store_path, read_only=True) as store:
        first_read(store)  # imports and warms the read path, so they do not count below
    with fl.open(ctx.store_path, read_only=True) as store:
        _, retained, peak = _traced(lambda: first_read(store))
        index = getattr(store, "_indexes", {}).get(VIEW)  # internal; only for the breakdown below
        matrices = index.nbytes() if index is not None and hasattr(index, "nbytes") else None
    _, dict_retained, _ = _traced(lambda: _dict_table(values))
    rows = [
        metric_row("retained by first read (tracemalloc)", "bytes", retained, raw, Target("ratio", "<=", 2.0)),
        metric_row("peak during first read (tracemalloc)", "bytes", peak, raw),
    ]
    if rss_delta is not None:
        rows.append(metric_row("RSS growth over first read (fresh process)", "bytes", rss_delta, raw))
        rows.append(metric_row("RSS growth minus DuckDB buffer-cache growth", "bytes", rss_delta - duckdb_delta, raw))
    rows.append(metric_row("first read incl. index build", "s", probe["first_read_s"], None))
    return workload(
        "Online index memory",
        f"Memory the first online read leaves allocated (it builds the in-memory index of {values.num_rows:,} "
        "entities from the online table), as the tracemalloc delta. For context: the peak during that read, "
        "RSS growth over it in a fresh process (it also counts DuckDB's buffer cache, reported separately, "
        "and allocator slack) and the time of that first read.",
        f"raw Arrow size of the values held: keys + {len(FEATURES)} float64 features + event timestamp",
        rows,
        {
            "raw_arrow_bytes": raw,
            "index_retained_bytes": retained,
            "index_peak_bytes": peak,
            "index_nbytes_reported": matrices,
            "rss_before_bytes": probe["rss_before"],
            "rss_delta_bytes": rss_delta,
            "duckdb_buffer_delta_bytes": duckdb_delta,
            "first_read_s": probe["first_read_s"],
            "python_dict_of_tuples_bytes": dict_retained,
            "entities": values.num_rows,
        },
    )


def _verify_online(store: fl.Store, table: DictTable, keys: list[int]) -> None:
    response = store.get_online_features([{KEY: k} for k in keys], list(FEATURE_REFS)).to_dict()
    got = list(zip(*(response[f] for f in FEATURES), strict=True))
    _check(got == [table[k] for k in keys], "online values differ between featurelite and the dict")


def _timer_floor(stats: dict[str, dict[str, float]]) -> str:
    return (
        f" Every sample includes the timer and one Python call: {stats['timer']['p50_us']:.2f} µs p50 "
        "when the call does nothing."
    )


def _latency_rows(stats: dict[str, dict[str, float]], p50: float, p99: float) -> list[dict[str, Any]]:
    mine, limit = stats["featurelite"], stats["limit"]
    return [
        metric_row("p50", "us", mine["p50_us"], limit["p50_us"], Target("featurelite", "<=", p50)),
        metric_row("p99", "us", mine["p99_us"], limit["p99_us"], Target("featurelite", "<=", p99)),
        metric_row("mean", "us", mine["mean_us"], limit["mean_us"]),
    ]


def _online_single(ctx: Context, store: fl.Store, table: DictTable) -> dict[str, Any]:
    """Target 1: one entity, ten features, per call."""
    n = ctx.scale.latency_iterations
    keys = data.request_keys(ctx.scale, ctx.seed, n)
    requests = [[{KEY: k}] for k in keys]
    refs = list(FEATURE_REFS)
    get = store.get_online_features
    stats = alternate_latency(
        {
            "featurelite": lambda i: get(requests[i % n], refs),
            "limit": lambda i: table[keys[i % n]],
            "timer": lambda i: None,
        },
        n,
        ctx.scale.warmup_iterations,
    )
    return workload(
        "Online read, 1 entity",
        f"`store.get_online_features([{{'{KEY}': k}}], [{len(refs)} feature refs])` in-process, random keys, "
        f"{n:,} timed calls." + _timer_floor(stats),
        "a plain Python dict lookup, key -> tuple of the 10 values",
        _latency_rows(stats, 25.0, 100.0),
        stats,
    )


def _online_batch(ctx: Context, store: fl.Store, table: DictTable) -> dict[str, Any]:
    """Target 2: a hundred entities, ten features, per call."""
    n, size = ctx.scale.batch_iterations, ctx.scale.batch_entities
    keys = data.request_keys(ctx.scale, ctx.seed, n * size)
    groups = [keys[i * size : (i + 1) * size] for i in range(n)]
    requests = [[{KEY: k} for k in group] for group in groups]
    refs = list(FEATURE_REFS)
    get = store.get_online_features
    stats = alternate_latency(
        {
            "featurelite": lambda i: get(requests[i % n], refs),
            "limit": lambda i: [table[k] for k in groups[i % n]],
            "timer": lambda i: None,
        },
        n,
        ctx.scale.warmup_iterations,
    )
    return workload(
        f"Online read, {size} entities per call",
        f"`store.get_online_features([{size} entity rows], [{len(refs)} feature refs])` in-process, random keys, "
        f"{n:,} timed calls." + _timer_floor(stats),
        f"a list comprehension of {size} plain Python dict lookups",
        _latency_rows(stats, 500.0, 500.0),
        stats,
    )


def online(ctx: Context) -> dict[str, dict[str, Any]]:
    """Targets 1 and 2, on a store whose index is already built."""
    table = _dict_table(_online_values(ctx))
    with fl.open(ctx.store_path, read_only=True) as store:
        first_read(store)
        _verify_online(store, table, data.request_keys(ctx.scale, ctx.seed + 1, 100))
        return {"online_single": _online_single(ctx, store, table), "online_batch": _online_batch(ctx, store, table)}


# -- training set ---------------------------------------------------------------------


def _check_training(mine: pa.Table, limit: pa.Table, spine: pa.Table) -> dict[str, Any]:
    """Both sides found the same matches (the limit returns rows in another order)."""
    _check(mine.num_rows == limit.num_rows == spine.num_rows, "training sets differ in row count")
    _check(mine.column(KEY).equals(spine.column(KEY)), "featurelite did not keep the entity_df row order")
    summary = {}
    for side, table in (("featurelite", mine), ("limit", limit)):
        column = table.column(FEATURES[0])
        summary[side] = {"matched_rows": len(column) - column.null_count, "sum_f0": pc.sum(column).as_py() or 0.0}
    _check(
        summary["featurelite"]["matched_rows"] == summary["limit"]["matched_rows"], "training sets match different rows"
    )
    _check(
        math.isclose(summary["featurelite"]["sum_f0"], summary["limit"]["sum_f0"], rel_tol=1e-9, abs_tol=1e-6),
        "training sets hold different values",
    )
    return summary


def _ties_flagged(path: Path) -> bool | None:
    """Whether featurelite's store at ``path`` has history rows that lost a tie on key and
    event time (which makes its join exclude them). Reads featurelite's ``_fl_lost``
    history column; None if there is no such column."""
    with closing(duckdb.connect(str(path), read_only=True)) as con:
        try:
            rows = con.execute(f'SELECT count(*) FROM "fl_history__{VIEW}" WHERE _fl_lost').fetchall()
        except duckdb.Error:
            return None
    return rows[0][0] > 0


def _check_plan(path: Path, ties: bool) -> bool | None:
    flagged = _ties_flagged(path)
    _check(
        flagged is None or flagged == ties,
        f"the store {'does not flag' if ties else 'flags'} the view as holding ties, so the join plan is not "
        "the one this workload measures",
    )
    return flagged


def _time_training(
    ctx: Context, store_path: Path, sql_path: Path
) -> tuple[dict[str, list[float]], dict[str, pa.Table]]:
    """Repeated, alternating training-set runs of featurelite (store at ``store_path``)
    and the hand-written ASOF join (``sql_path``) after a warm-up on 1% of the spine:
    (seconds per side, each side's last result)."""
    spine, refs = ctx.spine, list(FEATURE_REFS)
    last: dict[str, pa.Table] = {}
    with (
        fl.open(store_path, read_only=True) as store,
        closing(duckdb.connect(str(sql_path), read_only=True)) as con,
    ):
        sides: dict[str, Callable[[pa.Table], pa.Table]] = {
            "featurelite": lambda df: store.get_historical_features(df, refs),
            "limit": lambda df: baseline.training_set(con, df),
        }
        warm = spine.slice(0, max(1, spine.num_rows // 100))
        for build in sides.values():
            build(warm)

        def timed(side: str) -> Callable[[], float]:
            def run() -> float:
                last.pop(side, None)
                watch = stopwatch()
                last[side] = sides[side](spine)
                return watch()

            return run

        seconds = alternate_bulk({side: timed(side) for side in sides}, ctx.scale.repeats)
    return seconds, last


def training(ctx: Context) -> dict[str, Any]:
    """Target 4: point-in-time training set vs a hand-written ASOF LEFT JOIN."""
    spine = ctx.spine
    flagged = _check_plan(ctx.store_path, ties=False)
    seconds, last = _time_training(ctx, ctx.store_path, ctx.sql_path)
    _log_runs(ctx, "training set", seconds)
    matches = _check_training(last["featurelite"], last["limit"], spine)
    mine, limit = (bulk_summary(seconds[side], spine.num_rows) for side in ("featurelite", "limit"))
    return workload(
        "Training set (point-in-time join)",
        f"`store.get_historical_features(entity_df, {len(FEATURE_REFS)} features)`, entity_df of "
        f"{spine.num_rows:,} rows against {ctx.scale.history_rows:,} history rows; result as an Arrow table in "
        "entity_df order. No two history rows share a key and event time, so the join compares event times alone.",
        "hand-written `ASOF LEFT JOIN` of the same entity table against the same history in a plain DuckDB "
        "file, `.to_arrow_table()` (row order not restored)",
        _bulk_rows(mine, limit, Target("ratio", "<=", 1.3)),
        {"featurelite": mine, "limit": limit, "matches": matches, "ties_flagged": flagged},
    )


# -- training set, history with ties --------------------------------------------------

#: Per probe row: whether its match (same key, latest event time <= the probe's) is one of
#: several history rows with that key and time, and the f0 of the one ingested last.
_TIE_CHECK_SQL = f"""
WITH probe AS (SELECT DISTINCT {KEY}, event_timestamp FROM spine),
flags AS (
    SELECT p.{KEY}, p.event_timestamp, w.{KEY} IS NOT NULL AS tied, w.{FEATURES[0]} AS last_f0
    FROM probe p
    ASOF LEFT JOIN (SELECT {KEY}, {TS} FROM history) h ON p.{KEY} = h.{KEY} AND p.event_timestamp >= h.{TS}
    LEFT JOIN winners w ON w.{KEY} = h.{KEY} AND w.{TS} = h.{TS}
),
results AS (
    SELECT 'featurelite' AS side, {KEY}, event_timestamp, {FEATURES[0]} FROM mine
    UNION ALL SELECT 'limit', {KEY}, event_timestamp, {FEATURES[0]} FROM lim
)
SELECT side, count(*), count(r.{FEATURES[0]}), count(r.{FEATURES[0]}) FILTER (tied),
    coalesce(sum(r.{FEATURES[0]}) FILTER (NOT tied), 0),
    count(*) FILTER (tied AND r.{FEATURES[0]} IS DISTINCT FROM last_f0)
FROM results r JOIN flags f USING ({KEY}, event_timestamp)
GROUP BY side
"""


def _check_training_ties(
    sql_path: Path, mine: pa.Table, limit: pa.Table, spine: pa.Table, winners: pa.Table
) -> dict[str, Any]:
    """Both sides match the same rows; on rows whose match is not tied they return the same
    values. On tied matches the limit may return either row, so only featurelite's values
    are checked there: they must come from the row ingested last (its tie-break rule)."""
    _check(mine.num_rows == limit.num_rows == spine.num_rows, "training sets differ in row count")
    _check(mine.column(KEY).equals(spine.column(KEY)), "featurelite did not keep the entity_df row order")
    with closing(duckdb.connect(str(sql_path), read_only=True)) as con:
        for name, table in (("spine", spine), ("mine", mine), ("lim", limit), ("winners", winners)):
            con.register(name, table)
        rows = con.execute(_TIE_CHECK_SQL).fetchall()
    summary = {
        side: {
            "rows": int(n),
            "matched_rows": int(matched),
            "matched_rows_tied": int(tied),
            "sum_f0_untied": float(total),
            "tied_rows_not_last_ingested": int(other),
        }
        for side, n, matched, tied, total, other in sorted(rows)
    }
    fl_sum, lim_sum = summary["featurelite"], summary["limit"]
    _check(fl_sum["rows"] == lim_sum["rows"] == spine.num_rows, "training sets do not all map to entity_df rows")
    _check(
        (fl_sum["matched_rows"], fl_sum["matched_rows_tied"])
        == (lim_sum["matched_rows"], lim_sum["matched_rows_tied"]),
        "training sets match different rows",
    )
    _check(
        math.isclose(fl_sum["sum_f0_untied"], lim_sum["sum_f0_untied"], rel_tol=1e-9, abs_tol=1e-6),
        "training sets hold different values on rows without ties",
    )
    _check(fl_sum["tied_rows_not_last_ingested"] == 0, "featurelite broke a tie against the row ingested last")
    return summary


def training_ties(ctx: Context) -> dict[str, Any]:
    """Target 4 again, on a history where some rows share key and event time, so that
    featurelite uses its tie-breaking join plan."""
    spine = ctx.spine
    history = data.history_with_ties(ctx.scale, ctx.seed)
    winners = data.tie_winners(history)
    store_path, sql_path = ctx.work / "featurelite-ties.duckdb", ctx.work / "handwritten-ties.duckdb"
    ingest_s = {"featurelite": _ingest_featurelite(store_path, history), "limit": _ingest_limit(sql_path, history)}
    rows, pairs = history.num_rows, winners.num_rows
    del history
    ctx.log(
        f"tied history: {pairs:,} (key, ts) pairs shared by several rows; ingested once (s): "
        + ", ".join(f"{side} {s:.2f}" for side, s in ingest_s.items())
    )
    flagged = _check_plan(store_path, ties=True)
    seconds, last = _time_training(ctx, store_path, sql_path)
    _log_runs(ctx, "training set, tied history", seconds)
    matches = _check_training_ties(sql_path, last["featurelite"], last["limit"], spine, winners)
    mine, limit = (bulk_summary(seconds[side], spine.num_rows) for side in ("featurelite", "limit"))
    share = data.TIE_SHARE
    return workload(
        "Training set, history with tied event times",
        f"the training set above (`store.get_historical_features`, entity_df of {spine.num_rows:,} rows, "
        f"{len(FEATURE_REFS)} features) against the same {rows:,} history rows except that {share:.0%} of them "
        f"({round(share * rows):,}, chosen with the seed) take the event time of another row of the same key, "
        f"so {pairs:,} (key, event time) pairs are each held by two rows. Ingested into its own store, which "
        "records at ingest which row of each tied pair loses (the one ingested first); the join compares event "
        f"times alone over the history without those rows. {matches['featurelite']['matched_rows_tied']:,} entity_df "
        "rows match a tied pair.",
        "the same hand-written `ASOF LEFT JOIN` on the same data in a plain DuckDB file, `.to_arrow_table()`. "
        "It does not break ties (on a tied match it returns either row), so it does less than featurelite; "
        "values are compared only on rows whose match is not tied",
        _bulk_rows(mine, limit, Target("ratio", "<=", 1.3)),
        {
            "featurelite": mine,
            "limit": limit,
            "matches": matches,
            "ties_flagged": flagged,
            "tie_share": share,
            "tied_pairs": pairs,
            "ingest_once_s": ingest_s,
        },
    )
