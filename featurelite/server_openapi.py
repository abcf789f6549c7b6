"""The HTTP API's description and the few wire facts its server and its client share.

:data:`OPENAPI` is the OpenAPI 3 document served at ``/openapi.json``. The constants and
:func:`arrow_chunks` are what :mod:`featurelite.server` and the remote client
(:mod:`featurelite.http_client`) must agree on: the media type of Arrow IPC streams, the
schema metadata key a training-set request travels in, and how a table is cut into a
stream of record batches. This module imports neither starlette nor httpx.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from ._version import __version__
from .rules import Status

__all__ = [
    "API_VERSION", "ARROW_STREAM", "ENTITY_COLUMNS_METADATA", "OPENAPI", "REQUEST_METADATA", "STATUSES", "STREAM_ROWS",
    "arrow_chunks",
]

#: Every status a read reports (featurelite.Status), so the document cannot miss one.
STATUSES: list[str] = [value for name, value in vars(Status).items() if name.isupper()]

#: The media type of an Arrow IPC stream (pushes, training sets in and out).
ARROW_STREAM = "application/vnd.apache.arrow.stream"

#: The version of the API under its path prefix (``/v1/...``).
API_VERSION = "v1"

#: The schema metadata key of an entity stream sent to ``/v1/get-historical-features``:
#: the request's parameters as JSON (features, service, as_of, timestamp_field, ...).
REQUEST_METADATA = b"featurelite.request"

#: The schema metadata key of a training set sent without the entity columns it carries
#: through unchanged (asked with ``"omit_entity_columns": true``): their ``[position,
#: name]`` pairs as JSON, for the client to put its own columns back.
ENTITY_COLUMNS_METADATA = b"featurelite.entity_columns"

#: Rows per record batch of a streamed table (training sets, both ways).
STREAM_ROWS = 65_536


class _Chunks:
    """A write-only file for pyarrow's IPC writer that keeps what is written until taken."""

    def __init__(self) -> None:
        self.parts: list[Any] = []  # bytes and pyarrow Buffers (the writer's, not copied)
        self.position = 0
        self.closed = False

    def write(self, data: Any) -> int:
        size = len(data) if isinstance(data, bytes) else data.size
        self.parts.append(data)
        self.position += size
        return int(size)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts = []
        return data


