"""The HTTP feature server: a Starlette app over one Store, run by uvicorn.

Endpoints (see :data:`OPENAPI`, served at ``/openapi.json``):

- ``POST /get-online-features``: ``{"features": [...], "entities": ..., "request_data": ...}``
  (or ``"feature_service": NAME`` instead of ``features``; an optional ``"manifest"`` serves,
  or checks what is served against, a training set's manifest)
  -> ``{"values": {column: [...]}, "statuses": {feature: [...]}}``; featurizers run per request;
- ``POST /push``: rows for a view, through the same atomic ingest as ``Store.ingest``
  (JSON rows or columns, or an Arrow IPC stream); reads see them as soon as it answers;
- ``GET /health``, ``GET /metrics`` (Prometheus text), ``GET /openapi.json``.

The server modules are the only ones that know HTTP status codes. A featurelite error is a JSON body
``{"error": {"type": ..., "message": ...}}`` with 404 (unknown names and versions), 422 (bad
data or definitions), 409 (a manifest that what would be served differs from, or one from
another store; a pinned version the stored data can no longer serve), 401 (no or wrong
token), 413 (body, or an Arrow stream once decoded, over the limit), 408 (a request that
did not arrive in time) or 503 (store closed or locked); a store failure and anything
unexpected is a 500 with the same shape and no traceback (the server logs it).

Hostile clients: a request's headers must arrive within ``header_timeout`` seconds and its
body within ``body_timeout`` (else the connection is closed), at most ``max_connections``
connections are open at once (more are closed as they arrive), and a compressed Arrow
stream is measured from its metadata before anything is decompressed. Large JSON bodies,
large reads and their answers are handled in worker threads, in steps that hand the GIL
back, so ``/health`` and small reads keep being answered meanwhile; a small request stays
on the event loop, the fast path.

This module is the app and its endpoints; its parts live beside it:
:mod:`~featurelite.server_bodies` (request bodies: JSON, pushed rows, Arrow streams, with
:mod:`~featurelite.stepwise_json` and :mod:`~featurelite.ipc_header`),
:mod:`~featurelite.server_connection` (sockets, slow and excess clients),
:mod:`~featurelite.server_metrics` and :mod:`~featurelite.server_openapi`. Answers are
encoded by :mod:`featurelite.wire`, as the CLI's are.

Needs the server extra: ``pip install 'featurelite[server]'``.
"""

from __future__ import annotations

import gc
import hmac
import logging
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TextIO

import pyarrow as pa
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from . import stepwise_json, wire
from ._version import __version__
from .errors import (
    DefinitionError,
    FeatureliteError,
    InputError,
    ManifestError,
    NotFoundError,
    PinnedVersionError,
    ServerError,
    StoreClosedError,
    StoreLockedError,
)
from .server_bodies import (
    STEPWISE_BODY,
    DecodeLimits,
    HTTPError,
    Manifests,
    entity_rows,
    parse_json,
    parse_now,
    read_arrow,
    table_from_json,
)
from .server_connection import GuardedHTTP, listen, raise_fd_limit
from .server_metrics import Metrics
from .server_openapi import ARROW_STREAM, OPENAPI
from .serving_lock import holding
from .store import Store

__all__ = ["OPENAPI", "create_app", "run"]

log = logging.getLogger("featurelite.server")

_DEFAULT_MAX_BODY = 16 * 1024 * 1024
#: A body up to this size is parsed on the event loop (well under a millisecond); a larger
#: one in a worker thread, so the loop keeps answering other clients meanwhile.
_INLINE_BODY = 64 * 1024
#: A read of more entity rows than this runs in a worker thread, answer encoding included.
_INLINE_ENTITIES = 256


def _status_of(exc: FeatureliteError) -> int:
    """The status for a featurelite error: the client's fault (404, 422), a conflict between
    the request and the definitions in force (409: a manifest that what would be served
    differs from, or that comes from another store; a pinned version the stored data can no
    longer serve), the store's state (503: closed, or held by another process) or the
    server's (500: a store failure such as a translated DuckDB error, a damaged file, a
    server error). (A ``manifest`` field that is not one is a 422, said where it is read.)"""
    if isinstance(exc, (ManifestError, PinnedVersionError)):
        return 409
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, (InputError, DefinitionError)):
        return 422
    if isinstance(exc, (StoreClosedError, StoreLockedError)):
        return 503
    return 500


# --- the app -----------------------------------------------------------------------------

def _error_response(status: int, kind: str, message: str) -> Response:
    return Response(wire.encode({"error": {"type": kind, "message": message}}), status_code=status,
                    media_type="application/json")


def _json_response(payload: Any, status: int = 200) -> Response:
    return Response(wire.encode(payload), status_code=status, media_type="application/json")


def _shorten(text: str, limit: int = 300) -> str:
    text = text.encode("utf-8", "backslashreplace").decode()  # a lone surrogate cannot be logged as is
    return text if len(text) <= limit else text[:limit] + "..."


Handler = Callable[[Request], Awaitable[Response]]


