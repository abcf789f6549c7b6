"""Windowed aggregates over sorted events: the one compiled engine both read paths call.

A training set (many query times at once) and an online request (one query time per key) call
:func:`aggregate`, which makes a single call into one Numba kernel; the same compiled code gives
the same bits on both paths by construction. The module is pure: NumPy and Numba, no DuckDB, no I/O.

The window rule
---------------
The aggregate at query time ``t`` over a window of ``w`` microseconds covers the group's events
whose event time lies in ``(t - w, t]``: an event exactly ``w`` before ``t`` has left the window, an
event at ``t`` is in it. Null values (``valid`` False) are skipped everywhere: they are never counted,
summed, picked or returned by ``last``.

Inputs
------
Events of all groups are concatenated; group ``g``'s events are ``[group_starts[g], group_starts[g+1])``,
sorted within the group by the winner order (event time, then created time, then ingest order: the
caller sorts). ``ts`` and query times are int64 microseconds. ``values`` is a float64 array (float
columns; float32 widens exactly), an int64 array (integer columns), or None for a non-numeric column
(then only ``count`` and ``last`` are defined). Queries come sorted by (group, time); the kernel sweeps
each group's events once with two pointers (add events with ``ts <= t``, drop events with
``ts <= t - w``), so count, sum, mean, last, min and max cost O(events + queries), and std / var
cost O(events in the window) per query. When every event read so far has left the window (always
at a group's first query), the sweep binary-searches to the first event after ``t - w`` instead of
stepping through the gap, so one request against a long history costs O(log events + window).
Broken ordering raises InputError (a ValueError): queries are checked in full, events where the
sweep reads them.

The functions (exact; every path gives these bits)
--------------------------------------------------
``count``
    The number of non-null values in the window (``integer``); an empty window gives 0, not null.
``sum``
    Float columns: the EXACT sum of the window's values rounded once to float64 (round half to even),
    as ``math.fsum`` would give it; the order of the values never matters. Special values are kept
    apart: any NaN, or +inf and -inf together, give NaN; otherwise +inf or -inf if present; an exact
    zero is +0.0 (also for ``[-0.0]``); an exact sum beyond the float64 range rounds to +-inf. An
    empty window gives 0.0. Integer columns: the exact integer sum as int64 (``integer``), wrapping
    modulo 2**64 beyond the int64 range (as NumPy's int64 arithmetic does); an empty window gives 0.
``mean``
    The correctly rounded sum as float64 (for integer columns: the exact integer sum rounded once to
    float64) divided by the count in float64. An empty window is null.
``var`` / ``std``
    Sample variance (ddof=1): with ``m`` the mean above, the exact sum over the window's values of
    ``d * d`` where ``d = float64(x) - m`` (each term computed in float64: one subtraction, one
    multiplication, both correctly rounded), rounded once to float64 with the special-value rule of
    ``sum``, divided by ``n - 1``. ``std`` is ``sqrt(var)``. Fewer than two values: null. NaN and
    infinities propagate as that float arithmetic gives them.
``min`` / ``max`` (numeric columns only)
    The index of the event holding the smallest / largest value, in the total order where
    -0.0 < +0.0. If the window holds a NaN, the result is the latest NaN event; among equal values
    (same bits) the latest event wins ("latest" is array order). An empty window is null (index -1).
``last``
    The index of the last non-null event of the window in array order. An empty window is null (-1).

``min``, ``max`` and ``last`` (:data:`PICKS`) return an event's position, not a value: the caller
takes the value from its column, keeping its bits and dtype. Where a result is null, or an output
array does not apply to the function, ``index`` is -1, ``number`` 0.0 and ``integer`` 0.

The exact accumulator
---------------------
Sums are kept in a "superaccumulator": an int64 array of ``_LIMBS`` limbs, a fixed-point number with
least significant bit 2**-1088 whose limb ``i`` weighs 2**(32 * (i - 34)) (so limb 34 is the units
limb). It is kept in carry-save form: a float64 ``m * 2**e`` (53-bit integer ``m``, ``e >= -1074``)
is added or subtracted as three 32-bit chunks at its position without propagating carries, an int64
as two chunks at limbs 34 and 35. Each operation changes a limb by less than 2**32, so a limb stays
far from overflow for 2**30 operations; the accumulator then normalises (propagates carries so every
limb but the top one is in [0, 2**32)), as it does before every read. Subtraction is exact, so a
sliding window's running sum equals a fresh sum of the same values, bit for bit. NaN, +inf and -inf
are counted in three extra slots rather than summed. Reading rounds the exact value to the nearest
float64, ties to even, with a sticky bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt

from .errors import InputError

__all__ = [
    "FUNCTIONS", "KIND_FLOAT", "KIND_INT", "KIND_NONE", "PICKS", "WindowResult", "aggregate", "run", "run_many",
]

FUNCTIONS: tuple[str, ...] = ("count", "sum", "mean", "min", "max", "last", "std", "var")
#: functions whose result is the index of one chosen event (the caller takes the value from the column,
#: keeping its bits and dtype)
PICKS: frozenset[str] = frozenset({"min", "max", "last"})
#: functions defined on a column without numeric values (``values=None``)
_NON_NUMERIC: frozenset[str] = frozenset({"count", "last"})

# Function codes the kernel branches on: the positions in FUNCTIONS.
_COUNT, _SUM, _MEAN, _MIN, _MAX, _LAST, _STD, _VAR = range(8)

# Value kinds the kernel branches on.
_KIND_NONE = 0
_KIND_FLOAT = 1
_KIND_INT = 2

# The superaccumulator's layout (see the module docstring).
_LIMBS = 70  # 2240 bits: 2**-1088 .. 2**1152, room for 2**1024 * 2**128 in magnitude
_UNITS = 34  # the limb of weight 2**0
_LSB_EXPONENT = -1088  # weight of bit 0 of limb 0
_OPS = _LIMBS  # slot: operations since the last normalisation
_NANS = _LIMBS + 1  # slot: NaNs in the sum
_POS_INFS = _LIMBS + 2  # slot: +infs
_NEG_INFS = _LIMBS + 3  # slot: -infs
_STATE = _LIMBS + 4  # length of an accumulator array
_MASK32 = 0xFFFFFFFF
_NORMALISE_EVERY = 1 << 30  # each operation moves a limb by < 2**32; 2**30 of them stay far below 2**63
_TWO53 = 9007199254740992.0
_I64_MIN = -(1 << 63)
_FLIP = 0x7FFFFFFFFFFFFFFF  # xor with a negative float's bits makes them order like the floats

# Status codes the kernel returns when its input breaks the contract.
_OK = 0
_BAD_GROUP_STARTS = 1
_UNSORTED_EVENTS = 2
_BAD_QUERY_GROUP = 3
_UNSORTED_QUERIES = 4


# -- the exact accumulator ------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _acc_clear(acc: npt.NDArray[np.int64]) -> None:
    """Set the accumulator to exact zero with no special values."""
    for i in range(_STATE):
        acc[i] = 0


@numba.njit(cache=True, nogil=True)
def _acc_normalise(acc: npt.NDArray[np.int64]) -> None:
    """Propagate carries: every limb but the top one into [0, 2**32), the value unchanged."""
    for i in range(_LIMBS - 1):
        carry = acc[i] >> 32  # arithmetic shift: floor division by 2**32
        acc[i] = acc[i] & _MASK32
        acc[i + 1] += carry
    acc[_OPS] = 0


@numba.njit(cache=True, nogil=True)
def _acc_tick(acc: npt.NDArray[np.int64]) -> None:
    acc[_OPS] += 1
    if acc[_OPS] >= _NORMALISE_EVERY:
        _acc_normalise(acc)


@numba.njit(cache=True, nogil=True)
def _acc_add_float(acc: npt.NDArray[np.int64], x: float, sign: int) -> None:
    """Add (``sign`` 1) or subtract (``sign`` -1) the float64 ``x`` exactly."""
    if math.isnan(x):
        acc[_NANS] += sign
        return
    if math.isinf(x):
        if x > 0:
            acc[_POS_INFS] += sign
        else:
            acc[_NEG_INFS] += sign
        return
    if x == 0.0:
        return
    fraction, exponent = math.frexp(x)  # x = fraction * 2**exponent, 0.5 <= |fraction| < 1
    m = np.int64(fraction * _TWO53)  # exact: |m| in [2**52, 2**53)
    if m < 0:
        m = -m
        sign = -sign
    e = exponent - 53  # x = +-m * 2**e
    if e < -1074:  # a subnormal: its low bits are zero, shift them out so that e >= -1074
        m >>= -1074 - e
        e = -1074
    position = e - _LSB_EXPONENT  # >= 14
    limb = position >> 5
    shift = position & 31
    low_width = 32 - shift
    chunk0 = (m & ((np.int64(1) << low_width) - 1)) << shift
    rest = m >> low_width
    acc[limb] += sign * chunk0
    acc[limb + 1] += sign * (rest & _MASK32)
    acc[limb + 2] += sign * (rest >> 32)
    _acc_tick(acc)


@numba.njit(cache=True, nogil=True)
def _acc_add_int(acc: npt.NDArray[np.int64], x: int, sign: int) -> None:
    """Add (``sign`` 1) or subtract (``sign`` -1) the int64 ``x`` exactly."""
    acc[_UNITS] += sign * (x & _MASK32)
    acc[_UNITS + 1] += sign * (x >> 32)  # signed high half, in [-2**31, 2**31)
    _acc_tick(acc)


@numba.njit(cache=True, nogil=True)
def _bit(limbs: npt.NDArray[np.int64], i: int) -> int:
    return int((limbs[i >> 5] >> (i & 31)) & 1)


@numba.njit(cache=True, nogil=True)
def _acc_float(acc: npt.NDArray[np.int64], scratch: npt.NDArray[np.int64]) -> float:
    """The accumulated sum correctly rounded to float64 (the special-value rule applied).

    Normalises ``acc`` in place (its value is unchanged); ``scratch`` is an accumulator-sized array
    this function overwrites."""
    if acc[_NANS] > 0 or (acc[_POS_INFS] > 0 and acc[_NEG_INFS] > 0):
        return np.nan
    if acc[_POS_INFS] > 0:
        return np.inf
    if acc[_NEG_INFS] > 0:
        return -np.inf
    _acc_normalise(acc)
    negative = acc[_LIMBS - 1] < 0
    for i in range(_LIMBS):
        scratch[i] = -acc[i] if negative else acc[i]
    if negative:
        _acc_normalise(scratch)
    top_limb = _LIMBS - 1
    while top_limb >= 0 and scratch[top_limb] == 0:
        top_limb -= 1
    if top_limb < 0:
        return 0.0  # an exact zero is +0.0
    width = 0
    word = scratch[top_limb]
    while word > 0:
        word >>= 1
        width += 1
    top = top_limb * 32 + width - 1  # the leading 1 bit; its weight is 2**(top + _LSB_EXPONENT)
    leading = top + _LSB_EXPONENT
    if leading > 1023:
        return -np.inf if negative else np.inf
    ulp = max(leading - 52, -1074) - _LSB_EXPONENT  # the bit that weighs one unit in the last place (>= 14)
    mantissa = np.int64(0)
    for i in range(top, ulp - 1, -1):
        mantissa = (mantissa << 1) | _bit(scratch, i)
    round_bit = _bit(scratch, ulp - 1)
    below = ulp - 1  # the sticky bit covers every bit under the round bit
    sticky = (scratch[below >> 5] & ((np.int64(1) << (below & 31)) - 1)) != 0
    i = (below >> 5) - 1
    while not sticky and i >= 0:
        sticky = scratch[i] != 0
        i -= 1
    if round_bit == 1 and (sticky or (mantissa & 1) == 1):
        mantissa += 1
        if mantissa == np.int64(1) << 53:
            mantissa = np.int64(1) << 52
            ulp += 1
            if ulp + _LSB_EXPONENT + 52 > 1023:
                return -np.inf if negative else np.inf
    result = math.ldexp(float(mantissa), ulp + _LSB_EXPONENT)
    return -result if negative else result


@numba.njit(cache=True, nogil=True)
def _acc_int(acc: npt.NDArray[np.int64]) -> int:
    """The integer part of the accumulated sum modulo 2**64, as int64 (wrapping)."""
    _acc_normalise(acc)
    return int((acc[_UNITS + 1] << 32) + acc[_UNITS])


# -- min / max order ------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _order_key(kind: int, fbits: npt.NDArray[np.int64], ivalues: npt.NDArray[np.int64], i: int) -> int:
    """An int64 that orders event ``i``'s value (floats: -0.0 < +0.0, same bits <=> same key)."""
    if kind == _KIND_FLOAT:
        bits = fbits[i]
        return int(bits if bits >= 0 else bits ^ _FLIP)
    return int(ivalues[i])


