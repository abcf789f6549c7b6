"""Featurizers on their own: one compiled kernel, two paths, bit-identical results for every
supported type (float, int, bool, str, Timestamp, several outputs), including nulls, NaN,
+-inf, -0.0, subnormals, integer extremes, empty and non-ASCII strings; the documented
errors; and the equivalence check catching what breaks equivalence."""

from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import sys
import textwrap
import types
from datetime import datetime, timedelta, timezone

import numba
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from skewing import skewed

import featurelite as fl
from featurelite import FeaturizerError, Timestamp, featurizer
from featurelite.verification import first_mismatch, same_bits

DAY_US = 86_400_000_000


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


@featurizer
def tag(name: str, n: int = 1) -> tuple[str, int, bool]:
    return name[:3] + "é" * (n % 3), len(name), name.isascii()


@featurizer
def shift(t: Timestamp, days: int, keep: bool) -> tuple[Timestamp, float]:
    return (t + days * 86_400_000_000 if keep else t), t / 86_400_000_000


@featurizer
def maybe(x: float) -> float:
    # A featurizer may return None: a null result, in both paths.
    if x > 0.0:
        return x
    return None


FLOATS = st.one_of(st.floats(), st.sampled_from([0.0, -0.0, float("nan"), float("inf"), float("-inf"), 5e-324, -5e-324]))
INTS = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, -1, 1, 2**63 - 1, -(2**63)]))
TEXT = st.one_of(st.text(), st.sampled_from(["", "\x00", "a\x00", "é", "日本語", "𝄞", "A" * 70]))
STAMPS = st.integers(fl.types.MIN_US, fl.types.MAX_US).map(
    lambda us: datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=us)
)
CASES = {
    "ratio": (ratio, [FLOATS, INTS]),
    "blend": (blend, [FLOATS, FLOATS, st.booleans()]),
    "bucket": (bucket, [INTS, INTS]),
    "fragile": (fragile, [FLOATS, FLOATS]),
    "tag": (tag, [TEXT, INTS]),
    "shift": (shift, [STAMPS, st.integers(-(10**7), 10**7), st.booleans()]),
    "maybe": (maybe, [FLOATS]),
}


@pytest.mark.parametrize("case", list(CASES))
@given(data=st.data())
def test_batch_equals_per_request_bit_for_bit(case, data):
    """Batch output at row i == per-request output for row i, bit for bit, for batches of
    random length with the rows at random positions (after ``lead`` other rows, and again
    reversed in a second batch)."""
    fz, strategies = CASES[case]
    row = st.tuples(*[st.one_of(st.none(), s) for s in strategies])
    rows = data.draw(st.lists(row, min_size=1, max_size=20))
    lead = data.draw(st.lists(row, max_size=40))
    mismatch = first_mismatch(fz, rows, lead)
    assert mismatch is None, str(mismatch)


def test_the_comparison_sees_single_bits():
    assert same_bits(float("nan"), float("nan")) and not same_bits(0.0, -0.0)
    assert not same_bits(1, 1.0) and not same_bits(True, 1) and same_bits(("a", 1.5), ("a", 1.5))


def test_null_rule_and_defaults():
    assert ratio.run_one({"spend": None, "orders": 3}) is None
    assert blend.run_one({"a": 2.0, "b": None, "flag": None}) == 3.0  # defaults stand in
    assert blend.run_one({"a": None, "b": 1.0, "flag": True}) is None
    assert ratio.run_one({"spend": 1.0, "orders": 0}) == 0.5
    assert bucket.run_one({"x": 7, "y": 0}) == 0  # NumPy error model: no ZeroDivisionError
    assert tag.run_one({"name": None, "n": 2}) == (None, None, None)  # every output null
    assert tag.run_one({"name": "日本語x", "n": None}) == ("日本語é", 4, False)
    assert maybe.run_one({"x": -1.0}) is None and maybe.run_one({"x": 2.0}) == 2.0
    [values] = maybe.run_batch({"x": pa.array([-1.0, 2.0, None])})
    assert values.to_pylist() == [None, 2.0, None]
    stamps, days = shift.run_batch({
        "t": pa.array([0, DAY_US, None], pa.timestamp("us", tz="UTC")), "days": [1, 2, 3], "keep": [True, False, True],
    })
    assert stamps.type == pa.timestamp("us", tz="UTC") and days.to_pylist() == [0.0, 1.0, None]
    assert stamps.to_pylist() == [
        datetime(1970, 1, 2, tzinfo=timezone.utc), datetime(1970, 1, 2, tzinfo=timezone.utc), None,
    ]


