"""Online latest values: one table per feature view in the file, and an in-memory index
over it that serves reads without SQL.

The table holds, per entity key, the row that wins under the tie-break rules (event time,
then created time, then ingest order). Writes go through :func:`upsert_sql`, whose guard
never lets an older event replace a newer one. The index mirrors the table in NumPy
matrices (one per storage family) plus a dict from key to row; the store applies every
committed write to it, so it never goes stale.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from itertools import compress, repeat
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .db import quote, run
from .layout import ViewLayout
from .types import family

__all__ = ["OnlineIndex", "Status", "create_online", "upsert_sql"]


class Status:
    """Per-value status of an online read (names as in Feast's FieldStatus)."""

    PRESENT = "PRESENT"
    NULL_VALUE = "NULL_VALUE"  #: the winning row stores null for this feature
    NOT_FOUND = "NOT_FOUND"  #: no row for this entity
    OUTSIDE_MAX_AGE = "OUTSIDE_MAX_AGE"  #: the latest value is older than the view's ttl


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_NUMPY_DTYPE = {"float": np.float64, "int": np.int64, "bool": np.bool_, "timestamp": np.int64, "object": object}


def create_online(con: duckdb.DuckDBPyConnection, layout: ViewLayout) -> None:
    keys = ", ".join(quote(k) for k in layout.key_names)
    run(con, f"CREATE TABLE IF NOT EXISTS {layout.online_table} ({layout.column_ddl()}, PRIMARY KEY ({keys}))")


def upsert_sql(layout: ViewLayout, winners_sql: str, *, returning: bool) -> str:
    """Insert-or-update the online table from ``winners_sql`` (one row per key), keeping
    the existing row where it wins the tie-break. With ``returning``, the statement
    returns the rows that changed (what the in-memory index needs)."""
    table = layout.online_table
    columns = layout.stored_columns()
    column_list = ", ".join(quote(c) for c in columns)
    keys = ", ".join(quote(k) for k in layout.key_names)
    updates = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in columns if c not in layout.key_names)
    returned = ", ".join(quote(c) for c in index_columns(layout))
    return (
        f"INSERT INTO {table} ({column_list}) SELECT {column_list} FROM ({winners_sql}) "
        f"ON CONFLICT ({keys}) DO UPDATE SET {updates} "
        f"WHERE {layout.order_key('excluded')} > {layout.order_key(table)}"
        + (f" RETURNING {returned}" if returning else "")
    )


def replace_sql(layout: ViewLayout, winners_sql: str) -> list[str]:
    """Statements that replace the whole online table by ``winners_sql``."""
    columns = ", ".join(quote(c) for c in layout.stored_columns())
    return [
        f"DELETE FROM {layout.online_table}",
        f"INSERT INTO {layout.online_table} ({columns}) SELECT {columns} FROM ({winners_sql})",
    ]


def index_columns(layout: ViewLayout) -> list[str]:
    """Columns the in-memory index needs: keys, features, event time."""
    return [*layout.key_names, *(f for f, _ in layout.features), layout.ts]


def _to_numpy(values: pa.ChunkedArray, fam: str) -> tuple[np.ndarray, np.ndarray]:
    """(values with nulls filled, validity mask) for one Arrow column."""
    valid = values.is_valid().to_numpy(zero_copy_only=False)
    if fam == "object":
        return values.to_numpy(zero_copy_only=False), valid
    if fam == "timestamp":
        values = values.cast(pa.int64())
    filled = pc.fill_null(values, False if fam == "bool" else 0)
    return filled.to_numpy(zero_copy_only=False).astype(_NUMPY_DTYPE[fam], copy=False), valid


