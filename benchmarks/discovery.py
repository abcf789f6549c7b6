"""Discovery (issue 15): how long ``store.stats(view)`` takes on a 10M-row view, and how
long the web UI's pages take to render server-side on a store of 50 views.

One store of its own (``discovery.duckdb``), three entities and :attr:`DiscoveryScale.views`
feature views: ``activity``, the large one (:attr:`DiscoveryScale.big_rows` history rows: 10M
at full scale, of 1M users; six features of four dtypes: three float64 (one with 1% nulls),
an int64, a string with 1% nulls and about 40 distinct values, a bool), and the rest small
ones of :attr:`DiscoveryScale.small_rows` rows each (two float64, an int64 and a string),
keyed by one of the three entities; every feature carries a description, tags and an
owner (``fl.Field``), and :data:`SERVICES` feature services read the large view and
three small ones each. The store's history is the large view's rows plus the small views'
(10.98M rows at full scale): the issue's "50 views and 10M history rows", with the 10M in
one view, so the view page measured is that of the statistics target's view.

- ``discovery_stats``: ``store.stats("activity", refresh=True)`` (computed, never from the
  cache) against its limit, the same aggregates written as one hand-written DuckDB query
  over the same history and online tables, alternating; also the cached call.
- ``discovery_ui``: the UI app (``featurelite.ui.create_ui_app``) over the same store, opened
  read-only as ``featurelite ui`` opens it, after ``store.stats`` of every view was computed
  and cached in the file; each page requested through the app's ASGI interface in this
  process (no socket, no HTTP client: the time is the app's, from the call to the last
  byte of the body), the pages alternating request by request.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

import featurelite as fl
from featurelite.statistics import QUANTILE_SAMPLE

from . import data
from .measure import alternate_bulk, bulk_summary, latency_summary, stopwatch
from .model import Target, metric_row, skipped_workload, workload
from .workloads import Context, _check, _log_runs, _remove_db

__all__ = ["NAMES", "SCALES", "DiscoveryScale", "run"]

#: The workloads of this module, in the order the page shows them.
NAMES = ["discovery_stats", "discovery_ui"]
#: Issue 15's targets.
STATS_SECONDS = 5.0
PAGE_MS = 100.0
#: The random stream of this module's data (``default_rng([seed, _STREAM, part])``).
_STREAM = 15
#: The large view (the statistics target's) and the question the UI's view page asks of
#: ``store.stats`` when the address names no period (``period="day"``).
BIG = "activity"
PAGE_PERIOD = "day"
#: Feature services; each reads the large view and three small ones.
SERVICES = 5
#: Quantiles ``store.stats`` reports (the limit asks DuckDB for the same).
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
BINS = 20
TOP = 10
#: Calls of the cached ``store.stats`` timed.
CACHED_CALLS = 50


@dataclass(frozen=True)
class DiscoveryScale:
    """The sizes of the discovery workloads at one scale of the suite."""

    views: int  #: feature views in the store, the large one included
    big_rows: int  #: history rows of the large view (the statistics target's view)
    big_entities: int  #: users of the large view
    small_rows: int  #: history rows of every other view
    small_entities: int  #: keys of every other view
    stats_repeats: int  #: alternating timed runs per side of the statistics (median judged)
    page_requests: int  #: timed requests per page
    page_warmup: int  #: untimed rounds of requests before timing


SCALES = {
    "quick": DiscoveryScale(views=5, big_rows=100_000, big_entities=10_000, small_rows=2_000, small_entities=500,
                            stats_repeats=1, page_requests=10, page_warmup=2),
    "full": DiscoveryScale(views=50, big_rows=10_000_000, big_entities=1_000_000, small_rows=20_000,
                           small_entities=5_000, stats_repeats=5, page_requests=30, page_warmup=5),
}

_ENTITIES = (("user", "user_id"), ("merchant", "merchant_id"), ("device", "device_id"))
_TOPICS = ("spend", "risk", "engagement", "support", "marketing", "catalog", "payments")
_TEAMS = ("growth", "risk", "payments", "platform")
_COUNTRIES = tuple(f"country_{i:02d}" for i in range(40))


def _rng(seed: int, part: int) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAM, part])


def _nulls(rng: np.random.Generator, values: np.ndarray, share: float) -> pa.Array:
    return pa.array(values, mask=rng.random(len(values)) < share)


def _strings(rng: np.random.Generator, rows: int, choices: Sequence[str], null_share: float) -> pa.Array:
    """Text drawn from ``choices`` (skewed: a Zipf-like weight), ``null_share`` null;
    vectorised through a dictionary array."""
    weights = 1.0 / np.arange(1, len(choices) + 1)
    indices = rng.choice(len(choices), rows, p=weights / weights.sum()).astype(np.int32)
    mask = rng.random(rows) < null_share
    dictionary = pa.DictionaryArray.from_arrays(pa.array(indices, mask=mask), pa.array(list(choices)))
    return dictionary.cast(pa.string())


def _times(rng: np.random.Generator, rows: int) -> pa.Array:
    return pa.array(rng.integers(data.START_US, data.START_US + data.SPAN_US, rows, dtype=np.int64),
                    pa.timestamp("us"))


def big_history(scale: DiscoveryScale, seed: int) -> pa.Table:
    """The large view's rows: (user_id, spend_7d, spend_30d, risk_score, sessions_30d,
    country, is_premium, ts), every user about equally often, random order and times."""
    rng, rows = _rng(seed, 0), scale.big_rows
    return pa.table({
        "user_id": pa.array(rng.permutation(np.arange(rows, dtype=np.int64) % scale.big_entities)),
        "spend_7d": pa.array(rng.lognormal(3.0, 1.0, rows)),
        "spend_30d": pa.array(rng.lognormal(4.0, 1.0, rows)),
        "risk_score": _nulls(rng, rng.standard_normal(rows), 0.01),
        "sessions_30d": pa.array(rng.poisson(12.0, rows).astype(np.int64)),
        "country": _strings(rng, rows, _COUNTRIES, 0.01),
        "is_premium": pa.array(rng.random(rows) < 0.2),
        "ts": _times(rng, rows),
    })


def small_history(scale: DiscoveryScale, seed: int, number: int, key: str) -> pa.Table:
    rng, rows = _rng(seed, number), scale.small_rows
    return pa.table({
        key: pa.array(rng.permutation(np.arange(rows, dtype=np.int64) % scale.small_entities)),
        "score": pa.array(rng.standard_normal(rows)),
        "amount": pa.array(rng.exponential(50.0, rows)),
        "events": pa.array(rng.poisson(3.0, rows).astype(np.int64)),
        "segment": _strings(rng, rows, ("a", "b", "c", "d", "e"), 0.02),
        "ts": _times(rng, rows),
    })


def _field(dtype: str, description: str, team: str) -> fl.Field:
    return fl.Field(dtype, description=description, tags={"team": team, "pii": "no"}, owner=f"{team}@example.com")


def _definitions(scale: DiscoveryScale) -> tuple[list[Any], list[tuple[str, str]]]:
    """The store's definitions, and (view, join key) of each small view."""
    entities = {name: fl.Entity(name, join_keys=[key], description=f"a {name}") for name, key in _ENTITIES}
    user = entities["user"]
    big = fl.FeatureView(
        BIG, entities=[user], timestamp_field="ts", description="What each user did lately: spend, sessions, risk",
        owner="growth@example.com", tags={"team": "growth", "tier": "gold"}, freshness=timedelta(days=1),
        schema={
            "spend_7d": _field("float64", "Total card spend of the user over the last 7 days, in euros", "growth"),
            "spend_30d": _field("float64", "Total card spend of the user over the last 30 days, in euros", "growth"),
            "risk_score": _field("float64", "Fraud risk score of the user's latest session (standardised)", "risk"),
            "sessions_30d": _field("int64", "Sessions the user started in the last 30 days", "growth"),
            "country": _field("string", "Country the user's card was issued in", "payments"),
            "is_premium": _field("bool", "Whether the user pays for the premium plan", "growth"),
        },
    )
    views: list[Any] = [big]
    small: list[tuple[str, str]] = []
    for i in range(1, scale.views):
        topic, team = _TOPICS[i % len(_TOPICS)], _TEAMS[i % len(_TEAMS)]
        entity_name, key = _ENTITIES[i % len(_ENTITIES)]
        name = f"{topic}_{entity_name}_{i:02d}"
        views.append(fl.FeatureView(
            name, entities=[entities[entity_name]], timestamp_field="ts", description=f"{topic} signals per "
            f"{entity_name} (set {i})", owner=f"{team}@example.com", tags={"team": team, "topic": topic},
            freshness=timedelta(days=7) if i % 3 == 0 else None,
            schema={
                "score": _field("float64", f"{topic} score of the {entity_name}", team),
                "amount": _field("float64", f"Amount of the {entity_name}'s latest {topic} event", team),
                "events": _field("int64", f"{topic} events of the {entity_name} in the last day", team),
                "segment": _field("string", f"{topic} segment the {entity_name} belongs to", team),
            },
        ))
        small.append((name, key))
    services = []
    for s in range(SERVICES):
        picked = [small[(3 * s + k) % len(small)][0] for k in range(3)] if small else []
        features = [f"{BIG}:spend_7d", f"{BIG}:risk_score", f"{BIG}:country"]
        features += [f"{v}:{f}" for v in dict.fromkeys(picked) for f in ("score", "events")]
        services.append(fl.FeatureService(f"model_{s:02d}", features, description=f"features of model {s}",
                                          owner="ml@example.com", tags={"team": _TEAMS[s % len(_TEAMS)]},
                                          full_feature_names=True))
    return [*entities.values(), *views, *services], small


