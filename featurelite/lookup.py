"""Online reads: an :class:`~featurelite.planning.OnlinePlan` executed for entity rows,
by the in-memory indexes and featurizers' per-request kernels.

The hot path of serving: one index read per stored view, then each featurizer entity by
entity. Entities whose latest event lies after the read time are resolved from history
(rare; one SQL query per call).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

import duckdb
import pyarrow as pa

from . import offline
from .db import translating
from .errors import InputError, UnknownFeatureViewError
from .historical import point_in_time
from .layout import ViewLayout
from .online import OnlineState
from .onlineindex import OnlineIndex, to_python
from .planning import FeaturizerRun, OnlinePlan, StoredInput, WindowInput, WindowRead
from .results import OnlineResponse
from .retrieval import entity_columns, keys_for
from .rules import Ttl, row_verdict, value_status, window_status
from .types import arrow_type
from .window_history import aggregates_at

if TYPE_CHECKING:
    from .definitions import Aggregation

__all__ = ["FutureResolver", "StateWindows", "WindowSource", "read_online", "resolve_future"]

#: Resolves entities whose latest event lies after ``now`` from history:
#: (view as the plan reads it, features, keys, indexes of those keys, now_us, values,
#: statuses, event times or None) -> None.
FutureResolver = Callable[
    [ViewLayout, list[str], list[Any], list[int], int, list[list[Any]], list[list[str]], list[int | None] | None],
    None,
]


#: The aggregates of a read without windows (shared, never written).
_NO_WINDOWS: list[list[list[Any]]] = []


def read_online(
    plan: OnlinePlan, states: Mapping[str, OnlineState], load: Callable[[str], OnlineIndex], entity_rows: Any,
    request_data: Mapping[str, Sequence[Any]] | None, now_us: int, resolve: FutureResolver,
    windows: WindowSource | None = None, times: dict[str, list[int | None]] | None = None,
) -> OnlineResponse:
    """Serve ``plan`` for ``entity_rows`` at ``now_us``, from each view's loaded index in
    ``states`` (``load`` loads one that is not). ``times``, if given, receives per view the
    event time of each entity's values (for the serving log)."""
    if request_data is not None and not isinstance(request_data, Mapping):
        raise InputError(
            f"request_data must be a dict of {{field: [value per entity]}}, not {type(request_data).__name__}"
        )
    reads, runs, order, types, key_names, window_reads, _, _ = plan
    columns = entity_columns(entity_rows)
    if not columns:  # no entities: an empty response with the right columns
        columns = {k: [] for k in key_names}
    key_out: dict[str, list[Any]] = {}
    # Several groups: slots in the order asked, filled as the groups are served.
    values: dict[str, Any] = {} if order is None else dict.fromkeys(order)
    statuses: dict[str, Any] = {} if order is None else dict.fromkeys(order)
    stored: list[list[list[Any]]] = []
    for view, features, outputs, ttl_us, layout in reads:
        state = states.get(view)
        index = None if state is None else state.index
        if index is None:
            index = load(view)
        keys = keys_for(view, index.layout.keys, columns)
        for k in index.key_names:
            if k not in key_out:
                key_out[k] = columns[k]
        view_times = None if times is None else times.setdefault(view, [])
        vals, stats, future = index.read(keys, features, now_us, ttl_us, view_times)
        if future:
            resolve(layout, list(features), keys, future, now_us, vals, stats, view_times)
        stored.append(vals)
        if outputs:
            # Only the first len(outputs) features are returned; the rest of vals/stats were
            # read to feed featurizers (see ViewRead). No strict= keyword: zip with keywords
            # costs 0.1 us per call, a measurable part of a 6 us read.
            values.update(zip(outputs, vals))  # noqa: B905
            statuses.update(zip(outputs, stats))  # noqa: B905
    windowed = _NO_WINDOWS  # plain reads allocate nothing for windows
    if window_reads:
        assert windows is not None, "a plan with windowed aggregates needs a window source"
        windowed = [_read_window(w, windows, columns, key_out, now_us, values, statuses) for w in window_reads]
    if runs:
        count = len(next(iter(columns.values()))) if columns else 0
        for run in runs:
            _run_featurizer(run, stored, windowed, request_data, count, values, statuses)
    return OnlineResponse(key_out, values, statuses, types)


