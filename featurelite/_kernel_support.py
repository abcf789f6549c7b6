"""Numba helpers the generated kernel modules call (compiled with Numba, cached on disk).

Result casts: a featurizer's results are cast to the declared types inside the kernel
(``as_float64`` ...), so both paths return exactly the declared type (Numba may type
``s.isascii()`` as uint32, or ``x * 2`` as int64 for a declared float).

UTF-8 <-> Numba string conversion for the batch path of featurizers with ``str`` inputs
or outputs.

Arrow keeps a string column as one UTF-8 byte buffer plus offsets; the batch loop hands
each row's bytes to :func:`decode_utf8` to get the same Numba string the per-request path
gets by unboxing a Python ``str``, and writes string results back with :func:`put_utf8`.

The string is built with Numba's own constructors (``_empty_string``, ``_set_code_point``)
in the narrowest kind that holds its widest code point, exactly as CPython does, so two
equal strings are equal in every respect the kernel can observe.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba.core import types
from numba.core.pythonapi import PY_UNICODE_1BYTE_KIND, PY_UNICODE_2BYTE_KIND, PY_UNICODE_4BYTE_KIND
from numba.cpython.unicode import _empty_string, _set_code_point
from numba.extending import overload

from .types import dtype

__all__ = ["as_bool", "as_float64", "as_int64", "as_str", "decode_utf8", "put_utf8"]


def as_float64(value: Any) -> Any:
    """Cast a result to float64 (compiled code only)."""
    raise NotImplementedError("called from compiled kernels only")


def as_int64(value: Any) -> Any:
    """Cast a result to int64 (compiled code only)."""
    raise NotImplementedError("called from compiled kernels only")


def as_bool(value: Any) -> Any:
    """Cast a result to bool (compiled code only)."""
    raise NotImplementedError("called from compiled kernels only")


def as_str(value: Any) -> Any:
    """A string result, unchanged (compiled code only)."""
    raise NotImplementedError("called from compiled kernels only")


def _passes(value: types.Type, declared: types.Type) -> bool:
    """Already the declared type, or None, or optionally it: nothing to cast."""
    return value == declared or isinstance(value, types.NoneType) or (
        isinstance(value, types.Optional) and value.type == declared
    )


# The casts are chosen while Numba types the kernel, by the type of the value: a value of
# the declared type (or None, or optionally it) passes unchanged; a value of a type the
# dtype says casts exactly (DType.casts_from, which the featurizer's own return-type check
# reads too) is converted; anything else has no implementation, which that check reports
# first, in plain words.
_FLOAT64, _INT64, _BOOL, _STRING = (dtype(name) for name in ("float64", "int64", "bool", "string"))


@overload(as_float64, jit_options={"nogil": True})
def _as_float64(value):  # type: ignore[no-untyped-def]  # Numba wants the stub's exact parameters
    if _passes(value, _FLOAT64.numba_type()):
        return lambda value: value
    if isinstance(value, _FLOAT64.numba_castable()):
        return lambda value: np.float64(value)
    return None


@overload(as_int64, jit_options={"nogil": True})
def _as_int64(value):  # type: ignore[no-untyped-def]  # Numba wants the stub's exact parameters
    if _passes(value, _INT64.numba_type()):
        return lambda value: value
    if isinstance(value, _INT64.numba_castable()):
        return lambda value: np.int64(value)
    return None


@overload(as_bool, jit_options={"nogil": True})
def _as_bool(value):  # type: ignore[no-untyped-def]  # Numba wants the stub's exact parameters
    if _passes(value, _BOOL.numba_type()):
        return lambda value: value
    if isinstance(value, _BOOL.numba_castable()):
        return lambda value: value != 0
    return None


@overload(as_str, jit_options={"nogil": True})
def _as_str(value):  # type: ignore[no-untyped-def]  # Numba wants the stub's exact parameters
    if _passes(value, _STRING.numba_type()):
        return lambda value: value
    return None


@numba.njit(cache=True, nogil=True)
def _code_point(data: np.ndarray, i: int) -> tuple[Any, int]:
    """The code point starting at byte ``i`` of valid UTF-8 (Arrow validates it) and the
    index of the byte after it."""
    b = np.int64(data[i])
    if b < 0x80:
        return b, i + 1
    if b < 0xE0:
        return ((b & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F), i + 2
    if b < 0xF0:
        return ((b & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6) | (np.int64(data[i + 2]) & 0x3F), i + 3
    return (
        ((b & 0x07) << 18)
        | ((np.int64(data[i + 1]) & 0x3F) << 12)
        | ((np.int64(data[i + 2]) & 0x3F) << 6)
        | (np.int64(data[i + 3]) & 0x3F)
    ), i + 4


@numba.njit(cache=True, nogil=True)
def decode_utf8(data: np.ndarray, start: int, end: int) -> str:
    """The string whose UTF-8 bytes are ``data[start:end]``."""
    count = 0
    widest = 0
    i = start
    while i < end:
        cp, i = _code_point(data, i)
        count += 1
        widest = max(widest, cp)
    if widest < 256:
        kind = PY_UNICODE_1BYTE_KIND
    elif widest < 65536:
        kind = PY_UNICODE_2BYTE_KIND
    else:
        kind = PY_UNICODE_4BYTE_KIND
    text = _empty_string(kind, count, 1 if widest < 128 else 0)  # type: ignore[no-untyped-call]  # numba internals are unannotated
    i = start
    k = 0
    while i < end:
        cp, i = _code_point(data, i)
        _set_code_point(text, k, cp)  # type: ignore[no-untyped-call]  # numba internals are unannotated
        k += 1
    return text  # type: ignore[no-any-return]  # _empty_string is unannotated; it builds a str


@numba.njit(cache=True, nogil=True)
def put_utf8(text: str, buffer: np.ndarray, pos: int) -> tuple[np.ndarray, int]:
    """Append ``text`` as UTF-8 to ``buffer`` at ``pos``, growing it when full. Returns the
    (possibly new) buffer and the position after the text."""
    need = pos + 4 * len(text)
    if need > buffer.shape[0]:
        grown = np.empty(max(need, 2 * buffer.shape[0]), dtype=np.uint8)
        grown[:pos] = buffer[:pos]
        buffer = grown
    for ch in text:
        cp = ord(ch)
        if cp < 0x80:
            buffer[pos] = cp
            pos += 1
        elif cp < 0x800:
            buffer[pos] = 0xC0 | (cp >> 6)
            buffer[pos + 1] = 0x80 | (cp & 0x3F)
            pos += 2
        elif cp < 0x10000:
            buffer[pos] = 0xE0 | (cp >> 12)
            buffer[pos + 1] = 0x80 | ((cp >> 6) & 0x3F)
            buffer[pos + 2] = 0x80 | (cp & 0x3F)
            pos += 3
        else:
            buffer[pos] = 0xF0 | (cp >> 18)
            buffer[pos + 1] = 0x80 | ((cp >> 12) & 0x3F)
            buffer[pos + 2] = 0x80 | ((cp >> 6) & 0x3F)
            buffer[pos + 3] = 0x80 | (cp & 0x3F)
            pos += 4
    return buffer, pos