def _build(ctx: Context, scale: DiscoveryScale, path: Path) -> dict[str, Any]:
    _remove_db(path)
    definitions, small = _definitions(scale)
    seconds: dict[str, Any] = {}
    watch = stopwatch()
    big = big_history(scale, ctx.seed)
    seconds["generate_big_s"] = watch()
    with fl.open(path) as store:
        store.apply(definitions)
        watch = stopwatch()
        store.ingest(BIG, big)
        seconds["ingest_big_s"] = watch()
        del big
        watch = stopwatch()
        for number, (name, key) in enumerate(small, start=1):
            store.ingest(name, small_history(scale, ctx.seed, number, key))
        seconds["ingest_small_s"] = watch()
    seconds["history_rows"] = scale.big_rows + len(small) * scale.small_rows
    seconds["views"] = 1 + len(small)
    seconds["small_views"] = [name for name, _ in small]
    return seconds


# -- 1. statistics: featurelite and the hand-written query ------------------------------------


@dataclass(frozen=True)
class _Col:
    name: str
    family: str  # "float", "int", "bool", "string"

    @property
    def sql(self) -> str:
        return f'"{self.name}"'

    @property
    def numeric(self) -> bool:
        return self.family in ("float", "int")

    @property
    def value(self) -> str:
        """The finite value as DOUBLE (NULL for null, NaN and +-inf)."""
        if self.family == "float":
            return f"CASE WHEN isfinite({self.sql}) THEN {self.sql} END"
        return f"{self.sql}::DOUBLE"

    @property
    def quantile_value(self) -> str:
        return self.sql if self.family == "int" else self.value


