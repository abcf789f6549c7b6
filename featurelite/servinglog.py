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

The hot path draws the sample and appends what was served to its logs' buffers, column by
column (:meth:`ServingLog.capture`: plain values into a few long lists, nothing a garbage
collection has to walk); a writer thread turns the buffers into Arrow tables and inserts
them, every :data:`FLUSH_SECONDS` or sooner when :data:`FLUSH_ROWS` wait, all tables of one
flush in one transaction: a crash loses at most the reads not yet flushed, and never part
of one read. The same thread measures the ages of the values served for
:class:`~featurelite.freshness.ServingStats`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
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
    "FLUSH_ROWS", "FLUSH_SECONDS", "AgedView", "LogTarget", "Observer", "ServingLog", "log_table", "observer_for",
]

log = logging.getLogger("featurelite.servinglog")

#: The writer flushes at least this often (seconds)...
FLUSH_SECONDS = 1.0
#: ... and as soon as this many rows wait.
FLUSH_ROWS = 8192
#: Rows waiting at most; beyond, new ones are dropped (and counted) until the writer catches up.
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
    #: The target whose log rows carry these ages (its buffer's event times), or None when
    #: the read's times are kept for the ages alone (a view with an SLO and no log).
    source: LogTarget | None


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
    #: The aged views without a log to read their ages from.
    direct: tuple[AgedView, ...]


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
    # A view's ages come from the log that samples it most (one, so none is counted twice).
    sources: dict[str, LogTarget] = {}
    for target in targets:
        for view in target.timed_views:
            if view not in sources or target.rate > sources[view].rate:
                sources[view] = target
    rates = {view: target.rate for view, target in sources.items()}
    for view in by_view:
        definition = views.get(view)
        if definition is not None and definition.freshness is not None and view in stored and view not in rates:
            rates[view] = AGE_SAMPLE
    aged: list[AgedView] = []
    for view, rate in rates.items():
        plain = tuple(o for o in by_view[view] if plan.sources[o][1] in views[view].schema)
        if plain:
            aged.append(AgedView(view, views[view].freshness, rate, plain, tuple(layouts[view].key_names),
                                 sources.get(view)))
    if not targets and not aged:
        return None
    every = [t.rate for t in targets] + [a.rate for a in aged]
    return Observer(tuple(targets), tuple(aged), max(every), min(every) >= 1.0, plan.types,
                    json.dumps(dict(plan.pins), sort_keys=True), tuple(a for a in aged if a.source is None))


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


