"""The equivalence check: a featurizer's batch path and per-request path give the same
bits for every input.

:func:`verify` runs three phases and reports the first difference as a small
counterexample (:class:`Mismatch`):

1. a sweep: one large batch of generated rows (special values, random values over the
   whole range of each type, samples of stored history, nulls), run as a batch, run again
   reversed and shifted by one row, and run row by row;
2. a Hypothesis search over small batches at random positions, when the sweep found
   nothing;
3. Hypothesis shrinking of what was found, so the reported row is as simple as possible.

Hypothesis is imported only here, and only by the search and by the shrinking of a
mismatch found: the quick check ``apply`` runs (the sweep, ``search=False``) never imports
it unless a featurizer fails. This module knows featurizers only as :class:`Checkable`
(the featurizer module imports it, not the other way round).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from .types import MAX_US, MIN_US, arrow_type, from_micros

__all__ = ["Checkable", "Mismatch", "Raised", "first_mismatch", "same_bits", "verify"]


class Checkable(Protocol):
    """What the check needs of a featurizer: its name, its inputs and its two paths."""

    @property
    def name(self) -> str: ...

    @property
    def inputs(self) -> tuple[tuple[str, str], ...]: ...

    def run_args(self, args: Sequence[Any]) -> Any: ...

    def run_batch(self, columns: Mapping[str, Any]) -> list[pa.Array]: ...


def _stamp(us: int) -> datetime:
    return from_micros(int(us))


# The tables below are about generating test values, not about the dtypes themselves, so
# they stay here, keyed by featurizer dtype name like everything else.

#: Values that break careless arithmetic, per input type.
_SPECIAL: dict[str, list[Any]] = {
    "float64": [0.0, -0.0, float("nan"), float("inf"), float("-inf"), 5e-324, -5e-324, 2.2250738585072014e-308,
                1.7976931348623157e308, -1.7976931348623157e308, 1.0, -1.0, 0.5, 3.0],
    "int64": [0, 1, -1, 2, -2, 2**63 - 1, -(2**63), 2**31 - 1, -(2**31)],
    "bool": [False, True],
    "string": ["", "a", " ", "\x00", "a\x00", "é", "ÿ", "Ā", "日本語", "𝄞", "naïve café", "A" * 100],
    "timestamp": [_stamp(v) for v in (0, -1, 1, MIN_US, MAX_US, 86_400_000_000, -86_400_000_000)],
}
#: The simplest values of each type, tried first when shrinking a counterexample.
_SIMPLE: dict[str, list[Any]] = {
    "float64": [None, 0.0, 1.0, -1.0],
    "int64": [None, 0, 1, -1],
    "bool": [None, False, True],
    "string": [None, "", "a"],
    "timestamp": [None, _stamp(0)],
}


@dataclass(frozen=True)
class Raised:
    """A path raised instead of returning (reported as a failure even when both paths
    raise alike: serving would fail on that input)."""

    error: str
    message: str

    def __repr__(self) -> str:
        return f"<raises {self.error}: {self.message}>"


@dataclass(frozen=True)
class Mismatch:
    """One input row on which the batch and per-request paths disagree, or on which one
    of them raises."""

    featurizer: str
    inputs: Mapping[str, Any]
    batch: Any  #: the batch path's result for this row
    request: Any  #: the per-request path's result
    moved: Any  #: the batch path's result with the row at another position in another batch

    def __str__(self) -> str:
        return (
            f"featurizer {self.featurizer!r} on {dict(self.inputs)!r}: batch gives {_show_bits(self.batch)}, "
            f"per-request gives {_show_bits(self.request)}, batch at another position gives {_show_bits(self.moved)}"
        )


def same_bits(a: Any, b: Any) -> bool:
    """Equal down to the bit: floats by their IEEE-754 encoding (so NaN == NaN and
    0.0 != -0.0), tuples element by element, everything else by type and value."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same_bits(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, datetime) and isinstance(b, datetime):  # the same instant, both aware or both naive
        return type(a) is type(b) and a == b and a.utcoffset() == b.utcoffset()
    return type(a) is type(b) and a == b


def _show_bits(value: Any) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(_show_bits(v) for v in value) + ")"
    if isinstance(value, Raised):
        return repr(value)
    if isinstance(value, float):
        return f"{value!r} (0x{struct.unpack('<Q', struct.pack('<d', value))[0]:016x})"
    return repr(value)


def _batch_results(fz: Checkable, rows: Sequence[Sequence[Any]]) -> list[Any]:
    try:
        return _run_batch(fz, rows)
    except Exception as exc:  # noqa: BLE001 - whatever the featurizer raises is a finding: pin it to rows
        if len(rows) == 1:
            return [Raised(type(exc).__name__, str(exc))]
        return [result for row in rows for result in _batch_results(fz, [row])]


def _run_single(fz: Checkable, row: Sequence[Any]) -> Any:
    try:
        return fz.run_args(list(row))
    except Exception as exc:  # noqa: BLE001 - whatever the featurizer raises is a finding
        return Raised(type(exc).__name__, str(exc))


def _run_batch(fz: Checkable, rows: Sequence[Sequence[Any]]) -> list[Any]:
    columns = {
        name: pa.array([row[j] for row in rows], type=arrow_type(dtype)) for j, (name, dtype) in enumerate(fz.inputs)
    }
    outputs: list[list[Any]] = [array.to_pylist() for array in fz.run_batch(columns)]
    if len(outputs) == 1:
        return outputs[0]
    return [tuple(values) for values in zip(*outputs, strict=True)]


