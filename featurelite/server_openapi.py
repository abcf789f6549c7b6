"""The OpenAPI 3 description of the HTTP server's endpoints, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .rules import Status

__all__ = ["ARROW_STREAM", "OPENAPI", "STATUSES"]

#: Every status a read reports (featurelite.Status), so the document cannot miss one.
STATUSES: list[str] = [value for name, value in vars(Status).items() if name.isupper()]

#: The media type of an Arrow IPC stream push.
ARROW_STREAM = "application/vnd.apache.arrow.stream"

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
            "description": "Name the features with 'features' or 'feature_service' (not both), or give a training "
                           "set's 'manifest' alone to serve its features at its pinned versions. With 'manifest' "
                           "and 'features' or 'feature_service', the read is refused (409) unless they read the "
                           "versions the manifest pins.",
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
                    "full_feature_names": {"type": "boolean", "default": False},
                    "now": {"type": "string", "format": "date-time"},
                },
            }}}},
            "responses": {
                "200": {"description": "values per column and statuses per feature", "content": {"application/json": {
                    "schema": {"type": "object", "properties": {
                        "values": {"type": "object"},
                        "statuses": {"type": "object", "additionalProperties": {
                            "type": "array", "items": {"type": "string", "enum": STATUSES}}},
                    }}}}},
                "404": {"description": "unknown view, feature, feature service or version"},
                "409": {"description": "what would be served differs from the manifest, the manifest is from "
                                       "another store, or a pinned version the stored data can no longer serve"},
                "422": {"description": "bad entities, request data or manifest"},
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
                ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}},
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
