"""featurelite.windows against a brute-force oracle that shares no code with it.

The oracle selects each query's events one by one (``t - w < ts <= t`` and valid), sums with
``fractions.Fraction`` (exact) and rounds once with ``float()``; min / max / last follow the rules
as written. Every result is compared bit for bit.
"""

from __future__ import annotations

import math
import random
import struct
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurelite import windows
from featurelite.errors import InputError
from featurelite.windows import FUNCTIONS, PICKS, WindowResult, aggregate

NAN = float("nan")
INF = float("inf")
MAX = 1.7976931348623157e308
TINY = 5e-324
I64_MIN = -(2**63)
I64_MAX = 2**63 - 1


def bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def wrap64(n: int) -> int:
    n &= (1 << 64) - 1
    return n - (1 << 64) if n >= 1 << 63 else n


# -- the oracle -----------------------------------------------------------------------------------


def in_window(case, q):
    """Indices of the valid events of query q's window, in array order."""
    g, t = case["query_groups"][q], case["query_ts"][q]
    w = case["window"]
    start, end = case["group_starts"][g], case["group_starts"][g + 1]
    return [i for i in range(start, end) if t - w < case["ts"][i] <= t and case["valid"][i]]


def exact_round(xs):
    """The exact sum of floats rounded once, with the special-value rule."""
    if any(math.isnan(x) for x in xs) or (INF in xs and -INF in xs):
        return NAN
    if INF in xs:
        return INF
    if -INF in xs:
        return -INF
    total = sum((Fraction(x) for x in xs), Fraction(0))
    if total == 0:
        return 0.0
    try:
        return float(total)
    except OverflowError:
        return INF if total > 0 else -INF


def oracle(function, case, q):
    """(valid, value) for query q; value is an index for picks, an int for count / int sum, else a float."""
    chosen = in_window(case, q)
    values = case["values"]
    is_int = case["kind"] == "int"
    n = len(chosen)
    if function == "count":
        return True, n
    if function == "last":
        return (True, chosen[-1]) if chosen else (False, -1)
    if function in ("min", "max"):
        if not chosen:
            return False, -1
        nans = [i for i in chosen if not is_int and math.isnan(values[i])]
        if nans:
            return True, nans[-1]

        def key(i):
            x = values[i]
            return (x, 0) if is_int else (x, math.copysign(1.0, x))

        best = chosen[0]
        for i in chosen[1:]:
            if (key(i) >= key(best)) if function == "max" else (key(i) <= key(best)):
                best = i
        return True, best
    if function == "sum":
        if is_int:
            return True, wrap64(sum(values[i] for i in chosen))
        return True, exact_round([values[i] for i in chosen])
    if n == 0 or (function in ("var", "std") and n < 2):
        return False, 0.0
    total = float(sum(values[i] for i in chosen)) if is_int else exact_round([values[i] for i in chosen])
    mean = total / n
    if function == "mean":
        return True, mean
    terms = []
    for i in chosen:
        d = float(values[i]) - mean
        terms.append(d * d)
    var = exact_round(terms) / (n - 1)
    return True, var if function == "var" else math.sqrt(var)


def run(function, case):
    values = case["values"]
    if case["kind"] == "float":
        column = np.array(values, dtype=np.float64)
    elif case["kind"] == "int":
        column = np.array(values, dtype=np.int64)
    else:
        column = None
    return aggregate(
        function,
        case["window"],
        np.array(case["group_starts"], dtype=np.int64),
        np.array(case["ts"], dtype=np.int64),
        column,
        np.array(case["valid"], dtype=np.bool_),
        np.array(case["query_groups"], dtype=np.int64),
        np.array(case["query_ts"], dtype=np.int64),
    )


