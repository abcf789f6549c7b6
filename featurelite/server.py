"""The HTTP feature server: a Starlette app over one Store, run by uvicorn.

Endpoints (see :data:`OPENAPI`, served at ``/openapi.json``):

- ``POST /get-online-features``: ``{"features": [...], "entities": ..., "request_data": ...}``
  -> ``{"values": {column: [...]}, "statuses": {feature: [...]}}``; featurizers run per request;
- ``POST /push``: rows for a view, through the same atomic ingest as ``Store.ingest``
  (JSON rows or columns, or an Arrow IPC stream); reads see them as soon as it answers;
- ``GET /health``, ``GET /metrics`` (Prometheus text), ``GET /openapi.json``.

The only module that knows HTTP status codes. A featurelite error is a JSON body
``{"error": {"type": ..., "message": ...}}`` with 404 (unknown names), 422 (bad data or
definitions), 401 (no or wrong token), 413 (body over the limit) or 503 (store closed);
anything unexpected is a 500 with the same shape and no traceback (the server logs it).

Needs the server extra: ``pip install 'featurelite[server]'``.
"""

from __future__ import annotations

import hmac
import json
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ._version import __version__
from .db import run as run_sql
from .errors import (
    DefinitionError,
    FeatureliteError,
    InputError,
    NotFoundError,
    ServerError,
    StoreClosedError,
)
from .serving_lock import holding
from .store import Store

__all__ = ["OPENAPI", "create_app", "run"]

log = logging.getLogger("featurelite.server")

#: Latency buckets (seconds) fine enough for sub-millisecond reads.
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_ARROW_STREAM = "application/vnd.apache.arrow.stream"


class HTTPError(Exception):
    """An error answered with ``status`` and a JSON body."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def _status_of(exc: FeatureliteError) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, (InputError, DefinitionError)):
        return 422
    if isinstance(exc, StoreClosedError):
        return 503
    return 400


def _default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _finite(value: Any) -> Any:
    """Non-finite floats as "NaN" / "Infinity" / "-Infinity" (strict JSON has none)."""
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def json_bytes(payload: Any) -> bytes:
    """Strict JSON: the fast path first, non-finite floats spelled out only when present."""
    try:
        text = json.dumps(payload, default=_default, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except ValueError:
        text = json.dumps(_finite(payload), default=_default, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    return text.encode()


def _json_response(payload: Any, status: int = 200) -> Response:
    return Response(json_bytes(payload), status_code=status, media_type="application/json")


def _error_response(status: int, kind: str, message: str) -> Response:
    return _json_response({"error": {"type": kind, "message": message}}, status)


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


def create_app(store: Store, *, token: str | None = None, max_body: int = 16 * 1024 * 1024) -> Starlette:
    """The ASGI app serving ``store`` (which the caller opened and will close)."""
    metrics = _Metrics(store)
    expected = None if not token else f"Bearer {token}".encode()

    def endpoint(name: str, handler: Handler, *, public: bool = False) -> Handler:
        latency = metrics.latency.labels(name)

        async def wrapped(request: Request) -> Response:
            start = time.perf_counter()
            try:
                if not public and expected is not None:
                    given = request.headers.get("authorization", "").encode()
                    if not hmac.compare_digest(given, expected):
                        raise HTTPError(401, "Unauthorized", "a valid 'Authorization: Bearer <token>' header is required")
                response = await handler(request)
            except HTTPError as exc:
                response = _error_response(exc.status, exc.kind, exc.message)
            except FeatureliteError as exc:
                response = _error_response(_status_of(exc), type(exc).__name__, str(exc))
            except Exception:  # noqa: BLE001 - never a traceback to the client
                log.exception("unexpected error answering %s", name)
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
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPError(422, "InputError", f"the body is not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise HTTPError(422, "InputError", "the body must be a JSON object")
        return payload

    async def get_online_features(request: Request) -> Response:
        payload = await json_of(request)
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
        return _json_response({"values": response.to_dict(), "statuses": response.statuses})

    async def push(request: Request) -> Response:
        if request.headers.get("content-type", "").startswith(_ARROW_STREAM):
            view = request.query_params.get("view")
            if not view:
                raise HTTPError(422, "InputError", "an Arrow stream push names its view in the query: /push?view=NAME")
            body = await body_of(request)
            try:
                table = pa.ipc.open_stream(body).read_all()
            except (pa.ArrowInvalid, OSError) as exc:
                raise HTTPError(422, "InputError", f"the body is not an Arrow IPC stream: {exc}") from None
        else:
            payload = await json_of(request)
            view = payload.get("view")
            if not isinstance(view, str):
                raise HTTPError(422, "InputError", "'view' must name the feature view to push to")
            table = _table_from_json(payload)
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
        return _error_response(status, "NotFound" if status == 404 else "MethodNotAllowed",
                               f"{request.method} {request.url.path} is not an endpoint; see /openapi.json")

    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise HTTPError(422, "InputError", f"'now' must be an ISO-8601 time string, got {value!r}")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPError(422, "InputError", f"'now' is not an ISO-8601 time: {value!r}") from None


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
            return pa.table(columns)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise HTTPError(422, "SchemaError", f"the pushed values do not form a table: {exc}") from None
    raise HTTPError(422, "InputError", "give either 'rows': [{column: value}, ...] or 'columns': {column: [values]}")


def run(path: str, *, host: str = "127.0.0.1", port: int = 6566, token: str | None = None,
        max_body: int = 16 * 1024 * 1024, log_level: str = "warning") -> None:
    """Open the store for writing and serve it until SIGTERM or Ctrl-C.

    Shutting down stops accepting connections, lets requests in flight finish (a push
    either commits or rolls back, atomically), then closes the store file."""
    # Pushes run in a worker thread while the event loop answers reads. Each DuckDB call
    # of an ingest gives the GIL back, and taking it again waits up to the switch interval
    # (5 ms by default) while reads run: a push would crawl under read load.
    sys.setswitchinterval(0.0002)
    store = Store(path)
    try:
        # Many small pushes: let the write-ahead log grow to 256 MB before DuckDB folds it
        # into the file (16 MB by default), so a push rarely pays for a checkpoint. Closing
        # the store at shutdown checkpoints anyway.
        run_sql(store.con, "SET checkpoint_threshold = '256MB'")
        for view in store.list_feature_views():
            store._index(view.name)  # load the online index now, not on the first request
        app = create_app(store, token=token, max_body=max_body)
        config = uvicorn.Config(
            app, host=host, port=port, log_level=log_level, access_log=False, lifespan="off",
            timeout_graceful_shutdown=30,
        )
        server = uvicorn.Server(config)
        # uvicorn shuts down gracefully on SIGTERM / SIGINT, then raises the signal again for
        # its default effect, which would end the process before the store is closed. Make
        # that second delivery a no-op: the store closes below and the process exits 0.
        quiet = {sig: signal.signal(sig, lambda signum, frame: None) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            with holding(path, f"http://{host}:{port}"):
                server.run()
        finally:
            for sig, handler in quiet.items():
                signal.signal(sig, handler)
        if not server.started:
            raise ServerError(f"the server could not start on {host}:{port} (is the port in use?)")
    finally:
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
