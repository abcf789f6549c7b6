"""Statistics of a feature view's values, computed by DuckDB and cached in the store file.

``Store.stats(view)`` answers: per feature, how many values, how many null, about how many
distinct, min / max / mean / std, quantiles, a histogram (or the most frequent values, for
text and booleans), and the same per day or week (drift), over the view's history (and
over its online latest values). One SQL pass per question over the history table: no
Python loop over rows.

The cache: every result is kept in the table ``fl_stats`` of the file (a read-only store
keeps it in memory), keyed by the view, its version and the question (``since``,
``until``, ``period``), with the store's ingest position when it was computed. A cached
result is served while the rows that arrived since number fewer than ``STALE_FRACTION``
of the rows it covered; ``refresh=True`` recomputes now. Ingest never computes
statistics (it never waits for them): they are computed when asked for.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import duckdb

from . import wire
from .db import quote, run
from .layout import LOST, SEQ
from .types import dtype, utc_naive

if TYPE_CHECKING:
    from .layout import ViewLayout

__all__ = [
    "CACHE_TABLE", "PERIODS", "QUANTILES", "STALE_FRACTION", "FeatureStats", "Histogram", "PeriodStats",
    "StatsQuestion", "TimelinePoint", "TopValue", "ViewStats",
]

#: The quantiles every numeric feature reports.
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
#: How values are grouped over time for drift.
PERIODS = ("day", "week")
#: A cached result is recomputed once new rows number this fraction of the rows it covered.
STALE_FRACTION = 0.1
#: Quantiles (and per-period medians) of a feature with at least twice this many finite
#: values are estimated over a deterministic sample of about this many: the rows whose
#: hashed ingest position falls in one of ``finite // QUANTILE_SAMPLE`` buckets. The
#: t-digest over 10M values costs more than every other statistic together, and over the
#: sample it is as close to the exact quantiles as over all of them (its own error is the
#: larger one).
QUANTILE_SAMPLE = 1_000_000
#: A period whose sample holds fewer values than this has its median from all its values.
PERIOD_SAMPLE_MIN = 1_000
#: Histogram bins of a numeric feature.
BINS = 20
#: The most frequent values a text or boolean feature reports.
TOP = 10


def _time(value: Any) -> datetime | None:
    return None if value is None else value if isinstance(value, datetime) else wire.parse_time(value)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True)
class Histogram:
    """Counts of a numeric feature's finite values in ``len(counts)`` equal bins between
    ``edges[0]`` and ``edges[-1]`` (``edges`` has one more entry than ``counts``; the last
    bin includes its upper edge)."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"edges": list(self.edges), "counts": list(self.counts)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Histogram:
        return cls(tuple(float(e) for e in data["edges"]), tuple(int(c) for c in data["counts"]))


@dataclass(frozen=True)
class TopValue:
    """One of the most frequent values of a text or boolean feature (as text)."""

    value: str
    count: int

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "count": self.count}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TopValue:
        return cls(str(data["value"]), int(data["count"]))


@dataclass(frozen=True)
class PeriodStats:
    """One feature's values in one day or week (``start`` is its first instant, UTC)."""

    start: datetime
    count: int
    nulls: int
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    p50: float | None = None

    @property
    def null_rate(self) -> float:
        return self.nulls / self.count if self.count else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"start": _iso(self.start), "count": self.count, "nulls": self.nulls, "mean": self.mean,
                "std": self.std, "min": self.min, "max": self.max, "p50": self.p50}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PeriodStats:
        start = _time(data["start"])
        assert start is not None
        return cls(start, int(data["count"]), int(data["nulls"]), data.get("mean"), data.get("std"),
                   data.get("min"), data.get("max"), data.get("p50"))