def check_against_oracle(function, case):
    result = run(function, case)
    assert isinstance(result, WindowResult)
    n = len(case["query_ts"])
    for array, dtype in ((result.index, np.int64), (result.number, np.float64), (result.integer, np.int64),
                         (result.valid, np.bool_), (result.events, np.int64)):
        assert array.dtype == dtype and array.shape == (n,)
    for q in range(n):
        ok, expected = oracle(function, case, q)
        where = f"{function} query {q} ({case['query_groups'][q]}, {case['query_ts'][q]})"
        assert result.events[q] == len(in_window(case, q)), where
        assert bool(result.valid[q]) == ok, where
        if function in PICKS:
            assert result.index[q] == expected, where
        elif function == "count" or (function == "sum" and case["kind"] == "int"):
            assert result.integer[q] == expected, where
            assert bits(result.number[q]) == 0, where
        else:
            got = float(result.number[q])
            assert bits(got) == bits(expected), f"{where}: {got!r} != {expected!r}"
        if function not in PICKS:
            assert result.index[q] == -1, where
    return result


# -- strategies -----------------------------------------------------------------------------------

SPECIAL_FLOATS = [0.0, -0.0, NAN, INF, -INF, TINY, -TINY, 3 * TINY, 2.2250738585072014e-308, -2.225073858507201e-308,
                  1e308, -1e308, MAX, -MAX, 1e16, -1e16, 1.0, -1.0, 0.5, 3.0, 2.0**53, 2.0**-60, 1e-300]
FINITE_SPECIAL = [x for x in SPECIAL_FLOATS if math.isfinite(x)]
finite_floats = st.one_of(
    st.sampled_from(FINITE_SPECIAL),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(width=32, allow_nan=False, allow_infinity=False).map(float),
    st.integers(-8, 8).map(float),
)
any_floats = st.one_of(finite_floats, st.sampled_from(SPECIAL_FLOATS), st.floats())
any_ints = st.one_of(
    st.integers(I64_MIN, I64_MAX),
    st.sampled_from([2**62, -(2**62), 2**62 - 1, 2**62 + 1, I64_MAX, I64_MIN, 2**53 + 1, -(2**53) - 1, 0]),
    st.integers(-4, 4),
)
windows_us = st.one_of(st.integers(1, 12), st.sampled_from([1, 2, 5, 40, 1000, 2**40, 2**62]))


@st.composite
def cases(draw, kind="float", max_events=10, max_queries=6, specials=None):
    """Random groups of events (unsorted, with ties) and queries; the test sorts them as the caller would."""
    if kind == "float":
        if specials is None:
            specials = draw(st.booleans())
        element = any_floats if specials else finite_floats
    elif kind == "int":
        element = any_ints
    else:
        element = st.none()
    n_groups = draw(st.integers(1, 4))
    time_span = draw(st.sampled_from([3, 10, 40]))
    ts, values, valid, group_starts = [], [], [], [0]
    query_groups, query_ts = [], []
    for g in range(n_groups):
        events = draw(st.lists(st.tuples(st.integers(0, time_span), element, st.integers(0, 4).map(bool)),
                               max_size=max_events))
        events.sort(key=lambda e: e[0])  # stable: equal times keep their arrival (ingest) order
        for t, v, ok in events:
            ts.append(t)
            values.append(v)
            valid.append(ok)
        group_starts.append(len(ts))
        queries = sorted(draw(st.lists(st.integers(-3, time_span + 5), max_size=max_queries)))
        query_groups += [g] * len(queries)
        query_ts += queries
    return {"kind": kind, "window": draw(windows_us), "ts": ts, "values": values, "valid": valid,
            "group_starts": group_starts, "query_groups": query_groups, "query_ts": query_ts}


# -- the properties -------------------------------------------------------------------------------


@settings(max_examples=120, deadline=None)
@given(cases("float"))
def test_float_columns_match_the_oracle_bit_for_bit(case):
    for function in FUNCTIONS:
        check_against_oracle(function, case)


@settings(max_examples=120, deadline=None)
@given(cases("int"))
def test_int_columns_match_the_oracle(case):
    for function in FUNCTIONS:
        check_against_oracle(function, case)


@settings(max_examples=40, deadline=None)
@given(cases("none"))
def test_non_numeric_columns_have_count_and_last(case):
    for function in ("count", "last"):
        check_against_oracle(function, case)
    for function in set(FUNCTIONS) - {"count", "last"}:
        with pytest.raises(ValueError, match=function):
            run(function, case)


