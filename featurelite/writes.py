"""The write path, where history and online values meet: an ingest appends to a view's
history and brings its online side up to date in one transaction; materialize rebuilds
online tables; apply creates and adapts tables.

The rules it applies live elsewhere (which row wins: :mod:`featurelite.rules`; online
bookkeeping: :class:`featurelite.online.OnlineState`); this module orders the steps and
keeps "all or nothing".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import offline, online
from .arrays import int64_array
from .conform import check_columns, conform_table
from .db import run, transaction, translating
from .errors import SchemaError
from .layout import ViewLayout
from .online import OnlineState, OnlineWrite
from .registry import pending_online, seq_floor
from .rules import SEQ
from .sources import DataSource, read_batches, to_reader

__all__ = [
    "INGEST_BATCH_ROWS", "SequenceCounter", "catch_up", "derive", "drop_tables", "ingest", "materialize", "open_input",
    "sync_tables",
]

#: Rows handed to DuckDB per INSERT during ingest.
INGEST_BATCH_ROWS = 1 << 20


class SequenceCounter:
    """The store-wide ingest sequence: the last tie-break between rows ("ingested last").
    The Store is its file's only writer, so the counter lives in memory, always past every
    sequence number in the file: none is ever reused."""

    def __init__(self, con: duckdb.DuckDBPyConnection, layouts: Iterable[ViewLayout]) -> None:
        self.next = 0
        self.reset(con, layouts)

    def reset(self, con: duckdb.DuckDBPyConnection, layouts: Iterable[ViewLayout]) -> None:
        """Start again past the largest sequence number stored (and past the floor a
        deleted view left)."""
        found = seq_floor(con)
        for layout in layouts:
            top = run(con, f"SELECT max({SEQ}) FROM {layout.history_table}")[0][0]
            if top is not None:
                found = max(found, int(top) + 1)
        self.next = found


def open_input(layout: ViewLayout, data: DataSource) -> pa.RecordBatchReader:
    """``data`` as a stream of batches, its columns checked against what the view takes."""
    expected = layout.input_columns()
    reader = to_reader(data, text_columns=[name for name, _, _ in expected])
    computed = [name for name in reader.schema.names if name in layout.view.derived]
    if computed:
        raise SchemaError(
            f"view {layout.name!r}: input has column(s) {', '.join(computed)}, which the view computes at ingest "
            "with its featurizers; drop them from the input",
            view=layout.name, column=computed[0],
        )
    check_columns(layout.name, reader.schema, expected)
    return reader


def derive(layout: ViewLayout, arrays: list[pa.Array]) -> list[pa.Array]:
    """Conformed input columns (:meth:`ViewLayout.input_columns` order) -> stored columns
    (:meth:`ViewLayout.stored_columns` order, without the sequence), write-time features
    computed by their featurizers' batch kernels."""
    if not layout.derived:
        return arrays
    by_name = dict(zip((name for name, _, _ in layout.input_columns()), arrays, strict=True))
    for fz, names, inputs in layout.derived:
        outputs = fz.run_batch({param: by_name[column] for param, column in inputs.items()})
        for name, values in zip(names, outputs, strict=True):
            by_name[name] = values.cast(layout.storage_type(name))
    return [by_name[name] for name in layout.stored_columns()[:-1]]


@dataclass
class _Appended:
    """What the history appends of one ingest added."""

    first_seq: int
    next_seq: int
    rows: int = 0
    #: The ingested rows when they came as one batch (else None).
    only_batch: pa.Table | None = None
    #: The ingested rows while they are few (for the online window buffer), else None.
    small: list[pa.Table] | None = None
    batches: int = 0
    earliest_us: int | None = None
    newest_us: int | None = None

    def add(self, stored: pa.Table, ts: str) -> None:
        self.rows += stored.num_rows
        self.batches += 1
        self.only_batch = stored if self.batches == 1 else None
        if self.rows > online.DEFERRED_ONLINE_ROWS:
            self.small = None
        elif self.batches == 1:
            self.small = [stored]
        elif self.small is not None:
            self.small.append(stored)
        bounds = pc.min_max(stored.column(ts))
        if bounds["min"].is_valid:
            low, high = bounds["min"].cast(pa.int64()).as_py(), bounds["max"].cast(pa.int64()).as_py()
            self.earliest_us = low if self.earliest_us is None else min(self.earliest_us, low)
            self.newest_us = high if self.newest_us is None else max(self.newest_us, high)


def _append_all(
    con: duckdb.DuckDBPyConnection, layout: ViewLayout, reader: pa.RecordBatchReader, batch_rows: int, first_seq: int
) -> _Appended:
    """Append every batch of ``reader`` to the view's history, numbered from ``first_seq``."""
    expected, names = layout.input_columns(), layout.stored_columns()
    appended = _Appended(first_seq, first_seq)
    for table in read_batches(layout.name, reader, batch_rows):
        arrays = derive(layout, conform_table(layout.name, table, expected, appended.rows))
        seq = appended.next_seq
        arrays.append(int64_array(np.arange(seq, seq + table.num_rows, dtype=np.int64)))
        stored = pa.Table.from_arrays(arrays, names=names)
        offline.append(con, layout, stored)
        appended.next_seq = seq + table.num_rows
        appended.add(stored, layout.ts)
    return appended