@dataclass(frozen=True)
class FeatureStats:
    """Statistics of one feature's values (history rows, or online latest values).

    ``count`` counts rows, ``nulls`` the null ones; ``distinct`` is an estimate
    (HyperLogLog). For numbers (and times, as epoch seconds): ``min``, ``max``, ``mean``,
    ``std``, ``quantiles`` ({"0.5": median, ...}) and ``histogram``, over finite values
    (``nans`` and ``infinities`` are counted apart). For text and booleans: ``top``, the
    most frequent values, and ``min``/``max`` as text. ``periods``: the same per day or
    week, for drift (history only).
    """

    name: str
    dtype: str
    count: int
    nulls: int
    distinct: int
    min: float | str | None = None
    max: float | str | None = None
    mean: float | None = None
    std: float | None = None
    quantiles: Mapping[str, float] = field(default_factory=dict)
    histogram: Histogram | None = None
    top: tuple[TopValue, ...] = ()
    nans: int = 0
    infinities: int = 0
    periods: tuple[PeriodStats, ...] = ()

    @property
    def null_rate(self) -> float:
        return self.nulls / self.count if self.count else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "dtype": self.dtype, "count": self.count, "nulls": self.nulls,
            "null_rate": self.null_rate, "distinct": self.distinct, "min": self.min, "max": self.max,
            "mean": self.mean, "std": self.std, "quantiles": dict(self.quantiles),
            "histogram": None if self.histogram is None else self.histogram.to_dict(),
            "top": [t.to_dict() for t in self.top], "nans": self.nans, "infinities": self.infinities,
            "periods": [p.to_dict() for p in self.periods],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureStats:
        histogram = data.get("histogram")
        return cls(
            str(data["name"]), str(data["dtype"]), int(data["count"]), int(data["nulls"]), int(data["distinct"]),
            data.get("min"), data.get("max"), data.get("mean"), data.get("std"),
            {str(k): float(v) for k, v in (data.get("quantiles") or {}).items()},
            None if histogram is None else Histogram.from_dict(histogram),
            tuple(TopValue.from_dict(t) for t in data.get("top") or ()), int(data.get("nans", 0)),
            int(data.get("infinities", 0)), tuple(PeriodStats.from_dict(p) for p in data.get("periods") or ()),
        )


@dataclass(frozen=True)
class TimelinePoint:
    """One period of a view's history: how many rows have event times in it, the newest
    event time at or before its end, and how old that was at the period's end (seconds):
    the staleness a read at the end of the period would have seen."""

    start: datetime
    rows: int
    newest_event: datetime | None
    staleness: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"start": _iso(self.start), "rows": self.rows, "newest_event": _iso(self.newest_event),
                "staleness": self.staleness}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TimelinePoint:
        start = _time(data["start"])
        assert start is not None
        return cls(start, int(data["rows"]), _time(data.get("newest_event")), data.get("staleness"))


@dataclass(frozen=True)
class ViewStats:
    """What ``Store.stats(view)`` returns: every feature's statistics over the view's
    history rows with ``since <= event time < until`` (``features``), and over its online
    latest values (``online``), computed at ``computed_at`` when the store's ingest
    position was ``ingest_position``; ``cached`` tells whether this came from the cache.
    ``first_event``/``last_event`` and ``rows`` describe the history rows covered,
    ``online_rows`` the online table. ``timeline``: rows per period with the newest event
    time seen by each period's end (for a freshness-over-time chart)."""

    view: str
    version: str
    since: datetime | None
    until: datetime | None
    period: str
    rows: int
    online_rows: int
    first_event: datetime | None
    last_event: datetime | None
    features: Mapping[str, FeatureStats]
    online: Mapping[str, FeatureStats]
    timeline: tuple[TimelinePoint, ...]
    computed_at: datetime
    ingest_position: int
    seconds: float
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "view": self.view, "version": self.version, "since": _iso(self.since), "until": _iso(self.until),
            "period": self.period, "rows": self.rows, "online_rows": self.online_rows,
            "first_event": _iso(self.first_event), "last_event": _iso(self.last_event),
            "features": {k: v.to_dict() for k, v in self.features.items()},
            "online": {k: v.to_dict() for k, v in self.online.items()},
            "timeline": [t.to_dict() for t in self.timeline], "computed_at": _iso(self.computed_at),
            "ingest_position": self.ingest_position, "seconds": self.seconds, "cached": self.cached,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ViewStats:
        computed_at = _time(data["computed_at"])
        assert computed_at is not None
        return cls(
            str(data["view"]), str(data["version"]), _time(data.get("since")), _time(data.get("until")),
            str(data["period"]), int(data["rows"]), int(data["online_rows"]), _time(data.get("first_event")),
            _time(data.get("last_event")),
            {str(k): FeatureStats.from_dict(v) for k, v in data["features"].items()},
            {str(k): FeatureStats.from_dict(v) for k, v in data["online"].items()},
            tuple(TimelinePoint.from_dict(t) for t in data.get("timeline") or ()), computed_at,
            int(data["ingest_position"]), float(data["seconds"]), bool(data.get("cached", False)),
        )