@settings(max_examples=25, deadline=None)
@given(st.data(), st.sampled_from(["float", "int"]))
def test_a_sliding_window_equals_a_fresh_sum_over_long_sequences(data, kind):
    """Hundreds of adds and removes in one sweep, then each window computed on its own."""
    element = st.one_of(st.sampled_from([1e308, -1e308, 1e16, -1e16, 1.0, TINY, -0.5, 2.0**-1000]),
                        st.floats(allow_nan=False, allow_infinity=False)) if kind == "float" else any_ints
    values = data.draw(st.lists(element, min_size=50, max_size=300))
    n = len(values)
    ts = sorted(data.draw(st.lists(st.integers(0, 4 * n), min_size=n, max_size=n)))
    window = data.draw(st.integers(1, 40))
    queries = sorted(data.draw(st.lists(st.integers(0, 4 * n + 50), min_size=1, max_size=60)))
    case = {"kind": kind, "window": window, "ts": ts, "values": values, "valid": [True] * n,
            "group_starts": [0, n], "query_groups": [0] * len(queries), "query_ts": queries}
    for function in ("sum", "mean", "var"):
        slid = check_against_oracle(function, case)
        for q, t in enumerate(queries):
            inside = [i for i in range(n) if t - window < ts[i] <= t]
            fresh = {**case, "ts": [ts[i] for i in inside], "values": [values[i] for i in inside],
                     "valid": [True] * len(inside), "group_starts": [0, len(inside)],
                     "query_groups": [0], "query_ts": [t]}
            alone = run(function, fresh)
            assert bits(alone.number[0]) == bits(slid.number[q]) and alone.integer[0] == slid.integer[q]
            assert alone.valid[0] == slid.valid[q]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1, -1]), any_floats, st.booleans()), max_size=120), st.randoms())
def test_the_accumulator_is_exact_under_add_subtract_and_normalise(ops, rnd):
    """Directly on the accumulator: after adds, removes and normalisations at random points, the
    state reads like a fresh accumulator holding the multiset that remains."""
    acc = np.zeros(windows._STATE, dtype=np.int64)
    scratch = np.zeros(windows._STATE, dtype=np.int64)
    kept = []
    for sign, x, normalise in ops:
        if sign == -1 and kept:
            y = kept.pop(rnd.randrange(len(kept)))
            windows._acc_add_float(acc, y, -1)
        else:
            kept.append(x)
            windows._acc_add_float(acc, x, 1)
        if normalise:
            windows._acc_normalise(acc)
    fresh = np.zeros(windows._STATE, dtype=np.int64)
    for x in reversed(kept):
        windows._acc_add_float(fresh, x, 1)
    assert bits(windows._acc_float(acc, scratch)) == bits(windows._acc_float(fresh, scratch)) == bits(exact_round(kept))
    windows._acc_normalise(acc)
    windows._acc_normalise(fresh)
    assert np.array_equal(acc[: windows._LIMBS], fresh[: windows._LIMBS])


@settings(max_examples=80, deadline=None)
@given(cases("float", max_events=12), st.randoms())
def test_the_order_of_events_with_equal_times_only_matters_for_picks(case, rnd):
    """Shuffle the events that share a time in a group: count/sum/mean/std/var keep their bits;
    min/max pick the same value (a NaN if the window has one), last follows the new order."""
    shuffled = {**case, "ts": list(case["ts"]), "values": list(case["values"]), "valid": list(case["valid"])}
    starts = case["group_starts"]
    for g in range(len(starts) - 1):
        i = starts[g]
        while i < starts[g + 1]:
            j = i
            while j < starts[g + 1] and case["ts"][j] == case["ts"][i]:
                j += 1
            block = list(range(i, j))
            rnd.shuffle(block)
            for k, src in zip(range(i, j), block, strict=True):
                shuffled["values"][k] = case["values"][src]
                shuffled["valid"][k] = case["valid"][src]
            i = j
    for function in FUNCTIONS:
        before = run(function, case)
        after = check_against_oracle(function, shuffled)
        assert np.array_equal(before.valid, after.valid)
        assert np.array_equal(before.events, after.events)
        if function in ("min", "max"):
            for a, b in zip(before.index, after.index, strict=True):
                if a >= 0:
                    va, vb = case["values"][a], shuffled["values"][b]
                    assert (math.isnan(va) and math.isnan(vb)) or bits(va) == bits(vb)
        elif function != "last":
            assert np.array_equal(before.number.view(np.uint64), after.number.view(np.uint64)), function
            assert np.array_equal(before.integer, after.integer)