class _Buffer:
    """One log target's rows (one per entity), column by column, appended to as reads are
    captured: plain values in a few long lists, so a queued read costs the garbage
    collector nothing (per-read containers kept alive for a second would make every
    collection walk them)."""

    def __init__(self, target: LogTarget, observer: Observer) -> None:
        self.target, self.observer = target, observer
        self.seq: list[int] = []  # the read's number in its table, for every entity row
        self.entity_row: list[int] = []
        self.request_time: list[int] = []
        self.served_at: list[int] = []
        self.position: list[int] = []
        self.keys: list[tuple[str, list[Any]]] = [(key, []) for key in target.keys]
        self.fields: list[tuple[str, list[Any]]] = [(field, []) for field, _ in target.request_fields]
        self.outputs: list[tuple[str, list[Any], list[str]]] = [(out, [], []) for out in target.outputs]
        self.times: list[tuple[str, list[int | None]]] = [(view, []) for view in target.timed_views]

    def add(
        self, seq: int, n: int, now_us: int, served_us: int, position: int, keys: Mapping[str, list[Any]],
        values: Mapping[str, list[Any]], statuses: Mapping[str, list[str]],
        request_data: Mapping[str, Sequence[Any]] | None, times: dict[str, list[int | None]],
    ) -> None:
        if n == 1:
            self.seq.append(seq)
            self.entity_row.append(0)
            self.request_time.append(now_us)
            self.served_at.append(served_us)
            self.position.append(position)
        else:
            self.seq.extend([seq] * n)
            self.entity_row.extend(range(n))
            self.request_time.extend([now_us] * n)
            self.served_at.extend([served_us] * n)
            self.position.extend([position] * n)
        for key, column in self.keys:
            column.extend(keys.get(key) or [None] * n)
        for field, column in self.fields:
            given = None if request_data is None else request_data.get(field)
            column.extend(given if given is not None and len(given) == n else [None] * n)
        for out, column, status in self.outputs:
            column.extend(values[out])
            status.extend(statuses[out])
        for view, column in self.times:
            column.extend(times.get(view) or [None] * n)

    def __len__(self) -> int:
        return len(self.seq)

    def ages(self, aged: AgedView, into: _Ages) -> None:
        """Add the event times, read times and statuses of ``aged``'s view to ``into``."""
        into.times.extend(next(column for view, column in self.times if view == aged.view))
        into.now.extend(self.request_time)
        into.status.extend(next(status for out, _, status in self.outputs if out == aged.outputs[0]))

    def table(self) -> pa.Table:
        """The buffered rows (``request_id``: the reads' numbers, renumbered by the writer)."""
        target, types = self.target, self.observer.types
        total = len(self.seq)
        columns: dict[str, pa.Array] = {
            "request_id": pa.array(np.asarray(self.seq, dtype=np.int64)),
            "entity_row": pa.array(np.asarray(self.entity_row, dtype=np.int32)),
            "request_time": pa.array(np.asarray(self.request_time, dtype=np.int64)).cast(pa.timestamp("us")),
            "served_at": pa.array(np.asarray(self.served_at, dtype=np.int64)).cast(pa.timestamp("us")),
            "ingest_position": pa.array(np.asarray(self.position, dtype=np.int64)),
            "versions": pa.array([self.observer.versions], pa.string()).take(pa.array(np.zeros(total, np.int64))),
        }
        for key, values in self.keys:
            columns[KEY + key] = _typed(values, types.get(key))
        for (field, values), (_, kind) in zip(self.fields, target.request_fields, strict=True):
            columns[REQUEST + field] = _typed(values, kind)
        for (out, values, statuses), column in zip(self.outputs, target.columns, strict=True):
            columns[column] = _typed(values, types[out])
            columns[column + STATUS] = pa.array(statuses, type=pa.string())
        for view, values in self.times:
            columns[view + EVENT_TIME] = pa.array(values, type=pa.int64()).cast(pa.timestamp("us"))
        lengths = {len(array) for array in columns.values()}
        if lengths != {total}:
            raise ValueError(f"the served columns have {sorted(lengths)} values for {total} entities")
        return pa.table(columns)


class _Ages:
    """A view's served values awaiting their age: event time, read time, status."""

    def __init__(self, slo: timedelta | None) -> None:
        self.slo = slo
        self.times: list[int | None] = []
        self.now: list[int] = []
        self.status: list[str] = []


