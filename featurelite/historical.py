"""Training sets: a :class:`~featurelite.planning.HistoricalPlan` executed over an
entity dataframe, by point-in-time joins and featurizers' batch kernels.

Also the point-in-time lookup the online path uses for entities whose latest event lies
after the read time (:func:`point_in_time`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import offline
from .conform import normalize_timestamps
from .db import fetch_arrow, translating
from .definitions import RESERVED_PREFIX
from .digest import column_digests, table_digest
from .errors import FeaturizerError, SchemaError
from .layout import ViewLayout
from .manifest import Manifest, ManifestFeature
from .planning import Catalog, HistoricalPlan, OnDemandPlan
from .references import pinned
from .retrieval import key_column, pick_timestamp
from .types import arrow_type
from .window_history import aggregates_at

__all__ = ["NARROW_RATIO", "manifest_for", "point_in_time", "training_set"]

#: A point-in-time join narrows the history to the probe's keys first when the history
#: has this many times more rows than the probe.
NARROW_RATIO = 20


def point_in_time(
    con: duckdb.DuckDBPyConnection, layout: ViewLayout, features: Sequence[str], probe: pa.Table, *, ties: bool,
    event_time: bool = False, up_to: int | None = None,
) -> pa.Table:
    """The point-in-time join of ``probe`` against one view, rows in probe order.
    ``ties``: whether the view's history holds rows that lost a tie (filtered out)."""
    # A probe far smaller than the history (a small training set, a future-dated online
    # read) narrows the history to its keys first: the join then sorts a sliver of it.
    narrow = probe.num_rows * NARROW_RATIO < offline.row_count(con, layout)
    query = offline.point_in_time_sql(
        layout, list(features), event_time=event_time, losers=ties, narrow=narrow, up_to=up_to
    )
    result = fetch_arrow(con, query, over=probe, name=offline.PROBE)
    order = np.empty(result.num_rows, dtype=np.int64)
    order[result.column(offline.PROBE_ROW).to_numpy()] = np.arange(result.num_rows)
    result = result.take(order)
    for i, name in enumerate(result.column_names):
        if layout.view.schema.get(name) == "float32":  # widened for the join (see point_in_time_sql)
            result = result.set_column(i, name, result.column(i).cast(pa.float32()))
    return result


def check_entity_df(
    entity: pa.Table, order: Sequence[str], timestamp_field: str | None, full_feature_names: bool
) -> str:
    """Refuse an entity dataframe whose columns clash with the request; returns its
    timestamp column."""
    _refuse_repeated(entity.column_names)  # before the timestamp column is picked (a repeated one cannot be)
    ts_name = pick_timestamp(entity, timestamp_field)
    check_entity_columns(entity.column_names, order, full_feature_names)
    return ts_name


def check_entity_columns(columns: Sequence[str], order: Sequence[str], full_feature_names: bool) -> None:
    """Refuse entity dataframe columns (of any engine's dataframe) that clash with a
    request for the features ``order``: a repeated column, a reserved ``_fl_`` name, a
    column named like a requested feature."""
    _refuse_repeated(columns)
    for name in columns:
        if name.lower().startswith(RESERVED_PREFIX):
            raise SchemaError(
                f"entity_df column {name!r} uses the reserved prefix {RESERVED_PREFIX!r}; rename it", column=name
            )
    for out in order:
        if out in columns:
            hint = "" if full_feature_names else " or pass full_feature_names=True"
            raise SchemaError(
                f"entity_df already has a column {out!r}, the name of a requested feature; rename it{hint}", column=out,
            )


def _refuse_repeated(columns: Sequence[str]) -> None:
    repeated = sorted({c for c in columns if list(columns).count(c) > 1})
    if repeated:
        raise SchemaError(f"entity_df has column {repeated[0]!r} more than once; keep one", column=repeated[0])


def _probe(catalog: Catalog, plan: HistoricalPlan, entity: pa.Table, ts_name: str) -> pa.Table:
    """The entity dataframe as the joins' probe: every view's join keys, the time, the
    row number."""
    columns: dict[str, pa.Array] = {}
    for view in [*plan.joins, *(v for v in plan.windows if v not in plan.joins)]:
        for key, dtype in catalog.layout(view).keys:
            if key not in entity.column_names:
                raise SchemaError(
                    f"entity_df has no column {key!r}, the join key of view {view!r}; add it", column=key, view=view
                )
            columns[key] = key_column(entity.column(key), key, dtype)
    columns[offline.PROBE_TS] = normalize_timestamps(entity.column(ts_name), f"entity_df column {ts_name!r}")
    columns[offline.PROBE_ROW] = pa.array(np.arange(entity.num_rows, dtype=np.int64))
    return pa.table(columns)


