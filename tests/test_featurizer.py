"""Featurizer groundwork (issue 3): one compiled kernel, two paths, bit-identical results
including nulls, NaN, +-inf, -0.0, subnormals and integer extremes."""

from __future__ import annotations

import inspect
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from featurelite import FeaturizerError, featurizer


@featurizer
def ratio(spend: float, orders: int) -> float:
    return spend / orders if orders > 0 else spend * 0.5


@featurizer
def blend(a: float, b: float = 1.5, flag: bool = False) -> float:
    return a * b - (a if flag else 0.0)


@featurizer
def bucket(x: int, y: int) -> int:
    return x // y + x % 7


@featurizer
def fragile(a: float, b: float) -> float:
    # Sensitive to fastmath: reassociation folds (a + b) - b to a, and no-NaN flags fold
    # a != a to False. Same kernel on both paths keeps the bits equal anyway.
    return (a + b) - b + (1.0 if a != a else 0.0) + a * b + 1.0


SPECIAL = [0.0, -0.0, float("nan"), float("inf"), float("-inf"), 5e-324, -5e-324, 1.7976931348623157e308]
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True), st.sampled_from(SPECIAL))
INTS = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, -1, 1, 2**63 - 1, -(2**63)]))


def bits(value: object) -> object:
    if isinstance(value, float):
        return struct.pack("<d", value)
    return value


def batch_then_rows(fz, rows: list[dict], pad: int):
    """Run the rows as one batch, placed after ``pad`` filler rows (position must not matter)."""
    n = pad + len(rows)
    columns = {}
    for name, dtype in fz.inputs:
        kind = {"float64": np.float64, "int64": np.int64, "bool": np.bool_}[dtype]
        values = np.zeros(n, dtype=kind)
        valid = np.zeros(n, dtype=np.bool_)
        for i, row in enumerate(rows):
            if row[name] is not None:
                values[pad + i] = row[name]
                valid[pad + i] = True
        columns[name] = (values, valid)
    out, ok = fz.run_batch(columns)
    return [out[pad + i].item() if ok[pad + i] else None for i in range(len(rows))]


@pytest.mark.parametrize(
    "fz, strategies",
    [
        (ratio, {"spend": FLOATS, "orders": INTS}),
        (blend, {"a": FLOATS, "b": FLOATS, "flag": st.booleans()}),
        (bucket, {"x": INTS, "y": INTS}),
        (fragile, {"a": FLOATS, "b": FLOATS}),
    ],
    ids=["ratio", "blend", "bucket", "fragile"],
)
@given(data=st.data())
def test_batch_equals_per_request_bit_for_bit(fz, strategies, data):
    row = st.fixed_dictionaries({name: st.one_of(st.none(), s) for name, s in strategies.items()})
    rows = data.draw(st.lists(row, max_size=20))
    pad = data.draw(st.integers(0, 70))
    batched = batch_then_rows(fz, rows, pad)
    single = [fz.run_one(r) for r in rows]
    assert [bits(v) for v in batched] == [bits(v) for v in single]


def test_null_rule_and_defaults():
    assert ratio.run_one({"spend": None, "orders": 3}) is None
    assert blend.run_one({"a": 2.0, "b": None, "flag": None}) == 3.0  # defaults stand in
    assert blend.run_one({"a": None, "b": 1.0, "flag": True}) is None
    assert ratio.run_one({"spend": 1.0, "orders": 0}) == 0.5
    assert bucket.run_one({"x": 7, "y": 0}) == 0  # NumPy error model: no ZeroDivisionError


def test_versions_follow_the_body():
    def make(k: float):
        @featurizer(name="f")
        def f(x: float) -> float:
            return x * 2.0

        return f

    assert make(1).version == make(2).version
    assert ratio.version != blend.version and "return spend / orders" in ratio.source
    assert not ratio.source.startswith("@")


@pytest.mark.parametrize(
    "define, message",
    [
        ("def f(x: float) -> float:\n    return {'a': x}['b'].upper()", "cannot be compiled by Numba.*Unknown attribute 'upper'"),
        ("def f(x: str) -> float:\n    return 1.0", "type hint"),
        ("def f(x) -> float:\n    return 1.0", "needs a type hint"),
        ("def f(x: float):\n    return x", "needs a return type hint"),
        ("def f(*xs: float) -> float:\n    return 1.0", "plain positional"),
        ("def f() -> float:\n    return 1.0", "at least one input"),
    ],
)
def test_bad_featurizers_are_refused_with_a_short_reason(define, message):
    namespace: dict = {}
    exec(define, namespace)
    with pytest.raises(FeaturizerError, match=message) as info:
        featurizer(namespace["f"])
    assert "'f'" in str(info.value) and "\n" not in str(info.value)


@featurizer
def cancel(a: float, b: float) -> float:
    return (a + b) - b


def test_a_batch_path_compiled_with_fastmath_is_caught():
    """What breaks equivalence must not pass silently: give the batch path a fastmath build
    of the same function (as a second implementation would) and the comparison the
    property test makes fails. featurelite itself offers no way to turn fastmath on."""
    import dataclasses

    import numba

    from featurelite.featurizer import _batch_kernel

    fast = numba.njit(fastmath=True, error_model="numpy")(cancel.func)
    skewed = dataclasses.replace(cancel, _batch=_batch_kernel(fast, cancel.inputs, cancel.defaults))
    rows = [{"a": 1.0, "b": 1e308}, {"a": float("nan"), "b": 1.0}]
    assert [bits(v) for v in batch_then_rows(cancel, rows, 3)] == [bits(cancel.run_one(r)) for r in rows]
    assert [bits(v) for v in batch_then_rows(skewed, rows, 3)] != [bits(skewed.run_one(r)) for r in rows]
    assert "fastmath" not in inspect.signature(featurizer).parameters
