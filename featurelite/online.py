"""Online latest values: one table per feature view in the file, and an in-memory index
over it that serves reads without SQL.

The table holds, per entity key, the row that wins under the tie-break rules (event time,
then created time, then ingest order). Writes go through :func:`upsert`, whose guard
never lets an older event replace a newer one. The index mirrors the table in NumPy
matrices (one per storage family) plus a key index (:mod:`featurelite.keyindex`); the
store applies every committed write to it, so it never goes stale.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import arrays
from .db import fetch_arrow, quote, run
from .keyindex import IntKeyIndex, KeyIndex, arrow_keys, key_index_for
from .layout import SEQ, ViewLayout
from .types import duckdb_type, family, from_micros

__all__ = [
    "OnlineIndex", "Status", "add_feature_columns", "create_online", "drop_online", "replace_sql", "to_python", "upsert",
]


class Status:
    """Per-value status of an online read (names as in Feast's FieldStatus)."""

    PRESENT = "PRESENT"
    NULL_VALUE = "NULL_VALUE"  #: the winning row stores null for this feature
    NOT_FOUND = "NOT_FOUND"  #: no row for this entity
    OUTSIDE_MAX_AGE = "OUTSIDE_MAX_AGE"  #: the latest value is older than the view's ttl


_FUTURE = "_future"  # internal verdict: the latest event lies after now
_NUMPY_DTYPE = {"float": np.float64, "int": np.int64, "bool": np.bool_, "timestamp": np.int64, "object": object}


def create_online(con: duckdb.DuckDBPyConnection, layout: ViewLayout) -> None:
    # No PRIMARY KEY: every write goes through upsert() or a full replace, which keep one
    # row per key, and an ART index would cost memory and time for nothing.
    run(con, f"CREATE TABLE {layout.online_table} ({layout.column_ddl()})")


def drop_online(con: duckdb.DuckDBPyConnection, layout: ViewLayout) -> None:
    run(con, f"DROP TABLE IF EXISTS {layout.online_table}")


def add_feature_columns(con: duckdb.DuckDBPyConnection, layout: ViewLayout, features: list[tuple[str, str]]) -> None:
    """Add online columns for features new to a view; existing rows get null."""
    for name, dtype in features:
        run(con, f"ALTER TABLE {layout.online_table} ADD COLUMN {quote(name)} {duckdb_type(dtype)}")


def to_python(values: pa.ChunkedArray | pa.Array, dtype: str) -> list[Any]:
    """Stored values as the Python objects online reads return (timestamps as UTC
    datetimes built the same way the index builds them)."""
    if dtype == "timestamp":
        return [None if v is None else from_micros(v) for v in values.cast(pa.int64()).to_pylist()]
    return values.to_pylist()


#: Temporary table holding the rows an ingest makes win, for the duration of its transaction.
_WON = "_fl_won"


def upsert(
    con: duckdb.DuckDBPyConnection, layout: ViewLayout, winners_sql: str, *, returning: bool,
    params: Mapping[str, Any] | None = None,
) -> pa.Table | None:
    """Bring the online table up to date with ``winners_sql`` (one row per key, with
    ``params`` bound), keeping an existing row where it wins the tie-break (inside the
    caller's transaction). With ``returning``, returns the rows that changed (what the
    in-memory index needs).

    Delete-and-insert rather than INSERT ... ON CONFLICT DO UPDATE: DuckDB's UPDATE skips
    a value equal to the old one, so 0.0 could never become -0.0.
    """
    table = layout.online_table
    columns = ", ".join(quote(c) for c in layout.stored_columns())
    run(
        con,
        f"CREATE OR REPLACE TEMP TABLE {_WON} AS SELECT w.* FROM ({winners_sql}) w "
        f"LEFT JOIN {table} o ON {layout.key_match('w', 'o')} "
        f"WHERE o.{SEQ} IS NULL OR {layout.order_key('w')} > {layout.order_key('o')}",
        params,
    )
    try:
        run(con, f"DELETE FROM {table} o USING {_WON} w WHERE {layout.key_match('o', 'w')}")
        run(con, f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {_WON}")
        if not returning:
            return None
        wanted = ", ".join(quote(c) for c in index_columns(layout))
        return fetch_arrow(con, f"SELECT {wanted} FROM {_WON}")
    finally:
        run(con, f"DROP TABLE IF EXISTS {_WON}")


def replace_sql(layout: ViewLayout, winners_sql: str) -> tuple[str, str]:
    """The two statements that replace the whole online table by ``winners_sql``: the
    DELETE, then the INSERT (which takes whatever parameters ``winners_sql`` binds)."""
    columns = ", ".join(quote(c) for c in layout.stored_columns())
    return (
        f"DELETE FROM {layout.online_table}",
        f"INSERT INTO {layout.online_table} ({columns}) SELECT {columns} FROM ({winners_sql})",
    )


def index_columns(layout: ViewLayout) -> list[str]:
    """Columns the in-memory index needs: keys, features, and the tie-break order (event
    time, created time if the view has one, ingest sequence)."""
    return [*layout.key_names, *(f for f, _ in layout.features), layout.ts, *([layout.created] if layout.created else []), SEQ]


#: A null created time sorts first, like ``-infinity`` in the SQL order key.
_NO_CREATED = np.iinfo(np.int64).min


def _to_numpy(values: pa.ChunkedArray, fam: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(values with nulls filled, validity mask or None when every value is valid) for one
    Arrow column."""
    if values.null_count == 0:
        return arrays.to_numpy(values), None
    valid = arrays.validity(values)
    if fam == "object":
        return values.to_numpy(zero_copy_only=False), valid
    if fam == "timestamp":
        values = values.cast(pa.int64())
    filled = pc.fill_null(values, False if fam == "bool" else 0)
    return arrays.to_numpy(filled).astype(_NUMPY_DTYPE[fam], copy=False), valid


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
        return array[rows].tolist()
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
        self.single_key = len(self.key_names) == 1
        self.features = layout.features
        self.families: dict[str, list[int]] = {}
        #: feature name -> (family, column within that family's matrix)
        self.slot: dict[str, tuple[str, int]] = {}
        self.position = {f: i for i, (f, _) in enumerate(self.features)}
        for i, (feature, dtype) in enumerate(self.features):
            fam = family(dtype)
            cols = self.families.setdefault(fam, [])
            self.slot[feature] = (fam, len(cols))
            cols.append(i)
        ttl = layout.view.ttl
        self.ttl_us = None if ttl is None else ttl // timedelta(microseconds=1)
        self.keys: KeyIndex = key_index_for([d for _, d in layout.keys])
        self.int_keys = isinstance(self.keys, IntKeyIndex)
        self.size = 0
        self.capacity = 0
        self.mats: dict[str, np.ndarray] = {}
        self.valid = np.zeros((0, len(self.features)), dtype=np.bool_)
        self.ts = np.zeros(0, dtype=np.int64)
        #: The rest of each row's tie-break order: ingest sequence, and created time.
        self.seq = np.zeros(0, dtype=np.int64)
        self.created: np.ndarray | None = np.zeros(0, dtype=np.int64) if layout.created else None
        self.lock = threading.Lock()
        self._plans: dict[tuple[str, ...], _ReadPlan] = {}

    # -- writes ---------------------------------------------------------------------

    def _grow(self, needed: int) -> None:
        if needed <= self.capacity:
            return
        capacity = max(needed, int(self.capacity * 1.25) + 16)
        for fam, cols in self.families.items():
            mat: np.ndarray = np.zeros((capacity, len(cols)), dtype=_NUMPY_DTYPE[fam])
            if fam == "object":
                mat[:] = None
            if self.size:
                mat[: self.size] = self.mats[fam][: self.size]
            self.mats[fam] = mat
        valid = np.zeros((capacity, len(self.features)), dtype=np.bool_)
        valid[: self.size] = self.valid[: self.size]
        ts, seq = np.zeros(capacity, dtype=np.int64), np.zeros(capacity, dtype=np.int64)
        ts[: self.size], seq[: self.size] = self.ts[: self.size], self.seq[: self.size]
        if self.created is not None:
            created = np.zeros(capacity, dtype=np.int64)
            created[: self.size] = self.created[: self.size]
            self.created = created
        self.valid, self.ts, self.seq, self.capacity = valid, ts, seq, capacity

    def _convert(self, table: pa.Table) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(one value block per family, validity matrix) of rows with :func:`index_columns`."""
        count = table.num_rows
        valid = np.empty((count, len(self.features)), dtype=np.bool_)
        blocks: dict[str, np.ndarray] = {}
        for fam, cols in self.families.items():
            block = np.empty((count, len(cols)), dtype=_NUMPY_DTYPE[fam])
            for j, i in enumerate(cols):
                values, mask = _to_numpy(table.column(self.features[i][0]), fam)
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
        ts, created, seq = self._order(table)
        with self.lock:
            self._write(keys, None, blocks, valid, ts, created, seq)

    def _write(
        self, keys: list[Any] | np.ndarray, rows: np.ndarray | None, blocks: dict[str, np.ndarray], valid: np.ndarray,
        ts: np.ndarray, created: np.ndarray | None, seq: np.ndarray,
    ) -> None:
        """Store rows (distinct keys; ``rows``: their current rows or -1, if already looked
        up). The caller holds the lock."""
        count = len(ts)
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
        self.ts[pos] = ts
        self.seq[pos] = seq
        if self.created is not None:
            self.created[pos] = created

    def _order(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """(event time, created time or None, sequence) of rows, as int64 arrays."""
        ts = arrays.to_numpy(table.column(self.layout.ts).cast(pa.int64()))
        seq = arrays.to_numpy(table.column(SEQ)).astype(np.int64, copy=False)
        created = None
        if self.layout.created:
            created = arrays.to_numpy(pc.fill_null(table.column(self.layout.created).cast(pa.int64()), _NO_CREATED))
        return ts, created, seq

    def merge(self, table: pa.Table) -> None:
        """Apply rows (one per key, columns: :func:`index_columns`) that win against what
        the index holds under the tie-break rules; the others lose and change nothing.

        What an ingest does when it leaves the online table to be brought up to date
        later (:meth:`featurelite.Store.checkpoint`): the index alone decides the winners."""
        if table.num_rows == 0:
            return
        keys = arrow_keys(table, self.key_names, self.int_keys)
        ts, created, seq = self._order(table)
        blocks, valid = self._convert(table)  # outside the lock; losers are rare
        with self.lock:  # the decision and the write see one state (ingests are serialised anyway)
            if self.size == 0:
                self._write(keys, None, blocks, valid, ts, created, seq)
                return
            rows = self.keys.lookup(np.asarray(keys)) if isinstance(self.keys, IntKeyIndex) else self.keys.get_many(list(keys))
            known = rows >= 0
            old = np.where(known, rows, 0)
            old_ts, old_seq = self.ts[old], self.seq[old]
            later = ts > old_ts
            same = ts == old_ts
            if created is not None and self.created is not None:
                old_created = self.created[old]
                later |= same & (created > old_created)
                same &= created == old_created
            wins = ~known | later | (same & (seq > old_seq))
            if not wins.all():
                if not wins.any():
                    return
                keys = keys[wins] if isinstance(keys, np.ndarray) else [k for k, w in zip(keys, wins.tolist()) if w]
                rows, ts, seq, valid = rows[wins], ts[wins], seq[wins], valid[wins]
                created = None if created is None else created[wins]
                blocks = {fam: block[wins] for fam, block in blocks.items()}
            self._write(keys, rows, blocks, valid, ts, created, seq)

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
        total = self.valid.nbytes + self.ts.nbytes + self.seq.nbytes + self.keys.nbytes()
        total += 0 if self.created is None else self.created.nbytes
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

    def _read_one(self, key: Any, plan: _ReadPlan, now_us: int) -> tuple[list[list[Any]], list[list[str]], list[int]]:
        """:meth:`read` for one key: the hot path of online serving, kept free of NumPy calls
        beyond two row slices."""
        with self.lock:
            row = self.keys.get(key)
            if row is None:
                return [[None] for _ in plan.items], [[Status.NOT_FOUND] for _ in plan.items], []
            t = int(self.ts[row])
            if t > now_us:
                return [[None] for _ in plan.items], [[Status.NOT_FOUND] for _ in plan.items], [0]
            if self.ttl_us is not None and t < now_us - self.ttl_us:
                return [[None] for _ in plan.items], [[Status.OUTSIDE_MAX_AGE] for _ in plan.items], []
            valid = self.valid[row].tolist()
            blocks = {fam: self.mats[fam][row].tolist() for fam in plan.families}
        values: list[list[Any]] = []
        statuses: list[list[str]] = []
        for fam, col, pos, is_ts in plan.items:
            if valid[pos]:
                v = blocks[fam][col]
                values.append([from_micros(v) if is_ts else v])
                statuses.append([Status.PRESENT])
            else:
                values.append([None])
                statuses.append([Status.NULL_VALUE])
        return values, statuses, []

    def read(
        self, keys: list[Any], features: tuple[str, ...], now_us: int
    ) -> tuple[list[list[Any]], list[list[str]], list[int]]:
        """Values and statuses of ``features`` for ``keys`` at time ``now_us``.

        Returns (values per feature, statuses per feature, indexes of keys whose latest
        event lies after ``now_us``: the caller resolves those from history).
        """
        plan = self._plan(features)
        n = len(keys)
        if n == 1:
            return self._read_one(keys[0], plan, now_us)
        with self.lock:
            found_array = self.keys.get_many(keys)
            found = found_array.tolist()
            rows = found_array[found_array >= 0]
            if len(rows) == 0:
                return [[None] * n for _ in features], [[Status.NOT_FOUND] * n for _ in features], []
            ts = _rows_list(self.ts, rows)
            valid = _rows_list(self.valid, rows)
            blocks = {fam: _rows_list(self.mats[fam], rows) for fam in plan.families}
        ttl_us = self.ttl_us
        oldest = None if ttl_us is None else now_us - ttl_us
        # Per found key: None if servable, else the status that replaces every value.
        verdicts: list[str | None] = [
            _FUTURE if t > now_us else (Status.OUTSIDE_MAX_AGE if oldest is not None and t < oldest else None)
            for t in ts
        ]
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
                elif valid[j][pos]:
                    v = block[j][col]
                    out[i] = from_micros(v) if is_ts else v
                    stat[i] = Status.PRESENT
                else:
                    stat[i] = Status.NULL_VALUE
                j += 1
            values.append(out)
            statuses.append(stat)
        future: list[int] = []
        if _FUTURE in verdicts:
            hits = [i for i, r in enumerate(found) if r >= 0]
            future = [i for i, verdict in zip(hits, verdicts) if verdict == _FUTURE]
        return values, statuses, future
