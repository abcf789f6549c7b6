"""The serving log: what online reads served, recorded in the store file.

A feature view or service declared with ``log=`` has a log table,
``fl_serving_log__view__NAME`` or ``fl_serving_log__service__NAME``, with one row per
entity of each sampled read:

- ``request_id`` (one per read), ``entity_row`` (the entity's position in it),
- ``request_time`` (the read's ``now``: what a training set would be asked for),
  ``served_at`` (the wall clock when it was served; retention counts from it),
- ``ingest_position``: the store's ingest sequence when it was served (rows ingested
  after it came later; consistency replay calls them late),
- ``versions``: the version of every definition the read used (JSON),
- ``key:KEY`` per join key, ``request:FIELD`` per request field of on-demand features,
- per feature ``VIEW:FEATURE`` (typed as declared) and ``VIEW:FEATURE#status``,
- ``VIEW#event_time`` per feature view: the event time of the values served.

The hot path only draws the sample and appends a reference to what was served to a
queue (:meth:`ServingLog.capture`); a writer thread turns the queue into Arrow tables and
inserts them, every :data:`FLUSH_SECONDS` or sooner when :data:`FLUSH_RECORDS` wait, all
tables of one flush in one transaction: a crash loses at most the reads not yet flushed,
and never part of one read. The same thread measures the ages of the values served for
:class:`~featurelite.freshness.ServingStats`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from itertools import chain
from random import random
from typing import Any, NamedTuple

import duckdb
import numpy as np
import pyarrow as pa

from .db import quote, run
from .definitions import FeatureService, FeatureView, OnDemandFeatureView
from .freshness import ServingStats
from .layout import ViewLayout
from .planning import OnlinePlan
from .results import OnlineResponse
from .types import arrow_type

__all__ = [
    "FLUSH_RECORDS", "FLUSH_SECONDS", "AgedView", "LogTarget", "Observer", "ServingLog", "log_table", "observer_for",
]

log = logging.getLogger("featurelite.servinglog")

#: The writer flushes at least this often (seconds)...
FLUSH_SECONDS = 1.0
#: ... and as soon as this many reads wait.
FLUSH_RECORDS = 4096
#: Reads waiting at most; beyond, new ones are dropped (and counted) until the writer catches up.
MAX_PENDING = 1_000_000
#: Seconds between two retention passes over one log table.
RETENTION_EVERY = 60.0
#: The share of reads whose value ages are measured for a view with a freshness SLO and no log.
AGE_SAMPLE = 0.1
#: Suffixes of the status and event time columns.
STATUS, EVENT_TIME = "#status", "#event_time"
#: Prefixes of the join key and request field columns (a name of neither can hold a colon).
KEY, REQUEST = "key:", "request:"
#: The columns every log table starts with.
META_COLUMNS = ("request_id", "entity_row", "request_time", "served_at", "ingest_position", "versions")


def log_table(kind: str, name: str) -> str:
    """The (unquoted) log table of feature view or service ``name`` (``kind``: ``view`` or
    ``service``)."""
    return f"fl_serving_log__{kind}__{name}"


class LogTarget(NamedTuple):
    """One log a read feeds, and what of the read it records."""

    kind: str  #: ``view`` or ``service``
    name: str
    rate: float
    retention_us: int
    outputs: tuple[str, ...]  #: the response's feature columns it records...
    columns: tuple[str, ...]  #: ... under these names (``view:feature``)
    keys: tuple[str, ...]
    request_fields: tuple[tuple[str, pa.DataType], ...]
    timed_views: tuple[str, ...]  #: views whose event time it records

    @property
    def table(self) -> str:
        return log_table(self.kind, self.name)


class AgedView(NamedTuple):
    """A view whose served value ages a read measures."""

    view: str
    slo: timedelta | None
    rate: float
    #: The response's columns of the view's stored features (ages of their present values).
    outputs: tuple[str, ...]
    key_names: tuple[str, ...]


class Observer(NamedTuple):
    """What the reads of one plan record (None for a plan nothing observes)."""

    targets: tuple[LogTarget, ...]
    aged: tuple[AgedView, ...]
    #: The highest sample rate of all: one draw per read decides for every target (each
    #: records the read when the draw is under its own rate).
    rate: float
    #: Whether every rate is 1 (then no draw is made).
    every_read: bool
    types: Mapping[str, pa.DataType]
    versions: str


class _Captured(NamedTuple):
    observer: Observer
    draw: float
    keys: dict[str, list[Any]]
    values: dict[str, list[Any]]
    statuses: dict[str, list[str]]
    request_data: Mapping[str, Sequence[Any]] | None
    now_us: int
    served_us: int
    position: int
    times: dict[str, list[int | None]]


def observer_for(
    plan: OnlinePlan, service: str | None, views: Mapping[str, FeatureView], services: Mapping[str, FeatureService],
    odfvs: Mapping[str, OnDemandFeatureView], layouts: Mapping[str, ViewLayout],
) -> Observer | None:
    """What reads of ``plan`` (through ``service``, if given) record, by the definitions in
    force (``views`` etc.: the current ones, whatever versions the plan pins)."""
    by_view: dict[str, list[str]] = {}
    for out, (view, _) in plan.sources.items():
        by_view.setdefault(view, []).append(out)
    stored = {read.view for read in plan.reads}
    targets: list[LogTarget] = []
    for view, outputs in by_view.items():
        definition = views.get(view)
        if definition is not None and definition.log is not None:  # (on-demand views: logged by services)
            targets.append(_target("view", view, definition.log.sample_rate, definition.log.retention, plan,
                                   tuple(outputs), tuple(layouts[view].key_names), odfvs,
                                   (view,) if view in stored else ()))
    found = services.get(service) if service is not None else None
    if found is not None and found.log is not None:
        timed = tuple(v for v in by_view if v in stored and v in views)
        targets.append(_target("service", found.name, found.log.sample_rate, found.log.retention, plan,
                               tuple(plan.sources), tuple(plan.key_names), odfvs, timed))
    # Value ages: of the views a log times, sampled as that log is, and of the views with a
    # freshness SLO (AGE_SAMPLE of reads at least).
    rates: dict[str, float] = {}
    for target in targets:
        for view in target.timed_views:
            rates[view] = max(rates.get(view, 0.0), target.rate)
    for view in by_view:
        definition = views.get(view)
        if definition is not None and definition.freshness is not None and view in stored:
            rates[view] = max(rates.get(view, 0.0), AGE_SAMPLE)
    aged: list[AgedView] = []
    for view, rate in rates.items():
        plain = tuple(o for o in by_view[view] if plan.sources[o][1] in views[view].schema)
        if plain:
            aged.append(AgedView(view, views[view].freshness, rate, plain, tuple(layouts[view].key_names)))
    if not targets and not aged:
        return None
    every = [t.rate for t in targets] + [a.rate for a in aged]
    return Observer(tuple(targets), tuple(aged), max(every), min(every) >= 1.0, plan.types,
                    json.dumps(dict(plan.pins), sort_keys=True))


def _target(
    kind: str, name: str, rate: float, retention: timedelta, plan: OnlinePlan, outputs: tuple[str, ...],
    keys: tuple[str, ...], odfvs: Mapping[str, OnDemandFeatureView], timed: tuple[str, ...],
) -> LogTarget:
    fields: dict[str, pa.DataType] = {}
    for out in outputs:
        odfv = odfvs.get(plan.sources[out][0])
        if odfv is not None:
            for source in odfv.request_sources:
                fields.update({f: arrow_type(d) for f, d in source.schema.items()})
    columns = tuple(f"{plan.sources[o][0]}:{plan.sources[o][1]}" for o in outputs)
    return LogTarget(kind, name, rate, retention // timedelta(microseconds=1), outputs, columns, keys,
                     tuple(fields.items()), timed)


#: Runs a function with the store's writable connection, under its lock, in a transaction.
Writer = Callable[[Callable[[duckdb.DuckDBPyConnection], None]], None]


class ServingLog:
    """The queue of sampled reads and the thread that writes them (started on the first)."""

    def __init__(self, write: Writer, stats: ServingStats) -> None:
        self._write = write
        self.stats = stats
        self._pending: deque[tuple[Any, ...]] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        #: Per log table: its columns and DuckDB types, the next request id, the last retention pass.
        self._columns: dict[str, dict[str, str]] = {}
        self._next_id: dict[str, int] = {}
        self._pruned: dict[str, float] = {}

    # -- the hot path ---------------------------------------------------------------

    def sample(self, observer: Observer) -> float | None:
        """The draw that decides which of ``observer``'s logs record this read (each whose
        rate exceeds it), or None when none does."""
        draw = 0.0 if observer.every_read else random()
        return draw if draw < observer.rate else None

    def capture(
        self, observer: Observer, draw: float, times: dict[str, list[int | None]], response: OnlineResponse,
        request_data: Mapping[str, Sequence[Any]] | None, now_us: int, position: int,
    ) -> None:
        """Queue what one sampled read served (``times``: per view, the event time of each
        entity's values; ``position``: the ingest sequence the read could see). The hot
        path: the response's lists are kept, not copied (the response hands out copies from
        now on); the writer converts them."""
        pending = self._pending
        if len(pending) >= MAX_PENDING:
            self.stats.count_dropped(len(response))
            return
        if request_data is not None:  # the caller's own lists: copied, so what was served stays
            request_data = {field: list(column) for field, column in request_data.items()}
        keys, values, statuses = response.freeze()
        # A plain tuple: a NamedTuple's constructor costs a few hundred nanoseconds more.
        pending.append((observer, draw, keys, values, statuses, request_data, now_us, time.time_ns() // 1000,
                        position, times))
        if self._thread is None:
            self._start()
        elif len(pending) >= FLUSH_RECORDS:
            self._wake.set()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="featurelite-serving-log", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - the writer must outlive a failed flush (said in the log)
                log.error("the serving log could not be written: %s", exc)

    # -- the writer -----------------------------------------------------------------

    def flush(self) -> int:
        """Write every queued read now; the number of log rows written. A failure loses
        the batch (counted in ``stats.dropped``) and raises."""
        with self._flush_lock:
            records = [_Captured._make(self._pending.popleft()) for _ in range(len(self._pending))]
            if not records:
                return 0
            self._observe_ages(records)
            # Per log table, its reads in the order they were served.
            tables: dict[str, list[tuple[LogTarget, _Captured]]] = {}
            for rec in records:
                if not _rows(rec):
                    continue
                for target in rec.observer.targets:
                    if rec.draw < target.rate:
                        tables.setdefault(target.table, []).append((target, rec))
            if not tables:
                return 0
            rows = sum(_rows(rec) for reads in tables.values() for _, rec in reads)
            try:
                self._write(lambda con: self._insert(con, tables))
            except BaseException:
                self.stats.count_dropped(rows)
                # What a failed write cached may be wrong: read the tables again next time.
                self._columns.clear()
                self._next_id.clear()
                raise
            for reads in tables.values():
                target = reads[0][0]
                self.stats.count_logged(f"{target.kind}:{target.name}", sum(_rows(rec) for _, rec in reads))
            return rows

    def flush_quietly(self) -> None:
        """:meth:`flush`, a failure logged rather than raised (for the reports that read
        what the flush measures: the ages are taken before the write)."""
        try:
            self.flush()
        except Exception as exc:  # noqa: BLE001 - a report must not fail because the log could not be written
            log.error("the serving log could not be written: %s", exc)

    def _observe_ages(self, records: list[_Captured]) -> None:
        for rec in records:
            for aged in rec.observer.aged:
                times = rec.times.get(aged.view)
                if times is None:
                    continue
                ages = [
                    (rec.now_us - t) / 1e6
                    for t, statuses in zip(times, zip(*(rec.statuses[o] for o in aged.outputs),
                                                      strict=True), strict=True)
                    if t is not None and t <= rec.now_us and "PRESENT" in statuses
                ]
                if ages:
                    self.stats.observe_ages(aged.view, np.asarray(ages, dtype=np.float64), aged.slo)

    def _insert(self, con: duckdb.DuckDBPyConnection, tables: dict[str, list[tuple[LogTarget, _Captured]]]) -> None:
        for name, reads in tables.items():
            columns = self._ensure_table(con, name)
            first = self._next_id.get(name)
            if first is None:
                first = int(run(con, f"SELECT coalesce(max(request_id), -1) + 1 FROM {quote(name)}")[0][0])
            table = self._batch(reads, first)
            self._next_id[name] = first + len(reads)
            if table is None:
                continue
            con.register("_fl_log_batch", table)
            try:
                self._ensure_columns(con, name, columns)
                listed = ", ".join(quote(c) for c in table.column_names)
                run(con, f"INSERT INTO {quote(name)} ({listed}) SELECT {listed} FROM _fl_log_batch")
            finally:
                con.unregister("_fl_log_batch")
            self._prune(con, name, reads[0][0].retention_us)

    def _batch(self, reads: list[tuple[LogTarget, _Captured]], first: int) -> pa.Table | None:
        """One table's rows: runs of reads with the same target become tables of their own
        (request ids in the order served), joined with their columns' union. A read whose
        values cannot be converted is left out (and counted as dropped), not the batch."""
        parts: list[pa.Table] = []
        start = 0
        while start < len(reads):
            target = reads[start][0]
            end = start
            while end < len(reads) and reads[end][0] is target:
                end += 1
            recs = [rec for _, rec in reads[start:end]]
            ids = list(range(first + start, first + end))
            try:
                parts.append(_log_rows(target, recs, ids))
            except (pa.ArrowException, TypeError, ValueError, OverflowError, KeyError):
                for rec, one in zip(recs, ids, strict=True):
                    try:
                        parts.append(_log_rows(target, [rec], [one]))
                    except (pa.ArrowException, TypeError, ValueError, OverflowError, KeyError) as exc:
                        self.stats.count_dropped(_rows(rec))
                        log.error("a read could not be written to the serving log %s: %s", target.table, exc)
            start = end
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts, promote_options="default")

    def _ensure_table(self, con: duckdb.DuckDBPyConnection, name: str) -> dict[str, str]:
        columns = self._columns.get(name)
        if columns is None:
            found = run(con, "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ?", [name])
            columns = {str(c): str(t) for c, t in found}
            if not columns:
                run(con, f"CREATE TABLE {quote(name)} (request_id BIGINT NOT NULL, entity_row INTEGER NOT NULL, "
                    "request_time TIMESTAMP NOT NULL, served_at TIMESTAMP NOT NULL, ingest_position BIGINT NOT NULL, "
                    "versions VARCHAR NOT NULL)")
                columns = {"request_id": "BIGINT", "entity_row": "INTEGER", "request_time": "TIMESTAMP",
                           "served_at": "TIMESTAMP", "ingest_position": "BIGINT", "versions": "VARCHAR"}
            self._columns[name] = columns
        return columns

    def _ensure_columns(self, con: duckdb.DuckDBPyConnection, name: str, columns: dict[str, str]) -> None:
        """Give the table every column of the registered batch, typed as the batch is; a
        column whose type changed (a feature redefined) keeps its rows under ``NAME~N``."""
        described = run(con, "DESCRIBE SELECT * FROM _fl_log_batch")
        for column, kind, *_ in described:
            column, kind = str(column), str(kind)
            had = columns.get(column)
            if had == kind:
                continue
            if had is not None:  # a feature redefined with another dtype: its old rows move aside
                n = 1
                while f"{column}~{n}" in columns:
                    n += 1
                moved = f"{column}~{n}"
                run(con, f"ALTER TABLE {quote(name)} RENAME COLUMN {quote(column)} TO {quote(moved)}")
                columns[moved] = columns.pop(column)
                status = columns.pop(column + STATUS, None)
                if status is not None:  # and their statuses with them: they were not this feature's
                    run(con, f"ALTER TABLE {quote(name)} RENAME COLUMN {quote(column + STATUS)} "
                        f"TO {quote(moved + STATUS)}")
                    columns[moved + STATUS] = status
                    run(con, f"ALTER TABLE {quote(name)} ADD COLUMN {quote(column + STATUS)} VARCHAR")
                    columns[column + STATUS] = status
            run(con, f"ALTER TABLE {quote(name)} ADD COLUMN {quote(column)} {kind}")
            columns[column] = kind

    def _prune(self, con: duckdb.DuckDBPyConnection, table: str, retention_us: int) -> None:
        """Delete the rows older than the retention, at most every RETENTION_EVERY seconds."""
        now = time.monotonic()
        if now - self._pruned.get(table, -RETENTION_EVERY) < RETENTION_EVERY:
            return
        self._pruned[table] = now
        oldest_us = time.time_ns() // 1000 - retention_us
        run(con, f"DELETE FROM {quote(table)} WHERE served_at < make_timestamp(?)", [oldest_us])

    # -- the end ----------------------------------------------------------------------

    def close(self) -> None:
        """Stop the writer and write what is queued (errors are logged, not raised)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=30)
        try:
            self.flush()
        except Exception as exc:  # noqa: BLE001 - closing must release the file whatever the log's fate (logged)
            log.error("the serving log's last rows could not be written: %s", exc)

    @property
    def pending(self) -> int:
        """Reads queued, not yet written."""
        return len(self._pending)


