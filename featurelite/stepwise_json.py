"""JSON in steps that hand the GIL back, for bodies too large to parse or answer in one go.

``json.loads`` and ``json.dumps`` hold the GIL from start to end (~7 ms per MB): on a 16 MB
body every other client of the server waits. :func:`loads` gives what ``json.loads``
gives, with the same errors, but walks the outer two levels of containers itself, each
element parsed by its own call of the C scanner. :func:`encode` gives what
``wire.encode(value)`` gives (strict, compact JSON; ASCII-escaped here), dicts walked key by
key and long lists encoded slice by slice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from . import wire

__all__ = ["encode", "loads"]

#: Lists longer than this are encoded in slices, handing the GIL back between them.
ENCODE_SLICE = 4096

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_scan = json.JSONDecoder().raw_decode


def _skip(text: str, i: int) -> int:
    match = _WHITESPACE.match(text, i)
    return match.end() if match else i


def loads(text: str) -> Any:
    """``json.loads(text)``, the GIL handed back between the elements of the outer two
    levels of containers."""
    value, end = _value(text, _skip(text, 0), 2)
    end = _skip(text, end)
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def _value(text: str, i: int, levels: int) -> tuple[Any, int]:
    """The value starting at ``i`` and the position after it; containers down to
    ``levels`` deep are walked here, anything deeper by the C scanner."""
    if levels <= 0 or not text.startswith(("[", "{"), i):
        return _scan(text, i)
    if text[i] == "[":
        return _array(text, i, levels)
    return _object(text, i, levels)


def _after_item(text: str, i: int, close: str) -> tuple[int, bool]:
    """Past the ``,`` after an item (False) or the closing bracket (True)."""
    i = _skip(text, i)
    if text.startswith(",", i):
        return _skip(text, i + 1), False
    if text.startswith(close, i):
        return i + 1, True
    raise json.JSONDecodeError("Expecting ',' delimiter", text, i)


def _array(text: str, i: int, levels: int) -> tuple[list[Any], int]:
    items: list[Any] = []
    i = _skip(text, i + 1)
    if text.startswith("]", i):
        return items, i + 1
    while True:
        item, i = _value(text, i, levels - 1)
        items.append(item)
        i, closed = _after_item(text, i, "]")
        if closed:
            return items, i


def _object(text: str, i: int, levels: int) -> tuple[dict[str, Any], int]:
    obj: dict[str, Any] = {}
    i = _skip(text, i + 1)
    if text.startswith("}", i):
        return obj, i + 1
    while True:
        if not text.startswith('"', i):
            raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, i)
        key, i = _scan(text, i)
        i = _skip(text, i)
        if not text.startswith(":", i):
            raise json.JSONDecodeError("Expecting ':' delimiter", text, i)
        obj[key], i = _value(text, _skip(text, i + 1), levels - 1)
        i, closed = _after_item(text, i, "}")
        if closed:
            return obj, i


def _parts(value: Any) -> Iterator[str]:
    """``value`` as compact, ASCII-only strict JSON text, in pieces."""
    if isinstance(value, dict):
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield ("," if i else "") + wire.dumps(str(key), compact=True, ascii_only=True) + ":"
            yield from _parts(item)
        yield "}"
    elif isinstance(value, list) and len(value) > ENCODE_SLICE:
        yield "["
        for start in range(0, len(value), ENCODE_SLICE):
            piece = wire.dumps(value[start:start + ENCODE_SLICE], compact=True, ascii_only=True)
            yield ("," if start else "") + piece[1:-1]
        yield "]"
    else:
        yield wire.dumps(value, compact=True, ascii_only=True)


def encode(value: Any) -> bytes:
    """Strict, compact JSON of ``value`` as ASCII bytes, built in steps (see the module)."""
    return "".join(_parts(value)).encode()