_FAMILIES = {"float64": "float", "int64": "int", "bool": "bool", "string": "string"}


def _sample(every: int) -> str:
    """The FILTER of ``store.stats``' quantile sample (one row in ``every`` by the hash of the
    ingest position): the limit estimates its quantiles over the same rows."""
    return "" if every <= 1 else f" FILTER (WHERE hash(_fl_seq) % {every} = 0)"


def _limit_sql(history: str, online: str, ts: str, columns: Sequence[_Col], period: str,
               every: Mapping[str, Mapping[str, int]]) -> str:
    """The limit of ``discovery_stats``: every number ``store.stats`` reports (per feature
    over the history rows that did not lose a tie, and over the online table: count,
    nulls, distinct estimate, min, max, mean, std, quantiles, a 20-bin histogram or the 10
    most frequent values; per ``period``: count, nulls, mean, std, min, max, median, the
    rows and the running newest event time), as one statement."""
    qs = "[" + ", ".join(repr(q) for q in QUANTILES) + "]"

    def summary(table: str, where: str, alias: str) -> list[str]:
        parts = ["count(*) AS n"]
        for c in columns:
            n = c.name
            parts += [f'count({c.sql}) AS "{n}_count"', f'approx_count_distinct({c.sql}) AS "{n}_distinct"']
            if c.numeric:
                parts += [f'min({c.value}) AS "{n}_lo"', f'max({c.value}) AS "{n}_hi"', f'avg({c.value}) AS "{n}_mean"',
                          f'stddev_samp({c.value}) AS "{n}_std"',
                          f'approx_quantile({c.quantile_value}, {qs}){_sample(every[alias].get(n, 1))} AS "{n}_q"']
                if c.family == "float":
                    parts += [f'count(*) FILTER (WHERE isnan({c.sql})) AS "{n}_nans"',
                              f'count(*) FILTER (WHERE isinf({c.sql})) AS "{n}_infs"']
            elif c.family == "bool":
                parts.append(f'avg({c.sql}::INTEGER) AS "{n}_mean"')
            else:
                parts += [f'min({c.sql}) AS "{n}_lo"', f'max({c.sql}) AS "{n}_hi"']
        if alias == "s":
            parts += [f"min({ts}) AS first", f"max({ts}) AS last"]
        return [f"{alias} AS (SELECT {', '.join(parts)} FROM {table} WHERE {where})"]

    def bins(table: str, where: str, alias: str, over: str) -> list[str]:
        widths, parts = [], []
        for c in columns:
            if not c.numeric:
                continue
            lo, hi = f'{over}."{c.name}_lo"', f'{over}."{c.name}_hi"'
            if c.family == "int":  # whole-number bins, as store.stats draws them
                width = f"ceil(({hi} - {lo} + 1) / {BINS})"
                count = f"ceil(({hi} - {lo} + 1) / ({width}))::BIGINT"
            else:
                width, count = f"(({hi} - {lo}) / {BINS})", str(BINS)
            widths.append(f'{width} AS "{c.name}_w", {count} AS "{c.name}_bins"')
            # The CASE keeps a null out of the bins: greatest() and least() skip NULL arguments.
            parts.append(f'histogram(CASE WHEN {c.value} IS NOT NULL THEN least(greatest(floor(({c.value} - {lo}) / '
                         f'{alias}w."{c.name}_w")::BIGINT, 0), {alias}w."{c.name}_bins" - 1) END) AS "{c.name}_hist"')
        return [f"{alias}w AS (SELECT {', '.join(widths)} FROM {over})",
                f"{alias} AS (SELECT {', '.join(parts)} FROM {table}, {over}, {alias}w WHERE {where})"]

    def tops(table: str, where: str, prefix: str) -> tuple[list[str], list[str]]:
        ctes, picks = [], []
        for i, c in enumerate(c for c in columns if not c.numeric):
            alias = f"{prefix}{i}"
            ctes.append(f"{alias} AS (SELECT {c.sql}::VARCHAR AS v, count(*) AS n FROM {table} WHERE {where} AND "
                        f"{c.sql} IS NOT NULL GROUP BY v ORDER BY n DESC, v LIMIT {TOP})")
            picks.append(f'(SELECT list({{\'value\': v, \'count\': n}} ORDER BY n DESC, v) FROM {alias}) AS '
                         f'"{prefix}_{c.name}_top"')
        return ctes, picks

    lost = "NOT _fl_lost"
    parts = ["count(*) AS rows", f"max({ts}) AS newest"]
    for c in columns:
        parts.append(f'count({c.sql}) AS "{c.name}_count"')
        if c.numeric:
            parts += [f'avg({c.value}) AS "{c.name}_mean"', f'stddev_samp({c.value}) AS "{c.name}_std"',
                      f'min({c.value}) AS "{c.name}_lo"', f'max({c.value}) AS "{c.name}_hi"',
                      f'approx_quantile({c.quantile_value}, 0.5){_sample(every["s"].get(c.name, 1))} AS '
                      f'"{c.name}_p50"']
        elif c.family == "bool":
            parts.append(f'avg({c.sql}::INTEGER) AS "{c.name}_mean"')
    per = (f"p AS (SELECT date_trunc('{period}', {ts}) AS start, {', '.join(parts)} FROM {history} WHERE {lost} "
           "GROUP BY start)")
    history_tops, history_picks = tops(history, lost, "t")
    online_tops, online_picks = tops(online, "true", "u")
    ctes = [*summary(history, lost, "s"), *bins(history, lost, "b", "s"), *history_tops,
            *summary(online, "true", "o"), *bins(online, "true", "ob", "o"), *online_tops, per]
    timeline = ("(SELECT list(x ORDER BY x.start) FROM (SELECT *, max(newest) OVER (ORDER BY start) AS newest_so_far "
                "FROM p) AS x) AS periods")
    return (f"WITH {', '.join(ctes)} SELECT s.*, b.*, o.*, ob.*, {', '.join(history_picks + online_picks)}, "
            f"{timeline} FROM s, b, o, ob")


