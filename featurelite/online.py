"""Online latest values: one table per feature view in the file, and the state that
keeps it, and its in-memory index, coherent with the view's history.

The table holds, per entity key, the history row that wins under
:class:`featurelite.rules.WinnerOrder` (:func:`latest_per_key_sql`). Writes go through
:func:`upsert`, whose guard never lets an older event replace a newer one.
:class:`OnlineState` owns everything the store knows about a view's online side beyond
the table: the index (:mod:`featurelite.onlineindex`), how far the table lags history
after small pushes (and catching up), the latest event time and whether ties were seen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from .db import fetch_arrow, quote, run
from .layout import ViewLayout
from .onlineindex import OnlineIndex, index_columns, to_python
from .registry import set_pending
from .rules import SEQ
from .types import duckdb_type
from .window_buffer import WindowBuffer

__all__ = [
    "CATCH_UP_ROWS", "DEFERRED_ONLINE_ROWS", "OnlineState", "OnlineWrite", "add_feature_columns", "create_online",
    "drop_online", "forget_lag", "index_columns", "latest_per_key_sql", "replace_sql", "to_python", "upsert",
]


def create_online(con: duckdb.DuckDBPyConnection, layout: ViewLayout) -> None:
    # No PRIMARY KEY: every write goes through upsert() or a full replace, which keep one
    # row per key, and an ART index would cost memory and time for nothing.
    run(con, f"CREATE TABLE {layout.online_table} ({layout.column_ddl()})")


def drop_online(con: duckdb.DuckDBPyConnection, layout: ViewLayout) -> None:
    run(con, f"DROP TABLE IF EXISTS {layout.online_table}")


def forget_lag(con: duckdb.DuckDBPyConnection, layout: ViewLayout) -> None:
    """Forget a dropped view's recorded lag (inside the caller's transaction)."""
    set_pending(con, layout.name, None)


def add_feature_columns(con: duckdb.DuckDBPyConnection, layout: ViewLayout, features: list[tuple[str, str]]) -> None:
    """Add online columns for features new to a view; existing rows get null."""
    for name, dtype in features:
        run(con, f"ALTER TABLE {layout.online_table} ADD COLUMN {quote(name)} {duckdb_type(dtype)}")


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


#: Names of the parameters :func:`latest_per_key_sql` compares event times and ingest
#: sequence numbers with.
END_PARAM = "end"
MIN_SEQ_PARAM = "min_seq"


def latest_per_key_sql(layout: ViewLayout, *, min_seq: bool = False, end: bool = False) -> str:
    """The winning history row per entity key: what the online table holds. Optionally
    (``min_seq=True``) only among rows ingested from the sequence number bound as
    ``$min_seq`` (:data:`MIN_SEQ_PARAM`) on, or (``end=True``) with event time at or before
    the timestamp bound as ``$end`` (:data:`END_PARAM`). The caller binds them: no value
    is pasted into the SQL text (DuckDB still plans a bound value as a constant)."""
    where = []
    if min_seq:
        where.append(f"{SEQ} >= ${MIN_SEQ_PARAM}")
    if end:
        where.append(f"{quote(layout.ts)} <= ${END_PARAM}")
    where_sql = f"WHERE {' AND '.join(where)}" if where else ""
    keys = ", ".join(quote(k) for k in layout.key_names)
    columns = ", ".join(quote(c) for c in layout.stored_columns())
    # One struct sort key (not three ORDER BY terms) lets DuckDB plan this as a hash
    # aggregate (arg_max) instead of a full window sort: about a third faster.
    return (
        f"SELECT {columns} FROM {layout.history_table} {where_sql} "
        f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {layout.order_key()} DESC) = 1"
    )


def _winners_since(con: duckdb.DuckDBPyConnection, layout: ViewLayout, seq: int) -> pa.Table:
    """The index columns of the winning rows among history from sequence ``seq`` on."""
    columns = ", ".join(quote(c) for c in index_columns(layout))
    return fetch_arrow(
        con, f"SELECT {columns} FROM ({latest_per_key_sql(layout, min_seq=True)})", params={MIN_SEQ_PARAM: seq}
    )


def _upsert_since(con: duckdb.DuckDBPyConnection, layout: ViewLayout, seq: int, *, returning: bool) -> pa.Table | None:
    """Bring the online table up to date with the history rows from sequence ``seq`` on."""
    return upsert(
        con, layout, latest_per_key_sql(layout, min_seq=True), returning=returning, params={MIN_SEQ_PARAM: seq}
    )


#: An ingest this small into a view whose online index is loaded leaves the online table
#: to catch up later: the index decides the winners, so a push costs a history append
#: instead of a join against every online row.
DEFERRED_ONLINE_ROWS = 1 << 16
#: History rows an online table may lag by before an ingest brings it up to date.
CATCH_UP_ROWS = 2_000_000
#: Rows per batch while the online index is loaded from the file.
INDEX_BUILD_BATCH = 1 << 17


@dataclass
class OnlineWrite:
    """What an ingest did to a view's online side inside its transaction, applied to the
    :class:`OnlineState` once the transaction committed (:meth:`OnlineState.committed`)."""

    #: First history sequence number the online table has not caught up with, or None.
    pending: int | None
    #: Rows for the index to merge (it decides the winners: the table was left to lag).
    fresh: pa.Table | None = None
    #: Rows that won in the online table (the index takes them as they are).
    changed: pa.Table | None = None
    #: Latest event time of the ingested rows (microseconds).
    newest_us: int | None = None
    #: Whether some row lost a tie on key and event time.
    ties: bool = False
    #: The ingested rows, when few enough for the window buffer to take them (else None).
    events: pa.Table | None = None


class OnlineState:
    """Everything the store knows about one view's online side beyond its table.

    - ``index``: the in-memory :class:`~featurelite.onlineindex.OnlineIndex`, loaded on
      first read (None until then, and after anything that may have left it stale);
    - ``pending``: the first history sequence number the online table lags from (small
      ingests while the index serves leave the table to catch up in bulk), or None;
    - the latest event time in history (cached), and whether history holds rows that lost
      a tie on key and event time (``ties``: the point-in-time join then filters them).

    Owns the write rule's online half: where an ingest's winners go (:meth:`write`),
    whether a tie is possible (:meth:`tie_check`), and catching up (:meth:`catch_up`).
    """

    def __init__(self, layout: ViewLayout, *, pending: int | None, ties: bool) -> None:
        self.layout = layout
        self.index: OnlineIndex | None = None
        #: The view's recent events, for windowed aggregates (loaded on first read).
        self.window: WindowBuffer | None = None
        self.pending = pending
        self.ties = ties
        self._last_event: int | None = None
        self._last_event_known = False

    @classmethod
    def follow(cls, states: dict[str, OnlineState], layouts: Mapping[str, ViewLayout]) -> None:
        """Bring ``states`` (in place) in line with the views now registered: a state for
        each new view, the new layout for a changed one. (Deleted views keep theirs until
        :meth:`prune`, so that a reader holding an older plan still finds one.)"""
        for name, layout in layouts.items():
            state = states.get(name)
            if state is None:
                states[name] = cls(layout, pending=None, ties=False)
            else:
                state.relayout(layout)

    @staticmethod
    def prune(states: dict[str, OnlineState], layouts: Mapping[str, ViewLayout]) -> None:
        """Drop the states of views no longer registered."""
        for name in set(states) - set(layouts):
            del states[name]

    @staticmethod
    def drop_indexes(states: Mapping[str, OnlineState]) -> None:
        """Let go of every loaded index (the connection they mirror is gone)."""
        for state in states.values():
            state.index = None

    def relayout(self, layout: ViewLayout) -> None:
        """The view's definition changed: the index is rebuilt on the next read."""
        if layout != self.layout or layout.view.aggregations != self.layout.view.aggregations:
            self.index = None
            self.window = None
        self.layout = layout

    def load_index(self, con: duckdb.DuckDBPyConnection) -> OnlineIndex:
        """The index, loaded from the online table plus the history it lags by (the caller
        holds the store's lock)."""
        if self.index is None:
            layout = self.layout
            columns = ", ".join(quote(c) for c in index_columns(layout))
            rows = int(run(con, f"SELECT count(*) FROM {layout.online_table}")[0][0])
            relation = con.sql(f"SELECT {columns} FROM {layout.online_table}")
            assert relation is not None
            index = OnlineIndex.build(layout, rows, relation.to_arrow_reader(batch_size=INDEX_BUILD_BATCH))
            if self.pending is not None:  # history the online table has not caught up with
                index.merge(_winners_since(con, layout, self.pending))
            self.index = index
        return self.index

    def load_window(self, con: duckdb.DuckDBPyConnection) -> WindowBuffer:
        """The window buffer, loaded from history (the caller holds the store's lock)."""
        if self.window is None:
            self.window = WindowBuffer.load(con, self.layout)
        return self.window

    def last_event_us(self, con: duckdb.DuckDBPyConnection) -> int | None:
        """The latest event time in the view's history (microseconds), cached."""
        if not self._last_event_known:
            layout = self.layout
            found = run(con, f"SELECT epoch_us(max({quote(layout.ts)})) FROM {layout.history_table}")[0][0]
            self._last_event, self._last_event_known = (None if found is None else int(found)), True
        return self._last_event

    @staticmethod
    def tie_check(unique: bool, earliest_us: int | None, last_us: int | None) -> tuple[bool, bool]:
        """Where new rows could tie on key and event time: (among themselves, with stored
        rows). ``unique``: no key repeats among the new rows; ``earliest_us``: their
        earliest event; ``last_us``: the latest stored event before them. The usual push of
        fresh data (one row per key, all after the stored events) can tie nowhere."""
        reaches_back = last_us is not None and (earliest_us is None or earliest_us <= last_us)
        return not unique, reaches_back

    def write(
        self, con: duckdb.DuckDBPyConnection, first_seq: int, rows: int, unique_batch: pa.Table | None
    ) -> OnlineWrite:
        """Bring the online side up to date with history rows from ``first_seq`` on (inside
        the ingest's transaction). ``unique_batch``: the ingested rows when they are one
        batch with one row per key (each is then its key's winner among them)."""
        layout, index, pending = self.layout, self.index, self.pending
        out = OnlineWrite(pending=None)
        if index is not None and rows <= DEFERRED_ONLINE_ROWS:
            # A small write while the index serves reads: the index decides the winners;
            # the online table catches up in bulk later.
            out.fresh = (
                unique_batch.select(index_columns(layout)) if unique_batch is not None
                else _winners_since(con, layout, first_seq)
            )
            out.pending = first_seq if pending is None else pending
            if first_seq + rows - out.pending > CATCH_UP_ROWS:
                _upsert_since(con, layout, out.pending, returning=False)
                out.pending = None
        else:
            out.changed = _upsert_since(
                con, layout, first_seq if pending is None else pending, returning=index is not None
            )
        if out.pending != pending:
            set_pending(con, layout.name, out.pending)
        return out

    def committed(self, write: OnlineWrite) -> None:
        """Apply an ingest's :class:`OnlineWrite` once its transaction committed."""
        self.pending = write.pending
        if write.newest_us is not None and self._last_event_known:
            last = self._last_event
            self._last_event = write.newest_us if last is None else max(last, write.newest_us)
        self.ties = self.ties or write.ties
        window = self.window
        if window is not None:
            if write.events is None:
                self.window = None  # a large write: reloaded from history on the next read
            else:
                window.append(write.events)
        index = self.index
        if index is not None and write.fresh is not None:
            index.merge(write.fresh)
        elif index is not None and write.changed is not None:
            index.upsert(write.changed)

    def forget(self) -> None:
        """A write failed after it may have committed: never serve from an index that may
        have missed it, nor trust the cached event time. Both are rebuilt on demand."""
        self.index = None
        self.window = None
        self._last_event_known = False

    def catch_up(self, con: duckdb.DuckDBPyConnection) -> None:
        """Bring the online table up to date with its history (inside the caller's
        transaction; call :meth:`caught_up` once it committed)."""
        if self.pending is not None:
            _upsert_since(con, self.layout, self.pending, returning=False)
            set_pending(con, self.layout.name, None)

    def caught_up(self) -> None:
        self.pending = None

    def replace(self, con: duckdb.DuckDBPyConnection, *, end: bool, params: Mapping[str, Any] | None) -> int:
        """Rebuild the online table from history (inside the caller's transaction; call
        :meth:`replaced` once it committed), events up to ``$end`` only with ``end``.
        Returns the rows it now holds."""
        clear, fill = replace_sql(self.layout, latest_per_key_sql(self.layout, end=end))
        run(con, clear)
        run(con, fill, params)
        set_pending(con, self.layout.name, None)
        return int(run(con, f"SELECT count(*) FROM {self.layout.online_table}")[0][0])

    def replaced(self) -> None:
        self.index = None
        self.window = None
        self.pending = None

    def online_rows(self, con: duckdb.DuckDBPyConnection) -> int:
        """Entities with an online value: those in the table plus those only in its lag."""
        layout = self.layout
        if self.pending is None:
            return int(run(con, f"SELECT count(*) FROM {layout.online_table}")[0][0])
        keys = ", ".join(quote(k) for k in layout.key_names)
        return int(run(con, (
            f"SELECT count(*) FROM (SELECT {keys} FROM {layout.online_table} UNION "
            f"SELECT {keys} FROM {layout.history_table} WHERE {SEQ} >= ?)"
        ), [self.pending])[0][0])
