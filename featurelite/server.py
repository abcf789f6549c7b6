"""The HTTP feature server: a Starlette app over one Store, run by uvicorn.

Endpoints (see :data:`OPENAPI`, served at ``/openapi.json``):

- ``POST /get-online-features``: ``{"features": [...], "entities": ..., "request_data": ...}``
  -> ``{"values": {column: [...]}, "statuses": {feature: [...]}}``; featurizers run per request;
- ``POST /push``: rows for a view, through the same atomic ingest as ``Store.ingest``
  (JSON rows or columns, or an Arrow IPC stream); reads see them as soon as it answers;
- ``GET /health``, ``GET /metrics`` (Prometheus text), ``GET /openapi.json``.

The only module that knows HTTP status codes. A featurelite error is a JSON body
``{"error": {"type": ..., "message": ...}}`` with 404 (unknown names), 422 (bad data or
definitions), 401 (no or wrong token), 413 (body, or an Arrow stream once decoded, over the
limit), 408 (a request that did not arrive in time) or 503 (store closed or locked); a
store failure and anything unexpected is a 500 with the same shape and no traceback (the
server logs it).

Hostile clients: a request's headers must arrive within ``header_timeout`` seconds and its
body within ``body_timeout`` (else the connection is closed), at most ``max_connections``
connections are open at once (more are closed as they arrive), and a compressed Arrow
stream is measured from its metadata before anything is decompressed. Large JSON bodies,
large reads and their answers are handled in worker threads, in steps that hand the GIL
back, so ``/health`` and small reads keep being answered meanwhile; a small request stays
on the event loop, the fast path.

Needs the server extra: ``pip install 'featurelite[server]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import json
import logging
import math
import re
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ._version import __version__
from .errors import (
    DefinitionError,
    FeatureliteError,
    InputError,
    NotFoundError,
    ServerError,
    StoreClosedError,
    StoreLockedError,
)
from .serving_lock import holding
from .store import Store

__all__ = ["OPENAPI", "create_app", "run"]

log = logging.getLogger("featurelite.server")

#: Latency buckets (seconds) fine enough for sub-millisecond reads.
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_ARROW_STREAM = "application/vnd.apache.arrow.stream"
_DEFAULT_MAX_BODY = 16 * 1024 * 1024
#: A body up to this size is parsed on the event loop (well under a millisecond); a larger
#: one in a worker thread, so the loop keeps answering other clients meanwhile.
_INLINE_BODY = 64 * 1024
#: Above this size ``json.loads`` (which holds the GIL from start to end: ~7 ms per MB)
#: would stall the loop even from a thread; such bodies are parsed element by element.
_STEPWISE_BODY = 1024 * 1024
#: A read of more entity rows than this runs in a worker thread, answer encoding included.
_INLINE_ENTITIES = 256
#: Lists longer than this are encoded to JSON in slices, handing the GIL back between them.
_ENCODE_SLICE = 4096


class HTTPError(Exception):
    """An error answered with ``status`` and a JSON body."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def _status_of(exc: FeatureliteError) -> int:
    """The status for a featurelite error: the client's fault (404, 422), the store's state
    (503: closed, or held by another process) or the server's (500: a store failure such as
    a translated DuckDB error, a damaged file, a server error)."""
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, (InputError, DefinitionError)):
        return 422
    if isinstance(exc, (StoreClosedError, StoreLockedError)):
        return 503
    return 500


