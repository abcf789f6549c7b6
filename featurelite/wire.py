"""How values travel as text: strict JSON out, ISO-8601 times in.

The one home of these rules for the CLI and the HTTP server alike:

- :func:`plain`: a value as JSON can carry it. Datetimes, dates and times are ISO-8601
  text; non-finite floats are the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``
  (strict JSON has no such numbers); bytes are base64 text; anything else JSON has no
  type for (a Decimal, a duration) is its text.
- :func:`encode` / :func:`dumps`: strict JSON (never ``NaN`` tokens) of a value. Text that
  is not valid Unicode (a lone surrogate such as ``"\\ud800"``, which JSON can carry as an
  escape) makes the whole text ASCII with ``\\u`` escapes, which round-trips it.
- :func:`parse_time`: an ISO-8601 time, a trailing ``Z`` meaning UTC. Whether the time lies
  in the range a store holds is ``types.storable_micros``'s rule, not this module's.
"""

from __future__ import annotations

import base64
import json
import math
import sys
from datetime import date, datetime, time
from typing import Any

__all__ = ["dumps", "encode", "parse_time", "plain"]

_COMPACT = (",", ":")
_SPACED = (", ", ": ")


def _nonfinite(value: float) -> str:
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _scalar(value: Any) -> Any:
    """A value JSON has no type for, as text (``json.dumps``'s ``default``)."""
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)


def plain(value: Any) -> Any:
    """``value`` with every part JSON cannot carry replaced by text (see the module)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _nonfinite(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return _scalar(value)


def _text(value: Any, *, compact: bool, ascii_only: bool) -> str:
    separators = _COMPACT if compact else _SPACED
    try:
        # The fast path: the C encoder, values it has no type for converted as it meets them.
        return json.dumps(value, default=_scalar, allow_nan=False, ensure_ascii=ascii_only, separators=separators)
    except ValueError:  # a non-finite float somewhere: walk the value and spell them out
        return json.dumps(plain(value), allow_nan=False, ensure_ascii=ascii_only, separators=separators)


def encode(value: Any, *, compact: bool = True) -> bytes:
    """Strict JSON of ``value`` as UTF-8 bytes (ASCII-escaped if it holds a lone surrogate).

    ``compact``: no spaces after ``,`` and ``:`` (the server's bodies); else json's default
    spacing (the CLI's output)."""
    text = _text(value, compact=compact, ascii_only=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _text(value, compact=compact, ascii_only=True).encode("ascii")


def dumps(value: Any, *, compact: bool = False, ascii_only: bool = False) -> str:
    """Strict JSON text of ``value``; ``ascii_only`` escapes all non-ASCII text (otherwise
    only when the text could not be encoded as UTF-8, as :func:`encode`)."""
    if ascii_only:
        return _text(value, compact=compact, ascii_only=True)
    return encode(value, compact=compact).decode("utf-8")


def parse_time(text: str) -> datetime:
    """An ISO-8601 time (``datetime.fromisoformat``, a trailing ``Z`` for UTC); a
    ValueError if ``text`` is not one."""
    if sys.version_info < (3, 11) and text.endswith("Z"):  # pragma: no cover - 3.11 reads "Z" itself
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)