def _rows(rec: _Captured) -> int:
    """How many entities a read served."""
    first = next(iter(rec.keys.values()), None)
    if first is None:
        first = next(iter(rec.values.values()), [])
    return len(first)


def _log_rows(target: LogTarget, recs: list[_Captured], ids: list[int]) -> pa.Table:
    """The log rows of ``recs`` for ``target``: one per entity of each read."""
    counts = np.fromiter((_rows(r) for r in recs), dtype=np.int64, count=len(recs))
    total = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    types = recs[0].observer.types

    def each(values: Iterable[Any]) -> np.ndarray:
        return np.repeat(np.fromiter(values, dtype=np.int64, count=len(recs)), counts)

    columns: dict[str, pa.Array] = {
        "request_id": pa.array(each(ids)),
        "entity_row": pa.array((np.arange(total, dtype=np.int64) - starts).astype(np.int32)),
        "request_time": pa.array(each(r.now_us for r in recs)).cast(pa.timestamp("us")),
        "served_at": pa.array(each(r.served_us for r in recs)).cast(pa.timestamp("us")),
        "ingest_position": pa.array(each(r.position for r in recs)),
        "versions": pa.array([r.observer.versions for r in recs]).take(
            pa.array(np.repeat(np.arange(len(recs)), counts))
        ),
    }
    for key in target.keys:
        columns[KEY + key] = _typed(chain.from_iterable(_column(r.keys, key, r) for r in recs), types.get(key))
    for field, kind in target.request_fields:
        columns[REQUEST + field] = _typed(
            chain.from_iterable(_column(r.request_data, field, r) for r in recs), kind
        )
    for out, column in zip(target.outputs, target.columns, strict=True):
        columns[column] = _typed(chain.from_iterable(r.values[out] for r in recs), types[out])
        columns[column + STATUS] = pa.array(chain.from_iterable(r.statuses[out] for r in recs), type=pa.string())
    for view in target.timed_views:
        times = chain.from_iterable(r.times.get(view) or [None] * _rows(r) for r in recs)
        columns[view + EVENT_TIME] = pa.array(times, type=pa.int64()).cast(pa.timestamp("us"))
    lengths = {len(array) for array in columns.values()}
    if lengths != {total}:
        raise ValueError(f"the served columns have {sorted(lengths)} values for {total} entities")
    return pa.table(columns)


def _column(data: Mapping[str, Sequence[Any]] | None, name: str, rec: _Captured) -> Sequence[Any]:
    """Column ``name`` of a read's keys or request data, or nulls if it has none."""
    if data is None or name not in data:
        return [None] * _rows(rec)
    return data[name]


def _typed(values: Iterable[Any], kind: pa.DataType | None) -> pa.Array:
    """``values`` as an Arrow array of ``kind``; a value that does not fit it (a key that
    was looked up but matched nothing, of another type) is logged as null."""
    items = list(values)
    try:
        return pa.array(items, type=kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        fitted = []
        for value in items:
            try:
                pa.array([value], type=kind)
                fitted.append(value)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
                fitted.append(None)
        return pa.array(fitted, type=kind)
