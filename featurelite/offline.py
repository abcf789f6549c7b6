"""Offline history: one append-only table per feature view, and point-in-time joins.

Never writes online state; ``store.py`` composes this with ``online.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from .arrays import false_array
from .db import fetch_arrow, quote, run, translating
from .layout import LOST, ViewLayout
from .rules import SEQ, Ttl
from .types import duckdb_type

__all__ = ["append", "create_history", "point_in_time_sql"]

#: Name under which the entity dataframe (probe) is registered during a retrieval.
PROBE = "_fl_probe"
PROBE_TS = "_fl_ts"
PROBE_ROW = "_fl_row"
EVENT_TS = "_fl_event_ts"


#: The physical column order of history tables, per (connection, table): appending a
#: batch laid out in that order skips DuckDB's INSERT ... SELECT planning (a third of a
#: small push). Forgotten whenever featurelite changes the table.
_COLUMN_ORDER: dict[tuple[int, str], list[str]] = {}


def _forget(con: duckdb.DuckDBPyConnection, layout: ViewLayout) -> None:
    _COLUMN_ORDER.pop((id(con), layout.history_table), None)


def create_history(con: duckdb.DuckDBPyConnection, layout: ViewLayout) -> None:
    ddl = f"{layout.column_ddl()}, {LOST} BOOLEAN NOT NULL DEFAULT false"
    run(con, f"CREATE TABLE {layout.history_table} ({ddl})")
    _forget(con, layout)


def drop_history(con: duckdb.DuckDBPyConnection, layout: ViewLayout) -> None:
    run(con, f"DROP TABLE IF EXISTS {layout.history_table}")
    _forget(con, layout)


def has_tie_losers(con: duckdb.DuckDBPyConnection, layout: ViewLayout) -> bool:
    """Whether some history row of the view lost a tie on key and event time."""
    return bool(run(con, f"SELECT EXISTS (SELECT 1 FROM {layout.history_table} WHERE {LOST})")[0][0])


def add_feature_columns(con: duckdb.DuckDBPyConnection, layout: ViewLayout, features: list[tuple[str, str]]) -> None:
    """Add history columns for features new to a view; old rows get null."""
    for name, dtype in features:
        run(con, f"ALTER TABLE {layout.history_table} ADD COLUMN {quote(name)} {duckdb_type(dtype)}")
    _forget(con, layout)


def append(con: duckdb.DuckDBPyConnection, layout: ViewLayout, batch: pa.Table) -> None:
    """Append a conformed batch (storage columns in order, plus the sequence column)."""
    key = (id(con), layout.history_table)
    order = _COLUMN_ORDER.get(key)
    if order is None:
        order = _COLUMN_ORDER[key] = [name for name, *_ in run(con, f"DESCRIBE {layout.history_table}")]
    if set(order) != {*batch.column_names, LOST}:  # not the columns the layout expects: the general INSERT
        columns = ", ".join(quote(c) for c in layout.stored_columns())
        con.from_arrow(batch).query(
            "_fl_batch", f"INSERT INTO {layout.history_table} ({columns}) SELECT {columns} FROM _fl_batch"
        )
        return
    lost = false_array(batch.num_rows)
    _fl_batch = pa.table([lost if name == LOST else batch.column(name) for name in order], names=order)
    # DuckDB's replacement scan reads the local variable ``_fl_batch`` (of the frame that
    # calls execute, so not through db.run): one statement without the separate bind that
    # con.from_arrow(...).insert_into(...) costs (about 0.2 ms of a 3 ms push), and unlike
    # con.register() nothing stays pinned until the transaction ends.
    con.execute(f"INSERT INTO {layout.history_table} SELECT * FROM _fl_batch").fetchall()


def row_count(con: duckdb.DuckDBPyConnection, layout: ViewLayout) -> int:
    return int(run(con, f"SELECT count(*) FROM {layout.history_table}")[0][0])


def stats(con: duckdb.DuckDBPyConnection, layout: ViewLayout) -> tuple[int, datetime | None, datetime | None]:
    """(rows, first event time, last event time) of a view's history."""
    ts = quote(layout.ts)
    row = run(con, f"SELECT count(*), min({ts}), max({ts}) FROM {layout.history_table}")[0]
    return int(row[0]), row[1], row[2]