def _unique_keys(layout: ViewLayout, batch: pa.Table) -> bool:
    """Whether no entity key repeats within ``batch``."""
    if len(layout.key_names) == 1:
        return bool(pc.count_distinct(batch.column(layout.key_names[0]), mode="all").as_py() == batch.num_rows)
    return bool(batch.select(layout.key_names).group_by(layout.key_names).aggregate([]).num_rows == batch.num_rows)


def _land(con: duckdb.DuckDBPyConnection, state: OnlineState, appended: _Appended, last_us: int | None) -> OnlineWrite:
    """After the appends (inside the transaction): mark tie losers where a tie is
    possible, then bring the online side up to date."""
    layout = state.layout
    batch = appended.only_batch
    unique = batch is not None and _unique_keys(layout, batch)
    within, reaches_back = state.tie_check(unique, appended.earliest_us, last_us)
    ties = offline.mark_tie_losers(con, layout, appended.first_seq, within=within, reaches_back=reaches_back) > 0
    write = state.write(con, appended.first_seq, appended.rows, batch if unique else None)
    write.newest_us, write.ties = appended.newest_us, ties
    if appended.small is not None and layout.view.aggregations:
        write.events = pa.concat_tables(appended.small)
    return write


def ingest(
    con: duckdb.DuckDBPyConnection, state: OnlineState, reader: pa.RecordBatchReader, batch_rows: int,
    counter: SequenceCounter, layouts: Iterable[ViewLayout],
) -> int:
    """Append ``reader``'s rows to the view's history and update its online side, all or
    nothing. Returns the rows ingested. ``layouts``: every view (to recount the sequence
    if a failure leaves it unknown whether the write committed)."""
    layout = state.layout
    write: OnlineWrite | None = None
    outcome = None
    try:
        with translating(f"ingest into view {layout.name!r} (nothing was written)", view=layout.name), \
                transaction(con) as outcome:
            last_us = state.last_event_us(con)  # before the appends: the latest stored event
            appended = _append_all(con, layout, reader, batch_rows, counter.next)
            if appended.rows:
                write = _land(con, state, appended, last_us)
    except BaseException:
        if outcome is None or outcome.committed is not False:
            # The write may have committed: never serve from an index that may have missed
            # it, and read the lag and the sequence again from the file.
            state.forget()
            _recount(con, state, counter, layouts)
        raise
    if write is not None:
        try:
            state.committed(write)  # the rows become readable online...
        finally:
            # ... and only then does the sequence move past them: a read that notes the
            # sequence before it reads (the serving log) never counts rows it could not see.
            counter.next = appended.next_seq
    return appended.rows


def _recount(
    con: duckdb.DuckDBPyConnection, state: OnlineState, counter: SequenceCounter, layouts: Iterable[ViewLayout]
) -> None:
    """Read the view's online lag and the sequence from the file after a failed write
    (nothing more to do if the connection is gone: the Store closes itself)."""
    try:
        state.pending = pending_online(con).get(state.layout.name)
        counter.reset(con, layouts)
    except Exception:  # noqa: BLE001 - the original error is the one to report
        pass


def materialize(
    con: duckdb.DuckDBPyConnection, states: Sequence[OnlineState], params: Mapping[str, Any] | None
) -> list[tuple[str, int]]:
    """Rebuild each view's online table from history in one transaction (events up to the
    bound ``$end`` only when ``params`` binds it). Returns (view, online rows) pairs."""
    counts = []
    with translating("materialize (nothing was changed)", committed=False), transaction(con):
        for state in states:
            counts.append((state.layout.name, state.replace(con, end=params is not None, params=params)))
    for state in states:
        state.replaced()
    return counts


def catch_up(con: duckdb.DuckDBPyConnection, states: Iterable[OnlineState]) -> None:
    """Bring the online tables that lag their history (after small ingests while the
    index served reads) up to date, in one transaction."""
    lagging = [state for state in states if state.pending is not None]
    if not lagging:
        return
    with translating("bringing the online tables up to date (nothing was changed)"), transaction(con):
        for state in lagging:
            state.catch_up(con)
    for state in lagging:
        state.caught_up()


def sync_tables(con: duckdb.DuckDBPyConnection, old: ViewLayout | None, new: ViewLayout) -> None:
    """Create or adapt a view's tables (inside the apply transaction)."""
    if old == new:
        return
    if old is not None:
        compatible = (
            old.keys == new.keys
            and old.ts == new.ts
            and old.created == new.created
            and all(new.view.schema.get(f) == d for f, d in old.features)
        )
        if compatible:
            added = [(f, d) for f, d in new.features if f not in old.view.schema]
            offline.add_feature_columns(con, old, added)
            online.add_feature_columns(con, old, added)
            return
        # The registry's plan only lets an incompatible change through for an empty view.
        offline.drop_history(con, old)
        online.drop_online(con, old)
    offline.create_history(con, new)
    online.create_online(con, new)


def drop_tables(con: duckdb.DuckDBPyConnection, layout: ViewLayout) -> None:
    """Drop a view's tables and its recorded lag (inside the delete's transaction)."""
    offline.drop_history(con, layout)
    online.drop_online(con, layout)
    online.forget_lag(con, layout)