class WindowSource(Protocol):
    """Where a read gets a view's windowed aggregates: its in-memory buffer when that holds
    every window at the read time, else history (both through the same engine)."""

    def layout(self, view: str) -> ViewLayout: ...

    def aggregates(
        self, view: str, aggregations: tuple[Aggregation, ...], keys: list[Any], now_us: int
    ) -> tuple[list[list[Any]], list[list[bool]], list[list[int]]]: ...


def _read_window(
    window: WindowRead, source: WindowSource, columns: dict[str, list[Any]], key_out: dict[str, list[Any]],
    now_us: int, values: dict[str, Any], statuses: dict[str, Any],
) -> list[list[Any]]:
    """One view's windowed aggregates, with their statuses (EMPTY_WINDOW for a window that
    held no events); returns the values of every aggregate read, for featurizers."""
    layout = source.layout(window.view)
    keys = keys_for(window.view, layout.keys, columns)
    for k in layout.key_names:
        if k not in key_out:
            key_out[k] = columns[k]
    found, present, events = source.aggregates(window.view, window.aggregations, keys, now_us)
    # The first len(outputs) aggregates are returned; the rest were read for featurizers.
    for out, vals, oks, counts in zip(window.outputs, found, present, events, strict=False):
        values[out] = vals
        statuses[out] = [window_status(ok, n) for ok, n in zip(oks, counts, strict=True)]
    return found


def _run_featurizer(
    run: FeaturizerRun, stored: list[list[list[Any]]], windowed: list[list[list[Any]]],
    request_data: Mapping[str, Sequence[Any]] | None, count: int, values: dict[str, Any], statuses: dict[str, Any],
) -> None:
    """The per-request path of one featurizer: its compiled kernel, entity by entity
    (inputs: stored features, windowed aggregates, request fields)."""
    call = run.featurizer.run_args
    try:
        if count == 1:  # the common single-entity request: one row, no columns to zip
            computed = [call([
                stored[a.read][a.column][0] if isinstance(a, StoredInput)
                else windowed[a.window][a.position][0] if isinstance(a, WindowInput)
                else _request_column(run.view, a.field, request_data, 1)[0]
                for a in run.inputs
            ])]
        else:
            columns = [
                stored[a.read][a.column] if isinstance(a, StoredInput)
                else windowed[a.window][a.position] if isinstance(a, WindowInput)
                else _request_column(run.view, a.field, request_data, count)
                for a in run.inputs
            ]
            computed = [call(row) for row in zip(*columns, strict=True)]
    except TypeError as exc:
        raise InputError(
            f"on-demand view {run.view!r}, featurizer {run.featurizer.name!r}: {exc}", view=run.view
        ) from None
    single = len(run.featurizer.outputs) == 1
    for out, output in run.outputs:
        column = computed if single else [row[output] for row in computed]
        values[out] = column
        statuses[out] = [value_status(v is not None) for v in column]


def _request_column(
    view: str, field: str, request_data: Mapping[str, Sequence[Any]] | None, n: int | None
) -> list[Any]:
    if not request_data or field not in request_data:
        raise InputError(
            f"on-demand view {view!r} needs request field {field!r}; pass request_data={{{field!r}: [...]}}",
            view=view, column=field,
        )
    column = request_data[field]
    if isinstance(column, (str, bytes)) or not isinstance(column, Sequence):
        raise InputError(f"request_data[{field!r}] must be a list with one value per entity", column=field)
    if n is not None and len(column) != n:
        raise InputError(f"request_data[{field!r}] has {len(column)} values for {n} entities", column=field)
    return list(column)