#: How far (in rank: share of the values) a reported quantile may lie from its target.
RANK_TOLERANCE = 0.01


def _rank_error(cursor: Any, history: str, stats: Any, columns: Sequence[_Col]) -> float:
    """The largest distance, in rank, between a quantile ``store.stats`` reported over the
    history and the quantile it stands for: for estimate e of quantile q, how far q lies
    outside [share of all finite values below e, share at or below e] (an interval, for
    whole numbers that many values share). Checked within :data:`RANK_TOLERANCE`."""
    parts, asked = [], []
    for c in columns:
        if not c.numeric:
            continue
        for q, estimate in stats.features[c.name].quantiles.items():
            parts += [f"count(*) FILTER (WHERE {c.value} < {estimate!r}) / count({c.value})",
                      f"count(*) FILTER (WHERE {c.value} <= {estimate!r}) / count({c.value})"]
            asked.append(float(q))
    shares = cursor.execute(f"SELECT {', '.join(parts)} FROM {history} WHERE NOT _fl_lost").fetchall()[0]
    worst = max(max(0.0, float(shares[2 * i]) - q, q - float(shares[2 * i + 1])) for i, q in enumerate(asked))
    _check(worst <= RANK_TOLERANCE, f"discovery_stats: a quantile is {worst:.4f} in rank from its target")
    return worst


def _close(a: float | None, b: float | None, rel: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=1e-12)