# -- computing --------------------------------------------------------------------------


@dataclass(frozen=True)
class StatsQuestion:
    """What a statistics result answers: the view's history rows with ``since <= event
    time < until`` (None: unbounded), grouped by ``period`` over time. Its ``key`` names it
    in the cache."""

    since: datetime | None
    until: datetime | None
    period: str | None

    @property
    def key(self) -> str:
        return wire.dumps({"since": _iso(self.since), "until": _iso(self.until), "period": self.period},
                          compact=True)


@dataclass(frozen=True)
class _Column:
    """One stored feature as the statistics queries see it: its SQL name (quoted), its
    dtype, and ``value``, the SQL expression of its finite numeric value (None for text)."""

    name: str
    sql: str
    dtype: str
    family: str

    @property
    def numeric(self) -> bool:
        return self.family in ("int", "float", "timestamp")

    def value(self) -> str:
        """The finite value as DOUBLE (times as epoch seconds), NULL for null, NaN, +-inf."""
        if self.family == "timestamp":
            return f"epoch({self.sql})"
        if self.family == "float":
            return f"CASE WHEN isfinite({self.sql}) THEN {self.sql}::DOUBLE END"
        return f"{self.sql}::DOUBLE"



def _columns(features: Mapping[str, str]) -> list[_Column]:
    return [_Column(name, quote(name), dtype_name, dtype(dtype_name).family) for name, dtype_name in features.items()]


def _utc(value: datetime) -> datetime:
    """A stored (naive UTC) time as an aware one."""
    return value.replace(tzinfo=timezone.utc)