@numba.njit(cache=True, nogil=True)
def _evicts(is_max: bool, new_nan: bool, new_key: int, old_nan: bool, old_key: int) -> bool:
    """Whether a later event (new) beats an earlier one (old) for min / max: a NaN beats everything,
    and a tie goes to the later event."""
    if new_nan:
        return True
    if old_nan:
        return False
    return new_key >= old_key if is_max else new_key <= old_key


# -- the sweep ------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _check(
    group_starts: npt.NDArray[np.int64],
    ts: npt.NDArray[np.int64],
    query_groups: npt.NDArray[np.int64],
    query_ts: npt.NDArray[np.int64],
) -> tuple[int, int]:
    """(status, position) of the first broken contract among the group bounds' ends and the queries,
    (_OK, -1) if none. O(queries): the sweep checks the groups and events it reads as it reads them,
    so one request against a long history costs O(log events + window), not O(events)."""
    groups = group_starts.shape[0] - 1
    if groups < 0 or group_starts[0] != 0 or group_starts[groups] != ts.shape[0]:
        return _BAD_GROUP_STARTS, 0
    for q in range(query_groups.shape[0]):
        g = query_groups[q]
        if g < 0 or g >= groups:
            return _BAD_QUERY_GROUP, q
        if q > 0:
            previous = query_groups[q - 1]
            if g < previous or (g == previous and query_ts[q] < query_ts[q - 1]):
                return _UNSORTED_QUERIES, q
    return _OK, -1


