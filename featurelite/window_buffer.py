"""The online side of windowed aggregates: a view's recent events in memory, so a read
computes each aggregate exactly as of the request time, with no SQL and no write when an
event slides out of a window.

Events are held column by column in insertion order (growing arrays), chained per entity
key (``prev``: the same key's previous event), from the load horizon on: events older than
the longest window before the time the buffer was loaded are left in history. A read
gathers the key's events, puts them in the winner order and runs the same compiled engine
the training-set path runs (:func:`featurelite.windows.aggregate`). A read time whose
windows reach back past the horizon is answered from history instead (by the caller).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import duckdb
import numba
import numpy as np
import pyarrow as pa

from .arrays import to_numpy
from .db import fetch_arrow, quote
from .keyindex import IntKeyIndex, KeyIndex, arrow_keys, key_index_for
from .layout import ViewLayout
from .rules import NO_CREATED_US, SEQ
from .types import from_micros
from .window_history import engine_values
from .windows import FUNCTIONS, KIND_FLOAT, KIND_INT, KIND_NONE, PICKS, run_many

if TYPE_CHECKING:
    from .definitions import Aggregation

__all__ = ["EXTRA_RETENTION_US", "WindowBuffer"]

#: How much older than the longest window an event may be and still be loaded (0: the
#: buffer holds exactly what the longest window can reach). Tests raise it to hold all.
EXTRA_RETENTION_US = 0

_NUMERIC = ("int32", "int64", "float32", "float64")
#: How a read computes a list of aggregations: per column (column, function codes,
#: windows, positions of those aggregations in the list).
_ReadPlan = list[tuple[str, np.ndarray, np.ndarray, tuple[int, ...]]]
#: The per-event int64 arrays of a buffer.
_EVENT_ARRAYS = ("prev", "ts", "created", "seq", "slot")
#: A buffer is not compacted below this many events.
_COMPACT_MIN = 1 << 16


@numba.njit(cache=True)
def _chain(slots: np.ndarray, first: int, head: np.ndarray, prev: np.ndarray) -> None:  # pragma: no cover - compiled
    """Link events ``first, first + 1, ...`` (of key slots ``slots``) into their keys' chains."""
    for j in range(len(slots)):
        i = first + j
        prev[i] = head[slots[j]]
        head[slots[j]] = i