#: Temporary table of (key, event time) groups with more than one row, during an ingest.
_TIED = "_fl_tied"


def mark_tie_losers(
    con: duckdb.DuckDBPyConnection, layout: ViewLayout, first_seq: int, *, within: bool, reaches_back: bool
) -> int:
    """Mark (column ``_fl_lost``), inside the ingest's transaction, the history rows that
    lose a tie on key and event time now that rows from sequence ``first_seq`` on have
    arrived. Returns how many rows were newly marked.

    Where to look is the caller's decision (:meth:`featurelite.online.OnlineState.tie_check`):
    ``within`` among the new rows (a hash aggregate over them), ``reaches_back`` between
    them and older rows (only when the new event times reach back into the stored ones,
    a backfill, not the usual ingest of newer data). With the losers set aside, every
    remaining (key, event time) is unique, so the point-in-time join can compare event
    times alone. A row that loses stays lost (history only grows), so only groups the new
    rows touch are looked at.
    """
    if not (within or reaches_back):
        return 0
    keys = ", ".join(quote(k) for k in layout.key_names)
    group = f"{keys}, {quote(layout.ts)}"
    table = layout.history_table
    # The sequence number is bound, not pasted (DuckDB still prunes row groups by it: a
    # bound value is a constant to its planner).
    new = f"{SEQ} >= $first_seq"
    params = {"first_seq": int(first_seq)}
    run(con, f"CREATE OR REPLACE TEMP TABLE {_TIED} AS SELECT {group} FROM {table} LIMIT 0")
    try:
        if within:
            run(
                con,
                f"INSERT INTO {_TIED} SELECT {group} FROM {table} WHERE {new} GROUP BY {group} HAVING count(*) > 1",
                params,
            )
        if reaches_back:
            run(
                con,
                f"INSERT INTO {_TIED} SELECT DISTINCT {group} FROM (SELECT {group} FROM {table} WHERE {new}) n "
                f"SEMI JOIN (SELECT {group} FROM {table} WHERE NOT ({new})) o USING ({group})",
                params,
            )
        if not run(con, f"SELECT EXISTS (SELECT 1 FROM {_TIED})")[0][0]:
            return 0
        ranked = (
            f"SELECT {SEQ}, row_number() OVER (PARTITION BY {group} ORDER BY {layout.order_key()} DESC) AS rank "
            f"FROM {table} SEMI JOIN {_TIED} USING ({group})"
        )
        marked = run(
            con,
            f"UPDATE {table} SET {LOST} = true FROM ({ranked}) r "
            f"WHERE {table}.{SEQ} = r.{SEQ} AND r.rank > 1 AND NOT {table}.{LOST}",
        )
        return int(marked[0][0])
    finally:
        run(con, f"DROP TABLE IF EXISTS {_TIED}")