# -- examples -------------------------------------------------------------------------------------


def one_window(function, values, kind="float"):
    """``function`` over all of ``values`` (one group, one query that sees every event)."""
    n = len(values)
    case = {"kind": kind, "window": 100, "ts": list(range(n)), "values": values, "valid": [True] * n,
            "group_starts": [0, n], "query_groups": [0], "query_ts": [n]}
    return check_against_oracle(function, case)


def test_the_sum_is_exact_where_a_naive_sum_is_not():
    for values, exact in (([1e16, 1.0, -1e16], 1.0), ([1e308, 1e308, -1e308], 1e308), ([0.1] * 10, 1.0),
                          ([2.0**53, 1.0, 1.0], 2.0**53 + 2)):
        naive = 0.0
        for x in values:
            naive += x
        assert naive != exact  # the test can tell an inexact implementation from an exact one
        assert one_window("sum", values).number[0] == exact
        if max(map(abs, values)) < 1e300:  # math.fsum raises on an intermediate overflow; this sum does not
            assert math.fsum(values) == exact


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], 0.0),
        ([-0.0], 0.0),
        ([-0.0, -0.0], 0.0),
        ([1.0, -1.0], 0.0),
        ([MAX, MAX], INF),
        ([-MAX, -MAX], -INF),
        ([MAX, 2.0**970], INF),  # a tie at the top rounds to even: 2**1024, which overflows
        ([MAX, 2.0**970, -TINY], MAX),  # just under the tie
        ([MAX, 2.0**969], MAX),
        ([TINY, TINY], 2 * TINY),
        ([2.0**-1022, -TINY], 2.0**-1022 - TINY),
        ([1.0, 2.0**-53], 1.0),  # tie: to even
        ([1.0, 2.0**-53, TINY], 1.0 + 2.0**-52),  # the sticky bit breaks the tie
        ([1.0 + 2.0**-52, 2.0**-53], 1.0 + 2.0**-51),  # tie: to even (up)
        ([INF, 1.0], INF),
        ([INF, -INF], NAN),
        ([NAN, 1.0], NAN),
        ([-INF, -MAX], -INF),
    ],
)
def test_sum_edges(values, expected):
    got = one_window("sum", values).number[0]
    assert bits(got) == bits(expected), (got, expected)


def test_integer_sums_are_exact_and_wrap():
    assert one_window("sum", [2**62, 2**62, -5], kind="int").integer[0] == 2**63 - 5
    assert one_window("sum", [2**62, 2**62, 2**62], kind="int").integer[0] == wrap64(3 * 2**62)
    assert one_window("sum", [I64_MIN, -1], kind="int").integer[0] == I64_MAX
    # the mean rounds the exact integer sum once: 2**53 + 1 is a tie, to even
    assert one_window("mean", [2**53, 1], kind="int").number[0] == (2.0**53) / 2
    assert one_window("mean", [I64_MAX, I64_MAX, I64_MAX], kind="int").number[0] == float(3 * I64_MAX) / 3


def test_min_max_order_and_ties():
    result = one_window("min", [0.0, -0.0, 1.0, -0.0])
    assert result.index[0] == 3  # -0.0 < +0.0; among equal bits, the latest
    assert one_window("max", [-0.0, 0.0, -1.0, 0.0]).index[0] == 3
    assert one_window("min", [-0.0, 0.0]).index[0] == 0
    assert one_window("max", [0.0, -0.0]).index[0] == 0
    assert one_window("min", [-TINY, -0.0, 0.0, TINY]).index[0] == 0
    assert one_window("max", [NAN, INF, NAN, 1.0]).index[0] == 2  # a NaN wins, the latest one
    assert one_window("min", [NAN, -INF, 1.0]).index[0] == 0
    assert one_window("min", [5, 3, 3, 9], kind="int").index[0] == 2