def _finite(value: Any) -> float | None:
    """A float for JSON: None for NULL (DuckDB's aggregates of no rows) and non-finite."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _text(value: Any, column: _Column) -> float | str | None:
    if value is None:
        return None
    if column.family == "timestamp":
        return _utc(value).isoformat() if isinstance(value, datetime) else str(value)
    if column.numeric:
        return _finite(value)
    return str(value)


def _summaries(
    con: duckdb.DuckDBPyConnection, table: str, where: str, columns: Sequence[_Column], *, bins: int = BINS,
) -> tuple[int, dict[str, FeatureStats]]:
    """(rows, {feature: statistics without periods}) of ``table``'s rows matching ``where``:
    one scan for the summaries, one for every numeric feature's histogram, one small
    grouping per text or boolean feature for its most frequent values."""
    parts = ["count(*)"]
    for c in columns:
        v = c.value() if c.numeric else None
        parts += [f"count({c.sql})", f"approx_count_distinct({c.sql})"]
        if v is not None:
            parts += [f"min({v})", f"max({v})", f"avg({v})", f"stddev_samp({v})", f"min({c.sql})", f"max({c.sql})"]
            if c.family == "float":
                parts += [f"count(*) FILTER (WHERE isnan({c.sql}))", f"count(*) FILTER (WHERE isinf({c.sql}))"]
        elif c.family == "bool":
            parts += [f"avg({c.sql}::INTEGER)"]
        else:
            parts += [f"min({c.sql})", f"max({c.sql})"]
    row = run(con, f"SELECT {', '.join(parts)} FROM {table} WHERE {where}")[0]
    rows = int(row[0])
    found: dict[str, dict[str, Any]] = {}
    at = 1
    for c in columns:
        count, distinct = int(row[at]), int(row[at + 1])
        at += 2
        entry: dict[str, Any] = {"name": c.name, "dtype": c.dtype, "count": rows, "nulls": rows - count,
                                 "distinct": distinct}
        if c.numeric:
            low, high, mean, std, raw_min, raw_max = row[at: at + 6]
            at += 6
            entry.update(mean=_finite(mean), std=_finite(std))
            if c.family == "timestamp":
                entry.update(min=_text(raw_min, c), max=_text(raw_max, c))
            else:
                entry.update(min=_finite(low), max=_finite(high))
            entry["_range"] = (low, high)
            if c.family == "float":
                entry.update(nans=int(row[at]), infinities=int(row[at + 1]))
                at += 2
        elif c.family == "bool":
            entry["mean"] = _finite(row[at])
            at += 1
        else:
            entry.update(min=_text(row[at], c), max=_text(row[at + 1], c))
            at += 2
        found[c.name] = entry
    _histograms(con, table, where, [c for c in columns if c.numeric], found, bins)
    for c in columns:
        if not c.numeric:
            top = run(con, f"SELECT {c.sql}::VARCHAR AS v, count(*) AS n FROM {table} WHERE {where} AND {c.sql} IS NOT "
                           f"NULL GROUP BY v ORDER BY n DESC, v LIMIT {TOP}")
            found[c.name]["top"] = tuple(TopValue(str(v), int(n)) for v, n in top)
    stats = {}
    for name, entry in found.items():
        entry.pop("_range", None)
        stats[name] = FeatureStats(**entry)
    return rows, stats


def _every(entry: Mapping[str, Any]) -> int:
    """One in how many rows the quantiles of a feature read (see :data:`QUANTILE_SAMPLE`),
    from its counts (``count``, ``nulls``, ``nans``, ``infinities``)."""
    finite = int(entry["count"]) - int(entry["nulls"]) - int(entry.get("nans") or 0) - int(entry.get("infinities") or 0)
    return max(1, finite // QUANTILE_SAMPLE)


def _sample(every: int) -> str:
    """The FILTER clause of an aggregate over the sample of one row in ``every``: the rows
    whose hashed ingest position falls in bucket 0 (deterministic; no periodic pattern of
    the ingest order aliases with it)."""
    return "" if every <= 1 else f" FILTER (WHERE hash({SEQ}) % {every} = 0)"


def _quantile_sql(column: _Column, high: float, quantiles: Sequence[float], every: int = 1) -> str:
    """``approx_quantile`` of the column's finite values at ``quantiles``. DuckDB's t-digest
    starts its maximum at the smallest positive double, so over values that are all <= 0
    (``high`` <= 0) its top quantiles come out near 0 instead of the largest value; those
    are asked of the negated values at the mirrored quantiles instead (see
    :func:`_quantiles`), which keeps every value's own precision (a shift would not)."""
    if high <= 0:
        return f"approx_quantile(-({column.value()}), [{', '.join(repr(1.0 - q) for q in quantiles)}]){_sample(every)}"
    return f"approx_quantile({column.value()}, [{', '.join(repr(q) for q in quantiles)}]){_sample(every)}"


def _quantiles(found: Sequence[Any] | None, low: float, high: float, whole: bool) -> list[float]:
    """The estimates of :func:`_quantile_sql` (negated back when it mirrored them) on the
    values' scale: within [low, high], never decreasing, and whole numbers for a
    whole-number feature."""
    if found is None:
        return []
    estimates = [-float(x) for x in found] if high <= 0 else [float(x) for x in found]
    values = [min(max(x, low), high) for x in estimates]
    values = [float(round(x)) if whole else x for x in values]
    return [max(values[: i + 1]) for i in range(len(values))]