def resolve_future(
    con: Any, layout: ViewLayout, features: list[str], keys: list[Any], future: list[int], now_us: int,
    values: list[list[Any]], statuses: list[list[str]], *, ties: bool, times: list[int | None] | None = None,
) -> None:
    """Entities whose latest event is dated after ``now``: fill in the point-in-time value
    at ``now`` from history, with the status the same rules give (and, in ``times``, the
    event time of the row it came from)."""
    probe_columns: dict[str, list[Any]] = {}
    single = len(layout.key_names) == 1
    for j, k in enumerate(layout.key_names):
        probe_columns[k] = [keys[i] if single else keys[i][j] for i in future]
    probe = pa.table({
        **{k: pa.array(v, type=arrow_type(d)) for (k, d), v in zip(layout.keys, probe_columns.values(), strict=True)},
        offline.PROBE_TS: pa.array([now_us] * len(future), type=pa.int64()).cast(pa.timestamp("us")),
        offline.PROBE_ROW: pa.array(range(len(future)), type=pa.int64()),
    })
    result = point_in_time(con, layout, features, probe, ties=ties, event_time=True)
    matched = result.column(offline.EVENT_TS).cast(pa.int64()).to_pylist()
    oldest = Ttl.of(layout.view.ttl).oldest_us(now_us)
    verdicts = [row_verdict(t, now_us, oldest) for t in matched]
    if times is not None:
        for j, i in enumerate(future):
            times[i] = matched[j]
    for f, feature in enumerate(features):
        column = to_python(result.column(feature), layout.view.schema[feature])
        for j, i in enumerate(future):
            verdict = verdicts[j]
            values[f][i] = column[j]
            statuses[f][i] = verdict if verdict is not None else value_status(column[j] is not None)


class StateWindows:
    """The :class:`WindowSource` of a store: each view's buffer in its online state, loaded
    under the store's lock; history (same engine) for read times the buffer does not cover."""

    def __init__(
        self, states: Mapping[str, OnlineState], lock: AbstractContextManager[Any],
        con: Callable[[], duckdb.DuckDBPyConnection],
    ) -> None:
        self._states, self._lock, self._con = states, lock, con

    def _state(self, view: str) -> OnlineState:
        state = self._states.get(view)
        if state is None:
            raise UnknownFeatureViewError(f"feature view {view!r} was deleted during the read; read again", name=view)
        return state

    def layout(self, view: str) -> ViewLayout:
        return self._state(view).layout

    def aggregates(
        self, view: str, aggregations: tuple[Aggregation, ...], keys: list[Any], now_us: int
    ) -> tuple[list[list[Any]], list[list[bool]], list[list[int]]]:
        state = self._state(view)
        buffer = state.window
        if buffer is None:
            with self._lock, translating(f"loading the recent events of view {view!r}", view=view):
                buffer = self._state(view).load_window(self._con())
        if buffer.covers(now_us) and buffer.holds(aggregations):
            return buffer.read(keys, aggregations, now_us)
        with self._lock, translating(f"the windowed aggregates of view {view!r}", view=view):
            return _aggregates_from_history(self._con(), state.layout, aggregations, keys, now_us)


def _aggregates_from_history(
    con: duckdb.DuckDBPyConnection, layout: ViewLayout, aggregations: tuple[Aggregation, ...], keys: list[Any],
    now_us: int,
) -> tuple[list[list[Any]], list[list[bool]], list[list[int]]]:
    """Windowed aggregates at ``now_us`` from history: what a training set at that time gives."""
    single = len(layout.key_names) == 1
    probe = pa.table({
        **{
            k: pa.array([key if single else key[j] for key in keys], type=arrow_type(d))
            for j, (k, d) in enumerate(layout.keys)
        },
        offline.PROBE_TS: pa.array([now_us] * len(keys), type=pa.int64()).cast(pa.timestamp("us")),
        offline.PROBE_ROW: pa.array(range(len(keys)), type=pa.int64()),
    })
    arrays, events = aggregates_at(con, layout, aggregations, probe)
    found, present, counts = [], [], []
    for agg in aggregations:
        array = arrays[agg.name]
        # (the aggregation's own dtype rule: a pinned version's aggregation may not be the view's now)
        found.append(to_python(array, agg.output_dtype(layout.view.schema[agg.column])))
        present.append(array.is_valid().to_pylist())
        counts.append(events[agg.name].tolist())
    return found, present, counts