def test_timestamps_outside_years_1_to_9999_are_null_in_both_paths():
    top = datetime(9999, 12, 31, tzinfo=timezone.utc)
    assert shift.run_args([top, 1, True]) == (None, (fl.types.MAX_US - 86_399_999_999) / DAY_US)
    stamps, _ = shift.run_batch({"t": pa.array([top]), "days": [1], "keep": [True]})
    assert stamps.to_pylist() == [None]


def test_per_request_values_of_the_wrong_kind_are_refused():
    for args in (["1.5", 2], [1.5, 2.0], [True, 2]):
        with pytest.raises(TypeError):
            ratio.run_args(args)
    with pytest.raises(TypeError, match="datetime"):
        shift.run_args([0, 1, True])


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
        ("def f(x: list) -> float:\n    return 1.0", "type hint .*use float, int, bool, str or featurelite.Timestamp"),
        ("def f(x: float) -> int:\n    return x * 1.5", "declared to return int64 but returns float64"),
        ("def f(x: float) -> tuple[float, float]:\n    return x", "declared to return float64, float64"),
        ("def f(x: float) -> tuple[float, ...]:\n    return x", "must list each output"),
        ("def f(x) -> float:\n    return 1.0", "needs a type hint"),
        ("def f(x: float):\n    return x", "needs a return type hint"),
        ("def f(*xs: float) -> float:\n    return 1.0", "plain positional"),
        ("def f() -> float:\n    return 1.0", "at least one input"),
        ("def f(x: float) -> float:\n    return x + SECRET.sum()", "SECRET.*plain constants only"),
    ],
)
def test_bad_featurizers_are_refused_with_a_short_reason(define, message, tmp_path):
    # Written to a file: featurizers need source code, as in a real module.
    path = tmp_path / "defs.py"
    path.write_text("import numpy as np\nSECRET = np.arange(3)\n" + define + "\n")
    namespace: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)  # noqa: S102
    sys.modules.setdefault("defs_for_test", types.ModuleType("defs_for_test"))
    with pytest.raises(FeaturizerError, match=message) as info:
        featurizer(namespace["f"])
    assert "'f'" in str(info.value) and "\n" not in str(info.value) and len(str(info.value)) < 400


def test_a_function_numba_already_compiled_is_refused():
    """fastmath cannot be smuggled in through a Numba-compiled function: featurelite
    compiles the plain function itself, and offers no fastmath option."""
    fast = numba.njit(fastmath=True)(lambda a, b: (a + b) - b)
    with pytest.raises(FeaturizerError, match="plain Python function"):
        featurizer(fast)
    assert "fastmath" not in inspect.signature(featurizer).parameters


@featurizer
def cancel(a: float, b: float) -> float:
    return (a + b) - b


def test_fastmath_in_the_batch_path_is_caught_by_verify():
    broken = skewed(cancel, fastmath=True)
    rows = [(1.0, 1e308), (float("nan"), 1.0)]
    assert first_mismatch(cancel, rows) is None
    assert first_mismatch(broken, rows) is not None
    mismatch = broken.verify(examples=300)
    assert mismatch is not None and "0x" in str(mismatch)
    assert not same_bits(mismatch.batch, mismatch.request)


def test_a_batch_result_that_depends_on_position_is_caught_by_verify():
    """A batch loop whose result depends on where a row sits (here: rows after the fifth
    are scaled by one ulp) passes a check that only looks at the first rows, and is
    caught by verify, which also runs the batch reversed and shifted."""
    kernel = cancel._kernels.kernel

    @numba.njit
    def drifting_loop(x0, x1, v0, o0):  # the generated loop's signature
        for i in range(v0.shape[0]):
            v0[i] = True
            o0[i] = kernel(x0[i], x1[i]) * (1.0 if i < 5 else 1.0 + 2.0**-52)
        return 0

    drifting = dataclasses.replace(
        cancel, _kernels=types.SimpleNamespace(call=cancel._kernels.call, loop=drifting_loop, return_type=None)
    )
    assert first_mismatch(drifting, [(1.0, 2.0)] * 4) is None  # within the first five rows all agree
    mismatch = drifting.verify(examples=300)
    assert mismatch is not None
    assert not (same_bits(mismatch.request, mismatch.batch) and same_bits(mismatch.request, mismatch.moved))