@numba.njit(cache=True)
def _gather(
    slots: np.ndarray, head: np.ndarray, prev: np.ndarray, ts: np.ndarray, created: np.ndarray, seq: np.ndarray,
    oldest: int, newest: int,
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """The events of each key slot with ``oldest < ts <= newest``, each key's in the winner
    order (event time, created time, ingest order): (positions, group starts)."""
    count = 0
    for g in range(len(slots)):
        i = head[slots[g]] if slots[g] >= 0 else -1
        while i >= 0:
            if oldest < ts[i] <= newest:
                count += 1
            i = prev[i]
    out = np.empty(count, dtype=np.int64)
    starts = np.zeros(len(slots) + 1, dtype=np.int64)
    k = 0
    for g in range(len(slots)):
        begin = k
        i = head[slots[g]] if slots[g] >= 0 else -1
        while i >= 0:
            if oldest < ts[i] <= newest:
                # insertion sort by (ts, created, seq): a key's window holds few events
                j = k
                while j > begin and (
                    ts[out[j - 1]] > ts[i]
                    or (ts[out[j - 1]] == ts[i] and (created[out[j - 1]] > created[i]
                        or (created[out[j - 1]] == created[i] and seq[out[j - 1]] > seq[i])))
                ):
                    out[j] = out[j - 1]
                    j -= 1
                out[j] = i
                k += 1
            i = prev[i]
        starts[g + 1] = k
    return out, starts


class WindowBuffer:
    """One view's recent events, for its aggregations' online reads."""

    def __init__(self, layout: ViewLayout, horizon_us: int) -> None:
        self.layout = layout
        #: Reads and appends take it (reads do not take the store's lock).
        self.lock = threading.Lock()
        self.aggregations: tuple[Aggregation, ...] = tuple(layout.view.aggregations)
        self.longest_us = max(a.window_us for a in self.aggregations)
        self._plans: dict[tuple[Aggregation, ...], _ReadPlan] = {}
        self._held: dict[tuple[Aggregation, ...], bool] = {}
        #: Events at or before this time were not loaded: reads that reach back past it go to history.
        self.horizon_us = horizon_us
        self.columns = sorted({a.column for a in self.aggregations})
        self.keys: KeyIndex = key_index_for([d for _, d in layout.keys])
        self.int_keys = isinstance(self.keys, IntKeyIndex)
        self.size = 0
        self.slots = 0
        self.head = np.full(16, -1, dtype=np.int64)
        self.prev = np.zeros(0, dtype=np.int64)
        self.ts = np.zeros(0, dtype=np.int64)
        self.created = np.zeros(0, dtype=np.int64)
        self.seq = np.zeros(0, dtype=np.int64)
        #: each event's key slot (to rebuild the chains when old events are dropped)
        self.slot = np.zeros(0, dtype=np.int64)
        #: the latest event time held, and the size at which old events are next dropped
        self.newest_us: int | None = None
        self._compact_at = _COMPACT_MIN
        #: per aggregated column: (engine values or None, validity, the values as Python objects for picks)
        self.values: dict[str, np.ndarray | None] = {
            c: None if layout.view.schema[c] not in _NUMERIC
            else np.zeros(0, dtype=np.float64 if layout.view.schema[c].startswith("float") else np.int64)
            for c in self.columns
        }
        self.valid: dict[str, np.ndarray] = {c: np.zeros(0, dtype=np.bool_) for c in self.columns}
        #: Python values of the columns the engine cannot hold (not numeric), for ``last``.
        self.objects: dict[str, np.ndarray] = {
            c: np.zeros(0, dtype=object) for c in self.columns if layout.view.schema[c] not in _NUMERIC
        }

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection, layout: ViewLayout) -> WindowBuffer:
        """The view's events a read from now on can need, in ingest order: those after the
        longest window before the earlier of the clock and the latest event (so a store of
        past data still serves reads at its own times from memory)."""
        latest = fetch_arrow(con, f"SELECT epoch_us(max({quote(layout.ts)})) AS t FROM {layout.history_table}")
        newest = latest.column(0)[0].as_py()
        now_us = time.time_ns() // 1000
        start = now_us if newest is None else min(now_us, int(newest))
        buffer = cls(layout, start - max(a.window_us for a in layout.view.aggregations) - EXTRA_RETENTION_US)
        wanted = [*layout.key_names, layout.ts, *([layout.created] if layout.created else []), SEQ, *buffer.columns]
        columns = ", ".join(dict.fromkeys(quote(c) for c in wanted))
        table = fetch_arrow(
            con, f"SELECT {columns} FROM {layout.history_table} WHERE epoch_us({quote(layout.ts)}) > $horizon "
            f"ORDER BY {SEQ}", params={"horizon": buffer.horizon_us},
        )
        buffer.append(table)
        return buffer

    def _grow(self, needed: int) -> None:
        capacity = len(self.ts)
        if needed <= capacity:
            return
        capacity = max(needed, capacity * 2, 1024)
        for name in _EVENT_ARRAYS:
            old = getattr(self, name)
            grown = np.zeros(capacity, dtype=np.int64)
            grown[: self.size] = old[: self.size]
            setattr(self, name, grown)
        for c in self.columns:
            valid = np.zeros(capacity, dtype=np.bool_)
            valid[: self.size] = self.valid[c][: self.size]
            self.valid[c] = valid
            if c in self.objects:
                objects = np.empty(capacity, dtype=object)
                objects[: self.size] = self.objects[c][: self.size]
                self.objects[c] = objects
            old_values = self.values[c]
            if old_values is not None:
                grown_values = np.zeros(capacity, dtype=old_values.dtype)
                grown_values[: self.size] = old_values[: self.size]
                self.values[c] = grown_values

    def append(self, table: pa.Table) -> None:
        """Add events (history rows: keys, event time, created time, sequence, the
        aggregated columns) in ingest order."""
        with self.lock:
            self._append(table)

    def _append(self, table: pa.Table) -> None:
        count = table.num_rows
        if count == 0:
            return
        keys = arrow_keys(table, self.layout.key_names, self.int_keys)
        distinct = np.unique(keys) if isinstance(keys, np.ndarray) else list(dict.fromkeys(keys))
        _, added = self.keys.add_missing(distinct, self.slots)
        self.slots += added
        if self.slots > len(self.head):
            head = np.full(max(self.slots, len(self.head) * 2), -1, dtype=np.int64)
            head[: len(self.head)] = self.head
            self.head = head
        if isinstance(self.keys, IntKeyIndex) and isinstance(keys, np.ndarray):
            slots = self.keys.lookup(keys)
        else:
            slots = self.keys.get_many(list(keys))
        first = self.size
        self._grow(first + count)
        end = first + count
        self.ts[first:end] = to_numpy(table.column(self.layout.ts).cast(pa.int64()))
        if self.layout.created:
            created = table.column(self.layout.created).cast(pa.int64()).fill_null(NO_CREATED_US)
            self.created[first:end] = to_numpy(created)
        self.seq[first:end] = to_numpy(table.column(SEQ)).astype(np.int64, copy=False)
        for c in self.columns:
            dtype = self.layout.view.schema[c]
            values, valid = engine_values(table.column(c), dtype)
            target = self.values[c]
            if values is not None and target is not None:
                target[first:end] = values
            self.valid[c][first:end] = valid
            if c in self.objects:
                self.objects[c][first:end] = _python_values(table.column(c), dtype)
        self.slot[first:end] = slots
        _chain(np.asarray(slots, dtype=np.int64), first, self.head, self.prev)
        self.size = end
        newest = int(self.ts[first:end].max())
        self.newest_us = newest if self.newest_us is None else max(self.newest_us, newest)
        if self.size >= self._compact_at:
            self._compact()

    def _compact(self) -> None:
        """Drop the events no window can reach any more (older than the longest window
        before the earlier of the clock and the latest event), so a long-running server's
        buffer stays bounded by what its windows hold; then wait until it doubles again."""
        assert self.newest_us is not None
        horizon = min(time.time_ns() // 1000, self.newest_us) - self.longest_us - EXTRA_RETENTION_US
        n = self.size
        keep = self.ts[:n] > max(horizon, self.horizon_us)
        kept = int(keep.sum())
        if kept < n:
            for name in _EVENT_ARRAYS:
                setattr(self, name, getattr(self, name)[:n][keep].copy())
            for c in self.columns:
                self.valid[c] = self.valid[c][:n][keep].copy()
                values = self.values[c]
                self.values[c] = None if values is None else values[:n][keep].copy()
                if c in self.objects:
                    self.objects[c] = self.objects[c][:n][keep].copy()
            self.head[:] = -1
            _chain(self.slot, 0, self.head, self.prev)
            self.size = kept
            self.horizon_us = max(horizon, self.horizon_us)
        self._compact_at = max(2 * kept, _COMPACT_MIN)

    def _plan(self, aggregations: tuple[Aggregation, ...]) -> _ReadPlan:
        """Per aggregated column: the engine's (function codes, windows) and the positions of
        those aggregations in ``aggregations``; worked out once per list asked."""
        by_column: dict[str, list[int]] = {}
        for place, agg in enumerate(aggregations):
            by_column.setdefault(agg.column, []).append(place)
        planned = [
            (
                column,
                np.array([FUNCTIONS.index(aggregations[p].function) for p in places], dtype=np.int64),
                np.array([aggregations[p].window_us for p in places], dtype=np.int64),
                tuple(places),
            )
            for column, places in by_column.items()
        ]
        if len(self._plans) >= 256:
            self._plans.clear()
        self._plans[aggregations] = planned
        return planned

    def holds(self, aggregations: tuple[Aggregation, ...]) -> bool:
        """Whether the buffer has the events ``aggregations`` need: their columns, over
        windows no longer than the longest it keeps (a pinned older version of the view
        may ask for others; those reads go to history)."""
        found = self._held.get(aggregations)
        if found is None:
            found = all(a.column in self.values and a.window_us <= self.longest_us for a in aggregations)
            if len(self._held) >= 256:
                self._held.clear()
            self._held[aggregations] = found
        return found

    def covers(self, now_us: int) -> bool:
        """Whether every window at ``now_us`` lies within what the buffer holds."""
        return now_us - self.longest_us >= self.horizon_us

    def read(
        self, keys: Sequence[Any], aggregations: Sequence[Aggregation], now_us: int
    ) -> tuple[list[list[Any]], list[list[bool]], list[list[int]]]:
        """Per aggregation: values at ``now_us`` for ``keys`` (Python objects), whether each
        is present, and how many events its window held."""
        with self.lock:
            if len(keys) == 1:  # the common single-entity read: no vectorised lookup
                row = self.keys.get(keys[0])
                slots = np.array([-1 if row is None else row], dtype=np.int64)
            else:
                slots = np.asarray(self.keys.get_many(list(keys)), dtype=np.int64)
            n = self.size
            positions, starts = _gather(
                slots, self.head, self.prev[:n], self.ts[:n], self.created[:n], self.seq[:n],
                now_us - self.longest_us, now_us,
            )
            ts = self.ts[positions]
            plan = self._plans.get(tuple(aggregations)) or self._plan(tuple(aggregations))
            gathered = {}
            for column, _, _, _ in plan:
                values = self.values[column]
                objects = self.objects.get(column)
                gathered[column] = (
                    None if values is None else values[positions], self.valid[column][positions],
                    None if objects is None else objects[positions],
                )
        query_groups = np.arange(len(slots), dtype=np.int64)
        query_ts = np.full(len(slots), now_us, dtype=np.int64)
        values_out: list[list[Any]] = [[] for _ in aggregations]
        present_out: list[list[bool]] = [[] for _ in aggregations]
        events_out: list[list[int]] = [[] for _ in aggregations]
        for column, codes, windows, places in plan:  # one engine call per column
            values, valid, objects = gathered[column]
            kind = KIND_NONE if values is None else (KIND_FLOAT if values.dtype == np.float64 else KIND_INT)
            results = run_many(
                codes, windows, starts, ts, kind, values if kind == KIND_FLOAT else None,
                values if kind == KIND_INT else None, valid, query_groups, query_ts,
            )
            for place, result in zip(places, results, strict=True):
                agg = aggregations[place]
                present = result.valid.tolist()
                if agg.function in PICKS:
                    source = values if values is not None else objects
                    assert source is not None  # a non-numeric column keeps its Python values
                    picked = source.tolist()
                    chosen = [picked[i] if ok else None for i, ok in zip(result.index.tolist(), present, strict=True)]
                elif agg.function == "count" or (kind == KIND_INT and agg.function == "sum"):
                    chosen = [v if ok else None for v, ok in zip(result.integer.tolist(), present, strict=True)]
                else:
                    chosen = [v if ok else None for v, ok in zip(result.number.tolist(), present, strict=True)]
                values_out[place], present_out[place] = chosen, present
                events_out[place] = result.events.tolist()
        return values_out, present_out, events_out

    def nbytes(self) -> int:
        """Memory held by the event arrays (strings counted by reference only)."""
        total = self.head.nbytes + self.prev.nbytes + self.ts.nbytes + self.created.nbytes + self.seq.nbytes
        for c in self.columns:
            values = self.values[c]
            objects = self.objects.get(c)
            total += self.valid[c].nbytes + (0 if objects is None else objects.nbytes)
            total += 0 if values is None else values.nbytes
        return total + self.keys.nbytes()


def _python_values(column: pa.ChunkedArray, dtype: str) -> list[Any]:
    """A column's values as online reads return them (timestamps as UTC datetimes)."""
    if dtype == "timestamp":
        return [None if v is None else from_micros(v) for v in column.cast(pa.int64()).to_pylist()]
    return list(column.to_pylist())