def _default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _finite(value: Any) -> Any:
    """Non-finite floats as "NaN" / "Infinity" / "-Infinity" (strict JSON has none)."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _dumps(payload: Any, ascii_only: bool = False) -> str:
    try:
        return json.dumps(payload, default=_default, allow_nan=False, ensure_ascii=ascii_only, separators=(",", ":"))
    except ValueError:
        return json.dumps(_finite(payload), default=_default, allow_nan=False, ensure_ascii=ascii_only,
                          separators=(",", ":"))


def json_bytes(payload: Any) -> bytes:
    """Strict JSON: the fast path first, non-finite floats spelled out only when present.

    Text that is not valid Unicode (a lone surrogate such as ``"\\ud800"``, which JSON can
    carry as an escape) is answered as ASCII-escaped JSON, which round-trips it."""
    text = _dumps(payload)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return _dumps(payload, ascii_only=True).encode()


def _json_parts(value: Any) -> Iterator[str]:
    """``value`` as JSON text in pieces: dicts walked key by key, long lists slice by slice,
    so a large answer never holds the GIL for long (each ``json.dumps`` call does)."""
    if isinstance(value, dict):
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield ("," if i else "") + _dumps(str(key), ascii_only=True) + ":"
            yield from _json_parts(item)
        yield "}"
    elif isinstance(value, list) and len(value) > _ENCODE_SLICE:
        yield "["
        for start in range(0, len(value), _ENCODE_SLICE):
            yield ("," if start else "") + _dumps(value[start:start + _ENCODE_SLICE], ascii_only=True)[1:-1]
        yield "]"
    else:
        yield _dumps(value, ascii_only=True)


def _json_bytes_stepwise(payload: Any) -> bytes:
    return "".join(_json_parts(payload)).encode()


# --- JSON bodies -----------------------------------------------------------------------

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_scan = json.JSONDecoder().raw_decode


def _skip(text: str, i: int) -> int:
    match = _WHITESPACE.match(text, i)
    return match.end() if match else i


def _loads_stepwise(text: str) -> Any:
    """``json.loads(text)`` with the same result and errors, but the outer two levels of
    containers are walked here, each element parsed by its own call of the C scanner: the
    GIL is handed back between elements (``json.loads`` holds it for the whole body, ~100
    ms for 16 MB, stalling every other client)."""
    value, end = _stepwise_value(text, _skip(text, 0), 2)
    end = _skip(text, end)
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def _stepwise_value(text: str, i: int, levels: int) -> tuple[Any, int]:
    if levels <= 0 or not text.startswith(("[", "{"), i):
        return _scan(text, i)
    if text[i] == "[":
        items: list[Any] = []
        i = _skip(text, i + 1)
        if text.startswith("]", i):
            return items, i + 1
        while True:
            item, i = _stepwise_value(text, i, levels - 1)
            items.append(item)
            i = _skip(text, i)
            if text.startswith(",", i):
                i = _skip(text, i + 1)
            elif text.startswith("]", i):
                return items, i + 1
            else:
                raise json.JSONDecodeError("Expecting ',' delimiter", text, i)
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
        obj[key], i = _stepwise_value(text, _skip(text, i + 1), levels - 1)
        i = _skip(text, i)
        if text.startswith(",", i):
            i = _skip(text, i + 1)
        elif text.startswith("}", i):
            return obj, i + 1
        else:
            raise json.JSONDecodeError("Expecting ',' delimiter", text, i)


def _parse_json(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 422 (bad JSON, nesting too deep, not an object)."""
    try:
        if len(body) > _STEPWISE_BODY:
            payload = _loads_stepwise(body.decode(json.detect_encoding(body), "surrogatepass"))
        else:
            payload = json.loads(body)
    except RecursionError:
        raise HTTPError(422, "InputError", "the body's JSON is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPError(422, "InputError", f"the body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise HTTPError(422, "InputError", "the body must be a JSON object")
    return payload


def _table_from_json(payload: dict[str, Any]) -> pa.Table:
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


def _parse_time(value: Any) -> datetime:
    """An ISO-8601 time. Whether it lies in the range a store holds is the Store's check
    (an InputError, so 422, for ``0001-01-01T00:00:00+01:00``, before year 1 in UTC)."""
    if not isinstance(value, str):
        raise HTTPError(422, "InputError", f"'now' must be an ISO-8601 time string, got {value!r}")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPError(422, "InputError", f"'now' is not an ISO-8601 time: {value!r}") from None


def _entity_rows(entities: Any) -> int:
    """How many entity rows a request asks for (a guess is enough: it picks the thread)."""
    if isinstance(entities, list):
        return len(entities)
    if isinstance(entities, dict):
        return max((len(v) for v in entities.values() if isinstance(v, list)), default=1)
    return 1


# --- Arrow IPC bodies --------------------------------------------------------------------

class _Limits:
    """How much a push may decode to: bytes and cells (rows x columns)."""

    def __init__(self, max_bytes: int, max_cells: int) -> None:
        self.max_bytes, self.max_cells = max_bytes, max_cells


class _Flat:
    """Just enough of a FlatBuffers reader for an Arrow IPC message's header: the record
    batch length, its field nodes and its buffers (offset, length). Every read is bounds
    checked; a damaged header is a ValueError."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def _int(self, pos: int, size: int, signed: bool = False) -> int:
        if pos < 0 or pos + size > len(self.data):
            raise ValueError("the IPC message header is damaged")
        return int.from_bytes(self.data[pos:pos + size], "little", signed=signed)

    def root(self) -> int:
        return self._int(0, 4)

    def field(self, table: int, index: int) -> int | None:
        """The position of field ``index`` of the table at ``table``, or None if absent."""
        vtable = table - self._int(table, 4, signed=True)
        size = self._int(vtable, 2)
        slot = 4 + 2 * index
        if slot + 2 > size:
            return None
        offset = self._int(vtable + slot, 2)
        return None if offset == 0 else table + offset

    def ref(self, pos: int) -> int:
        return pos + self._int(pos, 4)

    def long(self, pos: int | None) -> int:
        return 0 if pos is None else self._int(pos, 8, signed=True)

    def vector(self, pos: int | None) -> tuple[int, int]:
        """(first element's position, count) of the vector referenced at ``pos``."""
        if pos is None:
            return 0, 0
        start = self.ref(pos)
        return start + 4, self._int(start, 4)


def _decoded_size(message: Any) -> tuple[int, int]:
    """(cells, bytes) a record or dictionary batch message decodes to, read from its header
    and, for compressed buffers, the uncompressed length each one starts with; nothing is
    decompressed."""
    flat = _Flat(message.metadata.to_pybytes())
    header = flat.field(flat.root(), 2)  # Message.header
    if header is None:
        return 0, 0
    batch = flat.ref(header)
    if message.type == "dictionary":
        data = flat.field(batch, 1)  # DictionaryBatch.data
        if data is None:
            return 0, 0
        batch = flat.ref(data)
    rows = flat.long(flat.field(batch, 0))  # RecordBatch.length
    _, nodes = flat.vector(flat.field(batch, 1))
    first, count = flat.vector(flat.field(batch, 2))
    compressed = flat.field(batch, 3) is not None
    body = message.body
    size = body.size if body is not None else 0
    total = 0
    for b in range(count):
        offset, length = flat.long(first + 16 * b), flat.long(first + 16 * b + 8)
        if offset < 0 or length < 0 or offset + length > size:
            raise ValueError("an IPC buffer lies outside its message body")
        if compressed and length >= 8:
            declared = int.from_bytes(body[offset:offset + 8].to_pybytes(), "little", signed=True)
            total += length - 8 if declared == -1 else declared
        else:
            total += length
    return max(rows, 0) * max(nodes, 1), total


def _check_names(fields: Iterable[pa.Field]) -> None:
    """Decode every field name, nested ones too (UnicodeDecodeError, a ValueError, if one
    is not UTF-8)."""
    for field in fields:
        field.name  # noqa: B018 - decoding is the check
        kind = field.type
        if isinstance(kind, pa.DictionaryType):
            kind = kind.value_type
        _check_names(kind.field(i) for i in range(kind.num_fields))


def _read_arrow(body: bytes, limits: _Limits) -> pa.Table:
    """The Arrow IPC stream in ``body`` as a table, or 413 if it would decode to more than
    the limits allow (measured from the messages' headers before decoding any of them),
    or 422 if it is not a valid stream."""
    try:
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
                more_cells, more_bytes = _decoded_size(message)
                cells, nbytes = cells + more_cells, nbytes + more_bytes
                if nbytes > limits.max_bytes or cells > limits.max_cells:
                    raise HTTPError(413, "PayloadTooLarge",
                                    f"the Arrow stream decodes to more than {limits.max_bytes} bytes or "
                                    f"{limits.max_cells} values (rows x columns); send it in smaller pushes")
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


# --- the app -----------------------------------------------------------------------------

def _error_response(status: int, kind: str, message: str) -> Response:
    return Response(json_bytes({"error": {"type": kind, "message": message}}), status_code=status,
                    media_type="application/json")


def _json_response(payload: Any, status: int = 200) -> Response:
    return Response(json_bytes(payload), status_code=status, media_type="application/json")


def _shorten(text: str, limit: int = 300) -> str:
    text = text.encode("utf-8", "backslashreplace").decode()  # a lone surrogate cannot be logged as is
    return text if len(text) <= limit else text[:limit] + "..."


class _Metrics:
    """Request counts and latencies, plus per-view row counts and last event time read
    from the store at scrape time."""

    def __init__(self, store: Store) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "featurelite_requests", "HTTP requests answered", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "featurelite_request_seconds", "Time to answer a request", ["endpoint"], buckets=_BUCKETS,
            registry=self.registry,
        )
        self.pushed = Counter("featurelite_pushed_rows", "Rows ingested through /push", ["view"], registry=self.registry)
        self.store = store
        self.registry.register(self)  # type: ignore[arg-type]  # a custom collector: collect() below

    def collect(self) -> Iterable[GaugeMetricFamily]:
        history = GaugeMetricFamily("featurelite_view_history_rows", "History rows per feature view", labels=["view"])
        online = GaugeMetricFamily("featurelite_view_online_rows", "Entities with online values per view", labels=["view"])
        last = GaugeMetricFamily(
            "featurelite_view_last_event_timestamp_seconds", "Latest event time per view (Unix seconds)", labels=["view"]
        )
        if not self.store.closed:
            for view in self.store.list_feature_views():
                info = self.store.describe(view.name)
                history.add_metric([view.name], info["history_rows"])
                online.add_metric([view.name], info["online_rows"])
                if info["last_event"] is not None:
                    last.add_metric([view.name], info["last_event"].timestamp())
        return [history, online, last]


Handler = Callable[[Request], Awaitable[Response]]


def _check_token(token: str | None) -> bytes | None:
    if token is None:
        return None
    if not isinstance(token, str) or not token.strip():
        # An empty FEATURELITE_TOKEN used to switch auth off without a word.
        raise ServerError("the token is empty; give a non-empty token, or none at all to serve without auth")
    return f"Bearer {token}".encode()


def create_app(
    store: Store, *, token: str | None = None, max_body: int = _DEFAULT_MAX_BODY,
    max_decoded_bytes: int | None = None, max_decoded_values: int | None = None,
) -> Starlette:
    """The ASGI app serving ``store`` (which the caller opened and will close).

    ``token``: every endpoint but ``/health`` then needs ``Authorization: Bearer <token>``;
    an empty or blank token is refused (ServerError) rather than read as "no auth".
    ``max_body``: the largest request body in bytes (413 beyond it). An Arrow IPC push may
    decode to at most ``max_decoded_bytes`` (default 8 x ``max_body``) and
    ``max_decoded_values`` rows x columns (default ``max_decoded_bytes`` / 8), checked from
    the stream's headers before anything is decompressed (413 beyond them)."""
    expected = _check_token(token)
    if max_body < 1:
        raise ServerError(f"max_body must be a positive number of bytes, got {max_body}")
    decoded_bytes = 8 * max_body if max_decoded_bytes is None else max_decoded_bytes
    limits = _Limits(decoded_bytes, decoded_bytes // 8 if max_decoded_values is None else max_decoded_values)
    metrics = _Metrics(store)

    def endpoint(name: str, handler: Handler, *, public: bool = False) -> Handler:
        latency = metrics.latency.labels(name)

        async def wrapped(request: Request) -> Response:
            start = time.perf_counter()
            try:
                if not public and expected is not None:
                    given = request.headers.get("authorization", "").encode("latin-1", "replace")
                    if not hmac.compare_digest(given, expected):
                        raise HTTPError(401, "Unauthorized", "a valid 'Authorization: Bearer <token>' header is required")
                response = await handler(request)
            except HTTPError as exc:
                response = _error_response(exc.status, exc.kind, exc.message)
                log.warning("%s %s -> %d %s: %s", request.method, name, exc.status, exc.kind, _shorten(exc.message))
            except FeatureliteError as exc:
                status = _status_of(exc)
                response = _error_response(status, type(exc).__name__, str(exc))
                if status == 500:  # a store failure: the traceback is for the operator
                    log.error("%s %s -> %d %s: %s", request.method, name, status, type(exc).__name__,
                              _shorten(str(exc)), exc_info=exc)
                else:
                    log.warning("%s %s -> %d %s: %s", request.method, name, status, type(exc).__name__,
                                _shorten(str(exc)))
            except ClientDisconnect:
                # The client went away (or was cut off by the body timeout): nobody to answer.
                response = _error_response(408, "RequestTimeout", "the request body did not arrive in time")
                log.warning("%s %s -> 408 the client disconnected before sending its whole body", request.method, name)
            except Exception as exc:  # never a traceback to the client
                log.error("%s %s -> 500 unexpected %s", request.method, name, type(exc).__name__, exc_info=exc)
                response = _error_response(500, "InternalError", "the server failed to answer; see its log")
            latency.observe(time.perf_counter() - start)
            metrics.requests.labels(name, str(response.status_code)).inc()
            return response

        return wrapped

    async def body_of(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body:
            raise HTTPError(413, "PayloadTooLarge", f"the body has {declared} bytes; the limit is {max_body}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                raise HTTPError(413, "PayloadTooLarge", f"the body exceeds the limit of {max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def json_of(request: Request) -> dict[str, Any]:
        body = await body_of(request)
        if len(body) <= _INLINE_BODY:
            return _parse_json(body)  # the fast path: parsing takes microseconds
        return await run_in_threadpool(_parse_json, body)

    def read(payload: dict[str, Any], stepwise: bool) -> bytes:
        features = payload.get("features")
        entities = payload.get("entities")
        if not isinstance(features, list) or not features:
            raise HTTPError(422, "InputError", "'features' must be a non-empty list of 'view:feature' references")
        if entities is None:
            raise HTTPError(422, "InputError", "'entities' is required: [{key: value}, ...] or {key: [values]}")
        now = payload.get("now")
        response = store.get_online_features(
            entities, features, request_data=payload.get("request_data"),
            full_feature_names=bool(payload.get("full_feature_names", False)),
            now=None if now is None else _parse_time(now),
        )
        answer = {"values": response.to_dict(), "statuses": response.statuses}
        return _json_bytes_stepwise(answer) if stepwise else json_bytes(answer)

    async def get_online_features(request: Request) -> Response:
        payload = await json_of(request)
        if _entity_rows(payload.get("entities")) <= _INLINE_ENTITIES:
            body = read(payload, False)  # the fast path, on the loop: a thread hop costs ~50 us
        else:
            body = await run_in_threadpool(read, payload, True)
        return Response(body, media_type="application/json")

    async def push(request: Request) -> Response:
        if request.headers.get("content-type", "").startswith(_ARROW_STREAM):
            view = request.query_params.get("view")
            if not view:
                raise HTTPError(422, "InputError", "an Arrow stream push names its view in the query: /push?view=NAME")
            body = await body_of(request)
            # Up to 1 MiB (decoding to at most 8 MiB) reading costs less than a thread hop.
            table = (_read_arrow(body, limits) if len(body) <= _STEPWISE_BODY
                     else await run_in_threadpool(_read_arrow, body, limits))
        else:
            body = await body_of(request)
            if len(body) <= _INLINE_BODY:
                payload = _parse_json(body)
            else:
                payload = await run_in_threadpool(_parse_json, body)
            view = payload.get("view")
            if not isinstance(view, str):
                raise HTTPError(422, "InputError", "'view' must name the feature view to push to")
            table = (_table_from_json(payload) if len(body) <= _INLINE_BODY
                     else await run_in_threadpool(_table_from_json, payload))
        # Ingest runs in a worker thread: reads keep being answered while it writes.
        result = await run_in_threadpool(store.ingest, view, table)
        metrics.pushed.labels(view).inc(result.rows)
        return _json_response({"view": result.view, "rows": result.rows})

    async def health(request: Request) -> Response:
        ok = not store.closed
        return _json_response({"status": "ok" if ok else "closed", "version": __version__}, 200 if ok else 503)

    async def metrics_text(request: Request) -> Response:
        text = await run_in_threadpool(generate_latest, metrics.registry)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        return _json_response(OPENAPI)

    routes = [
        Route("/get-online-features", endpoint("get-online-features", get_online_features), methods=["POST"]),
        Route("/push", endpoint("push", push), methods=["POST"]),
        Route("/health", endpoint("health", health, public=True), methods=["GET"]),
        Route("/metrics", endpoint("metrics", metrics_text), methods=["GET"]),
        Route("/openapi.json", endpoint("openapi", openapi), methods=["GET"]),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        kind = "NotFound" if status == 404 else "MethodNotAllowed"
        log.warning("%s %s -> %d %s", request.method, _shorten(request.url.path, 100), status, kind)
        return _error_response(status, kind, f"{request.method} {request.url.path} is not an endpoint; see /openapi.json")

    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})


# --- the connection layer ----------------------------------------------------------------

_TIMEOUT_BODY = json_bytes({"error": {"type": "RequestTimeout", "message": "the request did not arrive in time"}})
_TIMEOUT_ANSWER = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                   b"content-length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY))


class _GuardedHTTP(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits it lacks (uvicorn 0.54 times out only
    idle keep-alive connections; a client that sends half a request holds its connection,
    and a file descriptor, forever):

    - a request's headers must arrive within ``header_timeout`` seconds of its first byte
      (or of the connection's opening), its body within ``body_timeout`` more; otherwise
      the connection is closed (with a 408 if no request had started being answered);
    - at most ``max_connections`` are open: a connection beyond them is closed at once.

    uvicorn's own ``limit_concurrency`` is not used: it counts idle connections too and
    answers every request, ``/health`` included, with 503 once the count is reached,
    which is what a slow-client attack wants.
    """

    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections: int = 4096

    _deadline: asyncio.TimerHandle | None = None

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            # Nothing is being answered on this connection: say why it is being closed.
            self.transport.write(_TIMEOUT_ANSWER)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.close()  # connection_lost removes it from the set
            return
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and (self.cycle is None or self.cycle.response_complete):
            self._arm(self.header_timeout)  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a ServerError that says what to change."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ServerError(f"port {port!r} is not a TCP port; give a number from 1 to 65535 (0: any free port)")
    if not isinstance(host, str) or not host.strip():
        raise ServerError(f"host {host!r} is not an address; give one such as 127.0.0.1 or 0.0.0.0")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise ServerError(f"cannot listen on {host}:{port}: the host does not resolve ({exc}); "
                          "give an address of this machine such as 127.0.0.1") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise ServerError(f"cannot listen on {host}:{port}: {reason}; stop whatever holds the port or give "
                          "another --port / --host") from None
    sock.set_inheritable(True)
    return sock


def _raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard one (each connection holds one);
    the soft limit in force after."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def _log_to_stderr(level: str) -> None:
    """featurelite's own lines (startup, one per error answer) go to stderr at INFO, or at
    ``level`` if that is stricter than WARNING (``--log-level error`` silences them)."""
    numeric = logging.getLevelName(level.upper()) if level.lower() != "trace" else logging.DEBUG
    threshold = numeric if isinstance(numeric, int) and numeric > logging.WARNING else logging.INFO
    log.setLevel(threshold)
    if not any(getattr(h, "_featurelite", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s featurelite %(levelname)s: %(message)s"))
        handler._featurelite = True  # type: ignore[attr-defined]  # ours, not added twice
        log.addHandler(handler)


def run(path: str, *, host: str = "127.0.0.1", port: int = 6566, token: str | None = None,
        max_body: int = _DEFAULT_MAX_BODY, log_level: str = "warning", header_timeout: float = 10.0,
        body_timeout: float = 60.0, max_connections: int | None = None) -> None:
    """Open the store for writing and serve it until SIGTERM or Ctrl-C.

    Shutting down stops accepting connections, lets requests in flight finish (a push
    either commits or rolls back, atomically), then closes the store file.

    Raises ServerError, before opening the store, for an empty token, a port outside
    0..65535 (0 picks a free one), a host that does not resolve or an address that cannot
    be bound (in use, not of this machine). ``header_timeout`` / ``body_timeout``: seconds
    a request's headers / body may take to arrive; ``max_connections``: open connections
    at most (default: what the open-file limit allows, up to 4,096)."""
    _check_token(token)
    if max_body < 1:
        raise ServerError(f"max_body must be a positive number of bytes, got {max_body}")
    files = _raise_fd_limit()
    protocol = type("GuardedHTTP", (_GuardedHTTP,), {
        "header_timeout": header_timeout, "body_timeout": body_timeout,
        # keep some descriptors for the store file, its WAL and the threads' needs
        "max_connections": max_connections if max_connections is not None else max(16, min(4096, files - 64)),
    })
    sock = _listen(host, port)
    _log_to_stderr(log_level)  # only now: a refused start leaves the caller's logging alone
    bound_port = sock.getsockname()[1]
    address = f"http://{host if ':' not in host else f'[{host}]'}:{bound_port}"
    # Pushes run in a worker thread while the event loop answers reads. Each DuckDB call
    # of an ingest gives the GIL back, and taking it again waits up to the switch interval
    # (5 ms by default) while reads run: a push would crawl under read load.
    sys.setswitchinterval(0.0002)
    try:
        store = Store(path)
    except BaseException:
        sock.close()
        raise
    try:
        store.prepare_to_serve()  # the online indexes load now, not on the first request
        views = [view.name for view in store.list_feature_views()]
        app = create_app(store, token=token, max_body=max_body)
        # Everything loaded so far (modules, Numba, the online indexes) lives as long as the
        # server: move it out of the garbage collector's sight. A full collection otherwise
        # walks all of it, ~100 ms with the GIL held, whenever a large request allocates
        # enough to trigger one, and every client waits (issue 10 #8).
        gc.collect()
        gc.freeze()
        config = uvicorn.Config(
            app, log_level=log_level, access_log=False, lifespan="off", http=protocol,
            timeout_graceful_shutdown=30, timeout_keep_alive=5,
        )
        server = uvicorn.Server(config)
        # uvicorn shuts down gracefully on SIGTERM / SIGINT, then raises the signal again for
        # its default effect, which would end the process before the store is closed. Make
        # that second delivery a no-op: the store closes below and the process exits 0.
        quiet = {sig: signal.signal(sig, lambda signum, frame: None) for sig in (signal.SIGTERM, signal.SIGINT)}
        log.info("serving %s on %s: %d feature view(s) (%s), auth %s, bodies up to %d bytes",
                 path, address, len(views), ", ".join(views) or "none",
                 "on (bearer token)" if token is not None else "off", max_body)
        try:
            with holding(path, address):
                server.run(sockets=[sock])
        finally:
            for sig, handler in quiet.items():
                signal.signal(sig, handler)
        if not server.started:
            raise ServerError(f"the server could not start on {host}:{bound_port}; see the lines above")
        log.info("stopped serving %s", path)
    finally:
        sock.close()
        store.close()


#: The OpenAPI description of the endpoints.
OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "featurelite feature server", "version": __version__},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {"error": {"type": "object", "properties": {
                    "type": {"type": "string"}, "message": {"type": "string"}}}},
            },
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/get-online-features": {"post": {
            "summary": "Latest feature values for entities; featurizers run per request",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["features", "entities"],
                "properties": {
                    "features": {"type": "array", "items": {"type": "string"}, "example": ["user_stats:spend_7d"]},
                    "entities": {"oneOf": [
                        {"type": "array", "items": {"type": "object"}, "example": [{"user_id": 42}]},
                        {"type": "object", "example": {"user_id": [42, 7]}},
                    ]},
                    "request_data": {"type": "object", "example": {"basket": [12.5]}},
                    "full_feature_names": {"type": "boolean", "default": False},
                    "now": {"type": "string", "format": "date-time"},
                },
            }}}},
            "responses": {
                "200": {"description": "values per column and statuses per feature", "content": {"application/json": {
                    "schema": {"type": "object", "properties": {
                        "values": {"type": "object"}, "statuses": {"type": "object"}}}}}},
                "404": {"description": "unknown view or feature"},
                "422": {"description": "bad entities or request data"},
            },
        }},
        "/push": {"post": {
            "summary": "Ingest rows into a view (atomic; reads see them once this answers)",
            "parameters": [{"name": "view", "in": "query", "required": False, "schema": {"type": "string"},
                            "description": "the view, for an Arrow IPC stream body"}],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"type": "object", "required": ["view"], "properties": {
                    "view": {"type": "string"},
                    "rows": {"type": "array", "items": {"type": "object"}},
                    "columns": {"type": "object"},
                }}},
                _ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}},
            }},
            "responses": {
                "200": {"description": "rows ingested", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"view": {"type": "string"}, "rows": {"type": "integer"}}}}}},
                "413": {"description": "body over the limit"},
                "422": {"description": "rows that do not fit the view; nothing was written"},
            },
        }},
        "/health": {"get": {"summary": "Liveness (no token needed)", "security": [],
                            "responses": {"200": {"description": "serving"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics",
                             "responses": {"200": {"description": "text exposition format"}}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3"}}}},
    },
}