@featurizer
def noisy(x: float) -> float:
    return x + np.random.random()


def test_results_that_depend_on_the_call_are_caught_with_a_minimal_counterexample():
    mismatch = noisy.verify(examples=200)
    assert mismatch is not None
    assert mismatch.inputs == {"x": 0.0}  # shrunk: the simplest non-null input


def test_strings_survive_both_paths_exactly():
    names = ["", "a", "\x00", "a\x00b", "é", "ÿĀ", "日本語", "𝄞𝄞", "naïve café", "x" * 1000, None]
    texts, lengths, ascii_ = tag.run_batch({"name": names, "n": [0] * len(names)})
    for name, text, length, is_ascii in zip(names, texts.to_pylist(), lengths.to_pylist(), ascii_.to_pylist(), strict=True):
        assert tag.run_args([name, 0]) == ((None, None, None) if name is None else (text, length, is_ascii))
        if name is not None:
            assert (text, length, is_ascii) == (name[:3], len(name), name.isascii())


def test_a_new_process_loads_compiled_kernels_from_the_disk_cache(tmp_path):
    """Compiled code is cached on disk: a second process compiling the same featurizer
    takes it from the cache (Numba reports a cache hit and no compilation)."""
    defs = tmp_path / "defs.py"
    defs.write_text(textwrap.dedent('''
        import featurelite as fl

        @fl.featurizer
        def twice(x: float, label: str) -> tuple[float, str]:
            return x * 2.0, label + "!"
    '''))
    script = textwrap.dedent('''
        import json, sys
        sys.path.insert(0, sys.argv[1])
        import defs
        k = defs.twice._kernels.kernel
        defs.twice.run_batch({"x": [1.0], "label": ["a"]})
        loop = defs.twice._kernels.loop
        print(json.dumps({"kernel": [k.stats.cache_hits.total(), k.stats.cache_misses.total()],
                          "loop": [loop.stats.cache_hits.total(), loop.stats.cache_misses.total()]}))
    ''')
    env = {**__import__("os").environ, "FEATURELITE_CACHE_DIR": str(tmp_path / "cache")}
    runs = [subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, env=env, timeout=120)
            for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr + runs[1].stderr
    first, second = (json.loads(r.stdout) for r in runs)
    assert first == {"kernel": [0, 1], "loop": [0, 1]}
    assert second == {"kernel": [1, 0], "loop": [1, 0]}
    assert list((tmp_path / "cache" / "kernels").glob("_featurelite_kernel_*.py"))


@featurizer
def as_text(n: int) -> str:
    return str(n)  # Numba's str() of -2**63 raises MemoryError (a Numba bug)


def test_a_featurizer_that_crashes_on_some_input_is_reported():
    mismatch = as_text.verify(examples=300)
    assert mismatch is not None and mismatch.inputs == {"n": -(2**63)}
    assert "raises MemoryError" in str(mismatch)


def test_the_per_request_fast_path_falls_back_to_the_checked_one():
    """Values of the exact Python type go straight to the kernel; anything else (a null,
    a numpy scalar, a value of the wrong kind) takes the checked path, with the same rules."""
    assert ratio.run_args([3.0, 2]) == 1.5 and ratio.run_args((3.0, 2)) == 1.5
    assert ratio.run_args([np.float64(3.0), np.int64(2)]) == 1.5
    assert ratio.run_args([None, 2]) is None
    assert blend.run_args([2.0, None, None]) == 3.0
    for bad in ([3.0, 2.5], [True, 2], ["3", 2]):
        with pytest.raises(TypeError):
            ratio.run_args(bad)
    assert "run_args" in vars(ratio) and "run_args" not in vars(shift)  # timestamps: the checked path only
    stamp, days = shift.run_args([datetime(1970, 1, 2, tzinfo=timezone.utc), 1, True])
    # Timestamps come back zone-aware UTC, as stored timestamps do (one epoch for both).
    assert (stamp, days) == (datetime(1970, 1, 3, tzinfo=timezone.utc), 1.0) and stamp.utcoffset() == timedelta(0)