def _check_limit(stats: Any, row: Mapping[str, Any], columns: Sequence[_Col]) -> dict[str, Any]:
    """featurelite's statistics and the limit's numbers agree: counts, nulls, distinct
    estimates, min, max, NaN counts, histograms and most frequent values exactly, mean and
    std within 1e-9 relative (summation order), the period grouping and each period's
    counts exactly; quantiles (t-digest estimates) lie within [min, max]."""
    compared = 0
    _check(stats.rows == row["n"], f"discovery_stats: {stats.rows} history rows, the limit counts {row['n']}")
    for side, prefix, found in (("history", "s", stats.features), ("online", "o", stats.online)):
        del prefix
        hist_key = "_hist" if side == "history" else "_hist_1"
        for c in columns:
            f, n = found[c.name], c.name
            suffix = "" if side == "history" else "_1"
            count = row[f"{n}_count{suffix}"]
            what = f"discovery_stats: {side} {n}"
            _check(f.count - f.nulls == count, f"{what}: {f.count - f.nulls} values, the limit {count}")
            _check(f.distinct == row[f"{n}_distinct{suffix}"], f"{what}: the distinct estimates differ")
            if c.numeric:
                _check(_close(f.min, row[f"{n}_lo{suffix}"], 0) and _close(f.max, row[f"{n}_hi{suffix}"], 0),
                       f"{what}: min/max differ")
                _check(_close(f.mean, row[f"{n}_mean{suffix}"]) and _close(f.std, row[f"{n}_std{suffix}"]),
                       f"{what}: mean/std differ ({f.mean}, {f.std} against {row[f'{n}_mean{suffix}']}, "
                       f"{row[f'{n}_std{suffix}']})")
                _check(all(f.min <= q <= f.max for q in f.quantiles.values()), f"{what}: a quantile out of range")
                if c.family == "float":
                    _check(f.nans == row[f"{n}_nans{suffix}"] and f.infinities == row[f"{n}_infs{suffix}"],
                           f"{what}: NaN / inf counts differ")
                limit_hist = row[f"{n}{hist_key}"] or {}
                counts = [int(limit_hist.get(i, 0)) for i in range(len(f.histogram.counts))]
                _check(list(f.histogram.counts) == counts, f"{what}: the histograms differ: {f.histogram.counts} "
                       f"against {counts}")
            elif c.family == "bool":
                _check(_close(f.mean, row[f"{n}_mean{suffix}"]), f"{what}: the share of true differs")
            else:
                _check(f.min == row[f"{n}_lo{suffix}"] and f.max == row[f"{n}_hi{suffix}"], f"{what}: min/max differ")
            if not c.numeric:
                top_key = f"{'t' if side == 'history' else 'u'}_{n}_top"
                theirs = [(t["value"], t["count"]) for t in row[top_key]]
                _check([(t.value, t.count) for t in f.top] == theirs, f"{what}: the most frequent values differ")
            compared += 1
    periods = row["periods"]
    first = stats.features[columns[0].name].periods
    _check(len(first) == len(periods), f"discovery_stats: {len(first)} periods, the limit {len(periods)}")
    for c in columns:
        for mine, theirs in zip(stats.features[c.name].periods, periods, strict=True):
            _check(mine.count == theirs["rows"] and mine.count - mine.nulls == theirs[f"{c.name}_count"],
                   f"discovery_stats: the period of {mine.start} of {c.name} counts differently")
            if c.numeric:
                _check(_close(mine.mean, theirs[f"{c.name}_mean"], 1e-9) and _close(mine.min, theirs[f"{c.name}_lo"], 0)
                       and _close(mine.max, theirs[f"{c.name}_hi"], 0),
                       f"discovery_stats: the period of {mine.start} of {c.name} differs")
    for point, theirs in zip(stats.timeline, periods, strict=True):
        newest = theirs["newest_so_far"]
        _check(point.rows == theirs["rows"] and point.newest_event == newest.replace(tzinfo=timezone.utc),
               f"discovery_stats: the timeline differs at {point.start}")
    return {"features_compared": compared, "periods_compared": len(periods)}


