"""Models recorded in the store: which model was trained on which training set.

``Store.record_model(name, training_set, uri=...)`` keeps, in the table ``fl_models`` of the
file, a model's name, where it lives (an MLflow model URI, a path) and what its training
set's manifest says it read: the service and service version, every definition version
and the features. Lineage draws them downstream of what they read. Records are only ever
added: a model recorded again under its name gets the next number.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone

import duckdb

from . import wire
from .db import run
from .lineage import ModelRecord
from .manifest import Manifest

__all__ = ["MODELS_TABLE", "insert", "read"]

#: The table the records live in (created with the first one).
MODELS_TABLE = "fl_models"
_DDL = (
    f"CREATE TABLE IF NOT EXISTS {MODELS_TABLE} (name VARCHAR NOT NULL, number BIGINT NOT NULL, "
    "record VARCHAR NOT NULL, PRIMARY KEY (name, number))"
)


def insert(
    con: duckdb.DuckDBPyConnection, name: str, manifest: Manifest, *, uri: str | None, description: str,
    tags: Mapping[str, str],
) -> ModelRecord:
    """Add a record of model ``name`` trained on the training set ``manifest`` describes
    (inside the caller's transaction); the record, numbered after the name's last one."""
    run(con, _DDL)
    number = int(run(con, f"SELECT coalesce(max(number), 0) + 1 FROM {MODELS_TABLE} WHERE name = ?", [name])[0][0])
    record = ModelRecord(
        name=name, number=number, uri=uri, service=manifest.service, service_version=manifest.service_version,
        pins=dict(manifest.pins), features=manifest.references, manifest_digest=manifest.digest,
        recorded_at=datetime.now(timezone.utc).isoformat(), description=description, tags=dict(tags),
    )
    run(con, f"INSERT INTO {MODELS_TABLE} VALUES (?, ?, ?)", [name, number, wire.dumps(record.to_dict(), compact=True)])
    return record


def read(con: duckdb.DuckDBPyConnection, name: str | None = None) -> list[ModelRecord]:
    """Every record (of model ``name``), by name then number."""
    if not run(con, "SELECT 1 FROM duckdb_tables() WHERE table_name = ?", [MODELS_TABLE]):
        return []
    where, params = ("WHERE name = ?", [name]) if name is not None else ("", [])
    rows = run(con, f"SELECT record FROM {MODELS_TABLE} {where} ORDER BY name, number", params)
    return [ModelRecord.from_dict(json.loads(row[0])) for row in rows]
