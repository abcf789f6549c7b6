"""The HTTP feature server: a Starlette app over one Store, run by uvicorn.

Endpoints (see :data:`OPENAPI`, served at ``/openapi.json``). The API lives under ``/v1/``;
``/get-online-features``, ``/push`` and ``/health`` without the prefix are the same
endpoints, kept for clients written before it:

- ``POST /v1/get-online-features``: ``{"features": [...], "entities": ..., "request_data": ...}``
  (or ``"feature_service": NAME`` instead of ``features``; an optional ``"manifest"`` serves,
  or checks what is served against, a training set's manifest)
  -> ``{"values": {column: [...]}, "statuses": {feature: [...]}}`` (with ``"arrow_schema":
  true``, also the columns' Arrow schema); featurizers run per request;
- ``POST /v1/push``: rows for a view, through the same atomic ingest as ``Store.ingest``
  (JSON rows or columns, or an Arrow IPC stream); reads see them as soon as it answers;
- ``POST /v1/get-historical-features``: entity rows as an Arrow IPC stream (the request's
  parameters in its schema metadata), the training set streamed back as one, in record
  batches, its manifest in the schema metadata;
- ``GET /v1/entities``, ``/v1/feature-views``, ``/v1/on-demand-feature-views``,
  ``/v1/feature-services`` (and ``/v1/<kind>/{name}`` for one), ``/v1/describe/{name}``,
  ``/v1/versions/{name}``, ``POST /v1/verify``, ``GET /v1/freshness``, ``POST
  /v1/consistency``: the Store methods of those names, their results as JSON;
- ``GET /v1/snapshot``: a consistent copy of the store file (``Store.snapshot``), streamed;
- ``GET /v1/health``, ``/v1/info``, ``/metrics`` (Prometheus text), ``/openapi.json``.

:mod:`featurelite.http_client` (``featurelite.connect``) is the Python client of all of it.

The server modules are the only ones that know HTTP status codes. A featurelite error is a JSON body
``{"error": {"type": ..., "message": ...}}`` with 404 (unknown names and versions), 422 (bad
data or definitions), 409 (a manifest that what would be served differs from, or one from
another store; a pinned version the stored data can no longer serve), 401 (no or wrong
token), 413 (body, or an Arrow stream once decoded, over the limit), 408 (a request that
did not arrive in time) or 503 (store closed or locked); a store failure and anything
unexpected is a 500 with the same shape and no traceback (the server logs it). Under
``/v1/`` the error also has ``"details"``: the error's declared attributes (view, column,
row, ...) as JSON (``{}`` for the HTTP-level kinds); the unprefixed endpoints keep the body
they always answered.

Hostile clients: a request's headers must arrive within ``header_timeout`` seconds and its
body within ``body_timeout`` (else the connection is closed), at most ``max_connections``
connections are open at once (more are closed as they arrive), and a compressed Arrow
stream is measured from its metadata before anything is decompressed. Large JSON bodies,
large reads and their answers are handled in worker threads, in steps that hand the GIL
back, so ``/health`` and small reads keep being answered meanwhile; a small request stays
on the event loop, the fast path. Training sets, snapshots, verify, freshness and
consistency run in worker threads.

This module is the app and its endpoints; its parts live beside it:
:mod:`~featurelite.server_bodies` (request bodies: JSON, pushed rows, Arrow streams, with
:mod:`~featurelite.stepwise_json` and :mod:`~featurelite.ipc_header`),
:mod:`~featurelite.server_connection` (sockets, slow and excess clients),
:mod:`~featurelite.server_metrics` and :mod:`~featurelite.server_openapi` (the document, and
what server and client share). Answers are encoded by :mod:`featurelite.wire`, as the CLI's are.

Needs the server extra: ``pip install 'featurelite[server]'``.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import hmac
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

import pyarrow as pa
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
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
    historical_request,
    parse_json,
    parse_now,
    parse_time_field,
    read_arrow,
    request_times,
    table_from_json,
    whole_number,
)
from .server_connection import GuardedHTTP, listen, raise_fd_limit
from .server_metrics import Metrics
from .server_openapi import API_VERSION, ARROW_STREAM, ENTITY_COLUMNS_METADATA, OPENAPI, STREAM_ROWS, arrow_chunks
from .serving_lock import holding
from .store import Store
from .ui import mount as ui_mount

__all__ = ["OPENAPI", "create_app", "run"]

log = logging.getLogger("featurelite.server")

_DEFAULT_MAX_BODY = 16 * 1024 * 1024
#: The largest training-set request (an Arrow stream of entity rows): 1 GiB.
_DEFAULT_MAX_UPLOAD = 1024 * 1024 * 1024
#: Bytes per chunk of a streamed snapshot file.
_FILE_CHUNK = 1024 * 1024
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

def _error_response(status: int, kind: str, message: str, details: dict[str, Any] | None = None) -> Response:
    """An error answer; ``details`` (None: left out, as the unprefixed endpoints always
    answered) are the error's declared attributes."""
    error: dict[str, Any] = {"type": kind, "message": message}
    if details is not None:
        error["details"] = wire.plain(details)
    return Response(wire.encode({"error": error}), status_code=status, media_type="application/json")


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