def _histograms(
    con: duckdb.DuckDBPyConnection, table: str, where: str, columns: Sequence[_Column],
    found: dict[str, dict[str, Any]], bins: int,
) -> None:
    """Every numeric feature's histogram and quantiles, in one scan: ``bins`` equal bins
    between its finite minimum and maximum (one bin when they are equal)."""
    parts, shapes = [], []
    for c in columns:
        low, high = found[c.name]["_range"]
        if low is None or high is None:
            continue
        low, high = float(low), float(high)
        count = bins
        if c.family == "int":
            # Whole-number bins (no empty bins between neighbouring integers): one per
            # value when they are few, else a whole width each.
            width = float(math.ceil((high - low + 1) / bins))
            count = math.ceil((high - low + 1) / width)
        else:
            width = (high - low) / bins
        # Binned as (v - low) / width; over a range wider than the largest double, as
        # v / width - low / width (each finite).
        offset = f"({{v}} - {low!r}) / {width!r}"
        if math.isinf(high - low):
            width = high / bins - low / bins
            offset = f"({{v}} / {width!r} - {low / width!r})"
        if not (width > 0 and math.isfinite(width)):  # one value
            total = run(con, f"SELECT count({c.value()}) FROM {table} WHERE {where}")[0][0]
            found[c.name]["histogram"] = Histogram((low, high), (int(total),))
            found[c.name]["quantiles"] = {repr(q): low for q in QUANTILES}
            continue
        v = c.value()
        # The CASE keeps nulls null: greatest() and least() skip a NULL argument.
        parts.append(f"histogram(CASE WHEN {v} IS NOT NULL THEN least(greatest(floor({offset.format(v=v)})"
                     f"::BIGINT, 0), {count - 1}) END)")
        parts.append(_quantile_sql(c, high, QUANTILES, _every(found[c.name])))
        shapes.append((c.name, low, high, width, count, c.family == "int"))
    if not parts:
        return
    row = run(con, f"SELECT {', '.join(parts)} FROM {table} WHERE {where}")[0]
    for at, (name, low, high, width, count, whole) in enumerate(shapes):
        counts_by_bin, estimates = row[2 * at], row[2 * at + 1]
        counts = [0] * count
        for index, found_count in (counts_by_bin or {}).items():
            if index is not None:
                counts[int(index)] = int(found_count)
        top = low + count * width if whole else high
        edges = (*(low + i * width for i in range(count)), top)
        found[name]["histogram"] = Histogram(edges, tuple(counts))
        found[name]["quantiles"] = dict(zip(
            (repr(q) for q in QUANTILES), _quantiles(estimates, low, high, whole), strict=False))


