"""Arrow <-> NumPy for the hot and cold paths, read straight from Arrow buffers.

pyarrow's own ``Array.to_numpy`` and ``pa.array(ndarray)`` import pandas on first use
when it is installed (about 0.2 s), which a process that only opens a store and serves
one value should not pay. These helpers cover what featurelite converts on its paths
(fixed-width columns without nulls, validity masks, int64 sequences) and fall back to
pyarrow for anything else.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["false_array", "int64_array", "to_numpy", "validity"]

_FIXED: dict[pa.DataType, type] = {
    pa.int8(): np.int8, pa.int16(): np.int16, pa.int32(): np.int32, pa.int64(): np.int64,
    pa.uint8(): np.uint8, pa.uint16(): np.uint16, pa.uint32(): np.uint32, pa.uint64(): np.uint64,
    pa.float32(): np.float32, pa.float64(): np.float64,
}


def _chunks(values: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return list(values.chunks) if isinstance(values, pa.ChunkedArray) else [values]


def _join(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    if not parts:
        return np.empty(0, dtype=dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _bits(chunk: pa.Array, buffer: pa.Buffer | None) -> np.ndarray:
    """A bit-packed buffer (validity or booleans) of one chunk as a bool array."""
    if buffer is None:
        return np.ones(len(chunk), dtype=np.bool_)
    bits = np.unpackbits(np.frombuffer(buffer, dtype=np.uint8), bitorder="little")
    return bits[chunk.offset : chunk.offset + len(chunk)].astype(np.bool_)


def to_numpy(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The values of a column as NumPy: fixed-width numbers, timestamps (as int64) and
    booleans without nulls are read from their buffers (no copy for a single chunk of
    numbers); anything else goes through pyarrow (nulls become NaN / None there)."""
    kind = values.type
    if values.null_count == 0:
        if pa.types.is_timestamp(kind) or pa.types.is_date64(kind):
            dtype: type | None = np.int64
        else:
            dtype = _FIXED.get(kind)
        if dtype is not None:
            parts: list[np.ndarray] = [
                np.frombuffer(c.buffers()[1], dtype=dtype, count=len(c), offset=c.offset * np.dtype(dtype).itemsize)
                for c in _chunks(values)
                if len(c)
            ]
            return _join(parts, dtype)
        if pa.types.is_boolean(kind):
            return _join([_bits(c, c.buffers()[1]) for c in _chunks(values) if len(c)], np.bool_)
    result: np.ndarray = values.to_numpy(zero_copy_only=False)
    return result


def validity(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """True where a value is present."""
    if values.null_count == 0:
        return np.ones(len(values), dtype=np.bool_)
    if pa.types.is_null(values.type):
        return np.zeros(len(values), dtype=np.bool_)
    return _join([_bits(c, c.buffers()[0]) for c in _chunks(values) if len(c)], np.bool_)


def int64_array(values: np.ndarray) -> pa.Array:
    """An int64 Arrow array over a NumPy array's memory (no copy)."""
    array = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(array), [None, pa.py_buffer(array)])


def false_array(length: int) -> pa.Array:
    """A boolean Arrow array of ``length`` False values."""
    return pa.Array.from_buffers(pa.bool_(), length, [None, pa.py_buffer(np.zeros((length + 7) // 8, dtype=np.uint8))])