def _check_token(token: str | None) -> bytes | None:
    if token is None:
        return None
    if not isinstance(token, str) or not token.strip():
        # An empty FEATURELITE_TOKEN used to switch auth off without a word.
        raise ServerError("the token is empty; give a non-empty token, or none at all to serve without auth")
    return f"Bearer {token}".encode()


def _error_answer(exc: Exception, method: str, name: str) -> Response:
    """The answer to a request whose handler raised ``exc``, logged (never a traceback to
    the client)."""
    if isinstance(exc, HTTPError):
        log.warning("%s %s -> %d %s: %s", method, name, exc.status, exc.kind, _shorten(exc.message))
        return _error_response(exc.status, exc.kind, exc.message)
    if isinstance(exc, FeatureliteError):
        status, kind = _status_of(exc), type(exc).__name__
        if status == 500:  # a store failure: the traceback is for the operator
            log.error("%s %s -> %d %s: %s", method, name, status, kind, _shorten(str(exc)), exc_info=exc)
        else:
            log.warning("%s %s -> %d %s: %s", method, name, status, kind, _shorten(str(exc)))
        return _error_response(status, kind, str(exc))
    if isinstance(exc, ClientDisconnect):
        # The client went away (or was cut off by the body timeout): nobody to answer.
        log.warning("%s %s -> 408 the client disconnected before sending its whole body", method, name)
        return _error_response(408, "RequestTimeout", "the request body did not arrive in time")
    log.error("%s %s -> 500 unexpected %s", method, name, type(exc).__name__, exc_info=exc)
    return _error_response(500, "InternalError", "the server failed to answer; see its log")