def _error_answer(exc: Exception, method: str, name: str, versioned: bool) -> Response:
    """The answer to a request whose handler raised ``exc``, logged (never a traceback to
    the client). The versioned API's answers carry the error's ``details``."""
    none: dict[str, Any] | None = {} if versioned else None
    if isinstance(exc, HTTPError):
        log.warning("%s %s -> %d %s: %s", method, name, exc.status, exc.kind, _shorten(exc.message))
        return _error_response(exc.status, exc.kind, exc.message, none)
    if isinstance(exc, FeatureliteError):
        status, kind = _status_of(exc), type(exc).__name__
        if status == 500:  # a store failure: the traceback is for the operator
            log.error("%s %s -> %d %s: %s", method, name, status, kind, _shorten(str(exc)), exc_info=exc)
        else:
            log.warning("%s %s -> %d %s: %s", method, name, status, kind, _shorten(str(exc)))
        return _error_response(status, kind, str(exc), exc.details if versioned else None)
    if isinstance(exc, ClientDisconnect):
        # The client went away (or was cut off by the body timeout): nobody to answer.
        log.warning("%s %s -> 408 the client disconnected before sending its whole body", method, name)
        return _error_response(408, "RequestTimeout", "the request body did not arrive in time", none)
    log.error("%s %s -> 500 unexpected %s", method, name, type(exc).__name__, exc_info=exc)
    return _error_response(500, "InternalError", "the server failed to answer; see its log", none)


