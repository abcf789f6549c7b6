"""Windowed aggregates over a stream of sorted Arrow batches: what ``featurelite.spark``'s
Python workers run, with the compiled engine of :mod:`featurelite.windows` (the kernel
the store's training sets and online reads call), so Spark gives the same bits.

The stream holds events (``kind`` 0: time, values) and queries (``kind`` 1: time, row
number), sorted by group (the columns ``group_by``), then time and the winner order's
tie terms. A group may span batches: the rows of the last group a batch starts are held
back until the next batch shows where that group ends, so memory holds one group and one
batch, not a whole partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .arrays import to_numpy
from .types import arrow_type
from .window_history import engine_values, result_array
from .windows import aggregate

if TYPE_CHECKING:
    from .definitions import Aggregation

__all__ = ["stream_groups"]


def stream_groups(
    batches: Iterable[pa.RecordBatch], group_by: Sequence[str], names: tuple[str, str, str],
    aggregations: Sequence[Aggregation], dtypes: Mapping[str, str], out_types: Mapping[str, str],
) -> Iterator[pa.RecordBatch]:
    """For each query row of the stream: its row number and every aggregation over its
    group's events. ``names``: the (kind, time in microseconds, row number) columns;
    ``dtypes``: each aggregated column's dtype; ``out_types``: each aggregation's dtype."""
    pending: list[pa.RecordBatch] = []
    for batch in batches:
        if not batch.num_rows:
            continue
        previous = pending[-1].slice(pending[-1].num_rows - 1) if pending else None
        starts = np.flatnonzero(_new_groups(batch, group_by, previous))
        if not len(starts):  # the batch goes on with the group held back
            pending.append(batch)
            continue
        last = int(starts[-1])
        whole = [*pending, batch.slice(0, last)]
        pending = [batch.slice(last)]
        if sum(b.num_rows for b in whole):
            yield from _evaluate(pa.Table.from_batches(whole), group_by, names, aggregations, dtypes, out_types)
    if pending:
        yield from _evaluate(pa.Table.from_batches(pending), group_by, names, aggregations, dtypes, out_types)


def _new_groups(rows: pa.RecordBatch | pa.Table, group_by: Sequence[str],
                previous: pa.RecordBatch | None = None) -> np.ndarray:
    """Per row: whether it starts a group (its group columns differ from the row before
    it; ``previous``: the row before the first, if any). A null never equals anything, so
    a row with a null key is a group of its own (with no events: the events' keys are
    never null)."""
    n = rows.num_rows
    flags = np.zeros(n, dtype=np.bool_)
    flags[0] = previous is None
    for name in group_by:
        column = rows.column(name)
        column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if previous is not None:
            before = previous.column(name)
            column = pa.concat_arrays([before, column])
        differ = pc.fill_null(pc.not_equal(column.slice(1), column.slice(0, len(column) - 1)), True)
        changed = to_numpy(differ).astype(np.bool_, copy=False)
        if previous is None:
            flags[1:] |= changed
        else:
            flags |= changed
    return flags


def _evaluate(
    table: pa.Table, group_by: Sequence[str], names: tuple[str, str, str], aggregations: Sequence[Aggregation],
    dtypes: Mapping[str, str], out_types: Mapping[str, str],
) -> Iterator[pa.RecordBatch]:
    """The aggregates of the query rows of whole groups: one call of the engine per
    aggregation, every group at once."""
    kind_name, time_name, row_name = names
    group = np.cumsum(_new_groups(table, group_by)) - 1
    is_event = to_numpy(table.column(kind_name)).astype(np.int64, copy=False) == 0
    if is_event.all():
        return
    times = to_numpy(table.column(time_name)).astype(np.int64, copy=False)
    event_group, query_group = group[is_event], group[~is_event]
    # Group g's events are [starts[g], starts[g + 1]) (a group of queries only has none).
    starts = np.searchsorted(event_group, np.arange(int(group[-1]) + 2, dtype=np.int64)).astype(np.int64)
    event_mask = pa.array(is_event)
    rows = to_numpy(table.column(row_name).filter(pa.array(~is_event))).astype(np.int64, copy=False)
    arrays: list[pa.Array] = [pa.array(rows, pa.int64())]
    for agg in aggregations:
        dtype = dtypes[agg.column]
        column = table.column(agg.column).filter(event_mask).combine_chunks()
        values, valid = engine_values(column, dtype)
        result = aggregate(agg.function, agg.window_us, starts, times[is_event], values, valid, query_group,
                           times[~is_event])
        arrays.append(result_array(agg, dtype, column, result).cast(arrow_type(out_types[agg.name])))
    yield pa.RecordBatch.from_arrays(arrays, names=[row_name, *(a.name for a in aggregations)])