def arrow_chunks(schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> Iterator[bytes]:
    """An Arrow IPC stream of ``batches`` (with ``schema``, its metadata included), as one
    chunk of bytes for the schema and one per batch: what an HTTP body streams."""
    sink = _Chunks()
    writer = pa.ipc.new_stream(sink, schema)
    yield sink.take()
    for batch in batches:
        writer.write_batch(batch)
        yield sink.take()
    writer.close()
    yield sink.take()


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A 200 answer with a JSON body."""
    return {"description": description, "content": {"application/json": {"schema": schema or {"type": "object"}}}}


_NAME = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
_ITEMS = {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object"}}}}
_SPEC = {"type": "object", "properties": {"spec": {"type": "object", "description": "the definition's spec()"}}}
_STREAM = {ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}}}
_ERRORS = {
    "404": {"description": "unknown name"},
    "422": {"description": "a bad argument"},
}

_READ_SUMMARY = "Latest feature values for entities; featurizers run per request"
_READ_DESCRIPTION = (
    "Name the features with 'features' or 'feature_service' (not both), or give a training "
    "set's 'manifest' alone to serve its features at its pinned versions. With 'manifest' "
    "and 'features' or 'feature_service', the read is refused (409) unless they read the "
    "versions the manifest pins."
)
_READ: dict[str, Any] = {
    "summary": _READ_SUMMARY,
    "description": _READ_DESCRIPTION,
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["entities"],
        "anyOf": [{"required": ["features"]}, {"required": ["feature_service"]}, {"required": ["manifest"]}],
        "properties": {
            "features": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                         "description": "'view:feature' or 'view@version:feature' references",
                         "example": ["user_stats:spend_7d"]},
            "feature_service": {"type": "string", "description": "a feature service, read at its pinned "
                                "versions (instead of 'features')", "example": "fraud"},
            "manifest": {
                "description": "a training set's manifest (its 'featurelite.manifest' schema metadata), as "
                               "the JSON object or its text (the text is cheapest: it is looked up as is)",
                "oneOf": [{"type": "object"}, {"type": "string"}],
            },
            "entities": {"oneOf": [
                {"type": "array", "items": {"type": "object"}, "example": [{"user_id": 42}]},
                {"type": "object", "example": {"user_id": [42, 7]}},
            ]},
            "request_data": {"type": "object", "example": {"basket": [12.5]}},
            "request_times": {"type": "array", "items": {"type": "string"},
                              "description": "request_data fields whose values are ISO-8601 times, read as "
                                             "datetimes (for timestamp inputs of featurizers)"},
            "full_feature_names": {"type": "boolean", "default": False},
            "now": {"type": "string", "format": "date-time"},
            "arrow_schema": {"type": "boolean", "default": False,
                             "description": "also answer 'arrow_schema': the Arrow type of every column"},
        },
    }}}},
    "responses": {
        "200": {"description": "values per column and statuses per feature", "content": {"application/json": {
            "schema": {"type": "object", "properties": {
                "values": {"type": "object"},
                "statuses": {"type": "object", "additionalProperties": {
                    "type": "array", "items": {"type": "string", "enum": STATUSES}}},
                "arrow_schema": {"type": "string", "format": "byte",
                                 "description": "with 'arrow_schema': true: the columns' Arrow schema, "
                                                "serialized (IPC) and base64-encoded"},
            }}}}},
        "404": {"description": "unknown view, feature, feature service or version"},
        "409": {"description": "what would be served differs from the manifest, the manifest is from "
                               "another store, or a pinned version the stored data can no longer serve"},
        "422": {"description": "bad entities, request data or manifest"},
    },
}

_PUSH_SUMMARY = "Ingest rows into a view (atomic; reads see them once this answers)"
_PUSH: dict[str, Any] = {
    "summary": _PUSH_SUMMARY,
    "parameters": [
        {"name": "view", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "the view, for an Arrow IPC stream body"},
        {"name": "batch_rows", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1},
         "description": "rows per batch the ingest streams through (Store.ingest's batch_rows)"},
    ],
    "requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object", "required": ["view"], "properties": {
            "view": {"type": "string"},
            "rows": {"type": "array", "items": {"type": "object"}},
            "columns": {"type": "object"},
        }}},
        **_STREAM,
    }},
    "responses": {
        "200": _json("rows ingested", {"type": "object", "properties": {
            "view": {"type": "string"}, "rows": {"type": "integer"}}}),
        "413": {"description": "body over the limit"},
        "422": {"description": "rows that do not fit the view; nothing was written"},
    },
}

_HEALTH = {"summary": "Liveness and the server's version (no token needed)", "security": [],
           "responses": {"200": _json("serving", {"type": "object", "properties": {
               "status": {"type": "string"}, "version": {"type": "string"},
               "api": {"type": "array", "items": {"type": "string"}}}})}}


def _get(summary: str, answer: dict[str, Any], *, name: bool = False, **extra: Any) -> dict[str, Any]:
    return {"get": {"summary": summary, **({"parameters": _NAME} if name else {}), **extra,
                    "responses": {"200": answer, **_ERRORS}}}


#: The OpenAPI description of the endpoints.
OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "featurelite feature server", "version": __version__,
             "description": "The API lives under /v1/ (what featurelite.connect uses); /get-online-features, "
                            "/push and /health without the prefix are the same endpoints, kept for clients "
                            "written before it."},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {"error": {"type": "object", "properties": {
                    "type": {"type": "string", "description": "the featurelite error class, or an HTTP-level "
                             "kind: Unauthorized, PayloadTooLarge, RequestTimeout, NotFound, "
                             "MethodNotAllowed, InternalError"},
                    "message": {"type": "string"},
                    "details": {"type": "object", "description": "the error's declared attributes (view, "
                                "column, row, name, path, ...) as JSON"}}}},
            },
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/get-online-features": {"post": {**_READ, "description": _READ_DESCRIPTION + " (Also at "
                                          "/v1/get-online-features.)"}},
        "/push": {"post": {**_PUSH, "summary": _PUSH_SUMMARY + " (also at /v1/push)"}},
        "/health": {"get": _HEALTH},
        "/metrics": {"get": {"summary": "Prometheus metrics",
                             "responses": {"200": {"description": "text exposition format"}}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3"}}}},
        "/v1/get-online-features": {"post": _READ},
        "/v1/push": {"post": _PUSH},
        "/v1/get-historical-features": {"post": {
            "summary": "A point-in-time correct training set (Store.get_historical_features)",
            "description": "The body is an Arrow IPC stream of the entity rows; its schema metadata "
                           "'featurelite.request' holds the parameters as JSON: {\"features\": [...] or null, "
                           "\"service\": name or null, \"as_of\": a manifest's JSON text or null, "
                           "\"timestamp_field\": name or null, \"full_feature_names\": false, "
                           "\"omit_entity_columns\": false}. The answer is an Arrow IPC stream in record batches "
                           f"of {STREAM_ROWS} rows whose schema metadata carries the training set's manifest "
                           "('featurelite.manifest'). With omit_entity_columns, the columns the training set "
                           "carries through from the entity rows unchanged (equal in type and values) are left "
                           "out, and its schema metadata 'featurelite.entity_columns' lists them as [position, "
                           "name] pairs, for the client to put its own back. The body may be up to the server's "
                           "max_upload bytes (serve --max-upload).",
            "requestBody": {"required": True, "content": _STREAM},
            "responses": {
                "200": {"description": "the training set", "content": _STREAM},
                "404": {"description": "unknown view, feature, feature service or version"},
                "409": {"description": "an as_of manifest from another store, or one that other features or "
                                       "versions than those asked for"},
                "413": {"description": "body over max_upload"},
                "422": {"description": "not an Arrow stream, no or bad request metadata, entity rows that do "
                                       "not fit"},
            },
        }},
        "/v1/entities": _get("Registered entities (Store.list_entities)", _json("{items: [spec]}", _ITEMS)),
        "/v1/entities/{name}": _get("One entity (Store.get_entity)", _json("{spec}", _SPEC), name=True),
        "/v1/feature-views": _get("Registered feature views (Store.list_feature_views)",
                                  _json("{items: [spec]}", _ITEMS)),
        "/v1/feature-views/{name}": _get("One feature view (Store.get_feature_view)", _json("{spec}", _SPEC),
                                         name=True),
        "/v1/on-demand-feature-views": _get("Registered on-demand views (Store.list_on_demand_feature_views)",
                                            _json("{items: [spec]}", _ITEMS)),
        "/v1/feature-services": _get("Registered feature services, pinned (Store.list_feature_services)",
                                     _json("{items: [spec]}", _ITEMS)),
        "/v1/feature-services/{name}": _get("One feature service (Store.get_feature_service)",
                                            _json("{spec}", _SPEC), name=True),
        "/v1/describe/{name}": _get("A definition and its data statistics (Store.describe)",
                                    _json("what Store.describe returns, times as ISO-8601 text"), name=True),
        "/v1/versions/{name}": _get(
            "Every version of a definition (Store.list_versions)", _json("{items: [version]}", _ITEMS), name=True,
            parameters=[*_NAME, {"name": "kind", "in": "query", "required": False, "schema": {"type": "string"}}],
        ),
        "/v1/search": {"post": {
            "summary": "Search definitions by name, description, tags and owner (Store.search)",
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "properties": {
                    "text": {"type": "string", "default": ""},
                    "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                    "kinds": {"type": "array", "items": {"type": "string"}},
                    "limit": {"type": "integer", "default": 50}}}}}},
            "responses": {"200": _json("{items: [{kind, name, description, owner, tags, score, matched}]}")},
        }},
        "/v1/stats": {"post": {
            "summary": "A feature view's statistics, cached in the file (Store.stats)",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["view"], "properties": {
                    "view": {"type": "string"}, "since": {"type": "string", "format": "date-time"},
                    "until": {"type": "string", "format": "date-time"},
                    "period": {"type": "string", "enum": ["day", "week"]},
                    "refresh": {"type": "boolean", "nullable": True}}}}}},
            "responses": {"200": _json("ViewStats.to_dict()"), **_ERRORS},
        }},
        "/v1/lineage": _get(
            "How definitions and recorded models depend on each other (Store.lineage)", _json("Lineage.to_dict()"),
            parameters=[{"name": "name", "in": "query", "required": False, "schema": {"type": "string"}}],
        ),
        "/v1/models": _get(
            "Recorded models (Store.list_models)", _json("{items: [ModelRecord.to_dict()]}", _ITEMS),
            parameters=[{"name": "name", "in": "query", "required": False, "schema": {"type": "string"}}],
        ),
        "/v1/verify": {"post": {
            "summary": "Check featurizers give the same bits in the batch and per-request paths (Store.verify)",
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "properties": {
                    "name": {"type": "string", "nullable": True}, "examples": {"type": "integer", "default": 1000},
                    "seed": {"type": "integer", "default": 0}}}}}},
            "responses": {"200": _json("{items: [{view, features, featurizer, examples, mismatch}]}; mismatch is "
                                       "null or {text, featurizer, inputs, batch, request, moved}", _ITEMS),
                          **_ERRORS},
        }},
        "/v1/freshness": _get(
            "Every view's freshness against its SLO (Store.freshness)", _json("FreshnessReport.to_dict()"),
            parameters=[{"name": "now", "in": "query", "required": False,
                         "schema": {"type": "string", "format": "date-time"}}],
        ),
        "/v1/consistency": {"post": {
            "summary": "Replay a serving log against the offline history (Store.consistency)",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["target"], "properties": {
                    "target": {"type": "string"}, "since": {"type": "string", "format": "date-time"},
                    "until": {"type": "string", "format": "date-time"},
                    "examples": {"type": "integer", "default": 5}}}}}},
            "responses": {"200": _json("ConsistencyReport.to_dict()"), **_ERRORS},
        }},
        "/v1/snapshot": {"get": {
            "summary": "A consistent copy of the served store file (Store.snapshot), to open read-only",
            "responses": {"200": {"description": "the DuckDB file", "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
        }},
        "/v1/info": _get("The served store: its id, featurelite version and limits", _json(
            "{store_id, version, max_body, max_upload}")),
        "/v1/health": {"get": _HEALTH},
    },
}