def point_in_time_sql(
    layout: ViewLayout, features: list[str], *, event_time: bool = False, losers: bool = True, narrow: bool = False,
    up_to: int | None = None,
) -> str:
    """For every probe row, the requested features of the winning history row: same keys,
    event time <= the probe time (and >= probe time - ttl), ties broken by
    :meth:`ViewLayout.order_key`. Rows with no match get nulls. Returns the probe row
    number and one column per feature (plus, with ``event_time``, the matched row's event
    time as ``_fl_event_ts``, before the ttl check).

    A single ASOF LEFT JOIN on event time does it, over the history without the rows
    that lost a tie (:func:`mark_tie_losers`): what remains has one row per key and event
    time, so the row the join picks is the winner. ``losers=False`` skips the filter when
    the view has none. ``narrow=True`` (for a probe much smaller than the history) first
    keeps only history rows of the probe's keys and not after its latest time, so the join
    sorts those instead of the whole history.

    ``up_to`` (an ingest position) reads the history as it was when the row with that
    sequence number had just been ingested: later rows are left out, and a row that lost
    its tie only to one of them is ranked again (so it wins, as it did then).
    """
    keys = ", ".join(quote(k) for k in layout.key_names)
    ts = quote(layout.ts)
    # The ttl is the one number compiled into this SQL: a constant of the view's definition
    # (an int, bounded by MAX_TTL when the view was built), like its column names; the
    # join runs through DuckDB's relation API, which binds no parameters.
    fresh = Ttl.of(layout.view.ttl).sql_fresh(f"h.{ts}", f"p.{PROBE_TS}")
    if fresh is None:
        selected = ", ".join(f"h.{quote(f)}" for f in features)
    else:
        selected = ", ".join(f"CASE WHEN {fresh} THEN h.{quote(f)} END AS {quote(f)}" for f in features)
    if event_time:
        selected += f", h.{ts} AS {EVENT_TS}"
    # DuckDB's ASOF join canonicalises FLOAT payloads (-0.0 becomes 0.0, NaN payloads are
    # reset) but carries DOUBLE bits through: float32 features cross the join widened to
    # DOUBLE, which is exact, and the caller casts them back to float32, bit for bit.
    schema = layout.view.schema
    carried = ", ".join(
        f"{quote(f)}::DOUBLE AS {quote(f)}" if schema.get(f) == "float32" else quote(f) for f in features
    )
    history = f"SELECT {keys}, {ts}, {carried} FROM {layout.history_table}"
    where = [f"NOT {LOST}"] if losers and up_to is None else []
    narrowing = [
        f"{ts} <= (SELECT max({PROBE_TS}) FROM {PROBE})", f"({keys}) IN (SELECT DISTINCT {keys} FROM {PROBE})",
    ] if narrow else []
    if up_to is not None:
        where.append(f"{SEQ} <= {int(up_to)}")  # an int: the relation API binds no parameters
    if losers and up_to is not None:
        # The ties among the rows up to the position, decided again, and only then narrowed:
        # DuckDB 2 reset the sign of -0.0 DOUBLE payloads in the ASOF join when the narrowing
        # filters sat under the QUALIFY beside a text column (tests/test_manifest.py has the case).
        history += f" WHERE {' AND '.join(where)} QUALIFY row_number() OVER (PARTITION BY {keys}, {ts} " \
                   f"ORDER BY {layout.order_key()} DESC) = 1"
        if narrowing:
            history = f"SELECT * FROM ({history}) WHERE " + " AND ".join(narrowing)
    elif where or narrowing:
        history += " WHERE " + " AND ".join(where + narrowing)
    return (
        f"SELECT p.{PROBE_ROW}, {selected} FROM {PROBE} p "
        f"ASOF LEFT JOIN ({history}) h ON {layout.key_match('p', 'h')} AND p.{PROBE_TS} >= h.{ts}"
    )


def sample(con: duckdb.DuckDBPyConnection, layout: ViewLayout, column: str, rows: int) -> list[Any]:
    """Up to ``rows`` non-null values of a history column, sampled (timestamps as UTC
    datetimes), for ``verify`` to feed featurizers values the store really holds."""
    with translating(f"sampling the history of view {layout.name!r}", view=layout.name):
        table = fetch_arrow(
            con,
            f"SELECT {quote(column)} FROM {layout.history_table} WHERE {quote(column)} IS NOT NULL "
            f"USING SAMPLE {int(rows)} ROWS",  # DuckDB's grammar takes no parameter here; an int
        )
    values = table.column(0)
    if pa.types.is_timestamp(values.type):
        values = values.cast(pa.timestamp("us", tz="UTC"))
    sampled: list[Any] = values.to_pylist()
    return sampled


def recent_rows(con: duckdb.DuckDBPyConnection, layout: ViewLayout, limit: int) -> pa.Table:
    """The ``limit`` history rows ingested last (newest first), without the hidden
    columns. Looks back from the newest sequence number in widening steps, so a long
    history is not sorted whole (the sequence's zone maps skip the rest)."""
    columns = ", ".join(quote(c) for c in layout.stored_columns() if c != SEQ)
    table = layout.history_table
    top = run(con, f"SELECT max({SEQ}) FROM {table}")[0][0]
    reach = 1024
    while True:
        floor = -1 if top is None else int(top) - reach
        found = fetch_arrow(con, f"SELECT {columns} FROM {table} WHERE {SEQ} > $floor ORDER BY {SEQ} DESC "
                                 f"LIMIT {int(limit)}", params={"floor": floor})
        if found.num_rows >= limit or floor < 0:
            return found
        reach *= 64
