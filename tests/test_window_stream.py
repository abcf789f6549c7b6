"""featurelite.window_stream: the windowed aggregates featurelite.spark's Python workers
compute over a partition's sorted Arrow batches. Wherever Spark cuts the stream into
batches (a group of one key spanning many batches, as a hot key's does), every query row
gets the aggregates of exactly its own group's events: the same as one batch, and as a
sum and count worked out directly (``math.fsum``) from the rows."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

import featurelite as fl
from featurelite.window_stream import stream_groups

WINDOW_US = 10
AGGS = (fl.Aggregation("x", "sum", "10us"), fl.Aggregation("x", "count", "10us"), fl.Aggregation("x", "last", "10us"))
NAMES = ("kind", "t", "row")
OUT = {"x_sum_10us": "float64", "x_count_10us": "int64", "x_last_10us": "float64"}

values = st.one_of(st.none(), st.sampled_from([0.0, -0.0, 1.0, 1e16, -1e16, 0.5, math.inf]),
                   st.floats(-1e6, 1e6, allow_nan=False))


@st.composite
def streams(draw: st.DrawFn) -> pa.Table:
    """Rows sorted as Spark sorts them: by key (nulls first: only query rows have them),
    bucket, time; events (kind 0) and queries (kind 1) interleaved."""
    rows = []
    for _ in range(draw(st.integers(1, 40))):
        is_query = draw(st.booleans())
        key = draw(st.one_of(st.none(), st.integers(0, 3))) if is_query else draw(st.integers(0, 3))
        rows.append((key, draw(st.integers(0, 1)), draw(st.integers(0, 30)), 1 if is_query else 0,
                     None if not is_query else 0, draw(values) if not is_query else None))
    rows.sort(key=lambda r: (r[0] is not None, r[0] or 0, r[1], r[2]))
    query_rows = iter(range(len(rows)))
    return pa.table({
        "key": pa.array([r[0] for r in rows], pa.int64()),
        "bucket": pa.array([r[1] for r in rows], pa.int64()),
        "t": pa.array([r[2] for r in rows], pa.int64()),
        "kind": pa.array([r[3] for r in rows], pa.int64()),
        "row": pa.array([None if r[4] is None else next(query_rows) for r in rows], pa.int64()),
        "x": pa.array([r[5] for r in rows], pa.float64()),
    })


def run(table: pa.Table, cuts: list[int]) -> pa.Table:
    bounds = [0, *sorted(set(cuts)), table.num_rows]
    batches = [b for lo, hi in pairwise(bounds) if hi > lo
               for b in table.slice(lo, hi - lo).to_batches()]
    out = list(stream_groups(iter(batches), ["key", "bucket"], NAMES, AGGS, {"x": "float64"}, OUT))
    result = pa.Table.from_batches(out) if out else None
    if result is None:
        return pa.table({"row": pa.array([], pa.int64())})
    return result.sort_by("row")


@settings(max_examples=300, deadline=None)
@given(table=streams(), data=st.data())
def test_any_cut_of_the_stream_into_batches_gives_each_query_its_own_groups_window(table, data):
    cuts = data.draw(st.lists(st.integers(1, max(1, table.num_rows - 1)), max_size=8))
    whole, cut = run(table, []), run(table, cuts)
    assert cut.equals(whole)
    queries = [r for r in table.to_pylist() if r["kind"] == 1]
    assert whole.column("row").to_pylist() == sorted(q["row"] for q in queries)
    events = [r for r in table.to_pylist() if r["kind"] == 0]
    by_row = {r["row"]: r for r in whole.to_pylist()}
    for q in queries:
        mine = [e["x"] for e in events if q["key"] is not None and (e["key"], e["bucket"]) == (q["key"], q["bucket"])
                and q["t"] - WINDOW_US < e["t"] <= q["t"] and e["x"] is not None]
        got = by_row[q["row"]]
        assert got["x_count_10us"] == len(mine)
        expected = math.fsum(mine) if mine else 0.0
        if not math.isnan(expected):
            assert np.float64(got["x_sum_10us"]).tobytes() == np.float64(expected + 0.0).tobytes()


def test_a_stream_of_events_only_answers_nothing():
    table = pa.table({"key": pa.array([1], pa.int64()), "bucket": pa.array([0], pa.int64()),
                      "t": pa.array([5], pa.int64()), "kind": pa.array([0], pa.int64()),
                      "row": pa.array([None], pa.int64()), "x": pa.array([1.0])})
    assert list(stream_groups(iter(table.to_batches()), ["key", "bucket"], NAMES, AGGS, {"x": "float64"}, OUT)) == []
