"""featurelite's point-in-time training sets on Apache Spark, for histories larger than one
host (optional extra: ``pip install 'featurelite[spark]'``).

The store exports its history and registry (``Store.export`` / ``featurelite export``);
:func:`get_historical_features` joins a Spark entity dataframe against that history with
the store's own rules, so the table equals, value for value and bit for bit,
``store.get_historical_features`` on the same data:

- the winner among a key's rows at or before each entity row's time: the latest event
  time, then the latest created time (a missing one first), then the latest ingest (the
  export's ingest order column);
- the view's ttl: a winner older than ``ttl`` gives null (never an older row);
- every entity row kept, in the entity dataframe's order, its columns first, then the
  features in the order asked (``view__feature`` with ``full_feature_names``).

How: per view, the entity rows and the history rows of the same keys are unioned and
sorted by key and time (history before an entity row at the same time, then by created
time and ingest order), and each entity row takes the last history row before it
(``last(..., ignorenulls)`` over a window): one sort per view, no join fan-out.

On-demand features are computed inside Spark (``mapInArrow``) by the featurizers'
compiled batch kernels, rebuilt in each Python worker from the registry's stored source.

Not yet on Spark (each refused with a featurelite error that says so): windowed
aggregations, and services or pinned references that read an older version of a view
than the export's.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .definitions import RESERVED_PREFIX, Entity, FeatureService, FeatureView, OnDemandFeatureView
from .errors import InputError, SchemaError, UnknownFeatureError, UnknownFeatureViewError
from .export import INGEST_ORDER, PARTITION, read_registry
from .planning import OnDemandPlan, on_demand_plan
from .references import FeatureRef, parse_references
from .rules import SEQ, Ttl, WinnerOrder

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["SparkRegistry", "get_historical_features", "read_registry_of", "write"]

#: Internal column names (the reserved prefix: no entity column or feature may use it).
_ROW, _TIME, _KIND, _CREATED, _ORDER, _VALUE, _MATCH = (
    f"{RESERVED_PREFIX}{n}" for n in ("row", "time", "kind", "created", "order", "value", "match")
)
_EVENT = f"{RESERVED_PREFIX}event"

_SPARK_TYPES = {
    "bool": "boolean", "int32": "int", "int64": "bigint", "float32": "float", "float64": "double",
    "string": "string", "timestamp": "timestamp",
}


@dataclass(frozen=True)
class SparkRegistry:
    """The definitions a Spark job joins by: from an export's ``registry.json`` or a store
    file (opened read-only)."""

    entities: Mapping[str, Entity]
    views: Mapping[str, FeatureView]
    odfvs: Mapping[str, OnDemandFeatureView]
    services: Mapping[str, FeatureService]
    store_id: str


def read_registry_of(source: str | os.PathLike[str]) -> SparkRegistry:
    """The registry of an export directory (``featurelite export`` wrote it) or of a store
    file."""
    path = Path(source)
    if path.is_dir():
        document = read_registry(path)
        return SparkRegistry(
            {e["spec"]["name"]: Entity.from_spec(e["spec"]) for e in document["entities"]},
            {v["spec"]["name"]: FeatureView.from_spec(v["spec"]) for v in document["feature_views"]},
            {o["spec"]["name"]: OnDemandFeatureView.from_spec(o["spec"]) for o in document["on_demand_feature_views"]},
            {s["spec"]["name"]: _service(s) for s in document["feature_services"]},
            str(document.get("store_id", "")),
        )
    from .store import Store

    if not path.exists():
        raise InputError(f"{str(source)!r} is neither an export directory nor a store file; give the directory "
                         "`featurelite export` wrote, or the store file")
    with Store(str(path), read_only=True) as store:
        return SparkRegistry(
            {e.name: e for e in store.list_entities()}, {v.name: v for v in store.list_feature_views()},
            {o.name: o for o in store.list_on_demand_feature_views()},
            {s.name: s for s in store.list_feature_services()}, store.store_id or "",
        )


def _service(item: Mapping[str, Any]) -> FeatureService:
    return FeatureService.from_spec(item["spec"])  # the spec holds the pins


def get_historical_features(
    spark: SparkSession, entity_df: DataFrame, features: Sequence[str] | str | None = None, *,
    history: str | os.PathLike[str] | Mapping[str, DataFrame], registry: str | os.PathLike[str] | None = None,
    service: str | None = None, timestamp_field: str | None = None, full_feature_names: bool = False,
) -> DataFrame:
    """A point-in-time correct training set on Spark: ``entity_df`` (a Spark DataFrame with
    the join keys and an event time column, as an in-process entity dataframe has) with
    ``features`` (``view:feature`` references) or the features of ``service`` appended,
    as ``store.get_historical_features`` gives them (see the module's docstring).

    ``history``: the directory ``featurelite export`` wrote, or ``{view: DataFrame}`` with
    each view's history columns (join keys, features, event time, created time if the view
    has one, and the ingest order column ``_fl_seq``). ``registry``: where the definitions
    come from (an export directory or a store file); default: ``history`` when it is a
    directory. ``timestamp_field``: the entity dataframe's time column (default: the
    ``event_timestamp`` column, or its one timestamp column).

    The entity rows are numbered once (``monotonically_increasing_id``) and each view's
    join refers back to those numbers: an ``entity_df`` that Spark would compute
    differently each time (a non-deterministic source) should be cached first."""
    _check_session(spark)
    source = registry if registry is not None else (None if isinstance(history, Mapping) else history)
    if source is None:
        raise InputError("give registry= (an export directory or a store file) when history is a mapping of "
                         "DataFrames: it says how the views are defined")
    defs = read_registry_of(source)
    refs = _references(defs, features, service)
    ts_name = _timestamp_column(entity_df, timestamp_field)
    outputs = [f"{r.view}__{r.feature}" if full_feature_names else r.feature for r in refs]
    _check_entity_columns(entity_df, outputs, full_feature_names)

    from pyspark.sql import functions as F

    rows = entity_df.withColumn(_ROW, F.monotonically_increasing_id())
    plans = _on_demand_plans(defs, refs, entity_df.columns)
    by_view: dict[str, list[str]] = {}
    needed = [(r.view, r.feature) for r in refs if r.view not in plans]
    needed += [(view, f) for plan, _ in plans.values() for view, fields in plan.stored.items() for f in fields]
    for view_name, feature in needed:
        by_view.setdefault(view_name, [])
        if feature not in by_view[view_name]:
            by_view[view_name].append(feature)
    result = rows
    for view_name, view_features in by_view.items():
        view = defs.views[view_name]
        keys = _keys(defs, view)
        frame = _history_frame(spark, history, view, keys)
        joined = _point_in_time(rows, frame, view, keys, view_features, ts_name)
        renamed = joined.select(_ROW, *(F.col(f).alias(f"{_VALUE}__{view_name}__{f}") for f in view_features))
        result = result.join(renamed, on=_ROW, how="left")
    if plans:
        result = _run_featurizers(result, defs, plans)
    selected = [F.col(c) for c in entity_df.columns]
    for ref, out in zip(refs, outputs, strict=True):
        value = F.col(f"{_VALUE}__{ref.view}__{ref.feature}")
        dtype = defs.views[ref.view].schema[ref.feature] if ref.view in defs.views else \
            defs.odfvs[ref.view].schema[ref.feature]
        if dtype == "timestamp":
            value = value.cast("timestamp")  # an instant (a history DataFrame's time-zone-less one read as UTC)
        selected.append(value.alias(out))
    return result.orderBy(_ROW).select(*selected)


def _check_session(spark: SparkSession) -> None:
    zone = spark.conf.get("spark.sql.session.timeZone")
    if zone not in ("UTC", "Etc/UTC", "GMT", "Z", "+00:00"):
        raise InputError(
            f"featurelite.spark needs the Spark session's time zone to be UTC (it is {zone!r}): event times are "
            "UTC instants, and Spark reads time-zone-less times in the session's zone; "
            "spark.conf.set('spark.sql.session.timeZone', 'UTC')"
        )


def _references(defs: SparkRegistry, features: Sequence[str] | str | None, service: str | None) -> list[FeatureRef]:
    if (features is None) == (service is None):
        raise InputError("give features (view:feature references) or service=, not both and not neither")
    if service is not None:
        if service not in defs.services:
            raise UnknownFeatureViewError(f"feature service {service!r} is not in the registry (registered: "
                                          f"{', '.join(sorted(defs.services)) or 'none'})", view=service)
        found = defs.services[service]
        for name, version in found.pins.items():
            current = defs.views.get(name) or defs.odfvs.get(name)
            if current is not None and current.version != version:
                raise InputError(
                    f"feature service {service!r} pins {name}@{version}, an older version than the export's "
                    f"({current.version}); featurelite.spark reads the versions in force only (not yet older "
                    "ones): apply the service again, or build this training set in process"
                )
        features = list(found.features)
    refs = parse_references(features)
    for ref in refs:
        if ref.view in defs.odfvs:
            odfv = defs.odfvs[ref.view]
            if ref.feature not in odfv.outputs:
                raise UnknownFeatureError(f"on-demand view {ref.view!r} has no feature {ref.feature!r} (features: "
                                          f"{', '.join(odfv.outputs)})", reference=ref.text)
            if ref.version is not None and not odfv.version.startswith(ref.version):
                raise InputError(f"{ref.text!r} pins a version other than the export's ({odfv.version}); "
                                 "featurelite.spark reads the versions in force only (not yet older ones)")
            continue
        view = defs.views.get(ref.view)
        if view is None:
            raise UnknownFeatureViewError(f"feature view {ref.view!r} (in {ref.text!r}) is not in the registry "
                                          f"(registered: {', '.join(sorted(defs.views)) or 'none'})", view=ref.view)
        if ref.feature in view.aggregation_schema:
            raise InputError(f"{ref.text!r} is a windowed aggregate: featurelite.spark does not compute windowed "
                             "aggregations yet; build this training set in process")
        if ref.feature not in view.schema:
            raise UnknownFeatureError(f"view {ref.view!r} has no feature {ref.feature!r} (features: "
                                      f"{', '.join(view.schema)})", reference=ref.text)
        if ref.version is not None and not view.version.startswith(ref.version):
            raise InputError(f"{ref.text!r} pins a version other than the export's ({view.version}); "
                             "featurelite.spark reads the versions in force only (not yet older ones)")
    return refs


def _timestamp_column(entity_df: DataFrame, timestamp_field: str | None) -> str:
    from pyspark.sql.types import TimestampNTZType, TimestampType

    kinds = {f.name: f.dataType for f in entity_df.schema.fields}
    times = [n for n, t in kinds.items() if isinstance(t, (TimestampType, TimestampNTZType))]
    name = timestamp_field or ("event_timestamp" if "event_timestamp" in kinds else (times[0] if len(times) == 1
                                                                                     else None))
    if name is None:
        raise SchemaError(f"entity_df has {len(times)} timestamp columns ({', '.join(times) or 'none'}): name the "
                          "event time column with timestamp_field=")
    if name not in kinds:
        raise SchemaError(f"entity_df has no column {name!r}, the event time; add it or pass timestamp_field=",
                          column=name)
    if name not in times:
        raise SchemaError(f"entity_df column {name!r} is {kinds[name].simpleString()}, not a timestamp; cast it "
                          "(F.col(...).cast('timestamp'))", column=name)
    return name


def _check_entity_columns(entity_df: DataFrame, outputs: Sequence[str], full_feature_names: bool) -> None:
    for name in entity_df.columns:
        if name.lower().startswith(RESERVED_PREFIX):
            raise SchemaError(f"entity_df column {name!r} uses the reserved prefix {RESERVED_PREFIX!r}; rename it",
                              column=name)
    for out in outputs:
        if out in entity_df.columns:
            hint = "" if full_feature_names else " or pass full_feature_names=True"
            raise SchemaError(f"entity_df already has a column {out!r}, the name of a requested feature; rename "
                              f"it{hint}", column=out)


def _history_frame(spark: SparkSession, history: str | os.PathLike[str] | Mapping[str, DataFrame],
                   view: FeatureView, keys: Sequence[tuple[str, str]]) -> DataFrame:
    """A view's history as a DataFrame, its columns checked against the definition."""
    if isinstance(history, Mapping):
        if view.name not in history:
            raise InputError(f"history has no DataFrame for view {view.name!r}; add it (or pass the export "
                             "directory)")
        frame = history[view.name]
        where = f"history[{view.name!r}]"
    else:
        folder = Path(history) / "views" / view.name
        if not folder.is_dir():
            raise InputError(f"the export at {str(history)!r} has no folder for view {view.name!r}; export the "
                             "store again")
        if not any(folder.rglob("*.parquet")):
            return _empty_history(spark, view, keys)
        frame = spark.read.option("basePath", str(folder)).parquet(str(folder)).drop(PARTITION)
        where = f"the export's history of view {view.name!r}"
    _check_history(frame, view, keys, where)
    return frame