@numba.njit(cache=True, nogil=True)
def _sweep(
    code: int,
    window: int,
    group_starts: npt.NDArray[np.int64],
    ts: npt.NDArray[np.int64],
    kind: int,
    fvalues: npt.NDArray[np.float64],
    ivalues: npt.NDArray[np.int64],
    valid: npt.NDArray[np.bool_],
    query_groups: npt.NDArray[np.int64],
    query_ts: npt.NDArray[np.int64],
    out_index: npt.NDArray[np.int64],
    out_number: npt.NDArray[np.float64],
    out_integer: npt.NDArray[np.int64],
    out_valid: npt.NDArray[np.bool_],
    out_events: npt.NDArray[np.int64],
) -> tuple[int, int]:
    """Fill the output arrays for every query; returns (_OK, -1), or the first broken input contract
    as (status, position) (the outputs are then incomplete)."""
    status, where = _check(group_starts, ts, query_groups, query_ts)
    if status != _OK:
        return status, where
    summing = code in (_SUM, _MEAN, _STD, _VAR)
    spreading = code in (_STD, _VAR)
    picking = code in (_MIN, _MAX)
    is_max = code == _MAX
    fbits = fvalues.view(np.int64)
    acc = np.zeros(_STATE, dtype=np.int64)
    terms = np.zeros(_STATE, dtype=np.int64)
    scratch = np.zeros(_STATE, dtype=np.int64)
    deque = np.empty(ts.shape[0] if picking else 0, dtype=np.int64)  # indices, oldest first
    n_queries = query_groups.shape[0]
    q = 0
    while q < n_queries:
        g = query_groups[q]
        start = group_starts[g]
        end = group_starts[g + 1]
        if start < 0 or end < start or end > ts.shape[0]:
            return _BAD_GROUP_STARTS, g
        lo = start
        hi = start
        count = 0
        last = -1
        head = 0
        tail = 0
        _acc_clear(acc)
        while q < n_queries and query_groups[q] == g:
            t = query_ts[q]
            bounded = t >= _I64_MIN + window  # else t - window is below the int64 range: nothing leaves
            lower = t - window if bounded else _I64_MIN
            if bounded and hi < end and ts[hi] <= lower:
                # Every event read so far, and the next one, has left the window: start afresh at the
                # first event after t - window (binary search). The sums are exact, so clearing gives
                # the same state, bit for bit, as removing the events one by one.
                hi = start + np.searchsorted(ts[start:end], lower, side="right")
                lo = hi
                count = 0
                last = -1
                head = 0
                tail = 0
                _acc_clear(acc)
            # add the events with ts <= t
            while hi < end and ts[hi] <= t:
                if hi > start and ts[hi] < ts[hi - 1]:
                    return _UNSORTED_EVENTS, hi
                if valid[hi]:
                    count += 1
                    last = hi
                    if summing:
                        if kind == _KIND_FLOAT:
                            _acc_add_float(acc, fvalues[hi], 1)
                        else:
                            _acc_add_int(acc, ivalues[hi], 1)
                    elif picking:
                        new_nan = kind == _KIND_FLOAT and math.isnan(fvalues[hi])
                        new_key = _order_key(kind, fbits, ivalues, hi)
                        while tail > head:
                            old = deque[tail - 1]
                            old_nan = kind == _KIND_FLOAT and math.isnan(fvalues[old])
                            if not _evicts(is_max, new_nan, new_key, old_nan, _order_key(kind, fbits, ivalues, old)):
                                break
                            tail -= 1
                        deque[tail] = hi
                        tail += 1
                hi += 1
            # drop the events with ts <= t - window
            if bounded:
                while lo < hi and ts[lo] <= lower:
                    if valid[lo]:
                        count -= 1
                        if summing:
                            if kind == _KIND_FLOAT:
                                _acc_add_float(acc, fvalues[lo], -1)
                            else:
                                _acc_add_int(acc, ivalues[lo], -1)
                    lo += 1
            if picking:
                while tail > head and deque[head] < lo:
                    head += 1
            # the result
            out_events[q] = count
            out_index[q] = -1
            out_number[q] = 0.0
            out_integer[q] = 0
            out_valid[q] = True
            if code == _COUNT:
                out_integer[q] = count
            elif code == _LAST or picking:
                chosen = -1
                if code == _LAST:
                    if last >= lo:
                        chosen = last
                elif tail > head:
                    chosen = deque[head]
                out_index[q] = chosen
                out_valid[q] = chosen >= 0
            elif code == _SUM:
                if kind == _KIND_INT:
                    out_integer[q] = _acc_int(acc)
                else:
                    out_number[q] = _acc_float(acc, scratch)
            elif count == 0 or (spreading and count < 2):
                out_valid[q] = False
            else:
                mean = _acc_float(acc, scratch) / count
                if code == _MEAN:
                    out_number[q] = mean
                else:
                    _acc_clear(terms)
                    for i in range(lo, hi):
                        if valid[i]:
                            x = fvalues[i] if kind == _KIND_FLOAT else float(ivalues[i])
                            d = x - mean
                            _acc_add_float(terms, d * d, 1)
                    var = _acc_float(terms, scratch) / (count - 1)
                    out_number[q] = var if code == _VAR else math.sqrt(var)
            q += 1
    return _OK, -1