def _periods(
    con: duckdb.DuckDBPyConnection, table: str, where: str, ts: str, columns: Sequence[_Column], period: str,
    until: datetime, every: Mapping[str, int],
) -> tuple[dict[str, tuple[PeriodStats, ...]], tuple[TimelinePoint, ...]]:
    """Per ``period`` (day or week, UTC): each feature's count, nulls, mean, std, min, max
    and median, and the view's rows and newest event time by the period's end (one scan;
    a second, over the sparse periods only, for medians whose sample was too small).
    ``every``: per numeric feature, the sample its medians read (see :func:`_every`)."""
    parts = ["count(*) AS _rows", f"max({ts}) AS _newest"]
    for c in columns:
        parts.append(f"count({c.sql})")
        if c.numeric:
            v = c.value()
            # The median is not one of the t-digest's top quantiles: asked directly (and
            # kept within the period's own range below), over the feature's sample.
            sample = _sample(every.get(c.name, 1))
            parts += [f"avg({v})", f"stddev_samp({v})", f"min({v})", f"max({v})",
                      f"approx_quantile({v}, 0.5){sample}", f"count({v}){sample}"]
        elif c.family == "bool":
            parts.append(f"avg({c.sql}::INTEGER)")
    grouped = (f"SELECT date_trunc('{period}', {ts}) AS _p, {', '.join(parts)} FROM {table} WHERE {where} "
               "GROUP BY _p")
    # The newest event by each period's end: a running maximum over the periods, in order.
    rows = run(con, f"SELECT *, max(_newest) OVER (ORDER BY _p) FROM ({grouped}) ORDER BY _p")
    step = timedelta(days=7 if period == "week" else 1)
    per_feature: dict[str, list[PeriodStats]] = {c.name: [] for c in columns}
    sparse: dict[str, list[int]] = {}  # per feature, the periods (indexes) whose median needs all values
    timeline = []
    for row in rows:
        start = _utc(row[0])
        total, newest_so_far = int(row[1]), row[-1]
        end = start + step if until - start > step else until  # (never computes past datetime.max)
        newest = None if newest_so_far is None else _utc(newest_so_far)
        timeline.append(TimelinePoint(start, total, newest,
                                      None if newest is None else max((end - newest).total_seconds(), 0.0)))
        at = 3
        for c in columns:
            count = int(row[at])
            at += 1
            if c.numeric:
                mean, std, low, high, p50, sampled = row[at: at + 6]
                at += 6
                if every.get(c.name, 1) > 1 and int(sampled) < PERIOD_SAMPLE_MIN and low is not None:
                    sparse.setdefault(c.name, []).append(len(per_feature[c.name]))
                median: float | None = None
                if p50 is not None and low is not None and high is not None:
                    estimate = min(max(float(p50), float(low)), float(high))
                    median = float(round(estimate)) if c.family == "int" else estimate
                per_feature[c.name].append(PeriodStats(start, total, total - count, _finite(mean), _finite(std),
                                                       _finite(low), _finite(high), _finite(median)))
            elif c.family == "bool":
                per_feature[c.name].append(PeriodStats(start, total, total - count, _finite(row[at])))
                at += 1
            else:
                per_feature[c.name].append(PeriodStats(start, total, total - count))
    for c in columns:
        if c.name in sparse:
            _exact_medians(con, table, where, ts, c, period, per_feature[c.name], sparse[c.name])
    return {name: tuple(found) for name, found in per_feature.items()}, tuple(timeline)