def _expected_columns(view: FeatureView, keys: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Every history column of ``view`` (keyed by ``keys``) and its Spark type name."""
    columns = {key: _SPARK_TYPES[dtype] for key, dtype in keys}
    columns.update({name: _SPARK_TYPES[dtype] for name, dtype in view.schema.items()})
    columns[view.timestamp_field] = "timestamp"
    if view.created_timestamp_field:
        columns[view.created_timestamp_field] = "timestamp"
    columns[INGEST_ORDER] = "bigint"
    return columns


def _keys(defs: SparkRegistry, view: FeatureView) -> list[tuple[str, str]]:
    """The view's join keys and their dtypes, from its entities."""
    return [item for name in view.entities for item in defs.entities[name].key_schema.items()]


def _check_history(frame: DataFrame, view: FeatureView, keys: Sequence[tuple[str, str]], where: str) -> None:
    found = {f.name: f.dataType.simpleString() for f in frame.schema.fields}
    for name, kind in _expected_columns(view, keys).items():
        if name not in found:
            raise SchemaError(f"{where} has no column {name!r} ({kind}); the view's history needs its join keys, "
                              f"features, event time and {INGEST_ORDER!r} (the ingest order; featurelite export "
                              "writes it)", view=view.name, column=name)
        if found[name] != kind and not (kind == "timestamp" and found[name] == "timestamp_ntz"):
            raise SchemaError(f"{where}: column {name!r} is {found[name]}, not {kind}; cast it",
                              view=view.name, column=name)


def _empty_history(spark: SparkSession, view: FeatureView, keys: Sequence[tuple[str, str]]) -> DataFrame:
    ddl = ", ".join(f"`{name}` {kind}" for name, kind in _expected_columns(view, keys).items())
    return spark.createDataFrame([], ddl)


def _point_in_time(rows: DataFrame, history: DataFrame, view: FeatureView, view_keys: Sequence[tuple[str, str]],
                   features: Sequence[str], ts_name: str) -> DataFrame:
    """``_ROW`` and ``features`` of the winning history row per entity row (nulls where
    none, or where the winner is older than the ttl)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = [k for k, _ in view_keys]
    missing = [k for k in keys if k not in rows.columns]
    if missing:
        raise SchemaError(f"entity_df has no column {missing[0]!r}, the join key of view {view.name!r}; add it",
                          column=missing[0], view=view.name)
    key_types = dict(view_keys)
    entity_types = {f.name: f.dataType.simpleString() for f in rows.schema.fields}
    for key in keys:
        wanted = _SPARK_TYPES[key_types[key]]
        have = entity_types[key]
        integral = {"tinyint", "smallint", "int", "bigint"}
        if have != wanted and not (have in integral and wanted in integral):
            raise SchemaError(f"entity_df column {key!r} is {have}; view {view.name!r} keys by {wanted}: cast it",
                              column=key, view=view.name)
    created = view.created_timestamp_field
    value = F.struct(*(F.col(f).alias(f) for f in features), F.col(view.timestamp_field).cast("timestamp").alias(
        _EVENT))
    present = F.col(keys[0]).isNotNull()
    for key in keys[1:]:
        present = present & F.col(key).isNotNull()
    events = history.where(present).select(
        *(F.col(k).cast(_SPARK_TYPES[key_types[k]]).alias(k) for k in keys),
        F.col(view.timestamp_field).cast("timestamp").alias(_TIME), F.lit(0).alias(_KIND),
        (F.col(created).cast("timestamp") if created else F.lit(None).cast("timestamp")).alias(_CREATED),
        F.col(INGEST_ORDER).alias(_ORDER), F.lit(None).cast("bigint").alias(_ROW), value.alias(_VALUE),
    )
    probes = rows.select(
        *(F.col(k).cast(_SPARK_TYPES[key_types[k]]).alias(k) for k in keys),
        F.col(ts_name).cast("timestamp").alias(_TIME), F.lit(1).alias(_KIND), F.lit(None).cast("timestamp").alias(
            _CREATED), F.lit(None).cast("bigint").alias(_ORDER), F.col(_ROW),
        F.lit(None).cast(events.schema[_VALUE].dataType).alias(_VALUE),
    )
    # Sorted by the winner order's terms (rules.WinnerOrder, the one home of the rule; a
    # missing created time first), with an entity row after the history rows of its time
    # (event time <= its time): the last history row before an entity row wins.
    order = WinnerOrder(view.timestamp_field, created)
    column_of = {order.ts: _TIME, order.created: _CREATED, SEQ: _ORDER}
    sort = [F.col(_TIME).asc(), F.col(_KIND).asc(), *(F.col(column_of[t]).asc_nulls_first() for t in order.terms[1:])]
    window = Window.partitionBy(*keys).orderBy(*sort).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    matched = events.unionByName(probes).withColumn(_MATCH, F.last(_VALUE, ignorenulls=True).over(window))
    matched = matched.where(F.col(_KIND) == 1)
    fresh: Column | None = None
    bound = Ttl.of(view.ttl)  # rules.Ttl: an event serves a read at t when t - ttl <= event time
    if bound.micros is not None:
        fresh = F.unix_micros(F.col(f"{_MATCH}.{_EVENT}")) >= F.unix_micros(F.col(_TIME)) - F.lit(bound.micros)
    picked = [F.col(f"{_MATCH}.{f}") for f in features]
    if fresh is not None:
        picked = [F.when(fresh, c) for c in picked]
    return matched.select(F.col(_ROW), *(c.alias(f) for c, f in zip(picked, features, strict=True)))


def _on_demand_plans(
    defs: SparkRegistry, refs: Sequence[FeatureRef], entity_columns: Sequence[str],
) -> dict[str, tuple[OnDemandPlan, list[str]]]:
    """Per on-demand view asked for: its plan (the stored inputs per source view, the
    featurizer calls), as the store makes it, and the features it was made for; its
    request fields checked against the entity dataframe's columns."""
    from .registry import odfv_bindings

    asked: dict[str, list[str]] = {}
    for ref in refs:
        if ref.view in defs.odfvs and ref.feature not in asked.setdefault(ref.view, []):
            asked[ref.view].append(ref.feature)
    plans = {}
    for name, features in asked.items():
        odfv = defs.odfvs[name]
        plan = on_demand_plan(odfv, odfv_bindings(odfv, defs.views), features)
        for call in plan.calls:
            for kind, source, field in call.bindings:
                if kind == "request" and field not in entity_columns:
                    raise SchemaError(f"entity_df has no column {field!r}, a request field of on-demand view "
                                      f"{name!r}; add it", column=field, view=name)
                if kind == "view" and field in defs.views[source].aggregation_schema:
                    raise InputError(f"on-demand view {name!r} reads the windowed aggregate {source}:{field}: "
                                     "featurelite.spark does not compute windowed aggregations yet; build this "
                                     "training set in process")
        plans[name] = (plan, features)
    return plans


_ARROW_TYPES = {
    "bool": "bool_", "int32": "int32", "int64": "int64", "float32": "float32", "float64": "float64",
    "string": "string",
}


def _run_featurizers(
    frame: DataFrame, defs: SparkRegistry, plans: Mapping[str, tuple[OnDemandPlan, list[str]]],
) -> DataFrame:
    """``frame`` with every asked on-demand feature appended (``_fl_value__VIEW__FEATURE``),
    computed by the featurizers' compiled batch kernels inside Spark (``mapInArrow``): each
    Python worker rebuilds a featurizer from its stored spec once (compiled by Numba, kept
    per process and in Numba's disk cache), as a fresh process of the store does."""
    from pyspark.sql.types import StructField, StructType, _parse_datatype_string

    calls = []
    fields = list(frame.schema.fields)
    for name, (plan, features) in plans.items():
        odfv = defs.odfvs[name]
        for call in plan.calls:
            inputs = [(param, f"{_VALUE}__{source}__{field}" if kind == "view" else field)
                      for (param, _), (kind, source, field) in zip(call.featurizer.inputs, call.bindings, strict=True)]
            places = []
            for position, output in call.places:
                feature = features[position]
                column = f"{_VALUE}__{name}__{feature}"
                dtype = odfv.schema[feature]
                places.append((column, output, dtype))
                fields.append(StructField(column, _parse_datatype_string(_SPARK_TYPES[dtype]), True))
            calls.append((call.featurizer.spec(), inputs, places))
    schema = StructType(fields)

    def compute(batches: Any) -> Any:
        import pyarrow as pa

        from .featurizer import Featurizer

        for batch in batches:
            columns = dict(zip(batch.schema.names, batch.columns, strict=True))
            added: dict[str, Any] = {}
            for spec, inputs, places in calls:
                featurizer = Featurizer.from_spec(spec)  # compiled once per worker process
                outputs = featurizer.run_batch({param: columns[column] for param, column in inputs})
                for column, output, dtype in places:
                    wanted = pa.timestamp("us", tz="UTC") if dtype == "timestamp" else getattr(pa, _ARROW_TYPES[
                        dtype])()
                    added[column] = outputs[output].cast(wanted)
            arrays = list(batch.columns) + [added[f.name] for f in schema.fields[len(batch.columns):]]
            yield pa.RecordBatch.from_arrays(arrays, names=[f.name for f in schema.fields])

    return frame.mapInArrow(compute, schema)



def write(df: DataFrame, target: str | os.PathLike[str], view: str, *, token: str | None = None,
          batch_rows: int = 100_000) -> int:
    """Land a Spark DataFrame (the view's join keys, features, event time, created time if
    the view has one) in feature view ``view``; returns the rows written.

    ``target`` an ``http(s)://`` URL of a running ``featurelite serve``: every partition
    is pushed from its executor as Arrow batches of up to ``batch_rows`` rows, each one
    atomic push (``featurelite.connect(url).ingest``), so the executors write in
    parallel while the server serves. A job that fails part way leaves the batches pushed
    before it; running it again pushes them again, which changes no value read (the same
    rows again, ingested later, win with the same values). ``target`` a store file: the
    rows are collected on the driver (``toArrow``) and ingested in one atomic ingest; for
    more than a driver holds, write Parquet and ``featurelite ingest`` it, or serve the
    store and push."""
    from .arguments import name as check_name
    from .arguments import whole_number

    check_name(view, "the view to write to")
    batch_rows = whole_number(batch_rows, "batch_rows")
    text = os.fspath(target)
    if not text.startswith(("http://", "https://")):
        from .store import Store

        with _no_pandas_warning(), Store(text) as store:
            return store.ingest(view, df.toArrow(), batch_rows=batch_rows).rows
    from .http_client import connect

    with connect(text, token=token) as remote:  # checks the server and the view before the job starts
        remote.get_feature_view(view)

    def push(batches: Any) -> Any:
        import pyarrow as pa

        from .http_client import connect

        written = 0
        with connect(text, token=token) as client:
            for batch in batches:
                for part in pa.Table.from_batches([batch]).to_batches(max_chunksize=batch_rows):
                    if part.num_rows:
                        written += client.ingest(view, pa.Table.from_batches([part])).rows
        yield pa.RecordBatch.from_pydict({"rows": pa.array([written], pa.int64())})

    with _no_pandas_warning():
        counts = df.mapInArrow(push, "rows bigint").toArrow()
    return int(sum(counts.column("rows").to_pylist()))



@contextlib.contextmanager
def _no_pandas_warning() -> Iterator[None]:
    """pyspark warns about the pandas version when it builds an Arrow UDF or collects as
    Arrow; nothing here uses pandas."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
        yield