class OnlineIndex:
    """Latest values of one feature view, in memory, keyed by entity.

    Values live in one 2-D matrix per storage family (float64, int64, bool, timestamp as
    int64 microseconds, object for strings) with a validity matrix, so a read is a dict
    lookup plus a row slice. Thread-safe: reads and writes take one lock.
    """

    def __init__(self, layout: ViewLayout) -> None:
        self.layout = layout
        self.key_names = layout.key_names
        self.single_key = len(self.key_names) == 1
        self.features = layout.features
        self.feature_pos = {f: i for i, (f, _) in enumerate(self.features)}
        self.families: dict[str, list[int]] = {}
        #: feature name -> (family, column within that family's matrix)
        self.slot: dict[str, tuple[str, int]] = {}
        for i, (feature, dtype) in enumerate(self.features):
            fam = family(dtype)
            cols = self.families.setdefault(fam, [])
            self.slot[feature] = (fam, len(cols))
            cols.append(i)
        ttl = layout.view.ttl
        self.ttl_us = None if ttl is None else ttl // timedelta(microseconds=1)
        self.rows: dict[Any, int] = {}
        self.size = 0
        self.capacity = 0
        self.mats: dict[str, np.ndarray] = {}
        self.valid = np.zeros((0, len(self.features)), dtype=np.bool_)
        self.ts = np.zeros(0, dtype=np.int64)
        self.lock = threading.Lock()

    # -- writes ---------------------------------------------------------------------

    def _grow(self, needed: int) -> None:
        if needed <= self.capacity:
            return
        capacity = max(needed, int(self.capacity * 1.25) + 16)
        for fam, cols in self.families.items():
            mat = np.zeros((capacity, len(cols)), dtype=_NUMPY_DTYPE[fam])
            if fam == "object":
                mat[:] = None
            if self.size:
                mat[: self.size] = self.mats[fam][: self.size]
            self.mats[fam] = mat
        valid = np.zeros((capacity, len(self.features)), dtype=np.bool_)
        valid[: self.size] = self.valid[: self.size]
        ts = np.zeros(capacity, dtype=np.int64)
        ts[: self.size] = self.ts[: self.size]
        self.valid, self.ts, self.capacity = valid, ts, capacity

    def _keys(self, table: pa.Table) -> list[Any]:
        if self.single_key:
            return table.column(self.key_names[0]).to_pylist()
        return list(zip(*(table.column(k).to_pylist() for k in self.key_names)))

    def upsert(self, table: pa.Table) -> None:
        """Apply rows that won in the online table (columns: :func:`index_columns`)."""
        count = table.num_rows
        if count == 0:
            return
        keys = self._keys(table)
        with self.lock:
            pos = np.fromiter(map(self.rows.get, keys, repeat(-1)), dtype=np.int64, count=count)
            new = pos < 0
            added = int(new.sum())
            if added:
                self._grow(self.size + added)
                fresh = np.arange(self.size, self.size + added, dtype=np.int64)
                pos[new] = fresh
                self.rows.update(zip(compress(keys, new), fresh.tolist()))
                self.size += added
            valid = np.empty((count, len(self.features)), dtype=np.bool_)
            for fam, cols in self.families.items():
                block = np.empty((count, len(cols)), dtype=_NUMPY_DTYPE[fam])
                for j, i in enumerate(cols):
                    values, ok = _to_numpy(table.column(self.features[i][0]), fam)
                    block[:, j] = values
                    valid[:, i] = ok
                self.mats[fam][pos] = block
            self.valid[pos] = valid
            self.ts[pos] = table.column(self.layout.ts).cast(pa.int64()).to_numpy()

    @classmethod
    def build(cls, layout: ViewLayout, table: pa.Table) -> OnlineIndex:
        index = cls(layout)
        index._grow(table.num_rows)
        index.upsert(table)
        return index

    # -- reads ----------------------------------------------------------------------

    def nbytes(self) -> int:
        """Approximate memory held by the matrices (not the key dict)."""
        total = self.valid.nbytes + self.ts.nbytes
        return total + sum(m.nbytes for m in self.mats.values())

    def read(
        self, keys: list[Any], features: list[str], now_us: int
    ) -> tuple[list[list[Any]], list[list[str]], list[int]]:
        """Values and statuses of ``features`` for ``keys`` at time ``now_us``.

        Returns (values per feature, statuses per feature, indexes of keys whose latest
        event lies after ``now_us``; the caller resolves those from history).
        """
        n = len(keys)
        with self.lock:
            get = self.rows.get
            found = [get(k) for k in keys]
            rows = [r for r in found if r is not None]
            if not rows:
                return [[None] * n for _ in features], [[Status.NOT_FOUND] * n for _ in features], []
            idx = np.array(rows, dtype=np.int64) if n > 1 else rows
            ts = self.ts[idx].tolist()
            valid = self.valid[idx].tolist()
            columns: dict[str, list[Any]] = {}
            for fam, cols in self.families.items():
                block = self.mats[fam][idx]
                for j, i in enumerate(cols):
                    columns[self.features[i][0]] = block[:, j].tolist()
        values: list[list[Any]] = []
        statuses: list[list[str]] = []
        future: list[int] = []
        ttl_us = self.ttl_us
        fresh: list[bool] = []
        for t in ts:
            if t > now_us:
                fresh.append(False)
            else:
                fresh.append(ttl_us is None or t >= now_us - ttl_us)
        for feature in features:
            fam, _ = self.slot[feature]
            col = columns[feature]
            pos = self.feature_pos[feature]
            out: list[Any] = [None] * n
            stat: list[str] = [Status.NOT_FOUND] * n
            j = 0
            for i, r in enumerate(found):
                if r is None:
                    continue
                if not fresh[j]:
                    stat[i] = Status.OUTSIDE_MAX_AGE
                elif valid[j][pos]:
                    v = col[j]
                    out[i] = _EPOCH + timedelta(microseconds=v) if fam == "timestamp" else v
                    stat[i] = Status.PRESENT
                else:
                    stat[i] = Status.NULL_VALUE
                j += 1
            values.append(out)
            statuses.append(stat)
        j = 0
        for i, r in enumerate(found):
            if r is None:
                continue
            if ts[j] > now_us:
                future.append(i)
            j += 1
        return values, statuses, future

