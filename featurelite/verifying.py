"""What ``Store.verify`` runs for one view: each featurizer's batch path against its
per-request path (:mod:`featurelite.verification`), and each windowed aggregate's online
path against its training-set path.

The aggregates are checked at (key, time) pairs taken from the view's history: sampled
events (half of them the latest, which the online buffer holds) at their own time, just
before it, and where they leave each window (the last instant inside, the first outside).
The training-set path (:func:`featurelite.window_history.aggregates_at`) answers them all
in one batch; the online path answers them read time by read time, as serving would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from . import offline
from .db import fetch_arrow, quote, translating
from .layout import ViewLayout
from .onlineindex import to_python
from .planning import Catalog
from .results import VerifyResult
from .rules import window_status
from .types import arrow_type, from_micros
from .verification import same_bits
from .window_history import PROBE_ROW, PROBE_TS, aggregates_at

if TYPE_CHECKING:
    from .definitions import Aggregation

__all__ = ["AGGREGATIONS", "OnlineAggregates", "WindowMismatch", "verify_view", "verify_windows"]

#: The ``featurizer`` a VerifyResult of a view's windowed aggregates names.
AGGREGATIONS = "aggregations"

#: The online path of a view's aggregates: (view, aggregations, keys, read time in
#: microseconds) -> (values per aggregation, present per aggregation, events per aggregation),
#: as ``lookup.WindowSource.aggregates``.
OnlineAggregates = Callable[
    [str, tuple["Aggregation", ...], list[Any], int], tuple[list[list[Any]], list[list[bool]], list[list[int]]]
]


@dataclass(frozen=True)
class WindowMismatch:
    """A (key, time) at which an aggregate's online value or status differs from the
    training set's."""

    view: str
    feature: str
    key: Any
    at_us: int
    training: Any
    training_status: str
    online: Any
    online_status: str

    def __str__(self) -> str:
        return (
            f"aggregate {self.view}:{self.feature} for key {self.key!r} at {from_micros(self.at_us).isoformat()}: "
            f"the training set gives {self.training!r} ({self.training_status}), "
            f"an online read gives {self.online!r} ({self.online_status})"
        )


def verify_view(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, view: str, online: OnlineAggregates, *, examples: int, seed: int,
) -> list[VerifyResult]:
    """Every check of ``view``: its featurizers (if any), then its windowed aggregates (if
    any). InputError for a view with neither."""
    layout = catalog.layouts.get(view)
    if layout is not None and layout.view.aggregations and not layout.derived:
        return [verify_windows(con, layout, online, examples=examples, seed=seed)]
    results = []
    for fz, features, sources in catalog.featurizer_sources(view):  # raises for a view with nothing to check
        samples = {
            param: offline.sample(con, catalog.layout(source), field, examples)
            for param, (source, field) in sources.items()
        }
        mismatch = fz.verify(examples=examples, seed=seed, samples=samples)
        results.append(VerifyResult(view, features, fz.name, examples, mismatch))
    if layout is not None and layout.view.aggregations:
        results.append(verify_windows(con, layout, online, examples=examples, seed=seed))
    return results


def verify_windows(
    con: duckdb.DuckDBPyConnection, layout: ViewLayout, online: OnlineAggregates, *, examples: int, seed: int,
) -> VerifyResult:
    """The online path against the training-set path at up to ``examples`` (key, time)
    pairs from the view's history; the first difference, value or status, is reported."""
    aggregations = layout.view.aggregations
    features = tuple(a.name for a in aggregations)
    points = _points(con, layout, examples, seed)
    if not points:  # no history: nothing to compare
        return VerifyResult(layout.name, features, AGGREGATIONS, 0)
    keys, times = [p[0] for p in points], [p[1] for p in points]
    with translating(f"the windowed aggregates of view {layout.name!r}", view=layout.name):
        arrays, events = aggregates_at(con, layout, aggregations, _probe(layout, keys, times))
    schema = layout.view.aggregation_schema
    expected = {a.name: (to_python(arrays[a.name], schema[a.name]), arrays[a.name].is_valid().to_pylist())
                for a in aggregations}
    by_time: dict[int, list[int]] = {}
    for row, t in enumerate(times):
        by_time.setdefault(t, []).append(row)
    for t, rows in by_time.items():
        found, present, counts = online(layout.name, aggregations, [keys[r] for r in rows], t)
        for a, vals, oks, ns in zip(aggregations, found, present, counts, strict=True):
            want, valid = expected[a.name]
            for j, row in enumerate(rows):
                trained = (want[row], window_status(valid[row], int(events[a.name][row])))
                served = (vals[j], window_status(oks[j], ns[j]))
                if not (same_bits(trained[0], served[0]) and trained[1] == served[1]):
                    mismatch = WindowMismatch(layout.name, a.name, keys[row], t, *trained, *served)
                    return VerifyResult(layout.name, features, AGGREGATIONS, len(points), mismatch)
    return VerifyResult(layout.name, features, AGGREGATIONS, len(points))


def _points(con: duckdb.DuckDBPyConnection, layout: ViewLayout, examples: int, seed: int) -> list[tuple[Any, int]]:
    """Up to ``examples`` distinct (key, time) pairs around sampled events' window edges."""
    windows = sorted({a.window_us for a in layout.view.aggregations})
    per_event = 2 + 2 * len(windows)
    wanted = max(1, -(-examples // per_event))
    keys = ", ".join(quote(k) for k in layout.key_names)
    ts = quote(layout.ts)
    recent = wanted // 2
    query = (
        f"(SELECT {keys}, epoch_us({ts}) FROM {layout.history_table} ORDER BY {ts} DESC LIMIT {int(recent)}) "
        f"UNION ALL (SELECT {keys}, epoch_us({ts}) FROM {layout.history_table} "
        f"USING SAMPLE reservoir({int(wanted - recent)} ROWS) REPEATABLE ({int(seed)}))"
    )
    with translating(f"sampling the history of view {layout.name!r}", view=layout.name):
        table = fetch_arrow(con, query)
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    single = len(layout.key_names) == 1
    points: dict[tuple[Any, int], None] = {}
    for row in range(table.num_rows):
        key = columns[0][row] if single else tuple(c[row] for c in columns[:-1])
        t = columns[-1][row]
        if key is None or (not single and None in key):  # a row no online read can ask for
            continue
        for at in (t - 1, t, *(t + w - 1 for w in windows), *(t + w for w in windows)):
            points.setdefault((key, at), None)
    return list(points)[:examples]


def _probe(layout: ViewLayout, keys: Sequence[Any], times: Sequence[int]) -> pa.Table:
    single = len(layout.key_names) == 1
    return pa.table({
        **{
            k: pa.array([key if single else key[j] for key in keys], type=arrow_type(d))
            for j, (k, d) in enumerate(layout.keys)
        },
        PROBE_TS: pa.array(list(times), type=pa.int64()).cast(pa.timestamp("us")),
        PROBE_ROW: pa.array(range(len(keys)), type=pa.int64()),
    })
