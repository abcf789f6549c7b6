"""Windowed aggregates from history: the training-set path, and the online path's answer
for read times older than what its in-memory buffer holds.

DuckDB selects the events of the probe's keys that can fall in a window (and numbers the
keys); the compiled engine in :mod:`featurelite.windows` computes every aggregate. The
online buffer (:mod:`featurelite.window_buffer`) calls the same engine, so both paths give
the same bits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .arrays import to_numpy, validity
from .db import fetch_arrow, quote
from .layout import ViewLayout
from .rules import NO_CREATED_US, SEQ
from .types import arrow_type
from .windows import PICKS, WindowResult, aggregate

if TYPE_CHECKING:
    from .definitions import Aggregation

__all__ = ["PROBE", "PROBE_ROW", "PROBE_TS", "aggregates_at", "engine_values", "result_array"]

#: Names of the probe (entity rows) registered for the query, and its columns.
PROBE = "_fl_wprobe"
PROBE_TS = "_fl_ts"
PROBE_ROW = "_fl_row"
_GROUP = "_fl_group"


def engine_values(column: pa.ChunkedArray | pa.Array, dtype: str) -> tuple[np.ndarray | None, np.ndarray]:
    """A column as the engine takes it: (float64 or int64 values, or None for a column of
    another dtype, and the validity mask). Floats widen exactly; nulls are filled."""
    valid = validity(column)
    if dtype in ("float32", "float64"):
        filled = column.cast(pa.float64()).fill_null(0.0)
        return to_numpy(filled).astype(np.float64, copy=False), valid
    if dtype in ("int32", "int64"):
        filled = column.cast(pa.int64()).fill_null(0)
        return to_numpy(filled).astype(np.int64, copy=False), valid
    return None, valid


def result_array(agg: Aggregation, dtype: str, column: pa.Array, result: WindowResult) -> pa.Array:
    """The engine's answer for one aggregation as an Arrow array of the feature's dtype
    (``column``: the aggregated column's events, for the functions that pick one)."""
    null = ~result.valid
    if agg.function in PICKS:
        if len(column) == 0:
            picked = pa.nulls(len(result.index), column.type)
        else:
            picked = column.take(pa.array(np.where(result.index < 0, 0, result.index)))
            if null.any():
                picked = pc.if_else(pa.array(null), pa.nulls(len(picked), picked.type), picked)
        return picked.cast(arrow_type(dtype))
    if agg.function == "count" or (agg.function == "sum" and dtype in ("int32", "int64")):
        return pa.array(result.integer, pa.int64(), mask=null)
    return pa.array(result.number, pa.float64(), mask=null)


def aggregates_at(
    con: duckdb.DuckDBPyConnection, layout: ViewLayout, aggregations: Sequence[Aggregation], probe: pa.Table,
    *, up_to: int | None = None,
) -> tuple[dict[str, pa.Array], dict[str, np.ndarray]]:
    """Each aggregation at every probe row: ``probe`` has the view's join keys, ``_fl_ts``
    (the time, timestamp[us]) and ``_fl_row`` (0..n-1). Returns, in probe-row order, the
    arrays by feature name and how many events each window held. ``up_to``: count only
    events ingested up to that sequence number (the history as it was then)."""
    columns = sorted({a.column for a in aggregations})
    longest = max(a.window_us for a in aggregations)
    keys = ", ".join(quote(k) for k in layout.key_names)
    order = layout.order
    created = f"coalesce(epoch_us(h.{quote(order.created)}), {NO_CREATED_US})" if order.created else "0"
    # Keys numbered once; events of those keys that can fall in a window of some probe row.
    numbered = (
        f"SELECT {keys}, (row_number() OVER (ORDER BY {keys}) - 1)::BIGINT AS {_GROUP} "
        f"FROM (SELECT DISTINCT {keys} FROM {PROBE}) d"
    )
    # float32 crosses as DOUBLE (exact) and is cast back where picked, as in point_in_time_sql.
    selected = ", ".join(
        f"h.{quote(c)}::DOUBLE AS {quote(c)}" if layout.view.schema[c] == "float32" else f"h.{quote(c)}"
        for c in columns
    )
    # Only the picks look at the order of events with the same time (the winner order):
    # ``last``, and ``min`` / ``max`` among NaNs of different payloads (the latest wins);
    # every other function gives the same bits in any such order, so the sort skips it.
    tie_order = f", _fl_c, h.{SEQ}" if any(a.function in PICKS for a in aggregations) else ""
    events_sql = (
        f"WITH k AS ({numbered}) "
        f"SELECT k.{_GROUP}, epoch_us(h.{quote(layout.ts)}) AS _fl_t, {created} AS _fl_c, h.{SEQ}"
        f"{', ' + selected if selected else ''} "
        f"FROM {layout.history_table} h JOIN k ON {layout.key_match('h', 'k')} "
        f"WHERE h.{quote(layout.ts)} <= (SELECT max({PROBE_TS}) FROM {PROBE}) "
        f"AND epoch_us(h.{quote(layout.ts)}) > (SELECT epoch_us(min({PROBE_TS})) FROM {PROBE}) - {int(longest)} "
        f"{'' if up_to is None else f'AND h.{SEQ} <= {int(up_to)} '}"
        f"ORDER BY k.{_GROUP}, _fl_t{tie_order}"
    )
    queries_sql = (
        f"WITH k AS ({numbered}) "
        f"SELECT coalesce(k.{_GROUP}, -1) AS {_GROUP}, epoch_us(p.{PROBE_TS}) AS _fl_t, p.{PROBE_ROW} "
        f"FROM {PROBE} p LEFT JOIN k ON {layout.key_match('p', 'k')}"
    )
    events = fetch_arrow(con, events_sql, over=probe, name=PROBE)
    queries = fetch_arrow(con, queries_sql, over=probe, name=PROBE)
    return _compute(layout, aggregations, events, queries)


def _compute(
    layout: ViewLayout, aggregations: Sequence[Aggregation], events: pa.Table, queries: pa.Table
) -> tuple[dict[str, pa.Array], dict[str, np.ndarray]]:
    groups = int(pc_max(events.column(_GROUP))) + 1 if events.num_rows else 0
    # Rows whose key matched nothing (or is null) query an extra, empty group at the end.
    query_group = to_numpy(queries.column(_GROUP)).astype(np.int64, copy=True)
    key_groups = int(pc_max(queries.column(_GROUP))) + 1 if queries.num_rows else 0
    groups = max(groups, key_groups)
    query_group[query_group < 0] = groups
    query_t = to_numpy(queries.column("_fl_t")).astype(np.int64, copy=False)
    rows = to_numpy(queries.column(PROBE_ROW)).astype(np.int64, copy=False)
    order = np.lexsort((query_t, query_group))
    query_group, query_t, rows = query_group[order], query_t[order], rows[order]
    event_group = to_numpy(events.column(_GROUP)).astype(np.int64, copy=False)
    # Group g's events are [starts[g], starts[g + 1]); the last group (unmatched keys) has none.
    starts = np.searchsorted(event_group, np.arange(groups + 2, dtype=np.int64)).astype(np.int64)
    ts = to_numpy(events.column("_fl_t")).astype(np.int64, copy=False)
    out: dict[str, pa.Array] = {}
    counts: dict[str, np.ndarray] = {}
    inverse = np.empty(len(rows), dtype=np.int64)
    inverse[rows] = np.arange(len(rows), dtype=np.int64)
    for agg in aggregations:
        dtype = layout.view.schema[agg.column]
        column = events.column(agg.column).combine_chunks()
        values, valid = engine_values(column, dtype)
        result = aggregate(agg.function, agg.window_us, starts, ts, values, valid, query_group, query_t)
        array = result_array(agg, dtype, column, result)
        out[agg.name] = array.take(pa.array(inverse))
        counts[agg.name] = result.events[inverse]
    return out, counts


def pc_max(values: Any) -> int:
    found = pc.max(values).as_py()
    return -1 if found is None else int(found)
