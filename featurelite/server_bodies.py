"""Request bodies of the HTTP server, read into what the Store takes: a JSON object, a
table of pushed rows (JSON rows or columns, or an Arrow IPC stream), a point in time, a
training set's manifest, and a training-set request (an Arrow stream of entity rows with
its parameters in the schema metadata).

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
from .server_openapi import REQUEST_METADATA

__all__ = ["STEPWISE_BODY", "DecodeLimits", "HTTPError", "HistoricalRequest", "Manifests", "entity_rows",
           "historical_request", "parse_json", "parse_now", "parse_time_field", "read_arrow", "request_times",
           "table_from_json", "whole_number"]

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
    return parse_time_field(value, "now")


def parse_time_field(value: Any, name: str) -> datetime:
    """The request's time field ``name`` (an ISO-8601 time string), or a 422."""
    if not isinstance(value, str):
        raise HTTPError(422, "InputError", f"'{name}' must be an ISO-8601 time string, got {value!r}")
    try:
        return wire.parse_time(value)
    except ValueError:
        raise HTTPError(422, "InputError", f"'{name}' is not an ISO-8601 time: {value!r}") from None


def request_times(request_data: Any, fields: Any) -> Any:
    """``request_data`` with the values of ``fields`` (the request's ``request_times``: the
    fields the client sent datetimes in, as ISO-8601 text) read back as datetimes, so a
    featurizer's timestamp input gets what it would get in process. Other values, and
    anything that is not the documented shape, are left for the Store to judge."""
    if not isinstance(fields, list) or not isinstance(request_data, dict):
        raise HTTPError(422, "InputError", "'request_times' must list fields of a 'request_data' object")
    converted = dict(request_data)
    for field in fields:
        column = converted.get(field) if isinstance(field, str) else None
        if not isinstance(column, list):
            raise HTTPError(422, "InputError", f"'request_times' names {field!r}, which is not a list in "
                            "'request_data'")
        converted[field] = [v if not isinstance(v, str) else parse_time_field(v, f"request_data.{field}")
                            for v in column]
    return converted


def whole_number(value: str | None, name: str) -> int | None:
    """A query parameter that must be a whole number of at least 1, or None if absent."""
    if value is None:
        return None
    if not value.isdigit() or len(value) > 18 or int(value) < 1:
        raise HTTPError(422, "InputError", f"'{name}' must be a whole number of at least 1, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class HistoricalRequest:
    """What a training-set request asks, besides its entity rows (see
    :func:`historical_request`)."""

    features: Any
    service: str | None
    as_of: Manifest | None
    timestamp_field: str | None
    full_feature_names: bool
    #: Leave out of the answer the entity columns the training set carries through unchanged.
    omit_entity_columns: bool = False


def historical_request(table: pa.Table, manifests: Manifests) -> tuple[HistoricalRequest, pa.Table]:
    """The parameters an entity stream carries in its schema metadata (``featurelite.request``,
    a JSON object), and the entity rows without them (the rest of their metadata kept, as
    the Store would have seen it in process). A 422 for metadata that is missing or not
    the documented object."""
    metadata = dict(table.schema.metadata or {})
    text = metadata.pop(REQUEST_METADATA, None)
    if text is None:
        raise HTTPError(422, "InputError", "the entity stream carries no request: put the parameters as JSON in "
                        f"its schema metadata {REQUEST_METADATA.decode()!r}")
    try:
        params = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise HTTPError(422, "InputError", f"the entity stream's request is not JSON: {exc}") from None
    if not isinstance(params, dict):
        raise HTTPError(422, "InputError", "the entity stream's request must be a JSON object")
    known = {"features", "service", "as_of", "timestamp_field", "full_feature_names", "omit_entity_columns"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise HTTPError(422, "InputError", f"the entity stream's request has unknown field(s): {', '.join(unknown)}")
    service, as_of = params.get("service"), params.get("as_of")
    if service is not None and not isinstance(service, str):
        raise HTTPError(422, "InputError", "'service' must be the name of a feature service")
    timestamp_field = params.get("timestamp_field")
    if timestamp_field is not None and not isinstance(timestamp_field, str):
        raise HTTPError(422, "InputError", "'timestamp_field' must be the name of a column")
    full, omit = params.get("full_feature_names", False), params.get("omit_entity_columns", False)
    if not isinstance(full, bool) or not isinstance(omit, bool):
        raise HTTPError(422, "InputError", "'full_feature_names' and 'omit_entity_columns' must be true or false")
    request = HistoricalRequest(
        params.get("features"), service, None if as_of is None else manifests.get(as_of), timestamp_field, full, omit,
    )
    return request, table.replace_schema_metadata(metadata or None)


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


def _check_decoded_size(body: bytes, limits: DecodeLimits, advice: str) -> None:
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
                                f"{limits.max_cells} values (rows x columns); {advice}")


def read_arrow(body: bytes, limits: DecodeLimits, *, advice: str = "send it in smaller pushes") -> pa.Table:
    """The Arrow IPC stream in ``body`` as a table, or 413 if it would decode to more than
    the limits allow, or 422 if it is not a valid stream."""
    try:
        _check_decoded_size(body, limits, advice)
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