def first_mismatch(fz: Checkable, rows: Sequence[Sequence[Any]], lead: Sequence[Sequence[Any]] = ()) -> Mismatch | None:
    """The first of ``rows`` (input values in declaration order, None for null) whose
    per-request result differs from its batch result, with the batch preceded by ``lead``,
    or from its result in a second batch holding the rows reversed after one extra row;
    or on which a path raises."""
    if not rows:
        return None
    lead = list(lead)
    batch = _batch_results(fz, lead + list(rows))[len(lead):]
    moved = _batch_results(fz, [rows[-1], *reversed(rows)])[:0:-1]
    names = [name for name, _ in fz.inputs]
    for row, batched, elsewhere in zip(rows, batch, moved, strict=False):
        single = _run_single(fz, row)
        if isinstance(single, Raised) or not (same_bits(single, batched) and same_bits(single, elsewhere)):
            return Mismatch(fz.name, dict(zip(names, row, strict=False)), batched, single, elsewhere)
    return None


def _generated(dtype: str, n: int, rng: np.random.Generator, sample: Sequence[Any]) -> list[Any]:
    """``n`` values: specials, random values over the type's range, samples; ~10% null."""
    special = _SPECIAL[dtype]
    if dtype == "float64":
        randoms: list[Any] = (rng.standard_normal(n) * np.power(10.0, rng.integers(-300, 300, n))).tolist()
    elif dtype == "int64":
        randoms = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64, endpoint=True).tolist()
    elif dtype == "bool":
        randoms = (rng.random(n) < 0.5).tolist()
    elif dtype == "timestamp":
        randoms = [_stamp(v) for v in rng.integers(MIN_US, MAX_US, n, endpoint=True).tolist()]
    else:
        randoms = [_random_text(rng) for _ in range(n)]
    kinds = rng.integers(0, 3 if sample else 2, n).tolist()
    picks = rng.integers(0, 1 << 62, n).tolist()
    nulls = (rng.random(n) < 0.1).tolist()
    values: list[Any] = []
    for i in range(n):
        if nulls[i]:
            values.append(None)
        elif kinds[i] == 0:
            values.append(special[picks[i] % len(special)])
        elif kinds[i] == 1:
            values.append(randoms[i])
        else:
            values.append(sample[picks[i] % len(sample)])
    return values


#: Code point ranges random strings draw from: ASCII, Latin-1, BMP without surrogates, astral.
_RANGES = [(0, 0x80), (0x80, 0x100), (0x100, 0xD800), (0xE000, 0x10000), (0x10000, 0x110000)]


def _random_text(rng: np.random.Generator) -> str:
    length = int(rng.integers(0, 12))
    lo, hi = _RANGES[int(rng.integers(0, len(_RANGES)))]
    return "".join(chr(c) for c in rng.integers(lo, hi, length).tolist())


def _strategy(dtype: str, sample: Sequence[Any]) -> Any:
    from hypothesis import strategies as st

    base = {
        "float64": st.floats(),
        "int64": st.integers(-(2**63), 2**63 - 1),
        "bool": st.booleans(),
        "string": st.text(),
        "timestamp": st.integers(MIN_US, MAX_US).map(_stamp),
    }[dtype]
    options = [base, st.sampled_from(_SPECIAL[dtype])]
    if sample:
        options.append(st.sampled_from(list(sample)))
    return st.none() | st.one_of(options)


def _find(fz: Checkable, strategy: Any, examples: int, seed: int) -> Any:
    """Hypothesis' smallest example of ``strategy`` (lead rows, rows) that shows a
    mismatch, or None."""
    from hypothesis import HealthCheck, Verbosity, find, settings
    from hypothesis.errors import NoSuchExample

    config = settings(
        max_examples=examples, database=None, deadline=None, verbosity=Verbosity.quiet,
        suppress_health_check=list(HealthCheck),
    )
    try:
        return find(strategy, lambda case: first_mismatch(fz, case[1], case[0]) is not None,
                    settings=config, random=random.Random(seed))
    except NoSuchExample:
        return None


def verify(
    fz: Checkable,
    *,
    examples: int = 1000,
    seed: int = 0,
    samples: Mapping[str, Sequence[Any]] | None = None,
    search: bool = True,
) -> Mismatch | None:
    """Check ``fz``'s two paths agree; return the simplest mismatch found, or None.

    ``examples`` rows go through the sweep and about a tenth as many small batches through
    the Hypothesis search (``search=False`` skips it: the quick check ``apply`` runs, which
    then also works inside a caller's own Hypothesis test, and imports Hypothesis only to
    shrink a mismatch found). ``samples``: values per input (e.g. from stored history)
    mixed into both."""
    samples = samples or {}
    rng = np.random.default_rng(seed)
    columns = [_generated(dtype, examples, rng, list(samples.get(name, ()))) for name, dtype in fz.inputs]
    rows = [list(row) for row in zip(*columns, strict=True)]
    found = first_mismatch(fz, rows)
    if found is not None:
        from hypothesis import strategies as st

        # Shrink the one row: simplest values first, the failing value last.
        row = [found.inputs[name] for name, _ in fz.inputs]
        narrowed = st.tuples(
            st.just(()),
            st.tuples(st.tuples(*[
                st.sampled_from([*_SIMPLE[d], value]) for (_, d), value in zip(fz.inputs, row, strict=True)
            ])),
        )
        case = _find(fz, narrowed, 200, seed)
        return found if case is None else first_mismatch(fz, case[1], case[0])
    if not search:
        return None
    from hypothesis import strategies as st

    row_strategy = st.tuples(*[_strategy(d, list(samples.get(name, ()))) for name, d in fz.inputs])
    case = _find(fz, st.tuples(st.lists(row_strategy, max_size=8), st.lists(row_strategy, min_size=1, max_size=16)),
                 max(10, examples // 10), seed)
    return None if case is None else first_mismatch(fz, case[1], case[0])
