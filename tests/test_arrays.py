"""featurelite.arrays reads Arrow buffers directly; it must agree with pyarrow's own
conversions for every chunking, slice offset and null pattern, and spare a process the
pandas import pyarrow's conversions trigger."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from featurelite import arrays

TYPES = [pa.int8(), pa.int32(), pa.int64(), pa.uint16(), pa.float32(), pa.float64(), pa.bool_(), pa.timestamp("us")]


@st.composite
def columns(draw: st.DrawFn) -> pa.ChunkedArray | pa.Array:
    kind = draw(st.sampled_from(TYPES))
    if pa.types.is_boolean(kind):
        values = st.booleans()
    elif pa.types.is_floating(kind):
        values = st.floats(width=32 if kind == pa.float32() else 64)
    elif pa.types.is_timestamp(kind):
        values = st.integers(-(2**62), 2**62)
    else:
        info = np.iinfo(kind.to_pandas_dtype())
        values = st.integers(int(info.min), int(info.max))
    nulls = draw(st.booleans())
    chunks = []
    for _ in range(draw(st.integers(0, 3))):
        items = draw(st.lists(st.none() | values if nulls else values, max_size=20))
        storage = pa.int64() if pa.types.is_timestamp(kind) else kind
        chunk = pa.array(items, storage).cast(kind)
        start = draw(st.integers(0, len(chunk)))
        chunks.append(chunk.slice(start, draw(st.integers(0, len(chunk) - start))))  # offsets into buffers
    column = pa.chunked_array(chunks, kind)
    return column.combine_chunks() if draw(st.booleans()) else column


@given(columns())
def test_to_numpy_and_validity_agree_with_pyarrow(column: pa.ChunkedArray | pa.Array) -> None:
    expected_valid = np.asarray(column.is_valid().to_pylist(), dtype=np.bool_)
    assert arrays.validity(column).tolist() == expected_valid.tolist()
    got = arrays.to_numpy(column)
    assert len(got) == len(column)
    if column.null_count == 0 and len(column):  # read from the buffers (timestamps as int64)
        storage = column.cast(pa.int64()) if pa.types.is_timestamp(column.type) else column
        expected = storage.to_numpy(zero_copy_only=False)
        assert got.dtype == expected.dtype
        assert got.tobytes() == expected.tobytes()  # bit for bit: NaN payloads and -0.0 included
    else:  # pyarrow's own conversion
        expected = column.to_numpy(zero_copy_only=False)
        assert [repr(x) for x in got.tolist()] == [repr(x) for x in expected.tolist()]


@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=50), st.integers(0, 70))
def test_built_arrays_hold_what_was_given(values: list[int], falses: int) -> None:
    assert arrays.int64_array(np.array(values, dtype=np.int64)).to_pylist() == values
    built = arrays.false_array(falses)
    assert built.type == pa.bool_() and built.to_pylist() == [False] * falses and built.null_count == 0


def test_a_cold_read_and_ingest_do_not_import_pandas(tmp_path) -> None:
    """pyarrow's own conversions import pandas (~0.2 s) when it is installed; featurelite's
    open, first online read (which builds the index) and an Arrow ingest do not."""
    script = f"""
import sys
import numpy as np, pyarrow as pa
import featurelite as fl
from featurelite.arrays import int64_array
user = fl.Entity("user", join_keys=["user_id"])
v = fl.FeatureView("v", entities=[user], schema={{"x": "float64"}}, timestamp_field="ts")
with fl.open({str(tmp_path / "s.duckdb")!r}) as s:
    s.apply([user, v])
    keys = int64_array(np.arange(3))
    batch = pa.table({{"user_id": keys, "x": pa.Array.from_buffers(pa.float64(), 3, [None, pa.py_buffer(np.ones(3))]),
                       "ts": int64_array(np.arange(3)).view(pa.timestamp("us"))}})
    s.ingest("v", batch)
    s.get_online_features([{{"user_id": 1}}], ["v:x"])
    s.ingest("v", batch)
with fl.open({str(tmp_path / "s.duckdb")!r}, read_only=True) as s:
    assert s.get_online_features([{{"user_id": 1}}], ["v:x"]).to_dict()["x"] == [1.0]
print("pandas" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