class _Endpoints:
    """The endpoints over one store, with its limits, token and metrics."""

    def __init__(self, store: Store, expected: bytes | None, max_body: int, limits: DecodeLimits,
                 max_upload: int, upload_limits: DecodeLimits) -> None:
        self.store, self.expected, self.max_body, self.limits = store, expected, max_body, limits
        self.max_upload, self.upload_limits = max_upload, upload_limits
        self.metrics = Metrics(store)
        self.manifests = Manifests()
        #: The Arrow schema of a read's columns (serialized, base64), by its types dict (the
        #: plan's own, which every read of the plan shares; kept here with it, so its id
        #: cannot be reused while it is remembered).
        self.schemas: dict[int, tuple[dict[str, pa.DataType], str]] = {}

    def endpoint(self, name: str, handler: Handler, *, public: bool = False, versioned: bool = False) -> Handler:
        """``handler`` with the token check, errors answered as JSON (with their details
        when ``versioned``), and metrics."""
        latency = self.metrics.latency.labels(name)

        async def wrapped(request: Request) -> Response:
            start = time.perf_counter()
            try:
                if not public:
                    self._authorize(request)
                response = await handler(request)
            except Exception as exc:  # noqa: BLE001 - every failure is answered (500 if unexpected) and logged
                response = _error_answer(exc, request.method, name, versioned)
            latency.observe(time.perf_counter() - start)
            self.metrics.requests.labels(name, str(response.status_code)).inc()
            return response

        return wrapped

    def _authorize(self, request: Request) -> None:
        if self.expected is not None:
            given = request.headers.get("authorization", "").encode("latin-1", "replace")
            if not hmac.compare_digest(given, self.expected):
                raise HTTPError(401, "Unauthorized", "a valid 'Authorization: Bearer <token>' header is required")

    async def body_of(self, request: Request, limit: int | None = None, option: str = "--max-body") -> bytes:
        """The request's body, or a 413 once it is over ``limit`` bytes (default: max_body)."""
        limit = self.max_body if limit is None else limit
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HTTPError(413, "PayloadTooLarge",
                            f"the body has {declared} bytes; the limit is {limit} (serve {option})")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPError(413, "PayloadTooLarge", f"the body exceeds the limit of {limit} bytes (serve {option})")
            chunks.append(chunk)
        return b"".join(chunks)

    # -- online reads and pushes ---------------------------------------------------------

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
        request_data = payload.get("request_data")
        times = payload.get("request_times")
        if times is not None:
            request_data = request_times(request_data, times)
        response = self.store.get_online_features(
            entities, features, service=service, manifest=None if manifest is None else self.manifests.get(manifest),
            request_data=request_data,
            full_feature_names=bool(payload.get("full_feature_names", False)),
            now=None if now is None else parse_now(now),
        )
        answer: dict[str, Any] = {"values": response.to_dict(), "statuses": response.statuses}
        if payload.get("arrow_schema") is True:
            answer["arrow_schema"] = self._schema(response.types)
        return stepwise_json.encode(answer) if stepwise else wire.encode(answer)

    def _schema(self, types: dict[str, pa.DataType]) -> str:
        """The Arrow schema of a read's columns, serialized and base64-encoded (remembered
        per plan: the serialization costs more than the rest of a small read's answer)."""
        found = self.schemas.get(id(types))
        if found is not None and found[0] is types:
            return found[1]
        text = base64.b64encode(pa.schema(list(types.items())).serialize().to_pybytes()).decode("ascii")
        if len(self.schemas) >= 256:
            self.schemas.clear()
        self.schemas[id(types)] = (types, text)
        return text

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
        batch_rows = whole_number(request.query_params.get("batch_rows"), "batch_rows")
        view, table = await self._pushed_table(request)
        # Ingest runs in a worker thread: reads keep being answered while it writes.
        if batch_rows is None:
            result = await run_in_threadpool(self.store.ingest, view, table)
        else:
            result = await run_in_threadpool(lambda: self.store.ingest(view, table, batch_rows=batch_rows))
        self.metrics.pushed.labels(view).inc(result.rows)
        return _json_response({"view": result.view, "rows": result.rows})

    # -- training sets -------------------------------------------------------------------

    async def get_historical_features(self, request: Request) -> Response:
        """Entity rows in as an Arrow stream, the training set out as one, in batches of
        :data:`STREAM_ROWS` rows, its manifest in the schema metadata."""
        if not request.headers.get("content-type", "").startswith(ARROW_STREAM):
            raise HTTPError(422, "InputError", f"send the entity rows as an Arrow IPC stream (Content-Type: "
                            f"{ARROW_STREAM}) with the request as JSON in its schema metadata")
        body = await self.body_of(request, self.max_upload, "--max-upload")
        entity = await run_in_threadpool(
            read_arrow, body, self.upload_limits, advice="split the entity rows, or serve with a larger --max-upload"
        )
        asked, entity = historical_request(entity, self.manifests)
        table = await run_in_threadpool(lambda: self.store.get_historical_features(
            entity, asked.features, service=asked.service, as_of=asked.as_of,
            timestamp_field=asked.timestamp_field, full_feature_names=asked.full_feature_names,
        ))
        if asked.omit_entity_columns:
            table = await run_in_threadpool(_without_entity_columns, table, entity)
        batches = table.to_batches(max_chunksize=STREAM_ROWS)
        # A sync iterator: Starlette runs each step in a worker thread, the loop stays free.
        return StreamingResponse(arrow_chunks(table.schema, batches), media_type=ARROW_STREAM)

    # -- definitions and reports ---------------------------------------------------------

    async def entities(self, request: Request) -> Response:
        return _json_response({"items": [e.spec() for e in self.store.list_entities()]})

    async def feature_views(self, request: Request) -> Response:
        return _json_response({"items": [v.spec() for v in self.store.list_feature_views()]})

    async def on_demand_feature_views(self, request: Request) -> Response:
        return _json_response({"items": [v.spec() for v in self.store.list_on_demand_feature_views()]})

    async def feature_services(self, request: Request) -> Response:
        return _json_response({"items": [s.spec() for s in self.store.list_feature_services()]})

    async def entity(self, request: Request) -> Response:
        return _json_response({"spec": self.store.get_entity(request.path_params["name"]).spec()})

    async def feature_view(self, request: Request) -> Response:
        return _json_response({"spec": self.store.get_feature_view(request.path_params["name"]).spec()})

    async def feature_service(self, request: Request) -> Response:
        return _json_response({"spec": self.store.get_feature_service(request.path_params["name"]).spec()})

    async def describe(self, request: Request) -> Response:
        # Counting a view's history is a query: in a worker thread.
        return _json_response(await run_in_threadpool(self.store.describe, request.path_params["name"]))

    async def versions(self, request: Request) -> Response:
        name, kind = request.path_params["name"], request.query_params.get("kind")
        return _json_response({"items": await run_in_threadpool(lambda: self.store.list_versions(name, kind=kind))})

    async def search(self, request: Request) -> Response:
        payload = parse_json(await self.body_of(request) or b"{}")
        hits = self.store.search(
            payload.get("text", ""), tags=payload.get("tags"), kinds=payload.get("kinds"),
            limit=payload.get("limit", 50),
        )
        return _json_response({"items": [hit.to_dict() for hit in hits]})

    async def stats(self, request: Request) -> Response:
        payload = parse_json(await self.body_of(request))
        view = payload.get("view")
        if view is None:
            raise HTTPError(422, "InputError", "'view' is required: the feature view whose statistics to read")
        since, until = (None if payload.get(f) is None else parse_time_field(payload[f], f) for f in ("since", "until"))
        period, refresh = payload.get("period"), payload.get("refresh")
        stats = await run_in_threadpool(
            lambda: self.store.stats(view, since=since, until=until, period=period, refresh=refresh)
        )
        return _json_response(stats.to_dict())

    async def lineage(self, request: Request) -> Response:
        name = request.query_params.get("name")
        return _json_response((await run_in_threadpool(self.store.lineage, name)).to_dict())

    async def models(self, request: Request) -> Response:
        name = request.query_params.get("name")
        records = await run_in_threadpool(self.store.list_models, name)
        return _json_response({"items": [record.to_dict() for record in records]})

    async def verify(self, request: Request) -> Response:
        payload = parse_json(await self.body_of(request) or b"{}")
        name, examples, seed = payload.get("name"), payload.get("examples", 1000), payload.get("seed", 0)
        results = await run_in_threadpool(lambda: self.store.verify(name, examples=examples, seed=seed))
        return _json_response({"items": [
            {"view": r.view, "features": list(r.features), "featurizer": r.featurizer, "examples": r.examples,
             "mismatch": None if r.mismatch is None else _mismatch(r.mismatch)}
            for r in results
        ]})

    async def freshness(self, request: Request) -> Response:
        now = request.query_params.get("now")
        moment = None if now is None else parse_now(now)
        report = await run_in_threadpool(lambda: self.store.freshness(now=moment))
        return _json_response(report.to_dict())

    async def consistency(self, request: Request) -> Response:
        payload = parse_json(await self.body_of(request))
        target = payload.get("target")
        if target is None:
            raise HTTPError(422, "InputError", "'target' is required: the feature view or service whose log to replay")
        since, until = (None if payload.get(f) is None else parse_time_field(payload[f], f) for f in ("since", "until"))
        examples = payload.get("examples", 5)
        report = await run_in_threadpool(
            lambda: self.store.consistency(target, since=since, until=until, examples=examples)
        )
        return _json_response(report.to_dict())

    # -- the file ----------------------------------------------------------------------

    async def snapshot(self, request: Request) -> Response:
        """A consistent copy of the store file, written beside it (the same disk, so the
        copy is a fast local one) and streamed back. The copy is unlinked as soon as it is
        open: nothing stays behind, whether the download finishes or not."""
        store_path = self.store.path
        folder = os.path.dirname(os.path.abspath(store_path)) if store_path != ":memory:" else tempfile.gettempdir()
        base = os.path.basename(store_path) if store_path != ":memory:" else "memory"
        scratch = tempfile.mkdtemp(prefix=f".{base}.snapshot-", dir=folder)
        try:
            path = os.path.join(scratch, "snapshot.duckdb")
            await run_in_threadpool(self.store.snapshot, path)
            stream = open(path, "rb")  # noqa: SIM115 - closed by _file_chunks once streamed
            size = os.fstat(stream.fileno()).st_size
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return StreamingResponse(
            _file_chunks(stream), media_type="application/octet-stream",
            headers={"content-length": str(size), "content-disposition": 'attachment; filename="snapshot.duckdb"'},
        )

    # -- the server ----------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        ok = not self.store.closed
        return _json_response({"status": "ok" if ok else "closed", "version": __version__, "api": [API_VERSION]},
                              200 if ok else 503)

    async def info(self, request: Request) -> Response:
        return _json_response({
            "store_id": self.store.store_id, "version": __version__, "api": [API_VERSION],
            "max_body": self.max_body, "max_upload": self.max_upload,
        })

    async def metrics_text(self, request: Request) -> Response:
        text = await run_in_threadpool(generate_latest, self.metrics.registry)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    async def openapi(self, request: Request) -> Response:
        return _json_response(OPENAPI)


