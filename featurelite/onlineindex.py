"""The in-memory online index: latest values of one feature view in NumPy matrices,
keyed by entity, serving reads without SQL.

Mirrors the view's online table (see :mod:`featurelite.online`); the store applies every
committed write to it, so it never goes stale. Which row wins a merge and what a read
reports come from :mod:`featurelite.rules`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import arrays
from .keyindex import IntKeyIndex, KeyIndex, arrow_keys, key_index_for
from .layout import ViewLayout
from .rules import FUTURE, NO_CREATED_US, SEQ, VALUE_STATUS, Status, Ttl, WinnerOrder, row_verdict, row_verdicts
from .types import DType, dtype, from_micros

__all__ = ["OnlineIndex", "index_columns", "to_python"]


def index_columns(layout: ViewLayout) -> list[str]:
    """Columns the in-memory index needs: keys, features, and the winner order's terms
    (event time, created time if the view has one, ingest sequence)."""
    return [*layout.key_names, *(f for f, _ in layout.features), *layout.order.terms]


def to_python(values: pa.ChunkedArray | pa.Array, dtype: str) -> list[Any]:
    """Stored values as the Python objects online reads return (timestamps as UTC
    datetimes built the same way the index builds them)."""
    if dtype == "timestamp":
        return [None if v is None else from_micros(v) for v in values.cast(pa.int64()).to_pylist()]
    plain: list[Any] = values.to_pylist()
    return plain


def _to_numpy(values: pa.ChunkedArray, kind: DType) -> tuple[np.ndarray, np.ndarray | None]:
    """(values with nulls filled, validity mask or None when every value is valid) for one
    Arrow column."""
    if values.null_count == 0:
        return arrays.to_numpy(values), None
    valid = arrays.validity(values)
    if kind.family == "object":
        return values.to_numpy(zero_copy_only=False), valid
    if kind.family == "timestamp":
        values = values.cast(pa.int64())
    filled = pc.fill_null(values, kind.filler)
    return arrays.to_numpy(filled).astype(kind.numpy, copy=False), valid


@dataclass(frozen=True)
class _ReadPlan:
    """How to pull a list of features out of the index's matrices."""

    families: tuple[str, ...]  #: families touched
    #: per requested feature: (family, column in that family's matrix, position, is timestamp)
    items: tuple[tuple[str, int, int, bool], ...]


#: Rows converted to Python per NumPy call on a large read (see :func:`_rows_list`).
_SLICE_ROWS = 8192


def _rows_list(array: np.ndarray, rows: np.ndarray) -> list[Any]:
    """``array[rows].tolist()``, in slices for a large read: one ``tolist`` call holds the
    GIL throughout (about 200 ms for 150k rows), which would stall every other thread of a
    server; between slices the interpreter can hand the GIL over."""
    if len(rows) <= _SLICE_ROWS:
        listed: list[Any] = array[rows].tolist()
        return listed
    out: list[Any] = []
    for start in range(0, len(rows), _SLICE_ROWS):
        out += array[rows[start:start + _SLICE_ROWS]].tolist()
    return out