class _Endpoints:
    """The endpoints over one store, with its limits, token and metrics."""

    def __init__(self, store: Store, expected: bytes | None, max_body: int, limits: DecodeLimits) -> None:
        self.store, self.expected, self.max_body, self.limits = store, expected, max_body, limits
        self.metrics = Metrics(store)
        self.manifests = Manifests()

    def endpoint(self, name: str, handler: Handler, *, public: bool = False) -> Handler:
        """``handler`` with the token check, errors answered as JSON, and metrics."""
        latency = self.metrics.latency.labels(name)

        async def wrapped(request: Request) -> Response:
            start = time.perf_counter()
            try:
                if not public:
                    self._authorize(request)
                response = await handler(request)
            except Exception as exc:  # noqa: BLE001 - every failure is answered (500 if unexpected) and logged
                response = _error_answer(exc, request.method, name)
            latency.observe(time.perf_counter() - start)
            self.metrics.requests.labels(name, str(response.status_code)).inc()
            return response

        return wrapped

    def _authorize(self, request: Request) -> None:
        if self.expected is not None:
            given = request.headers.get("authorization", "").encode("latin-1", "replace")
            if not hmac.compare_digest(given, self.expected):
                raise HTTPError(401, "Unauthorized", "a valid 'Authorization: Bearer <token>' header is required")

    async def body_of(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise HTTPError(413, "PayloadTooLarge", f"the body has {declared} bytes; the limit is {self.max_body}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise HTTPError(413, "PayloadTooLarge", f"the body exceeds the limit of {self.max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def read(self, payload: dict[str, Any], stepwise: bool) -> bytes:
        """The answer to a read, as JSON bytes (built in steps when ``stepwise``)."""
        features = payload.get("features")
        service = payload.get("feature_service")
        manifest = payload.get("manifest")
        entities = payload.get("entities")
        if service is not None:
            if not isinstance(service, str):
                raise HTTPError(422, "InputError", "'feature_service' must be the name of a feature service")
            if features is not None:
                raise HTTPError(422, "InputError", "give 'features' or 'feature_service', not both")
        elif (features is not None or manifest is None) and (not isinstance(features, list) or not features):
            raise HTTPError(422, "InputError", "'features' must be a non-empty list of 'view:feature' references "
                            "(or give 'feature_service', or a training set's 'manifest')")
        if entities is None:
            raise HTTPError(422, "InputError", "'entities' is required: [{key: value}, ...] or {key: [values]}")
        now = payload.get("now")
        response = self.store.get_online_features(
            entities, features, service=service, manifest=None if manifest is None else self.manifests.get(manifest),
            request_data=payload.get("request_data"),
            full_feature_names=bool(payload.get("full_feature_names", False)),
            now=None if now is None else parse_now(now),
        )
        answer = {"values": response.to_dict(), "statuses": response.statuses}
        return stepwise_json.encode(answer) if stepwise else wire.encode(answer)

    async def get_online_features(self, request: Request) -> Response:
        body = await self.body_of(request)
        if len(body) <= _INLINE_BODY:
            payload = parse_json(body)  # the fast path: parsing takes microseconds
        else:
            payload = await run_in_threadpool(parse_json, body)
        if entity_rows(payload.get("entities")) <= _INLINE_ENTITIES:
            answer = self.read(payload, False)  # the fast path, on the loop: a thread hop costs ~50 us
        else:
            answer = await run_in_threadpool(self.read, payload, True)
        return Response(answer, media_type="application/json")

    async def _pushed_table(self, request: Request) -> tuple[str, pa.Table]:
        """The view a push names and its rows, from an Arrow stream or a JSON body."""
        if request.headers.get("content-type", "").startswith(ARROW_STREAM):
            view = request.query_params.get("view")
            if not view:
                raise HTTPError(422, "InputError", "an Arrow stream push names its view in the query: /push?view=NAME")
            body = await self.body_of(request)
            # Up to 1 MiB (decoding to at most 8 MiB) reading costs less than a thread hop.
            if len(body) <= STEPWISE_BODY:
                return view, read_arrow(body, self.limits)
            return view, await run_in_threadpool(read_arrow, body, self.limits)
        body = await self.body_of(request)
        inline = len(body) <= _INLINE_BODY
        payload = parse_json(body) if inline else await run_in_threadpool(parse_json, body)
        view = payload.get("view")
        if not isinstance(view, str):
            raise HTTPError(422, "InputError", "'view' must name the feature view to push to")
        return view, table_from_json(payload) if inline else await run_in_threadpool(table_from_json, payload)

    async def push(self, request: Request) -> Response:
        view, table = await self._pushed_table(request)
        # Ingest runs in a worker thread: reads keep being answered while it writes.
        result = await run_in_threadpool(self.store.ingest, view, table)
        self.metrics.pushed.labels(view).inc(result.rows)
        return _json_response({"view": result.view, "rows": result.rows})

    async def health(self, request: Request) -> Response:
        ok = not self.store.closed
        return _json_response({"status": "ok" if ok else "closed", "version": __version__}, 200 if ok else 503)

    async def metrics_text(self, request: Request) -> Response:
        text = await run_in_threadpool(generate_latest, self.metrics.registry)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    async def openapi(self, request: Request) -> Response:
        return _json_response(OPENAPI)


async def _not_an_endpoint(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    kind = "NotFound" if status == 404 else "MethodNotAllowed"
    log.warning("%s %s -> %d %s", request.method, _shorten(request.url.path, 100), status, kind)
    return _error_response(status, kind, f"{request.method} {request.url.path} is not an endpoint; see /openapi.json")


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
    limits = DecodeLimits(decoded_bytes, decoded_bytes // 8 if max_decoded_values is None else max_decoded_values)
    app = _Endpoints(store, expected, max_body, limits)
    routes = [
        Route("/get-online-features", app.endpoint("get-online-features", app.get_online_features), methods=["POST"]),
        Route("/push", app.endpoint("push", app.push), methods=["POST"]),
        Route("/health", app.endpoint("health", app.health, public=True), methods=["GET"]),
        Route("/metrics", app.endpoint("metrics", app.metrics_text), methods=["GET"]),
        Route("/openapi.json", app.endpoint("openapi", app.openapi), methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={404: _not_an_endpoint, 405: _not_an_endpoint})


if TYPE_CHECKING:
    _StreamHandler = logging.StreamHandler[TextIO]
else:  # generic at run time only from Python 3.11
    _StreamHandler = logging.StreamHandler


class _StderrHandler(_StreamHandler):
    """The handler :func:`_log_to_stderr` adds (recognised so that it is added once)."""


def _log_to_stderr(level: str) -> None:
    """featurelite's own lines (startup, one per error answer) go to stderr at INFO, or at
    ``level`` if that is stricter than WARNING (``--log-level error`` silences them)."""
    numeric = logging.getLevelName(level.upper()) if level.lower() != "trace" else logging.DEBUG
    threshold = numeric if isinstance(numeric, int) and numeric > logging.WARNING else logging.INFO
    log.setLevel(threshold)
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):  # ours, not added twice
        handler = _StderrHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s featurelite %(levelname)s: %(message)s"))
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
    files = raise_fd_limit()
    protocol = type("GuardedHTTP", (GuardedHTTP,), {
        "header_timeout": header_timeout, "body_timeout": body_timeout,
        # keep some descriptors for the store file, its WAL and the threads' needs
        "max_connections": max_connections if max_connections is not None else max(16, min(4096, files - 64)),
    })
    sock = listen(host, port)
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
        log.info("serving %s on %s: %d feature view(s) (%s), auth %s, bodies up to %d bytes",
                 path, address, len(views), ", ".join(views) or "none",
                 "on (bearer token)" if token is not None else "off", max_body)
        _serve_until_signalled(server, sock, path, address)
        if not server.started:
            raise ServerError(f"the server could not start on {host}:{bound_port}; see the lines above")
        log.info("stopped serving %s", path)
    finally:
        sock.close()
        store.close()


def _serve_until_signalled(server: uvicorn.Server, sock: socket.socket, path: str, address: str) -> None:
    """Run ``server`` on ``sock`` until SIGTERM or SIGINT, the note that says so beside the
    store file meanwhile.

    uvicorn shuts down gracefully on SIGTERM / SIGINT, then raises the signal again for its
    default effect, which would end the process before the store is closed. That second
    delivery is made a no-op: the caller closes the store and the process exits 0."""
    quiet = {sig: signal.signal(sig, lambda signum, frame: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with holding(path, address):
            server.run(sockets=[sock])
    finally:
        for sig, handler in quiet.items():
            signal.signal(sig, handler)