class ServingLog:
    """The sampled reads not yet written, and the thread that writes them (started on the
    first read)."""

    def __init__(self, write: Writer, stats: ServingStats) -> None:
        self._write = write
        self.stats = stats
        #: Guards the buffers: a read's columns are appended together.
        self._lock = threading.Lock()
        self._buffers: dict[int, _Buffer] = {}
        self._ages: dict[str, _Ages] = {}
        self._rows = 0
        #: Reads captured so far: a read's number orders it in every log it feeds (request
        #: ids are numbered densely per table from it as the rows are written).
        self._reads = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        #: Per log table: its columns and DuckDB types, its first request id in this process,
        #: and its last retention pass.
        self._columns: dict[str, dict[str, str]] = {}
        self._base: dict[str, int] = {}
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
        """Append what one sampled read served to its logs' buffers (``times``: per view,
        the event time of each entity's values; ``position``: the ingest sequence the read
        could see). Values are copied as they are appended: what the caller does with the
        response afterwards does not change what was logged."""
        n = len(response)
        if self._rows >= MAX_PENDING:
            self.stats.count_dropped(n)
            return
        served_us = time.time_ns() // 1000
        keys, values, statuses = response.keys, response.values, response.statuses
        with self._lock:
            seq = self._reads
            self._reads = seq + 1
            for target in observer.targets:
                if draw >= target.rate or not n:
                    continue
                buffer = self._buffers.get(id(target))
                if buffer is None:
                    buffer = self._buffers[id(target)] = _Buffer(target, observer)
                buffer.add(seq, n, now_us, served_us, position, keys, values, statuses, request_data, times)
                self._rows += n
            for aged in observer.direct:  # (the others' ages are read from their log rows)
                served = times.get(aged.view)
                if draw >= aged.rate or not served:
                    continue
                ages = self._ages.get(aged.view)
                if ages is None:
                    ages = self._ages[aged.view] = _Ages(aged.slo)
                ages.times.extend(served)
                ages.now.extend([now_us] * len(served))
                ages.status.extend(response.statuses[aged.outputs[0]])
        if self._thread is None:
            self._start()
        elif self._rows >= FLUSH_ROWS:
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
        """Write every buffered read now; the number of log rows written. A failure loses
        the batch (counted in ``stats.dropped``) and raises."""
        with self._flush_lock:
            with self._lock:
                buffers, self._buffers = self._buffers, {}
                ages, self._ages = self._ages, {}
                rows, self._rows = self._rows, 0
            for buffer in buffers.values():
                for aged in buffer.observer.aged:
                    if aged.source is buffer.target:
                        waiting = ages.get(aged.view)
                        if waiting is None:
                            waiting = ages[aged.view] = _Ages(aged.slo)
                        buffer.ages(aged, waiting)
            for view, waiting in ages.items():
                self._observe_ages(view, waiting)
            if not buffers:
                return 0
            tables: dict[str, list[_Buffer]] = {}
            for buffer in buffers.values():
                tables.setdefault(buffer.target.table, []).append(buffer)
            try:
                self._write(lambda con: self._insert(con, tables))
            except BaseException:
                self.stats.count_dropped(rows)
                # What a failed write cached may be wrong: read the tables again next time.
                self._columns.clear()
                self._base.clear()
                raise
            for group in tables.values():
                target = group[0].target
                self.stats.count_logged(f"{target.kind}:{target.name}", sum(len(b) for b in group))
            return rows

    def flush_quietly(self) -> None:
        """:meth:`flush`, a failure logged rather than raised (for the reports that read
        what the flush measures: the ages are taken before the write)."""
        try:
            self.flush()
        except Exception as exc:  # noqa: BLE001 - a report must not fail because the log could not be written
            log.error("the serving log could not be written: %s", exc)

    def _observe_ages(self, view: str, waiting: _Ages) -> None:
        """Ages of the values served that had one: an entity with a row (event time known)
        at or before the read time, whose value was served (present or null)."""
        times = np.array(waiting.times, dtype=np.float64)  # None -> NaN
        now = np.asarray(waiting.now, dtype=np.float64)
        served = np.isin(np.asarray(waiting.status, dtype=object), ("PRESENT", "NULL_VALUE"))
        keep = served & ~np.isnan(times) & (times <= now)
        if keep.any():
            self.stats.observe_ages(view, (now[keep] - times[keep]) / 1e6, waiting.slo)

    def _insert(self, con: duckdb.DuckDBPyConnection, tables: dict[str, list[_Buffer]]) -> None:
        for name, group in tables.items():
            columns = self._ensure_table(con, name)
            first = self._base.get(name)
            if first is None:  # request ids go on from the table's
                first = int(run(con, f"SELECT coalesce(max(request_id), -1) + 1 FROM {quote(name)}")[0][0])
            table = self._batch(group)
            if table is None:
                continue
            # The reads' numbers (shared by every log) become this table's request ids:
            # dense, in the order the reads were served.
            reads, ids = np.unique(table.column("request_id").to_numpy(), return_inverse=True)
            table = table.set_column(0, "request_id", pa.array(first + ids.astype(np.int64)))
            self._base[name] = first + len(reads)
            con.register("_fl_log_batch", table)
            try:
                self._ensure_columns(con, name, columns)
                listed = ", ".join(quote(c) for c in table.column_names)
                run(con, f"INSERT INTO {quote(name)} ({listed}) SELECT {listed} FROM _fl_log_batch")
            finally:
                con.unregister("_fl_log_batch")
            self._prune(con, name, group[0].target.retention_us)

    def _batch(self, group: list[_Buffer]) -> pa.Table | None:
        """One table's rows from its buffers (one per plan that fed it), joined with their
        columns' union in the order the reads were served. A buffer whose values cannot be
        converted is left out (its rows counted as dropped), not the batch."""
        parts: list[pa.Table] = []
        for buffer in group:
            try:
                parts.append(buffer.table())
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
                self.stats.count_dropped(len(buffer))
                log.error("reads could not be written to the serving log %s: %s", buffer.target.table, exc)
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0]
        joined = pa.concat_tables(parts, promote_options="default")
        return joined.sort_by([("request_id", "ascending"), ("entity_row", "ascending")])

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
        """Log rows buffered, not yet written."""
        return self._rows


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
