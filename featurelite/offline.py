"""Offline history: one append-only table per feature view, and point-in-time joins.

Never writes online state; ``store.py`` composes this with ``online.py``.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import pyarrow as pa

from .db import quote, run
from .layout import SEQ, ViewLayout
from .types import duckdb_type

__all__ = ["append", "create_history", "point_in_time_sql"]

#: Name under which the entity dataframe (probe) is registered during a retrieval.
PROBE = "_fl_probe"
PROBE_TS = "_fl_ts"
PROBE_ROW = "_fl_row"
EVENT_TS = "_fl_event_ts"


def create_history(con: duckdb.DuckDBPyConnection, layout: ViewLayout) -> None:
    run(con, f"CREATE TABLE IF NOT EXISTS {layout.history_table} ({layout.column_ddl()})")


def add_feature_columns(con: duckdb.DuckDBPyConnection, table: str, features: list[tuple[str, str]]) -> None:
    """Add columns for features new to a view (history or online table); old rows get null."""
    for name, dtype in features:
        run(con, f"ALTER TABLE {table} ADD COLUMN {quote(name)} {duckdb_type(dtype)}")


def append(con: duckdb.DuckDBPyConnection, layout: ViewLayout, batch: pa.Table) -> None:
    """Append a conformed batch (storage columns in order, plus the sequence column)."""
    columns = ", ".join(quote(c) for c in layout.stored_columns())
    # A relation over the batch, not con.register(): DuckDB keeps registered objects alive
    # until the transaction ends, which would hold every batch of a long ingest in memory.
    con.from_arrow(batch).query("_fl_batch", f"INSERT INTO {layout.history_table} ({columns}) SELECT {columns} FROM _fl_batch")


def row_count(con: duckdb.DuckDBPyConnection, layout: ViewLayout) -> int:
    return int(run(con, f"SELECT count(*) FROM {layout.history_table}")[0][0])


def stats(con: duckdb.DuckDBPyConnection, layout: ViewLayout) -> tuple[int, datetime | None, datetime | None]:
    """(rows, first event time, last event time) of a view's history."""
    ts = quote(layout.ts)
    row = run(con, f"SELECT count(*), min({ts}), max({ts}) FROM {layout.history_table}")[0]
    return int(row[0]), row[1], row[2]


def latest_per_key_sql(layout: ViewLayout, *, min_seq: int | None = None, end: str | None = None) -> str:
    """The winning history row per entity key (the online rule), optionally only among
    rows ingested from sequence ``min_seq`` on, or with event time <= ``end`` (a SQL
    expression)."""
    where = []
    if min_seq is not None:
        where.append(f"{SEQ} >= {int(min_seq)}")
    if end is not None:
        where.append(f"{quote(layout.ts)} <= {end}")
    where_sql = f"WHERE {' AND '.join(where)}" if where else ""
    keys = ", ".join(quote(k) for k in layout.key_names)
    columns = ", ".join(quote(c) for c in layout.stored_columns())
    # One struct sort key (not three ORDER BY terms) lets DuckDB plan this as a hash
    # aggregate (arg_max) instead of a full window sort: about a third faster.
    return (
        f"SELECT {columns} FROM {layout.history_table} {where_sql} "
        f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {layout.order_key()} DESC) = 1"
    )


def new_rows_add_ties(con: duckdb.DuckDBPyConnection, layout: ViewLayout, first_seq: int) -> bool:
    """Whether the rows ingested from sequence ``first_seq`` on share a key and event time
    with each other or with older rows (inside the ingest's transaction).

    Costs one hash aggregate over the new rows; the comparison with older rows runs only
    when the new event times reach back into the old ones (a backfill), not for the usual
    ingest of newer data.
    """
    keys = ", ".join(quote(k) for k in layout.key_names)
    ts = quote(layout.ts)
    table = layout.history_table
    new = f"{SEQ} >= {int(first_seq)}"
    within = run(con, f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {new} GROUP BY {keys}, {ts} HAVING count(*) > 1)")
    if within[0][0]:
        return True
    bounds = run(con, f"SELECT (SELECT min({ts}) FROM {table} WHERE {new}), (SELECT max({ts}) FROM {table} WHERE NOT ({new}))")
    newest_old, oldest_new = bounds[0][1], bounds[0][0]
    if newest_old is None or oldest_new is None or oldest_new > newest_old:
        return False
    key_cols = f"{keys}, {ts}"
    overlap = run(
        con,
        f"SELECT count(*) FROM (SELECT {key_cols} FROM {table} WHERE {new}) n "
        f"SEMI JOIN (SELECT {key_cols} FROM {table} WHERE NOT ({new})) o USING ({key_cols})",
    )
    return bool(overlap[0][0])


def point_in_time_sql(
    layout: ViewLayout, features: list[str], *, event_time: bool = False, ties: bool = True
) -> str:
    """For every probe row, the requested features of the winning history row: same keys,
    event time <= the probe time (and >= probe time - ttl), ties broken by
    :meth:`ViewLayout.order_key`. Rows with no match get nulls. Returns the probe row
    number and one column per feature (plus, with ``event_time``, the matched row's event
    time as ``_fl_event_ts``, before the ttl check).

    A single ASOF LEFT JOIN does it. If the history may hold rows tied on key and event
    time (``ties``), the inequality compares order keys (event time, created time,
    sequence; see :meth:`ViewLayout.order_key`), so the greatest qualifying row, ties
    included, is the one picked. Otherwise it compares event times alone, which is
    cheaper and picks the same row.
    """
    keys = ", ".join(quote(k) for k in layout.key_names)
    feature_cols = ", ".join(quote(f) for f in features)
    ts = quote(layout.ts)
    if ties:
        probe_order = f"CASE WHEN {PROBE_TS} IS NOT NULL THEN {layout.probe_order_key(PROBE_TS)} END"
        history_order = layout.order_key()
    else:
        probe_order, history_order = PROBE_TS, ts
    ttl = layout.view.ttl
    if ttl is None:
        selected = ", ".join(f"h.{quote(f)}" for f in features)
    else:
        ttl_us = ttl // ttl.resolution
        fresh = f"h.{ts} >= p.{PROBE_TS} - to_microseconds({ttl_us})"
        selected = ", ".join(f"CASE WHEN {fresh} THEN h.{quote(f)} END AS {quote(f)}" for f in features)
    history = (
        f"SELECT {keys}, {ts}, {feature_cols}, {history_order} AS _fl_order FROM {layout.history_table}"
    )
    if event_time:
        selected += f", h.{ts} AS {EVENT_TS}"
    return (
        f"SELECT p.{PROBE_ROW}, {selected} "
        f"FROM (SELECT {PROBE_ROW}, {PROBE_TS}, {keys}, {probe_order} AS _fl_order FROM {PROBE}) p "
        f"ASOF LEFT JOIN ({history}) h ON {layout.key_match('p', 'h')} AND p._fl_order >= h._fl_order"
    )