def _exact_medians(
    con: duckdb.DuckDBPyConnection, table: str, where: str, ts: str, column: _Column, period: str,
    found: list[PeriodStats], indexes: Sequence[int],
) -> None:
    """The medians of ``column`` in the periods at ``indexes`` of ``found`` (whose sample
    held too few values), from all their values."""
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    starts = [(found[i].start - epoch) // timedelta(microseconds=1) for i in indexes]
    key = f"epoch_us(date_trunc('{period}', {ts}))"
    v = column.value()
    medians = dict(run(con, f"SELECT {key} AS _p, approx_quantile({v}, 0.5) FROM {table} WHERE {where} AND "
                            f"{key} IN (SELECT unnest(?::BIGINT[])) GROUP BY _p", [starts]))
    for i, start in zip(indexes, starts, strict=True):
        item, p50 = found[i], medians.get(start)
        if p50 is not None and item.min is not None and item.max is not None:
            estimate = min(max(float(p50), item.min), item.max)
            found[i] = replace(item, p50=float(round(estimate)) if column.family == "int" else estimate)


def choose_period(first: datetime | None, last: datetime | None) -> str:
    """The grouping for drift when none is asked for: days over a span of up to
    ``DAILY_SPAN`` days, weeks over a longer one."""
    if first is None or last is None or last - first <= timedelta(days=DAILY_SPAN):
        return "day"
    return "week"


#: The longest span of history (days) grouped by day when no period is asked for.
DAILY_SPAN = 120


def compute(
    con: duckdb.DuckDBPyConnection, layout: ViewLayout, question: StatsQuestion, now: datetime,
) -> ViewStats:
    """The statistics ``question`` asks of ``layout``'s view, computed now (a few scans of
    its history and one of its online table). Run on a cursor of its own inside one
    transaction, so every number describes the same rows."""
    started = time.perf_counter()
    ts = quote(layout.ts)
    where = [f"NOT {LOST}"]  # tie losers never reach a training set or a read
    if question.since is not None:
        where.append(f"{ts} >= TIMESTAMP '{utc_naive(question.since).isoformat()}'")
    if question.until is not None:
        where.append(f"{ts} < TIMESTAMP '{utc_naive(question.until).isoformat()}'")
    condition = " AND ".join(where)
    columns = _columns(dict(layout.view.schema))
    history = layout.history_table
    position_row = run(con, f"SELECT max({SEQ}), min({ts}), max({ts}) FROM {history} WHERE {condition}")[0]
    top = run(con, f"SELECT max({SEQ}) FROM {history}")[0][0]
    first, last = position_row[1], position_row[2]
    first = None if first is None else _utc(first)
    last = None if last is None else _utc(last)
    rows, features = _summaries(con, history, condition, columns)
    period = question.period or choose_period(first, last)
    every = {c.name: _every(vars(features[c.name])) for c in columns if c.numeric}
    periods, timeline = _periods(con, history, condition, ts, columns, period,
                                 question.until if question.until is not None and question.until < now else now, every)
    features = {name: replace(found, periods=periods[name]) for name, found in features.items()}
    online_rows, online = _summaries(con, layout.online_table, "true", columns)
    return ViewStats(
        view=layout.name, version=layout.view.version, since=question.since, until=question.until, period=period,
        rows=rows, online_rows=online_rows, first_event=first, last_event=last, features=features, online=online,
        timeline=timeline, computed_at=now, ingest_position=-1 if top is None else int(top),
        seconds=time.perf_counter() - started,
    )


# -- the cache --------------------------------------------------------------------------

#: The cache table (created when the first result is stored).
CACHE_TABLE = "fl_stats"
_CACHE_DDL = (
    f"CREATE TABLE IF NOT EXISTS {CACHE_TABLE} (view VARCHAR NOT NULL, version VARCHAR NOT NULL, "
    "question VARCHAR NOT NULL, ingest_position BIGINT NOT NULL, computed_at TIMESTAMP NOT NULL, "
    "payload VARCHAR NOT NULL, PRIMARY KEY (view, version, question))"
)


def _has_cache(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(run(con, "SELECT 1 FROM duckdb_tables() WHERE table_name = ?", [CACHE_TABLE]))


def cached(con: duckdb.DuckDBPyConnection, layout: ViewLayout, question: StatsQuestion) -> ViewStats | None:
    """The stored result of ``question`` for the view's current version, or None."""
    if not _has_cache(con):
        return None
    found = run(con, f"SELECT payload FROM {CACHE_TABLE} WHERE view = ? AND version = ? AND question = ?",
                [layout.name, layout.view.version, question.key])
    if not found:
        return None
    try:
        return replace(ViewStats.from_dict(json.loads(found[0][0])), cached=True)
    except (ValueError, KeyError, TypeError):  # a damaged row: computed again, and replaced
        return None


def store(con: duckdb.DuckDBPyConnection, layout: ViewLayout, question: StatsQuestion, stats: ViewStats) -> None:
    """Keep ``stats`` as the answer to ``question`` (replacing an older one)."""
    run(con, _CACHE_DDL)
    run(con, f"INSERT OR REPLACE INTO {CACHE_TABLE} VALUES (?, ?, ?, ?, ?, ?)",
        [layout.name, layout.view.version, question.key, stats.ingest_position, utc_naive(stats.computed_at),
         wire.dumps(stats.to_dict(), compact=True)])


def forget(con: duckdb.DuckDBPyConnection, view: str) -> None:
    """Drop every cached result of ``view`` (when it is deleted: a view created again under
    its name must not be answered with the old one's numbers)."""
    if _has_cache(con):
        run(con, f"DELETE FROM {CACHE_TABLE} WHERE view = ?", [view])


def is_stale(con: duckdb.DuckDBPyConnection, layout: ViewLayout, stats: ViewStats) -> bool:
    """Whether enough rows arrived after ``stats`` was computed to compute it again: any
    new row, once they number ``STALE_FRACTION`` of the rows it covered (a zone-map
    filtered count: the sequence only grows)."""
    new = run(con, f"SELECT count(*) FROM {layout.history_table} WHERE {SEQ} > ?", [stats.ingest_position])[0][0]
    return bool(new) and new >= STALE_FRACTION * stats.rows