# -- the public entry point -----------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _sweep_many(
    codes: npt.NDArray[np.int64],
    windows: npt.NDArray[np.int64],
    group_starts: npt.NDArray[np.int64],
    ts: npt.NDArray[np.int64],
    kind: int,
    fvalues: npt.NDArray[np.float64],
    ivalues: npt.NDArray[np.int64],
    valid: npt.NDArray[np.bool_],
    query_groups: npt.NDArray[np.int64],
    query_ts: npt.NDArray[np.int64],
    out_index: npt.NDArray[np.int64],
    out_number: npt.NDArray[np.float64],
    out_integer: npt.NDArray[np.int64],
    out_valid: npt.NDArray[np.bool_],
    out_events: npt.NDArray[np.int64],
) -> tuple[int, int]:  # pragma: no cover - compiled
    """:func:`_sweep` for several (function, window) pairs over one column's events, row ``k``
    of each 2-D output for pair ``k``: one call from Python however many aggregates a read
    asks of a column."""
    for k in range(codes.shape[0]):
        status, where = _sweep(
            codes[k], windows[k], group_starts, ts, kind, fvalues, ivalues, valid, query_groups, query_ts,
            out_index[k], out_number[k], out_integer[k], out_valid[k], out_events[k],
        )
        if status != _OK:
            return status, where
    return _OK, -1