def _without_entity_columns(table: pa.Table, entity: pa.Table) -> pa.Table:
    """``table`` without the columns it carries through from ``entity`` unchanged (the same
    field, metadata included, and equal values), listed in its schema metadata instead: the
    client that sent them has them already. Nothing is left out when names repeat, or for
    a column with NaN (not equal to itself)."""
    names = entity.column_names
    if len(set(names)) != len(names) or len(set(table.column_names)) != table.num_columns:
        return table
    sent = {name: i for i, name in enumerate(names)}
    kept, omitted = [], []
    for i, field in enumerate(table.schema):
        j = sent.get(field.name)
        if j is not None and entity.schema.field(j).equals(field, check_metadata=True) \
                and entity.column(j).equals(table.column(i)):
            omitted.append([i, field.name])
        else:
            kept.append(i)
    if not omitted:
        return table
    metadata = {**(table.schema.metadata or {}), ENTITY_COLUMNS_METADATA: json.dumps(omitted).encode()}
    return table.select(kept).replace_schema_metadata(metadata)


def _mismatch(mismatch: Any) -> dict[str, Any]:
    """A featurizer mismatch as JSON: its text, and its parts where it has them."""
    parts = {key: getattr(mismatch, key, None) for key in ("featurizer", "inputs", "batch", "request", "moved")}
    return {"text": str(mismatch), **wire.plain(parts)}