class OnlineIndex:
    """Latest values of one feature view, in memory, keyed by entity.

    Values live in one 2-D matrix per storage family (float64, int64, bool, timestamp as
    int64 microseconds, object for strings) with a validity matrix, so a read is a key
    lookup plus a row slice. Thread-safe: reads and writes take one lock.
    """

    def __init__(self, layout: ViewLayout) -> None:
        self.layout = layout
        self.key_names = layout.key_names
        self.features = layout.features
        self.kinds = [dtype(d) for _, d in self.features]
        #: family -> NumPy type of its matrix, and the features (by position) it holds
        self.family_types: dict[str, Any] = {}
        self.families: dict[str, list[int]] = {}
        #: feature name -> (family, column within that family's matrix)
        self.slot: dict[str, tuple[str, int]] = {}
        self.position = {f: i for i, (f, _) in enumerate(self.features)}
        for i, (feature, kind) in enumerate(zip((f for f, _ in self.features), self.kinds, strict=True)):
            cols = self.families.setdefault(kind.family, [])
            self.family_types[kind.family] = kind.numpy
            self.slot[feature] = (kind.family, len(cols))
            cols.append(i)
        self.ttl = Ttl.of(layout.view.ttl)
        self.keys: KeyIndex = key_index_for([d for _, d in layout.keys])
        self.int_keys = isinstance(self.keys, IntKeyIndex)
        self.size = 0
        self.capacity = 0
        self.mats: dict[str, np.ndarray] = {}
        self.valid = np.zeros((0, len(self.features)), dtype=np.bool_)
        #: Each row's winner-order terms (event time first; see WinnerOrder.terms).
        self.terms: list[np.ndarray] = [np.zeros(0, dtype=np.int64) for _ in layout.order.terms]
        self.lock = threading.Lock()
        self._plans: dict[tuple[str, ...], _ReadPlan] = {}

    # -- writes ---------------------------------------------------------------------

    def _grow(self, needed: int) -> None:
        if needed <= self.capacity:
            return
        capacity = max(needed, int(self.capacity * 1.25) + 16)
        for fam, cols in self.families.items():
            mat: np.ndarray = np.zeros((capacity, len(cols)), dtype=self.family_types[fam])
            if fam == "object":
                mat[:] = None
            if self.size:
                mat[: self.size] = self.mats[fam][: self.size]
            self.mats[fam] = mat
        valid = np.zeros((capacity, len(self.features)), dtype=np.bool_)
        valid[: self.size] = self.valid[: self.size]
        terms = [np.zeros(capacity, dtype=np.int64) for _ in self.terms]
        for grown, term in zip(terms, self.terms, strict=True):
            grown[: self.size] = term[: self.size]
        self.valid, self.terms, self.capacity = valid, terms, capacity

    def _convert(self, table: pa.Table) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(one value block per family, validity matrix) of rows with :func:`index_columns`."""
        count = table.num_rows
        valid = np.empty((count, len(self.features)), dtype=np.bool_)
        blocks: dict[str, np.ndarray] = {}
        for fam, cols in self.families.items():
            block = np.empty((count, len(cols)), dtype=self.family_types[fam])
            for j, i in enumerate(cols):
                values, mask = _to_numpy(table.column(self.features[i][0]), self.kinds[i])
                block[:, j] = values
                valid[:, i] = True if mask is None else mask
            blocks[fam] = block
        return blocks, valid

    def upsert(self, table: pa.Table) -> None:
        """Apply rows that won in the online table (columns: :func:`index_columns`)."""
        if table.num_rows == 0:
            return
        keys = arrow_keys(table, self.key_names, self.int_keys)
        # Convert outside the lock so readers wait only for the scatter.
        blocks, valid = self._convert(table)
        terms = self._terms(table)
        with self.lock:
            self._write(keys, None, blocks, valid, terms)

    def _write(
        self, keys: list[Any] | np.ndarray, rows: np.ndarray | None, blocks: dict[str, np.ndarray], valid: np.ndarray,
        terms: tuple[np.ndarray, ...],
    ) -> None:
        """Store rows (distinct keys; ``rows``: their current rows or -1, if already looked
        up). The caller holds the lock."""
        count = len(terms[0])
        first = self.size
        pos: np.ndarray | slice
        pos, added = self.keys.add_missing(keys, self.size, rows)
        if added:
            self._grow(self.size + added)
            self.size += added
        if added == count:
            # Every key is new, so its rows are first, first + 1, ... in order: write
            # slices, not a scatter (what loading the index at open does, batch by batch).
            pos = slice(first, first + count)
        for fam, block in blocks.items():
            self.mats[fam][pos] = block
        self.valid[pos] = valid
        for term, values in zip(self.terms, terms, strict=True):
            term[pos] = values

    def _terms(self, table: pa.Table) -> tuple[np.ndarray, ...]:
        """The winner order's terms of rows (:attr:`WinnerOrder.terms`), as int64 arrays;
        a missing created time is :data:`NO_CREATED_US`."""
        order: WinnerOrder = self.layout.order
        out = []
        for name in order.terms:
            column = table.column(name)
            if name != SEQ:
                column = column.cast(pa.int64())
            if name == order.created:
                column = pc.fill_null(column, NO_CREATED_US)
            out.append(arrays.to_numpy(column).astype(np.int64, copy=False))
        return tuple(out)

    def merge(self, table: pa.Table) -> None:
        """Apply rows (one per key, columns: :func:`index_columns`) that win against what
        the index holds under the tie-break rules; the others lose and change nothing.

        What an ingest does when it leaves the online table to be brought up to date
        later (:meth:`featurelite.Store.checkpoint`): the index alone decides the winners."""
        if table.num_rows == 0:
            return
        keys = arrow_keys(table, self.key_names, self.int_keys)
        terms = self._terms(table)
        blocks, valid = self._convert(table)  # outside the lock; losers are rare
        with self.lock:  # the decision and the write see one state (ingests are serialised anyway)
            if self.size == 0:
                self._write(keys, None, blocks, valid, terms)
                return
            rows = (
                self.keys.lookup(np.asarray(keys))
                if isinstance(self.keys, IntKeyIndex)
                else self.keys.get_many(list(keys))
            )
            known = rows >= 0
            old = np.where(known, rows, 0)
            wins = ~known | WinnerOrder.wins(terms, tuple(term[old] for term in self.terms))
            if not wins.all():
                if not wins.any():
                    return
                keys = (
                    keys[wins]
                    if isinstance(keys, np.ndarray)
                    else [k for k, w in zip(keys, wins.tolist(), strict=True) if w]
                )
                rows, valid = rows[wins], valid[wins]
                terms = tuple(term[wins] for term in terms)
                blocks = {fam: block[wins] for fam, block in blocks.items()}
            self._write(keys, rows, blocks, valid, terms)

    @classmethod
    def build(cls, layout: ViewLayout, rows: int, batches: Iterable[pa.RecordBatch]) -> OnlineIndex:
        """An index over ``rows`` online rows arriving in ``batches`` (columns:
        :func:`index_columns`). Memory beyond the finished index stays near one batch."""
        index = cls(layout)
        index._grow(rows)
        if isinstance(index.keys, IntKeyIndex):
            index.keys.reserve(rows)
        for batch in batches:
            index.upsert(pa.Table.from_batches([batch]))
        return index

    def nbytes(self) -> int:
        """Memory held by the index's arrays (exact for numeric keys and values)."""
        total = self.valid.nbytes + sum(term.nbytes for term in self.terms) + self.keys.nbytes()
        return total + sum(m.nbytes for m in self.mats.values())

    # -- reads ----------------------------------------------------------------------

    def _plan(self, features: tuple[str, ...]) -> _ReadPlan:
        plan = self._plans.get(features)
        if plan is None:
            items = tuple(
                (self.slot[f][0], self.slot[f][1], self.position[f], self.slot[f][0] == "timestamp") for f in features
            )
            plan = _ReadPlan(tuple(dict.fromkeys(item[0] for item in items)), items)
            if len(self._plans) >= 1024:
                self._plans.clear()
            self._plans[features] = plan
        return plan

    def _read_one(
        self, key: Any, plan: _ReadPlan, now_us: int, ttl: int | None, times: list[int | None] | None
    ) -> tuple[list[list[Any]], list[list[str]], list[int]]:
        """:meth:`read` for one key: the hot path of online serving, kept free of NumPy calls
        beyond two row slices."""
        with self.lock:
            row = self.keys.get(key)
            event = None if row is None else int(self.terms[0][row])
            verdict = row_verdict(event, now_us, None if ttl is None else now_us - ttl)
            if verdict is None:
                valid = self.valid[row].tolist()
                blocks = {fam: self.mats[fam][row].tolist() for fam in plan.families}
        if times is not None:
            times.append(event)
        if verdict is not None:
            shown = Status.NOT_FOUND if verdict is FUTURE else verdict  # until resolved from history
            return [[None] for _ in plan.items], [[shown] for _ in plan.items], [0] if verdict is FUTURE else []
        values: list[list[Any]] = []
        statuses: list[list[str]] = []
        for fam, col, pos, is_ts in plan.items:
            present = valid[pos]
            if present:
                v = blocks[fam][col]
                values.append([from_micros(v) if is_ts else v])
            else:
                values.append([None])
            statuses.append([VALUE_STATUS[present]])
        return values, statuses, []

    def read(
        self, keys: list[Any], features: tuple[str, ...], now_us: int, ttl_us: int | None,
        times: list[int | None] | None = None,
    ) -> tuple[list[list[Any]], list[list[str]], list[int]]:
        """Values and statuses of ``features`` for ``keys`` at time ``now_us``, for values
        at most ``ttl_us`` old (None: any age): the ttl of the definition the read plans
        with, which for a pinned version may differ from :attr:`ttl`.

        Returns (values per feature, statuses per feature, indexes of keys whose latest
        event lies after ``now_us``: the caller resolves those from history). ``times``, if
        given, is extended with each key's latest event time (None: no values), for the
        serving log and value ages.
        """
        plan = self._plan(features)
        n = len(keys)
        if n == 1:
            return self._read_one(keys[0], plan, now_us, ttl_us, times)
        with self.lock:
            found_array = self.keys.get_many(keys)
            found = found_array.tolist()
            rows = found_array[found_array >= 0]
            if len(rows) == 0:
                if times is not None:
                    times.extend([None] * n)
                return [[None] * n for _ in features], [[Status.NOT_FOUND] * n for _ in features], []
            ts = self.terms[0][rows]
            valid = _rows_list(self.valid, rows)
            blocks = {fam: _rows_list(self.mats[fam], rows) for fam in plan.families}
        if times is not None:
            events = iter(ts.tolist())
            times.extend(next(events) if r >= 0 else None for r in found)
        oldest = None if ttl_us is None else now_us - ttl_us
        # Per found key: None if it serves, else the status that replaces every value.
        verdicts = row_verdicts(ts, now_us, oldest)
        values: list[list[Any]] = []
        statuses: list[list[str]] = []
        for fam, col, pos, is_ts in plan.items:
            block = blocks[fam]
            out: list[Any] = [None] * n
            stat: list[str] = [Status.NOT_FOUND] * n
            j = 0
            for i, r in enumerate(found):
                if r < 0:
                    continue
                verdict = verdicts[j]
                if verdict is not None:
                    stat[i] = verdict
                else:
                    present = valid[j][pos]
                    if present:
                        v = block[j][col]
                        out[i] = from_micros(v) if is_ts else v
                    stat[i] = VALUE_STATUS[present]
                j += 1
            values.append(out)
            statuses.append(stat)
        future: list[int] = []
        if FUTURE in verdicts:
            hits = [i for i, r in enumerate(found) if r >= 0]
            future = [i for i, verdict in zip(hits, verdicts, strict=True) if verdict is FUTURE]
        return values, statuses, future