def training_set(
    con: duckdb.DuckDBPyConnection, plan: HistoricalPlan, entity: pa.Table, ts_name: str,
    has_ties: Callable[[str], bool], *, up_to: int | None = None,
) -> pa.Table:
    """``entity`` with the plan's features appended, in the order asked (``up_to``: from
    the rows ingested up to that sequence number only)."""
    catalog = plan.catalog
    probe = _probe(catalog, plan, entity, ts_name)
    joined: dict[tuple[str, str], pa.ChunkedArray | pa.Array] = {}
    for view, aggregations in plan.windows.items():
        with translating(f"the windowed aggregates of view {view!r}", view=view):
            aggregated, _ = aggregates_at(con, catalog.layout(view), aggregations, probe, up_to=up_to)
        joined.update(((view, name), values) for name, values in aggregated.items())
    for view, features in plan.joins.items():
        layout = catalog.layout(view)
        with translating(f"the point-in-time join with view {view!r}", view=view):
            table = point_in_time(con, layout, features, probe, ties=has_ties(view), up_to=up_to)
        for feature in features:
            joined[(view, feature)] = table.column(feature).cast(arrow_type(layout.view.schema[feature]))
    columns: dict[str, pa.ChunkedArray | pa.Array] = {}
    for group in plan.groups:
        if group.view in plan.on_demand:
            computed = compute_batch(plan.on_demand[group.view], len(group.features), joined, entity)
            columns.update(zip(group.outputs, computed, strict=True))
        else:
            columns.update((out, joined[(group.view, f)]) for f, out in zip(group.features, group.outputs, strict=True))
    result = entity
    for out in plan.order:  # features in the order asked, after the entity_df columns
        result = result.append_column(out, columns[out])
    return result


def compute_batch(
    plan: OnDemandPlan, count: int, joined: Mapping[tuple[str, str], pa.ChunkedArray], entity: pa.Table
) -> list[pa.Array]:
    """The batch path of an on-demand view: each featurizer's compiled loop over the
    point-in-time joined inputs and the entity_df's request columns, once per featurizer
    however many of its outputs are asked for. Returns the ``count`` features in order."""
    result: list[pa.Array] = [pa.array([])] * count
    for call in plan.calls:
        inputs: dict[str, pa.ChunkedArray] = {}
        for (param, _), (kind, source, field) in zip(call.featurizer.inputs, call.bindings, strict=True):
            if kind == "view":
                inputs[param] = joined[(source, field)]
            elif field in entity.column_names:
                inputs[param] = entity.column(field)
            else:
                raise SchemaError(
                    f"entity_df has no column {field!r}, a request field of on-demand view {plan.view!r}; add it",
                    column=field, view=plan.view,
                )
        fz = call.featurizer
        try:
            outputs = fz.run_batch(inputs)
        except FeaturizerError as exc:  # the same class the per-request path and ingest raise
            raise FeaturizerError(
                f"on-demand view {plan.view!r}: {exc.message}", view=plan.view, featurizer=fz.name
            ) from exc
        except SchemaError as exc:  # a request column of the wrong type
            raise SchemaError(
                f"on-demand view {plan.view!r}: {exc.message}", view=plan.view, column=exc.column
            ) from exc
        for position, output in call.places:
            result[position] = outputs[output]
    return result


def manifest_for(
    plan: HistoricalPlan, table: pa.Table, entity: pa.Table, ts_name: str, *, store_id: str | None,
    position: int, version: str, service: tuple[str, str] | None,
) -> Manifest:
    """The manifest of training set ``table``, built by ``plan`` from ``entity`` (its
    timestamp column ``ts_name``) at ingest position ``position``; ``service``: the
    feature service's (name, version) it was built through, if any."""
    catalog = plan.catalog
    digests = column_digests(table)  # every column hashed once (in parallel for a long table)
    features: list[ManifestFeature] = []
    for group in plan.groups:
        odfv = catalog.odfvs.get(group.view)
        for feature, out in zip(group.features, group.outputs, strict=True):
            if odfv is not None:
                kind, owner_version = "on_demand_feature_view", odfv.version
                featurizer: str | None = odfv.outputs[feature][0].version
            else:
                view = catalog.layout(group.view).view
                kind = "aggregation" if feature in view.aggregation_schema else "feature_view"
                owner_version = view.version
                derived = view.derived.get(feature)
                featurizer = None if derived is None else derived[0].version
            features.append(ManifestFeature(
                out, pinned(group.view, owner_version, feature), group.view, feature, kind, owner_version,
                catalog.schema_of(group.view)[feature], featurizer, digests[out],
            ))
    keys = dict.fromkeys(k for view in [*plan.joins, *plan.windows] for k in catalog.layout(view).key_names)
    fields = dict.fromkeys(
        binding.field for on_demand in plan.on_demand.values() for call in on_demand.calls
        for binding in call.bindings if binding.kind == "request"
    )
    times = normalize_timestamps(entity.column(ts_name), f"entity_df column {ts_name!r}")
    first, last = pc.min(times).as_py(), pc.max(times).as_py()
    return Manifest(
        store_id=store_id, featurelite_version=version, created_at=str(_iso(datetime.now(timezone.utc))),
        service=None if service is None else service[0], service_version=None if service is None else service[1],
        full_feature_names=any(f.output != f.feature for f in features), features=tuple(features),
        pins=dict(plan.pins), entity_keys=tuple(keys), request_fields=tuple(fields), timestamp_field=ts_name,
        time_range=(_iso(first), _iso(last)), rows=table.num_rows, ingest_position=position,
        digest=table_digest(table, digests),
    )


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat()