@dataclass(frozen=True)
class WindowResult:
    """One windowed aggregate per query, in query order (see the module docstring)."""

    #: int64: for PICKS the chosen event's position in the event arrays, -1 if none (or not a pick)
    index: npt.NDArray[np.int64]
    #: float64: sum (float columns), mean, std, var; 0.0 where null or not applicable
    number: npt.NDArray[np.float64]
    #: int64: count, sum (integer columns); 0 where not applicable
    integer: npt.NDArray[np.int64]
    #: bool: False where the result is null
    valid: npt.NDArray[np.bool_]
    #: int64: the number of non-null values in each query's window
    events: npt.NDArray[np.int64]


def _int64s(name: str, array: npt.ArrayLike) -> npt.NDArray[np.int64]:
    a = np.asarray(array)
    if a.ndim != 1 or not (np.issubdtype(a.dtype, np.signedinteger) or (a.size == 0 and a.dtype == np.float64)):
        raise InputError(f"windowed aggregate: {name} must be a 1-d int64 array, not {a.dtype} with shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.int64)


_MESSAGES = {
    _BAD_GROUP_STARTS: "group_starts must start at 0, never decrease and end at the number of events (group {})",
    _UNSORTED_EVENTS: "events must be sorted by event time within each group (event {} is earlier than the one before)",
    _BAD_QUERY_GROUP: "query {} names a group outside 0 .. len(group_starts) - 2",
    _UNSORTED_QUERIES: "queries must be sorted by (group, time) (query {} comes before the one before it)",
}


def aggregate(
    function: str,
    window_us: int,
    group_starts: npt.ArrayLike,
    ts: npt.ArrayLike,
    values: npt.ArrayLike | None,
    valid: npt.ArrayLike,
    query_groups: npt.ArrayLike,
    query_ts: npt.ArrayLike,
) -> WindowResult:
    """``function`` over each query's window ``(query_ts - window_us, query_ts]`` of its group's
    events, all queries in one call of the compiled kernel (the rules: the module docstring).

    Raises InputError (a ValueError) for an unknown function, a window that is not a positive
    integer, a numeric function on ``values=None``, arrays of the wrong dtype or length, and inputs
    that are not sorted as described.
    """
    if function not in FUNCTIONS:
        raise InputError(f"unknown window function {function!r} (functions: {', '.join(FUNCTIONS)})")
    if isinstance(window_us, bool) or not isinstance(window_us, (int, np.integer)) or not 0 < window_us < 2**63:
        raise InputError(f"window must be a positive int64 number of microseconds, not {window_us!r}")
    starts = _int64s("group_starts", group_starts)
    times = _int64s("ts", ts)
    groups = _int64s("query_groups", query_groups)
    at = _int64s("query_ts", query_ts)
    flags = np.ascontiguousarray(np.asarray(valid))
    if flags.dtype != np.bool_ or flags.shape != times.shape:
        raise InputError(
            f"windowed aggregate: valid must be a bool array as long as ts ({times.shape[0]}), "
            f"not {flags.dtype} with shape {flags.shape}"
        )
    if groups.shape != at.shape:
        raise InputError(f"windowed aggregate: query_groups ({groups.shape[0]}) and query_ts ({at.shape[0]}) differ")
    fvalues = np.empty(0, dtype=np.float64)
    ivalues = np.empty(0, dtype=np.int64)
    if values is None:
        if function not in _NON_NUMERIC:
            raise InputError(
                f"window function {function!r} needs numeric values (a non-numeric column has count and last)"
            )
        kind = _KIND_NONE
    else:
        column = np.asarray(values)
        if column.shape != times.shape:
            raise InputError(f"windowed aggregate: values ({column.shape}) must be as long as ts ({times.shape[0]})")
        if np.issubdtype(column.dtype, np.floating) and column.dtype.itemsize <= 8:
            fvalues = np.ascontiguousarray(column, dtype=np.float64)  # float16 / float32 widen exactly
            kind = _KIND_FLOAT
        elif np.issubdtype(column.dtype, np.signedinteger) or (
            np.issubdtype(column.dtype, np.unsignedinteger) and column.dtype.itemsize <= 4
        ):
            ivalues = np.ascontiguousarray(column, dtype=np.int64)
            kind = _KIND_INT
        else:
            raise InputError(f"window function {function!r} needs float64 or int64 values, not {column.dtype}")
    return run(FUNCTIONS.index(function), int(window_us), starts, times, kind, fvalues, ivalues, flags, groups, at)


#: The kind of values :func:`run` takes, by the dtype of a column's engine values.
KIND_NONE, KIND_FLOAT, KIND_INT = _KIND_NONE, _KIND_FLOAT, _KIND_INT
_NO_FLOATS = np.empty(0, dtype=np.float64)
_NO_INTS = np.empty(0, dtype=np.int64)


def run_many(
    codes: npt.NDArray[np.int64], windows: npt.NDArray[np.int64], starts: npt.NDArray[np.int64],
    times: npt.NDArray[np.int64], kind: int, fvalues: npt.NDArray[np.float64] | None,
    ivalues: npt.NDArray[np.int64] | None, flags: npt.NDArray[np.bool_], groups: npt.NDArray[np.int64],
    at: npt.NDArray[np.int64],
) -> list[WindowResult]:
    """:func:`run` for several (function code, window) pairs over the same events and
    queries, in one call of the compiled code: the same sweep per pair."""
    shape = (codes.shape[0], groups.shape[0])
    index = np.empty(shape, dtype=np.int64)
    number = np.empty(shape, dtype=np.float64)
    integer = np.empty(shape, dtype=np.int64)
    ok = np.empty(shape, dtype=np.bool_)
    events = np.empty(shape, dtype=np.int64)
    status, where = _sweep_many(
        codes, windows, starts, times, kind, _NO_FLOATS if fvalues is None else fvalues,
        _NO_INTS if ivalues is None else ivalues, flags, groups, at, index, number, integer, ok, events,
    )
    if status != _OK:
        raise InputError(f"windowed aggregate: {_MESSAGES[status].format(where)}")
    return [WindowResult(index[k], number[k], integer[k], ok[k], events[k]) for k in range(shape[0])]


def run(
    code: int, window_us: int, starts: npt.NDArray[np.int64], times: npt.NDArray[np.int64], kind: int,
    fvalues: npt.NDArray[np.float64] | None, ivalues: npt.NDArray[np.int64] | None, flags: npt.NDArray[np.bool_],
    groups: npt.NDArray[np.int64], at: npt.NDArray[np.int64],
) -> WindowResult:
    """:func:`aggregate` without its argument checks, for a caller that already holds
    contiguous arrays of the right dtypes (``code``: the function's position in
    :data:`FUNCTIONS`): the online buffer, whose reads cannot afford the checks per call.
    The same compiled sweep runs."""
    n = groups.shape[0]
    index = np.empty(n, dtype=np.int64)
    number = np.empty(n, dtype=np.float64)
    integer = np.empty(n, dtype=np.int64)
    ok = np.empty(n, dtype=np.bool_)
    events = np.empty(n, dtype=np.int64)
    fvalues = _NO_FLOATS if fvalues is None else fvalues
    ivalues = _NO_INTS if ivalues is None else ivalues
    status, where = _sweep(
        code,
        window_us,
        starts,
        times,
        kind,
        fvalues,
        ivalues,
        flags,
        groups,
        at,
        index,
        number,
        integer,
        ok,
        events,
    )
    if status != _OK:
        raise InputError(f"windowed aggregate: {_MESSAGES[status].format(where)}")
    return WindowResult(index=index, number=number, integer=integer, valid=ok, events=events)