def _stats(ctx: Context, scale: DiscoveryScale, path: Path) -> dict[str, Any]:
    with fl.open(path) as store:
        view = store.get_feature_view(BIG)
        columns = [_Col(name, _FAMILIES[dtype]) for name, dtype in view.schema.items()]
        tables = {t for (t,) in store.con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        history, online = f"fl_history__{BIG}", f"fl_online__{BIG}"
        _check(history in tables and online in tables, f"discovery_stats: no tables {history}, {online} in the file")
        cursor = store.con.cursor()
        first = store.stats(BIG, refresh=True)  # a warm-up run of each side (untimed); its result is checked
        # The quantiles' sample, as store.stats chooses it (one row in finite // QUANTILE_SAMPLE).
        every = {alias: {c.name: max(1, (f[c.name].count - f[c.name].nulls - f[c.name].nans - f[c.name].infinities)
                                    // QUANTILE_SAMPLE) for c in columns if c.numeric}
                 for alias, f in (("s", first.features), ("o", first.online))}
        sql = _limit_sql(f'"{history}"', f'"{online}"', '"ts"', columns, first.period, every)
        result = cursor.execute(sql)
        names = [d[0] for d in result.description]
        # Duplicate column names (the online side's) get a suffix, as DuckDB's Python client does not.
        seen: dict[str, int] = {}
        keys = []
        for name in names:
            keys.append(name if name not in seen else f"{name}_{seen[name]}")
            seen[name] = seen.get(name, 0) + 1
        row = dict(zip(keys, result.fetchall()[0], strict=True))
        checked = _check_limit(first, row, columns)
        checked["quantile_rank_error"] = _rank_error(cursor, f'"{history}"', first, columns)
        last: dict[str, Any] = {}

        def featurelite() -> float:
            watch = stopwatch()
            last["stats"] = store.stats(BIG, refresh=True)
            return watch()

        def limit() -> float:
            watch = stopwatch()
            cursor.execute(sql).fetchall()
            return watch()

        seconds = alternate_bulk({"featurelite": featurelite, "limit": limit}, scale.stats_repeats)
        _log_runs(ctx, "discovery: statistics of the large view", seconds)
        computed = last["stats"]
        _check(not computed.cached and computed.rows == scale.big_rows, "discovery_stats: a cached or short result")
        inside = [computed.seconds]
        cached_ns = []
        for _ in range(CACHED_CALLS):
            t0 = time.perf_counter_ns()
            again = store.stats(BIG)
            cached_ns.append(time.perf_counter_ns() - t0)
            _check(again.computed_at == computed.computed_at, "discovery_stats: the cached call computed again")
        watch = stopwatch()
        day = store.stats(BIG, period=PAGE_PERIOD, refresh=True)
        day_s = watch()
        cursor.close()
    watch = stopwatch()
    with fl.open(path, read_only=True) as reopened:
        open_s = watch()
        watch = stopwatch()
        from_file = reopened.stats(BIG)
        file_s = watch()
    _check(from_file.cached, "discovery_stats: a newly opened store computed the statistics again")
    cached = latency_summary(np.array(cached_ns, dtype=np.int64))
    a, b = bulk_summary(seconds["featurelite"], scale.big_rows), bulk_summary(seconds["limit"], scale.big_rows)
    rows = [
        metric_row("compute, `refresh=True` (median)", "s", a["median_s"], b["median_s"],
                   Target("featurelite", "<", STATS_SECONDS)),
        metric_row("compute (best run)", "s", a["min_s"], b["min_s"]),
        metric_row("throughput (median)", "rows/s", a["rows_per_s"], b["rows_per_s"]),
        metric_row("cached call, same store (median)", "s", cached["p50_us"] / 1e6, None),
        metric_row("cached call, first in a newly opened read-only store (from the file)", "s", file_s, None),
        metric_row(f"compute with `period='{PAGE_PERIOD}'` (what the view page asks; one run)", "s", day_s, None),
    ]
    features = ", ".join(f"`{n}` {d}" for n, d in view.schema.items())
    return workload(
        "Discovery: statistics of a 10M-row view" if scale.big_rows == 10_000_000 else
        f"Discovery: statistics of a {scale.big_rows:,}-row view",
        f"`store.stats('{BIG}', refresh=True)`: computed now, never from the cache, over the view's "
        f"{scale.big_rows:,} history rows ({scale.big_entities:,} users over 180 days) and its online table "
        f"({computed.online_rows:,} rows), for its six features of four dtypes ({features}; `risk_score` and "
        "`country` 1% null, `country` about 40 distinct values); per feature, over the history and over the online "
        "values: count, null rate, distinct estimate, min, max, mean, std, 7 quantiles, a 20-bin histogram (the 10 "
        f"most frequent values for text and booleans), and over the history the same per {computed.period} "
        f"({len(computed.timeline)} {computed.period}s: the store's choice for 180 days) with the running newest "
        "event time; the result is then written to the file's cache (its commit is timed). "
        f"{scale.stats_repeats} run{'s' if scale.stats_repeats != 1 else ''} per side alternating with the limit, "
        "after one untimed run each; the median is judged. For context: the cached call (`store.stats(view)` again: "
        f"from the store's memory, plus a count of the rows ingested since, {CACHED_CALLS} calls), the first call in "
        "a store newly opened read-only (from the file's cache), and one computation with "
        f"`period='{PAGE_PERIOD}'` ({len(day.timeline)} periods), the question the UI's view page asks. Checked "
        "first: the limit's numbers equal featurelite's (counts, nulls, distinct estimates, min, max, histograms, "
        "most frequent values and per-period counts exactly; mean and std within 1e-9 relative; quantiles, "
        "t-digest estimates, within [min, max]), and every quantile within 1% in rank of its target over all the "
        f"values (largest distance found: {checked['quantile_rank_error']:.4%}). Quantiles and per-period medians "
        f"of a feature with 2M or more finite values are estimated over a deterministic sample of about "
        f"{QUANTILE_SAMPLE:,} of them (the rows whose hashed ingest position falls in one of finite // "
        f"{QUANTILE_SAMPLE:,} buckets); the limit estimates over the same sample.",
        "the same aggregates written by hand as one DuckDB statement (common table expressions: one aggregate "
        "over the history for the summaries, one for the histograms, a grouping per text or boolean feature, one per "
        "period with a window for the running newest event; the same over the online table), run on a cursor of "
        "the store's connection over the same tables, `fetchall()`",
        rows,
        {"featurelite": a, "limit": b, "featurelite_inside_s": inside, "cached_call": cached,
         "cached_from_file_s": file_s, "reopen_s": open_s, "period": computed.period,
         "periods": len(computed.timeline), "day_s": day_s, "check": checked},
    )


# -- 2. the UI's pages -----------------------------------------------------------------------


class _Asgi:
    """Requests handed straight to an ASGI app in this process: the time from the call to
    the app's last message (the whole body sent)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def get(self, path: str, query: str = "") -> tuple[int, bytes, int]:
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
            "root_path": "", "headers": [(b"host", b"127.0.0.1:6567"), (b"accept", b"text/html")],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 6567), "state": {},
        }
        status, chunks = 0, []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        t0 = time.perf_counter_ns()
        await self.app(scope, receive, send)
        return status, b"".join(chunks), time.perf_counter_ns() - t0


def _pages(small: Sequence[str]) -> dict[str, tuple[str, str]]:
    """The pages timed: label -> (path, query)."""
    return {
        "home": ("/ui/", ""),
        "view": (f"/ui/views/{BIG}", ""),
        "small_view": (f"/ui/views/{small[0]}", ""),
        "service": ("/ui/services/model_00", ""),
        "lineage": ("/ui/lineage", ""),
        "search": ("/ui/search", "q=spend"),
        "floor": ("/ui/no-such-page", ""),
    }


def _expect(label: str, status: int, body: bytes, views: Sequence[str]) -> None:
    """What each page must show (checked on the first answer)."""
    text = body.decode("utf-8")
    expected = 404 if label == "floor" else 200
    _check(status == expected, f"discovery_ui: {label} answered {status}, not {expected}: {text[:300]}")
    if label == "home":
        missing = [v for v in views if f">{v}<" not in text]
        _check(not missing, f"discovery_ui: the home page lacks views {missing[:5]}")
    elif label == "view":
        _check(all(f in text for f in ("spend_7d", "country", "is_premium")) and text.count("<svg") >= 6,
               "discovery_ui: the view page lacks its features or their charts")
    elif label == "service":
        _check(BIG in text, "discovery_ui: the service page does not show the view it pins")
    elif label == "lineage":
        _check("<svg" in text and BIG in text, "discovery_ui: the lineage page has no graph")
    elif label == "search":
        _check("spend_7d" in text, "discovery_ui: the search for 'spend' did not find spend_7d")


async def _time_pages(app: Any, pages: Mapping[str, tuple[str, str]], scale: DiscoveryScale,
                      views: Sequence[str]) -> dict[str, Any]:
    client = _Asgi(app)
    first: dict[str, float] = {}
    sizes: dict[str, int] = {}
    for label, (path, query) in pages.items():  # the first request of each page after opening, checked
        status, body, ns = await client.get(path, query)
        _expect(label, status, body, views)
        first[label], sizes[label] = ns / 1e6, len(body)
    for _ in range(scale.page_warmup):
        for path, query in pages.values():
            await client.get(path, query)
    gc.collect()
    labels = list(pages)
    samples = np.empty((len(labels), scale.page_requests), dtype=np.int64)
    for i in range(scale.page_requests):  # alternating page by page, the order rotating
        for k in range(len(labels)):
            s = (i + k) % len(labels)
            path, query = pages[labels[s]]
            status, _, ns = await client.get(path, query)
            _check(status in (200, 404), f"discovery_ui: {labels[s]} answered {status}")
            samples[s, i] = ns
    return {"pages": {label: latency_summary(samples[s]) for s, label in enumerate(labels)},
            "first_request_ms": first, "bytes": sizes}


def _ui(ctx: Context, scale: DiscoveryScale, path: Path, small: Sequence[str]) -> dict[str, Any]:
    title = "Discovery: web UI pages, rendered server-side"
    measures = (f"the UI's pages over the store of {scale.views} views, timed inside the ASGI app "
                "(`featurelite.ui.create_ui_app`)")
    if importlib.util.find_spec("featurelite.ui") is None:
        return skipped_workload(title, measures, "none (an absolute time)", "featurelite.ui is not installed",
                                [f"home page p50 < {PAGE_MS:g} ms", f"view page p50 < {PAGE_MS:g} ms"])
    from featurelite.ui import create_ui_app

    views = [BIG, *small]
    watch = stopwatch()
    with fl.open(path) as store:  # the statistics of every view, cached in the file
        for name in views:
            store.stats(name)
            store.stats(name, period=PAGE_PERIOD)
    prime_s = watch()
    ctx.log(f"discovery: statistics of {len(views)} views computed and cached in {prime_s:.1f} s")
    pages = _pages(small)
    with fl.open(path, read_only=True) as store:  # as `featurelite ui` opens it
        app = create_ui_app(store)
        timed = asyncio.run(_time_pages(app, pages, scale, views))
    stats = timed["pages"]
    names = {
        "home": "home page `/ui/`", "view": f"view page of `{BIG}` ({scale.big_rows:,} rows)",
        "small_view": f"view page of `{small[0]}` ({scale.small_rows:,} rows)",
        "service": "service page `/ui/services/model_00`", "lineage": "lineage page `/ui/lineage` (whole store)",
        "search": "search `/ui/search?q=spend`", "floor": "floor: an unknown address (the 404 page, no store call)",
    }
    rows = []
    for label, what in names.items():
        p50, p99 = stats[label]["p50_us"] / 1e6, stats[label]["p99_us"] / 1e6
        target = Target("featurelite", "<", PAGE_MS / 1e3) if label in ("home", "view") else None
        rows.append(metric_row(f"{what}: p50", "s", p50, None, target))
        rows.append(metric_row(f"{what}: p99", "s", p99, None))
    rows += [
        metric_row("first request of the home page after opening (templates compiled)", "s",
                   timed["first_request_ms"]["home"] / 1e3, None),
        metric_row(f"first request of the view page of `{BIG}` after opening (statistics read from the file's cache)",
                   "s", timed["first_request_ms"]["view"] / 1e3, None),
        metric_row(f"view page of `{BIG}`: size", "KiB", round(timed["bytes"]["view"] / 1024, 1), None),
        metric_row("home page: size", "KiB", round(timed["bytes"]["home"] / 1024, 1), None),
    ]
    total = scale.big_rows + len(small) * scale.small_rows
    return workload(
        title,
        f"GET of each page of the UI app (`featurelite.ui.create_ui_app(store)`, no token) over the discovery store "
        f"({scale.views} feature views, {total:,} history rows: `{BIG}` with {scale.big_rows:,} and "
        f"{len(small)} views of {scale.small_rows:,}; 3 entities, {SERVICES} feature services), opened read-only as "
        "`featurelite ui` opens it. Before opening it, `store.stats(view)` and `store.stats(view, "
        f"period='{PAGE_PERIOD}')` (the question the view page asks) were computed for every view and cached in "
        f"the file ({prime_s:.1f} s), so the pages read statistics from the cache. Server-side time: each request "
        "is handed to the app's ASGI interface in this process (no socket, no HTTP client), timed from the call to "
        "the last body message; the page's store calls run in the app's worker thread, as when served. After the "
        f"first request of each page (checked: the home page lists all {scale.views} views, the view page its "
        "features and their SVG charts, the service page the view it pins, the lineage page its graph, the search "
        f"finds `spend_7d`) and {scale.page_warmup} untimed rounds, {scale.page_requests} requests per page, "
        "alternating page by page (the order rotating). The targets (issue 15) are on the p50 of the home page and "
        f"of the view page of the {scale.big_rows:,}-row view.",
        "none (an absolute time); the floor row is the same app answering an address it does not have (its 404 "
        "page: a template rendered, no store call)",
        rows,
        {**timed, "prime_s": prime_s, "history_rows": total},
    )


# -- the group -------------------------------------------------------------------------------


def run(ctx: Context) -> dict[str, dict[str, Any]]:
    """Both discovery workloads, on one store built for them."""
    scale = SCALES[ctx.scale.name]
    path = ctx.work / "discovery.duckdb"
    watch = stopwatch()
    built = _build(ctx, scale, path)
    ctx.log(f"discovery: store of {built['views']} views, {built['history_rows']:,} history rows built in "
            f"{watch():.1f} s")
    results: dict[str, dict[str, Any]] = {}
    watch = stopwatch()
    results["discovery_stats"] = _stats(ctx, scale, path)
    results["discovery_stats"]["details"]["build"] = {k: v for k, v in built.items() if k != "small_views"}
    ctx.log(f"discovery: statistics done in {watch():.1f} s")
    watch = stopwatch()
    results["discovery_ui"] = _ui(ctx, scale, path, built["small_views"])
    ctx.log(f"discovery: UI pages done in {watch():.1f} s")
    _remove_db(path)
    return {name: results[name] for name in NAMES}