def test_window_bounds_are_open_below_and_closed_above():
    case = {"kind": "float", "window": 5, "ts": [0, 5, 10], "values": [1.0, 2.0, 4.0], "valid": [True] * 3,
            "group_starts": [0, 3], "query_groups": [0] * 6, "query_ts": [-1, 0, 4, 5, 10, 16]}
    result = check_against_oracle("sum", case)
    assert result.number.tolist() == [0.0, 1.0, 1.0, 2.0, 4.0, 0.0]  # (t - 5, t]: the event at t - 5 is out
    assert check_against_oracle("count", {**case, "window": 1}).integer.tolist() == [0, 1, 0, 1, 1, 0]


def test_nulls_are_skipped_and_empty_windows():
    case = {"kind": "float", "window": 10, "ts": [1, 2, 3], "values": [NAN, 2.0, 3.0], "valid": [False, True, False],
            "group_starts": [0, 3, 3], "query_groups": [0, 0, 1], "query_ts": [1, 3, 3]}
    assert check_against_oracle("sum", case).number.tolist() == [0.0, 2.0, 0.0]
    assert check_against_oracle("count", case).integer.tolist() == [0, 1, 0]
    last = check_against_oracle("last", case)
    assert last.index.tolist() == [-1, 1, -1] and last.valid.tolist() == [False, True, False]
    mean = check_against_oracle("mean", case)
    assert mean.valid.tolist() == [False, True, False]
    assert check_against_oracle("var", case).valid.tolist() == [False, False, False]


def test_query_times_near_the_int64_limits():
    case = {"kind": "int", "window": 2**62, "ts": [I64_MIN, I64_MIN + 1, I64_MAX], "values": [1, 2, 4],
            "valid": [True] * 3, "group_starts": [0, 3], "query_groups": [0] * 3,
            "query_ts": [I64_MIN, I64_MIN + 5, I64_MAX]}
    assert check_against_oracle("sum", case).integer.tolist() == [1, 3, 4]


def test_var_and_std_follow_the_float_arithmetic():
    assert one_window("var", [1.0, 2.0, 3.0, 4.0]).number[0] == Fraction(5, 3).__float__()
    assert math.isnan(one_window("var", [INF, 1.0]).number[0])
    assert one_window("var", [1e308, -1e308]).number[0] == INF
    assert one_window("std", [2.0, 2.0]).number[0] == 0.0
    for _ in range(20):
        rng = random.Random(_)
        one_window("std", [rng.uniform(-1e6, 1e6) for _ in range(rng.randrange(2, 40))])


def test_many_queries_in_one_call_match_per_query_calls():
    """The batch path (all queries at once) and the per-request path (one query per call) agree."""
    rng = np.random.default_rng(7)
    n = 2000
    ts = np.sort(rng.integers(0, 5000, n))
    values = rng.standard_normal(n) * 10.0 ** rng.integers(-20, 20, n)
    valid = rng.random(n) > 0.1
    queries = np.sort(rng.integers(0, 5100, 300))
    for function in FUNCTIONS:
        batch = aggregate(function, 250, np.array([0, n]), ts, values, valid, np.zeros(300, np.int64), queries)
        for q in range(0, 300, 29):
            single = aggregate(function, 250, np.array([0, n]), ts, values, valid, np.zeros(1, np.int64), queries[q:q + 1])
            for name in ("index", "integer", "valid", "events"):
                assert getattr(single, name)[0] == getattr(batch, name)[q]
            assert bits(single.number[0]) == bits(batch.number[q])


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"function": "median"}, "median"),
        ({"window_us": 0}, "window"),
        ({"window_us": 1.5}, "window"),
        ({"ts": [2, 1]}, "sorted"),
        ({"query_ts": [3, 1]}, "sorted"),
        ({"query_groups": [0, 1]}, "group"),
        ({"group_starts": [0, 1]}, "group_starts"),
        ({"valid": [1, 1]}, "valid"),
        ({"values": ["a", "b"]}, "values"),
        ({"values": None}, "numeric"),
    ],
)
def test_bad_input_is_a_clear_error(change, match):
    args = {"function": "sum", "window_us": 5, "group_starts": [0, 2], "ts": [1, 2], "values": [1.0, 2.0],
            "valid": [True, True], "query_groups": [0, 0], "query_ts": [1, 3], **change}
    args = {k: np.array(v) if isinstance(v, list) else v for k, v in args.items()}
    with pytest.raises(InputError, match=match):
        aggregate(**args)
    assert issubclass(InputError, ValueError)
