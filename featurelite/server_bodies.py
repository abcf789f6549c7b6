"""Request bodies of the HTTP server, read into what the Store takes: a JSON object, a
table of pushed rows (JSON rows or columns, or an Arrow IPC stream), a point in time, a
training set's manifest.

Everything wrong with a body is the client's: an :class:`HTTPError` with 422, or 413 for an
Arrow stream that would decode to more than the server's limits allow.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from . import stepwise_json, wire
from .errors import ManifestError
from .ipc_header import decoded_size
from .manifest import Manifest

__all__ = ["STEPWISE_BODY", "DecodeLimits", "HTTPError", "Manifests", "entity_rows", "parse_json", "parse_now",
           "read_arrow", "table_from_json"]

#: Above this size ``json.loads`` would stall the event loop even from a thread (it holds
#: the GIL from start to end: ~7 ms per MB); such bodies are parsed element by element.
STEPWISE_BODY = 1024 * 1024


class HTTPError(Exception):
    """An error answered with ``status`` and a JSON body."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


@dataclass(frozen=True)
class DecodeLimits:
    """How much an Arrow push may decode to: bytes and cells (rows x columns)."""

    max_bytes: int
    max_cells: int


def parse_json(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 422 (bad JSON, nesting too deep, not an object)."""
    try:
        if len(body) > STEPWISE_BODY:
            payload = stepwise_json.loads(body.decode(json.detect_encoding(body), "surrogatepass"))
        else:
            payload = json.loads(body)
    except RecursionError:
        raise HTTPError(422, "InputError", "the body's JSON is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPError(422, "InputError", f"the body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise HTTPError(422, "InputError", "the body must be a JSON object")
    return payload


def table_from_json(payload: dict[str, Any]) -> pa.Table:
    """``{"rows": [{column: value}, ...]}`` or ``{"columns": {column: [values]}}`` as a
    table; types are settled by ingest, which casts to the view's schema (timestamps may
    be ISO-8601 text)."""
    rows, columns = payload.get("rows"), payload.get("columns")
    try:
        if isinstance(rows, list) and columns is None:
            if not all(isinstance(r, dict) for r in rows):
                raise HTTPError(422, "InputError", "'rows' must be a list of {column: value} objects")
            return pa.Table.from_pylist(rows)
        if isinstance(columns, dict) and rows is None:
            if not all(isinstance(v, list) for v in columns.values()):
                raise HTTPError(422, "InputError", "'columns' must map each column to a list of values")
            return pa.table(columns)
    except (pa.ArrowException, TypeError, ValueError, OverflowError, RecursionError) as exc:
        # pyarrow's conversion of Python values: an integer beyond 64 bits, mixed types,
        # lists nested too deep; all the client's values, none of them a table.
        raise HTTPError(422, "SchemaError", f"the pushed values do not form a table: {exc}") from None
    raise HTTPError(422, "InputError", "give either 'rows': [{column: value}, ...] or 'columns': {column: [values]}")


def parse_now(value: Any) -> datetime:
    """The request's ``now``, an ISO-8601 time. Whether it lies in the range a store holds
    is the Store's check (an InputError, so 422, for ``0001-01-01T00:00:00+01:00``, before
    year 1 in UTC)."""
    if not isinstance(value, str):
        raise HTTPError(422, "InputError", f"'now' must be an ISO-8601 time string, got {value!r}")
    try:
        return wire.parse_time(value)
    except ValueError:
        raise HTTPError(422, "InputError", f"'now' is not an ISO-8601 time: {value!r}") from None


class Manifests:
    """A request's ``manifest`` field as a :class:`Manifest`, remembered by its JSON text.

    A model server sends the same manifest with every request: it is read once, and after
    that a request pays a dict lookup (for the text form, exactly as a training set's
    schema metadata holds it) or one ``json.dumps`` of the object (for the object form).
    Different texts of one manifest (key order, spacing) are only different cache entries.
    """

    #: Manifests remembered at most; a client sending endless distinct ones starts it over.
    SIZE = 64

    def __init__(self) -> None:
        self._read: dict[str, Manifest] = {}

    def get(self, value: Any) -> Manifest:
        """The manifest ``value`` (its JSON text or the JSON object) is, or a 422."""
        if isinstance(value, str):
            text = value
        elif isinstance(value, dict):
            try:
                text = json.dumps(value)
            except (ValueError, RecursionError) as exc:  # cannot happen for parsed JSON; said, not raised
                raise HTTPError(422, "ManifestError", f"'manifest' is not a featurelite manifest ({exc})") from None
        else:
            raise HTTPError(422, "ManifestError", "'manifest' must be a training set's manifest: the JSON object (or "
                            f"its text) of its 'featurelite.manifest' schema metadata, not a JSON {_kind(value)}")
        found = self._read.get(text)
        if found is None:
            try:
                found = Manifest.from_json(text)
            except ManifestError as exc:
                raise HTTPError(422, "ManifestError", f"'manifest': {exc}") from None
            if len(self._read) >= self.SIZE:
                self._read.clear()
            self._read[text] = found
        return found


def _kind(value: Any) -> str:
    """The JSON name of a parsed JSON value's type."""
    names = {list: "array", bool: "boolean", int: "number", float: "number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def entity_rows(entities: Any) -> int:
    """How many entity rows a request asks for (a guess is enough: it picks the thread)."""
    if isinstance(entities, list):
        return len(entities)
    if isinstance(entities, dict):
        return max((len(v) for v in entities.values() if isinstance(v, list)), default=1)
    return 1


def _check_names(fields: Iterable[pa.Field]) -> None:
    """Decode every field name, nested ones too (UnicodeDecodeError, a ValueError, if one
    is not UTF-8)."""
    for field in fields:
        field.name  # noqa: B018 - decoding is the check
        kind = field.type
        if isinstance(kind, pa.DictionaryType):
            kind = kind.value_type
        _check_names(kind.field(i) for i in range(kind.num_fields))


def _check_decoded_size(body: bytes, limits: DecodeLimits) -> None:
    """A 413 if the stream's batches would decode to more than ``limits``, measured from
    the messages' headers before decoding any of them."""
    reader = pa.ipc.MessageReader.open_stream(pa.BufferReader(body))
    cells = nbytes = 0
    while True:
        try:
            message = reader.read_next_message()
        except StopIteration:
            break
        if message is None:
            break
        if message.type in ("record batch", "dictionary"):
            more_cells, more_bytes = decoded_size(message)
            cells, nbytes = cells + more_cells, nbytes + more_bytes
            if nbytes > limits.max_bytes or cells > limits.max_cells:
                raise HTTPError(413, "PayloadTooLarge",
                                f"the Arrow stream decodes to more than {limits.max_bytes} bytes or "
                                f"{limits.max_cells} values (rows x columns); send it in smaller pushes")


def read_arrow(body: bytes, limits: DecodeLimits) -> pa.Table:
    """The Arrow IPC stream in ``body`` as a table, or 413 if it would decode to more than
    the limits allow, or 422 if it is not a valid stream."""
    try:
        _check_decoded_size(body, limits)
        table = pa.ipc.open_stream(body).read_all()
        # A damaged stream can decode to a table with offsets out of bounds, text that is
        # not UTF-8 or field names that are not: refuse it here, the boundary, rather than
        # let it fail (or read out of bounds) somewhere inside ingest.
        table.validate(full=True)
        _check_names(table.schema)
        return table
    except (pa.ArrowException, OSError, ValueError, OverflowError, IndexError) as exc:
        # pyarrow raises ArrowInvalid, ArrowNotImplementedError, ArrowIndexError,
        # ArrowTypeError... for a damaged or unsupported stream: all the client's doing.
        raise HTTPError(422, "InputError", f"the body is not a readable Arrow IPC stream: {exc}") from None
