"""Consistency replay: a serving log against the offline history.

Every logged row is asked again of the training-set path, at its logged request time
(what ``get_historical_features`` says now for that entity at that moment), and each
feature's served value is compared with the training value bit for bit (floats by their
bits; null equals null). A different row is explained when it can be:

- ``definition_changed``: the read used another version of the feature's definition than
  the one in force now (the log records every version a read used);
- ``late_event``: history holds an event for the entity at or before the request time that
  was ingested after the request (its ingest position is past the logged one), so the read
  could not have seen it;
- ``unexplained`` otherwise: real online/offline skew, the thing to look into.

This is Chronon's online/offline consistency metric, computed exactly from the one file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .db import fetch_arrow, quote
from .layout import ViewLayout
from .references import parse_reference
from .reports import ConsistencyReport, Difference, FeatureConsistency
from .rules import SEQ
from .servinglog import KEY, META_COLUMNS, REQUEST, STATUS
from .types import as_utc, utc_naive

__all__ = ["DEFINITION_CHANGED", "LATE_EVENT", "UNEXPLAINED", "logged_features", "read_log", "replay"]

LATE_EVENT, DEFINITION_CHANGED, UNEXPLAINED = "late_event", "definition_changed", "unexplained"
#: The entity frame's request time column (no join key or request field can have a space).
_AT = "request time"
#: Builds a training set: (entity rows, feature references, timestamp column) -> table
#: with one ``view__feature`` column per reference, rows in input order.
TrainingSet = Callable[[pa.Table, list[str], str], pa.Table]


def logged_features(columns: Sequence[str]) -> list[str]:
    """The ``view:feature`` columns of a log table (not statuses, event times, request
    fields, nor the renamed columns of a redefined feature)."""
    return [
        c for c in columns
        if ":" in c and not c.startswith((REQUEST, KEY)) and "#" not in c and "~" not in c and c not in META_COLUMNS
    ]


def read_log(
    con: duckdb.DuckDBPyConnection, table: str, since: datetime | None, until: datetime | None
) -> pa.Table:
    """The log rows with ``since <= request_time < until``, in the order they were served."""
    where: list[str] = []
    params: dict[str, Any] = {}
    if since is not None:
        where.append("request_time >= $since")
        params["since"] = utc_naive(since)
    if until is not None:
        where.append("request_time < $until")
        params["until"] = utc_naive(until)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return fetch_arrow(con, f"SELECT * FROM {quote(table)}{clause} ORDER BY request_id, entity_row",
                       params=params or None)


def replay(
    con: duckdb.DuckDBPyConnection, log: pa.Table, *, target: str, kind: str, keys: Mapping[str, pa.DataType],
    features: Mapping[str, str], pins: Mapping[str, str], sources: Mapping[str, Sequence[str]],
    layouts: Mapping[str, ViewLayout], training_set: TrainingSet, since: datetime | None, until: datetime | None,
    examples: int,
) -> ConsistencyReport:
    """Replay ``log`` (rows of :func:`read_log`).

    ``features``: logged column (``view:feature``) -> the reference the training set asks
    for (with the version in force pinned, for a service); ``pins``: the version in force of
    every definition; ``sources``: per definition, the stored views whose events its
    features come from (itself for a feature view)."""
    rows = log.num_rows
    requests = len(pc.unique(log.column("request_id"))) if rows else 0
    if rows == 0 or not features:
        empty = tuple(FeatureConsistency(f, 0, 0, {}) for f in features)
        return ConsistencyReport(target, kind, since, until, requests, rows, empty)
    # Key columns the log lacks (a view the target reads now that it did not then): nulls.
    for key, kind_of in keys.items():
        if KEY + key not in log.column_names:
            log = log.append_column(KEY + key, pa.nulls(rows, kind_of))
    entity = {k: log.column(KEY + k) for k in keys}
    entity[_AT] = log.column("request_time")
    for name in log.column_names:
        if name.startswith(REQUEST):
            entity[name[len(REQUEST):]] = log.column(name)
    logged = {c: ref for c, ref in features.items() if c in log.column_names}
    table = training_set(pa.table(entity), list(logged.values()), _AT) if logged else pa.table({})
    versions = [json.loads(v) for v in log.column("versions").unique().to_pylist()]
    version_of = {v: i for i, v in enumerate(log.column("versions").unique().to_pylist())}
    row_versions = [versions[version_of[v]] for v in log.column("versions").to_pylist()]
    found: list[FeatureConsistency] = []
    for column, ref in features.items():
        if column not in logged:  # never served (the reads logged asked for other features)
            found.append(FeatureConsistency(column, 0, 0, {}))
            continue
        parsed = parse_reference(ref)
        served = log.column(column).combine_chunks()
        trained = table.column(f"{parsed.view}__{parsed.feature}").combine_chunks()
        # A row that did not serve this feature (a read of other features) has no status.
        status = column + STATUS
        served_here = (
            log.column(status).combine_chunks().is_valid().to_numpy(zero_copy_only=False)
            if status in log.column_names else np.ones(rows, dtype=bool)
        )
        equal = _equal(served, trained) & served_here
        different = np.flatnonzero(~equal & served_here)
        reasons = _reasons(con, log, different, parsed.view, row_versions, pins, sources.get(parsed.view, ()),
                           layouts, keys)
        counts: dict[str, int] = {}
        for reason, _ in reasons:
            counts[reason] = counts.get(reason, 0) + 1
        shown = tuple(
            _difference(log, int(i), keys, served, trained, column, reasons[j])
            for j, i in enumerate(different[:examples])
        )
        found.append(FeatureConsistency(column, int(served_here.sum()), int(equal.sum()), counts, shown))
    return ConsistencyReport(target, kind, since, until, requests, rows, tuple(found))


def _equal(served: pa.Array, trained: pa.Array) -> np.ndarray:
    """Per row: equal bit for bit, or both null."""
    if served.type != trained.type:
        trained = trained.cast(served.type)
    kind = served.type
    if pa.types.is_floating(kind):
        bits = pa.int64() if kind.bit_width == 64 else pa.int32() if kind.bit_width == 32 else pa.int16()
        served, trained = served.view(bits), trained.view(bits)
    same = pc.fill_null(pc.equal(served, trained), False)
    both_null = pc.and_(served.is_null(), trained.is_null())
    result: np.ndarray = pc.or_(same, both_null).to_numpy(zero_copy_only=False)
    return result


def _reasons(
    con: duckdb.DuckDBPyConnection, log: pa.Table, rows: np.ndarray, definition: str, versions: list[dict[str, str]],
    pins: Mapping[str, str], views: Sequence[str], layouts: Mapping[str, ViewLayout], keys: Mapping[str, pa.DataType],
) -> list[tuple[str, str]]:
    """(reason, detail) per different row (``rows``: their positions in ``log``)."""
    if len(rows) == 0:
        return []
    reasons: list[tuple[str, str] | None] = [None] * len(rows)
    named = [definition, *(v for v in views if v != definition)]
    for j, i in enumerate(rows.tolist()):
        used = versions[i]
        moved = [(name, used.get(name), pins.get(name)) for name in named if used.get(name) != pins.get(name)]
        if moved:
            reasons[j] = (DEFINITION_CHANGED, "; ".join(
                f"{name}: served with version {(was or 'none')[:8]}, now {(now or 'none')[:8]}"
                for name, was, now in moved
            ))
    pending = np.array([j for j, r in enumerate(reasons) if r is None], dtype=np.int64)
    for view in views:
        if len(pending) == 0:
            break
        late = _late_events(con, log, rows[pending], layouts[view], keys)
        for j, detail in zip(pending.tolist(), late, strict=True):
            if detail is not None and reasons[j] is None:
                reasons[j] = (LATE_EVENT, f"{view}: {detail}")
        pending = np.array([j for j in pending.tolist() if reasons[j] is None], dtype=np.int64)
    return [r if r is not None else (UNEXPLAINED, "no late event or definition change explains it") for r in reasons]


def _late_events(
    con: duckdb.DuckDBPyConnection, log: pa.Table, rows: np.ndarray, layout: ViewLayout,
    keys: Mapping[str, pa.DataType],
) -> list[str | None]:
    """Per row: the latest event of its entity at or before its request time that was
    ingested after it was served, described; or None."""
    view_keys = [k for k, _ in layout.keys]
    if not all(k in keys for k in view_keys):
        return [None] * len(rows)
    taken = log.take(pa.array(rows))
    probe = pa.table({
        "_fl_row": pa.array(np.arange(len(rows), dtype=np.int64)),
        **{k: taken.column(KEY + k) for k in view_keys},
        "_fl_at": taken.column("request_time"),
        "_fl_position": taken.column("ingest_position"),
    })
    on = " AND ".join(f"h.{quote(k)} = p.{quote(k)}" for k in view_keys)
    ts = quote(layout.ts)
    found = fetch_arrow(con, f"""
        SELECT p._fl_row, max(h.{ts}) AS event, max(h.{SEQ}) AS seq, any_value(p._fl_position) AS position
        FROM _fl_probe p JOIN {layout.history_table} h ON {on}
        WHERE h.{ts} <= p._fl_at AND h.{SEQ} > p._fl_position
        GROUP BY p._fl_row""", over=probe, name="_fl_probe").to_pylist()
    out: list[str | None] = [None] * len(rows)
    for item in found:
        row, event, seq, position = item["_fl_row"], item["event"], item["seq"], item["position"]
        out[int(row)] = (
            f"an event at {as_utc(event).isoformat()} for this entity was ingested after the request "  # type: ignore[union-attr]
            f"(ingest position {seq} > {position} when served)"
        )
    return out


def _difference(
    log: pa.Table, row: int, keys: Mapping[str, pa.DataType], served: pa.Array, trained: pa.Array, column: str,
    reason: tuple[str, str],
) -> Difference:
    at = as_utc(log.column("request_time")[row].as_py())
    assert at is not None
    status = log.column(column + STATUS)[row].as_py() if column + STATUS in log.column_names else ""
    return Difference(
        int(log.column("request_id")[row].as_py()), at, {k: log.column(KEY + k)[row].as_py() for k in keys},
        _value(served[row]), _value(trained[row]), status or "", reason[0], reason[1],
    )


def _value(scalar: pa.Scalar) -> Any:
    return scalar.as_py()