def _file_chunks(stream: BinaryIO) -> Iterator[bytes]:
    """The rest of an open file in chunks; closes it at the end (or when the answer is
    abandoned and the iterator collected)."""
    with contextlib.closing(stream):
        while chunk := stream.read(_FILE_CHUNK):
            yield chunk


async def _not_an_endpoint(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    kind = "NotFound" if status == 404 else "MethodNotAllowed"
    log.warning("%s %s -> %d %s", request.method, _shorten(request.url.path, 100), status, kind)
    versioned = request.url.path.startswith(f"/{API_VERSION}/")
    return _error_response(status, kind, f"{request.method} {request.url.path} is not an endpoint; see /openapi.json",
                           {} if versioned else None)


def create_app(
    store: Store, *, token: str | None = None, max_body: int = _DEFAULT_MAX_BODY,
    max_decoded_bytes: int | None = None, max_decoded_values: int | None = None,
    max_upload: int = _DEFAULT_MAX_UPLOAD,
) -> Starlette:
    """The ASGI app serving ``store`` (which the caller opened and will close).

    ``token``: every endpoint but ``/health`` then needs ``Authorization: Bearer <token>``;
    an empty or blank token is refused (ServerError) rather than read as "no auth".
    ``max_body``: the largest request body in bytes (413 beyond it). An Arrow IPC push may
    decode to at most ``max_decoded_bytes`` (default 8 x ``max_body``) and
    ``max_decoded_values`` rows x columns (default ``max_decoded_bytes`` / 8), checked from
    the stream's headers before anything is decompressed (413 beyond them).
    ``max_upload``: the largest training-set request (the entity rows' Arrow stream), in
    bytes, default 1 GiB; it may decode to 8 x that many bytes and ``max_upload`` values."""
    expected = _check_token(token)
    for name, value in (("max_body", max_body), ("max_upload", max_upload)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ServerError(f"{name} must be a positive number of bytes, got {value!r}")
    decoded_bytes = 8 * max_body if max_decoded_bytes is None else max_decoded_bytes
    limits = DecodeLimits(decoded_bytes, decoded_bytes // 8 if max_decoded_values is None else max_decoded_values)
    app = _Endpoints(store, expected, max_body, limits, max_upload, DecodeLimits(8 * max_upload, max_upload))

    v1 = f"/{API_VERSION}"

    def route(path: str, name: str, handler: Handler, method: str = "GET", *, public: bool = False) -> Route:
        versioned = path.startswith(v1 + "/")
        return Route(path, app.endpoint(name, handler, public=public, versioned=versioned), methods=[method])

    routes = [
        # The first endpoints, without the prefix: kept for the clients written before it.
        route("/get-online-features", "get-online-features", app.get_online_features, "POST"),
        route("/push", "push", app.push, "POST"),
        route("/health", "health", app.health, public=True),
        route("/metrics", "metrics", app.metrics_text),
        route("/openapi.json", "openapi", app.openapi),
        # The versioned API (featurelite.connect's). A read or push counts under the same
        # metric names with or without the prefix: they are the same endpoints.
        route(f"{v1}/get-online-features", "get-online-features", app.get_online_features, "POST"),
        route(f"{v1}/push", "push", app.push, "POST"),
        route(f"{v1}/get-historical-features", "get-historical-features", app.get_historical_features, "POST"),
        route(f"{v1}/entities", "entities", app.entities),
        route(f"{v1}/entities/{{name:path}}", "entities", app.entity),
        route(f"{v1}/feature-views", "feature-views", app.feature_views),
        route(f"{v1}/feature-views/{{name:path}}", "feature-views", app.feature_view),
        route(f"{v1}/on-demand-feature-views", "on-demand-feature-views", app.on_demand_feature_views),
        route(f"{v1}/feature-services", "feature-services", app.feature_services),
        route(f"{v1}/feature-services/{{name:path}}", "feature-services", app.feature_service),
        route(f"{v1}/describe/{{name:path}}", "describe", app.describe),
        route(f"{v1}/versions/{{name:path}}", "versions", app.versions),
        route(f"{v1}/search", "search", app.search, "POST"),
        route(f"{v1}/stats", "stats", app.stats, "POST"),
        route(f"{v1}/lineage", "lineage", app.lineage),
        route(f"{v1}/models", "models", app.models),
        route(f"{v1}/verify", "verify", app.verify, "POST"),
        route(f"{v1}/freshness", "freshness", app.freshness),
        route(f"{v1}/consistency", "consistency", app.consistency, "POST"),
        route(f"{v1}/snapshot", "snapshot", app.snapshot),
        route(f"{v1}/info", "info", app.info),
        route(f"{v1}/health", "health", app.health, public=True),
        # The web UI (featurelite.ui): read-only pages at /ui, behind the same token (a
        # browser gives it once as ?token=, then carries it in a cookie), errors as pages.
        ui_mount(store, token=token),
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
        body_timeout: float = 60.0, max_connections: int | None = None, max_upload: int = _DEFAULT_MAX_UPLOAD) -> None:
    """Open the store for writing and serve it until SIGTERM or Ctrl-C.

    Shutting down stops accepting connections, lets requests in flight finish (a push
    either commits or rolls back, atomically), then closes the store file.

    Raises ServerError, before opening the store, for an empty token, a port outside
    0..65535 (0 picks a free one), a host that does not resolve or an address that cannot
    be bound (in use, not of this machine). ``header_timeout`` / ``body_timeout``: seconds
    a request's headers / body may take to arrive; ``max_connections``: open connections
    at most (default: what the open-file limit allows, up to 4,096); ``max_upload``: the
    largest training-set request in bytes (see :func:`create_app`)."""
    _check_token(token)
    for name, value in (("max_body", max_body), ("max_upload", max_upload)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ServerError(f"{name} must be a positive number of bytes, got {value!r}")
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
        app = create_app(store, token=token, max_body=max_body, max_upload=max_upload)
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
        log.info("serving %s on %s: %d feature view(s) (%s), auth %s, bodies up to %d bytes (training-set "
                 "uploads up to %d)", path, address, len(views), ", ".join(views) or "none",
                 "on (bearer token)" if token is not None else "off", max_body, max_upload)
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
