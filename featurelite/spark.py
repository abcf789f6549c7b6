"""featurelite's point-in-time training sets on Apache Spark, for histories larger than one
host (optional extra: ``pip install 'featurelite[spark]'``).

The store exports its history and registry (``Store.export`` / ``featurelite export``);
:func:`get_historical_features` joins a Spark entity dataframe against that history with
the store's own plan and rules, so the table equals, value for value and bit for bit,
``store.get_historical_features`` on the same data:

- the request is planned by the store's planner (``Catalog.historical_plan``), rebuilt
  from the exported registry with every version ever applied: references, pinned
  versions, services and manifests resolve (and fail) as in process;
- stored features: the winner among a key's rows at or before each entity row's time is
  the latest event time, then the latest created time (a missing one first), then the
  latest ingest (the export's ingest order column); a winner older than the view's ttl
  gives null (never an older row). Per view, the entity rows and the history rows of the
  same keys are unioned and sorted by key and time, and each entity row takes the last
  history row before it (``last(..., ignorenulls)`` over a window): one sort per view, no
  join fan-out; ``split_keys_by`` sorts a hot key's rows in time ranges instead;
- windowed aggregations: computed by featurelite's compiled window engine in the Python
  workers (:mod:`featurelite.window_stream`) over rows shuffled by key and time bucket,
  so the sums are the same exact, correctly rounded ones;
- on-demand features: the featurizers' compiled batch kernels inside Spark
  (``mapInArrow``), rebuilt in each Python worker from the registry's stored source;
- every entity row kept, in the entity dataframe's order, its columns first, then the
  features in the order asked (``view__feature`` with ``full_feature_names``).
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .definitions import RESERVED_PREFIX, Aggregation
from .errors import DefinitionError, InputError, ManifestError, SchemaError
from .export import INGEST_ORDER, PARTITION, read_registry, registry_document, registry_of
from .historical import check_entity_columns
from .layout import ViewLayout
from .manifest import Manifest
from .planning import Catalog, HistoricalPlan, OnDemandPlan
from .rules import NO_CREATED_US, SEQ, Ttl, WinnerOrder
from .types import arrow_type
from .types import dtype as dtype_of

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["SparkRegistry", "get_historical_features", "read_registry_of", "write"]

#: Internal column names (the reserved prefix: no entity column or feature may use it).
_ROW, _TIME, _KIND, _CREATED, _ORDER, _VALUE, _MATCH, _BUCKET, _HOT = (
    f"{RESERVED_PREFIX}{n}" for n in ("row", "time", "kind", "created", "order", "value", "match", "bucket", "hot")
)
_EVENT = f"{RESERVED_PREFIX}event"
#: Spark's UTC-adjusted timestamp type by a name no session setting changes (plain
#: "timestamp" means TIMESTAMP_NTZ when spark.sql.timestampType says so).
_INSTANT = dtype_of("timestamp").spark
#: ``split_keys_by`` splits the keys with more history rows than this by default.
HOT_KEY_ROWS = 100_000
#: A windowed aggregation's time buckets are this many of its longest window wide (see
#: :func:`_aggregates`): an event near a bucket's end is copied into the next bucket too,
#: so about one event in this many is shuffled twice.
BUCKET_WINDOWS = 4


@dataclass(frozen=True)
class SparkRegistry:
    """The definitions a Spark job joins by, from an export's ``registry.json`` or a store
    file (opened read-only): the store's own catalog of them (every version ever applied
    among them), so a request is planned on Spark exactly as the store plans it."""

    catalog: Catalog
    store_id: str
    #: The store's ingest position the registry (and an export's history) reflects.
    ingest_position: int


def read_registry_of(source: str | os.PathLike[str]) -> SparkRegistry:
    """The registry of an export directory (``featurelite export`` wrote it) or of a store
    file."""
    path = Path(source)
    if path.is_dir():
        document = read_registry(path)
        registry = registry_of(document, f"the registry of the export {str(path)!r}")
        return SparkRegistry(registry.catalog(), document["store_id"], document["ingest_position"])
    from .store import Store

    if not path.exists():
        raise InputError(f"{str(source)!r} is neither an export directory nor a store file; give the directory "
                         "`featurelite export` wrote, or the store file")
    with Store(str(path), read_only=True) as store:
        # The document an export of this store would hold, read back the same way.
        document = registry_document(store.store_id or "", store._seq.next - 1, store._registry)
    registry = registry_of(document, f"the registry of the store {str(path)!r}")
    return SparkRegistry(registry.catalog(), str(document["store_id"]), int(document["ingest_position"]))


def get_historical_features(
    spark: SparkSession, entity_df: DataFrame, features: Sequence[str] | str | None = None, *,
    history: str | os.PathLike[str] | Mapping[str, DataFrame], registry: str | os.PathLike[str] | None = None,
    service: str | None = None, timestamp_field: str | None = None, full_feature_names: bool = False,
    split_keys_by: str | timedelta | None = None, hot_key_rows: int = HOT_KEY_ROWS, as_of: Manifest | None = None,
) -> DataFrame:
    """A point-in-time correct training set on Spark: ``entity_df`` (a Spark DataFrame with
    the join keys and an event time column, as an in-process entity dataframe has) with
    ``features`` (``view:feature`` references, ``view@version:feature`` pinned) or the
    features of ``service`` (at the versions it pins) appended, as
    ``store.get_historical_features`` gives them (see the module's docstring).

    ``history``: the directory ``featurelite export`` wrote, or ``{view: DataFrame}`` with
    each view's history columns (join keys, features, event time, created time if the view
    has one, and the ingest order column ``_fl_seq``). ``registry``: where the definitions
    come from (an export directory or a store file); default: ``history`` when it is a
    directory. ``timestamp_field``: the entity dataframe's time column (default: the
    ``event_timestamp`` column, or its one timestamp column).

    ``as_of``: a training set's :class:`~featurelite.Manifest` (``Manifest.from_table``
    of a table ``store.get_historical_features`` built): rebuilds that training set, its
    features at its versions from the history rows ingested up to its ingest position
    only, as the store's ``as_of=`` does (the history must come from the same store,
    exported at or after that position).

    ``split_keys_by``: a duration (``"30d"``, a timedelta) for histories with hot keys:
    the rows of each key with more than ``hot_key_rows`` history rows are joined in time
    ranges that long, each range sorted by its own task after the winner of the ranges
    before it, so no task sorts all of a hot key's history (the table is the same).
    Windowed aggregations always split keys by time.

    The entity rows are numbered once (``monotonically_increasing_id``) and each view's
    join refers back to those numbers: an ``entity_df`` that Spark would compute
    differently each time (a non-deterministic source) should be cached first."""
    _check_session(spark)
    _check_frames(entity_df, history)
    range_us = None if split_keys_by is None else _duration_us(split_keys_by, "split_keys_by")
    from .arguments import whole_number

    hot_rows = whole_number(hot_key_rows, "hot_key_rows", minimum=0)
    source = registry if registry is not None else (None if isinstance(history, Mapping) else history)
    if source is None:
        raise InputError("give registry= (an export directory or a store file) when history is a mapping of "
                         "DataFrames: it says how the views are defined")
    defs = read_registry_of(source)
    up_to: int | None = None
    if as_of is None:
        plan = defs.catalog.historical_plan(features, full_feature_names, service=service)
    else:
        _check_manifest(as_of, defs, features, service)
        plan = defs.catalog.historical_plan(list(as_of.references), as_of.full_feature_names, pins=as_of.pins)
        up_to = as_of.ingest_position
    catalog = plan.catalog
    ts_name = _timestamp_column(entity_df, timestamp_field)
    check_entity_columns(entity_df.columns, plan.order,
                         full_feature_names if as_of is None else as_of.full_feature_names)
    _check_request_fields(plan, entity_df)

    from pyspark.sql import functions as F

    rows = entity_df.withColumn(_ROW, F.monotonically_increasing_id())
    result = rows
    for view_name in [*plan.joins, *(v for v in plan.windows if v not in plan.joins)]:
        layout = catalog.layout(view_name)  # the definition at the version the request reads
        frame = _history_frame(spark, history, catalog.tables.get(view_name, layout))  # as stored
        if up_to is not None:  # the history as it was at the manifest's ingest position
            frame = frame.where(F.col(INGEST_ORDER) <= F.lit(up_to))
        probes = _probe(rows, layout, ts_name)
        parts = []
        if view_name in plan.joins:
            parts.append(_point_in_time(probes, frame, layout, plan.joins[view_name], range_us, hot_rows))
        if view_name in plan.windows:
            parts.append(_aggregates(probes, frame, layout, plan.windows[view_name]))
        for part in parts:
            names = [c for c in part.columns if c != _ROW]
            renamed = part.select(_ROW, *(F.col(n).alias(_value_column(view_name, n)) for n in names))
            result = result.join(renamed, on=_ROW, how="left")
    if plan.on_demand:
        result = _run_featurizers(result, plan)
    selected = [_column(c) for c in entity_df.columns]
    outputs = {out: (group.view, feature) for group in plan.groups
               for feature, out in zip(group.features, group.outputs, strict=True)}
    for out in plan.order:
        view_name, feature = outputs[out]
        value = F.col(_value_column(view_name, feature))
        if catalog.schema_of(view_name)[feature] == "timestamp":
            value = value.cast(_INSTANT)  # an instant (a history DataFrame's time-zone-less one read as UTC)
        selected.append(value.alias(out))
    return result.orderBy(_ROW).select(*selected)


def _check_manifest(manifest: object, defs: SparkRegistry, features: object, service: object) -> None:
    """A manifest the registry's store wrote, at a position its history reaches, asked
    alone; ManifestError or InputError naming the fix."""
    if not isinstance(manifest, Manifest):
        raise ManifestError(f"as_of must be a featurelite.Manifest (Manifest.from_table(training_set)), not "
                            f"{type(manifest).__name__}")
    if features is not None or service is not None:
        raise InputError("pass as_of= alone: the manifest names the features, their versions and the service")
    if manifest.store_id != defs.store_id:
        raise ManifestError(f"the manifest is from another store ({manifest.store_id}), not the one exported "
                            f"({defs.store_id}); export the store the training set was built from")
    if manifest.ingest_position > defs.ingest_position:
        raise ManifestError(
            f"the manifest reads the rows ingested up to position {manifest.ingest_position}, but the export "
            f"reflects the store at position {defs.ingest_position}: export the store again"
        )


def _duration_us(value: object, name: str) -> int:
    """A duration argument in microseconds; InputError saying how to write one."""
    from .definitions import _parse_duration

    try:
        parsed = _parse_duration(value, name, examples="'30d', '12h', '90m'", longest="duration",
                                 shorter="use a shorter one", positive="give a positive duration")
    except DefinitionError as exc:
        raise InputError(str(exc)) from None
    return parsed // timedelta(microseconds=1)


def _value_column(view: str, feature: str) -> str:
    """The internal column of a view's feature (stored, aggregated or computed on demand):
    the view's name length first, so no two (view, feature) pairs share one."""
    return f"{_VALUE}_{len(view)}_{view}_{feature}"


def _check_frames(entity_df: object, history: object) -> None:
    """``entity_df`` and a mapping's histories are Spark DataFrames (InputError saying how
    to make one)."""
    from pyspark.sql import DataFrame

    if not isinstance(entity_df, DataFrame):
        raise InputError(f"entity_df must be a Spark DataFrame, not {type(entity_df).__name__}; make one with "
                         "spark.createDataFrame(...) (or build the training set in process)")
    if isinstance(history, Mapping):
        for view, frame in history.items():
            if not isinstance(frame, DataFrame):
                raise InputError(f"history[{view!r}] must be a Spark DataFrame, not {type(frame).__name__}; read "
                                 "it with spark.read.parquet(...) or pass the export directory")


def _check_session(spark: SparkSession) -> None:
    zone = spark.conf.get("spark.sql.session.timeZone")
    if zone not in ("UTC", "Etc/UTC", "GMT", "Z", "+00:00"):
        raise InputError(
            f"featurelite.spark needs the Spark session's time zone to be UTC (it is {zone!r}): event times are "
            "UTC instants, and Spark reads time-zone-less times in the session's zone; "
            "spark.conf.set('spark.sql.session.timeZone', 'UTC')"
        )


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


def _column(name: str) -> Column:
    """A column by its name as written (a dot in it is part of the name, not a field)."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def _join_key(column: Column, dtype: str) -> Column:
    """A join key as both sides of a join compare it: an integer key as a 64-bit integer
    (an entity's int64 beyond an int32 key's range matches nothing, as in process, rather
    than overflowing), any other as the key's type."""
    return column.cast("bigint" if dtype in ("int32", "int64") else dtype_of(dtype).spark)


def _check_request_fields(plan: HistoricalPlan, entity_df: DataFrame) -> None:
    """Every request field the plan's featurizers read is a column of the entity dataframe
    of a type its featurizer takes: each featurizer runs once on the driver over no rows
    (inputs of the types the job will hand it), so a mistake is the store's own error
    before any job starts, not a Python worker's failure inside one."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_type

    kinds = {f.name: f.dataType for f in entity_df.schema.fields}
    for name, on_demand in plan.on_demand.items():
        for call in on_demand.calls:
            inputs = {}
            for (param, _), (kind, source, field) in zip(call.featurizer.inputs, call.bindings, strict=True):
                if kind == "request" and field not in kinds:
                    raise SchemaError(f"entity_df has no column {field!r}, a request field of on-demand view "
                                      f"{name!r}; add it", column=field, view=name)
                dtype = to_arrow_type(kinds[field], timezone="UTC") if kind == "request" else arrow_type(
                    plan.catalog.schema_of(source)[field])
                inputs[param] = pa.array([], dtype)
            try:
                call.featurizer.run_batch(inputs)
            except SchemaError as exc:  # a request column of the wrong type, worded as in process
                raise SchemaError(f"on-demand view {name!r}: {exc.message}", view=name, column=exc.column) from exc


def _history_frame(spark: SparkSession, history: str | os.PathLike[str] | Mapping[str, DataFrame],
                   stored: ViewLayout) -> DataFrame:
    """A view's history as a DataFrame, its columns checked against ``stored`` (the
    definition in force, which wrote the history)."""
    name = stored.name
    if isinstance(history, Mapping):
        if name not in history:
            raise InputError(f"history has no DataFrame for view {name!r}; add it (or pass the export directory)")
        frame = history[name]
        where = f"history[{name!r}]"
    else:
        folder = Path(history) / "views" / name
        if not folder.is_dir():
            raise InputError(f"the export at {str(history)!r} has no folder for view {name!r}; export the "
                             "store again")
        if not any(folder.rglob("*.parquet")):
            return _empty_history(spark, stored)
        # The base path is taken as written, the path read as a glob (escaped).
        frame = spark.read.option("basePath", str(folder.resolve())).parquet(_literal_path(folder)).drop(PARTITION)
        where = f"the export's history of view {name!r}"
    _check_history(frame, stored, where)
    return frame


def _literal_path(path: Path) -> str:
    """A local path as Spark's readers take it literally: Hadoop reads ``[]{}*?\\`` in a
    path as a glob, so they are escaped."""
    return re.sub(r"([\[\]{}*?\\])", r"\\\1", str(path.resolve()))


def _expected_columns(stored: ViewLayout) -> dict[str, str]:
    """Every history column of a view and its Spark type name."""
    columns = {key: dtype_of(dtype).spark for key, dtype in stored.keys}
    columns.update({name: dtype_of(dtype).spark for name, dtype in stored.view.schema.items()})
    columns[stored.ts] = _INSTANT
    if stored.created:
        columns[stored.created] = _INSTANT
    columns[INGEST_ORDER] = "bigint"
    return columns


def _check_history(frame: DataFrame, stored: ViewLayout, where: str) -> None:
    found = {f.name: f.dataType.simpleString() for f in frame.schema.fields}
    for name, kind in _expected_columns(stored).items():
        if name not in found:
            raise SchemaError(f"{where} has no column {name!r} ({kind}); the view's history needs its join keys, "
                              f"features, event time and {INGEST_ORDER!r} (the ingest order; featurelite export "
                              "writes it)", view=stored.name, column=name)
        if found[name] != kind and not (kind == _INSTANT and found[name] in ("timestamp", "timestamp_ntz")):
            raise SchemaError(f"{where}: column {name!r} is {found[name]}, not {kind}; cast it",
                              view=stored.name, column=name)


def _empty_history(spark: SparkSession, stored: ViewLayout) -> DataFrame:
    ddl = ", ".join(f"`{name}` {kind}" for name, kind in _expected_columns(stored).items())
    return spark.createDataFrame([], ddl)


def _probe(rows: DataFrame, layout: ViewLayout, ts_name: str) -> DataFrame:
    """The entity rows as one view's probe: its join keys (as :func:`_join_key` compares
    them), ``_TIME`` and ``_ROW``. SchemaError for a missing key or one of another type."""
    from pyspark.sql import functions as F

    types = {f.name: f.dataType.simpleString() for f in rows.schema.fields}
    integral = {"tinyint", "smallint", "int", "bigint"}
    for key, dtype in layout.keys:
        if key not in types:
            raise SchemaError(f"entity_df has no column {key!r}, the join key of view {layout.name!r}; add it",
                              column=key, view=layout.name)
        wanted = dtype_of(dtype).spark
        if types[key] != wanted and not (types[key] in integral and wanted in integral):
            raise SchemaError(f"entity_df column {key!r} is {types[key]}; view {layout.name!r} keys by {wanted}: "
                              "cast it", column=key, view=layout.name)
    return rows.select(*(_join_key(_column(k), d).alias(k) for k, d in layout.keys),
                       _column(ts_name).cast(_INSTANT).alias(_TIME), F.col(_ROW))


def _keyed_events(history: DataFrame, layout: ViewLayout, values: Sequence[Column]) -> DataFrame:
    """A view's history rows with every join key present, as (keys, ``_TIME``,
    ``_CREATED``, ``_ORDER``, ``values``)."""
    from pyspark.sql import functions as F

    keys = layout.key_names
    # A row without an event time is none the store can hold: a history DataFrame's is ignored.
    present = F.col(layout.ts).isNotNull()
    for key in keys:
        present = present & F.col(key).isNotNull()
    created = layout.created
    return history.where(present).select(
        *(_join_key(F.col(k), d).alias(k) for k, d in layout.keys),
        F.col(layout.ts).cast(_INSTANT).alias(_TIME),
        (F.col(created).cast(_INSTANT) if created else F.lit(None).cast(_INSTANT)).alias(_CREATED),
        F.col(INGEST_ORDER).alias(_ORDER), *values,
    )


def _tie_order(layout: ViewLayout) -> list[Column]:
    """The winner order's terms after the event time (rules.WinnerOrder, the one home of
    the rule; a missing created time first), as ascending sort columns."""
    from pyspark.sql import functions as F

    order = WinnerOrder(layout.ts, layout.created)
    column_of = {order.ts: _TIME, order.created: _CREATED, SEQ: _ORDER}
    return [F.col(column_of[t]).asc_nulls_first() for t in order.terms[1:]]


def _point_in_time(probes: DataFrame, history: DataFrame, layout: ViewLayout, features: Sequence[str],
                   range_us: int | None = None, hot_rows: int = 0) -> DataFrame:
    """``_ROW`` and ``features`` of the winning history row per entity row (nulls where
    none, or where the winner is older than the ttl).

    ``range_us``: sort the rows of each key with more than ``hot_rows`` history rows in
    time ranges of that many microseconds, each in its own window partition, after the
    winner of the ranges before it (carried in as one more history row): a hot key's rows
    spread over many tasks. Without it, each key's rows are one window partition."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = layout.key_names
    value = F.struct(*(F.col(f).alias(f) for f in features), F.col(layout.ts).cast(_INSTANT).alias(_EVENT))
    events = _keyed_events(history, layout, [F.lit(0).alias(_KIND), F.lit(None).cast("bigint").alias(_ROW),
                                             value.alias(_VALUE)])
    entity = probes.select(
        *keys, _TIME, F.lit(None).cast(_INSTANT).alias(_CREATED), F.lit(None).cast("bigint").alias(_ORDER),
        F.lit(1).alias(_KIND), _ROW, F.lit(None).cast(events.schema[_VALUE].dataType).alias(_VALUE),
    )
    partition = list(keys)
    if range_us is not None:
        events, entity = _time_ranges(events, entity, layout, range_us, hot_rows)
        partition.append(_BUCKET)
    # Sorted by the winner order, with an entity row after the history rows of its time
    # (event time <= its time): the last history row before an entity row wins.
    sort = [F.col(_TIME).asc(), F.col(_KIND).asc(), *_tie_order(layout)]
    window = Window.partitionBy(*partition).orderBy(*sort).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    matched = events.unionByName(entity).withColumn(_MATCH, F.last(_VALUE, ignorenulls=True).over(window))
    matched = matched.where(F.col(_KIND) == 1)
    fresh: Column | None = None
    bound = Ttl.of(layout.view.ttl)  # rules.Ttl: an event serves a read at t when t - ttl <= event time
    if bound.micros is not None:
        fresh = F.unix_micros(F.col(f"{_MATCH}.{_EVENT}")) >= F.unix_micros(F.col(_TIME)) - F.lit(bound.micros)
    picked = [F.col(f"{_MATCH}.{f}") for f in features]
    if fresh is not None:
        picked = [F.when(fresh, c) for c in picked]
    return matched.select(F.col(_ROW), *(c.alias(f) for c, f in zip(picked, features, strict=True)))


def _bucket(column: str, width: int) -> Column:
    """``floor(column / width)`` for an int64 column, in integers (exact for any time,
    before 1970 too)."""
    from pyspark.sql import functions as F

    return F.expr(f"(({column}) - pmod({column}, {width})) div {width}")


def _time_ranges(events: DataFrame, entity: DataFrame, layout: ViewLayout, range_us: int,
                 hot_rows: int) -> tuple[DataFrame, DataFrame]:
    """History and entity rows of the point-in-time join tagged with their time range
    (``_BUCKET``): for the keys with more than ``hot_rows`` history rows, the range of
    their time; for every other key one range (0), its whole history. For each (hot key,
    range) that entity rows read, the winner of the key's earlier ranges is added as one
    more history row of that range, so each range finds its winner by itself.

    The cost: counting each key's rows (an aggregation combined before the shuffle), the
    hot keys broadcast to both sides, and one aggregation of the hot keys' rows to one
    row per key and range with a window over those few rows."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = layout.key_names
    hot = events.groupBy(*keys).count().where(F.col("count") > F.lit(hot_rows)).select(
        *keys, F.lit(True).alias(_HOT))
    # A hot key holds more than hot_rows of the history, so there are few: broadcast them.
    events = events.join(F.broadcast(hot), on=keys, how="left")
    entity = entity.join(F.broadcast(hot), on=keys, how="left")
    ranged = F.when(F.col(_HOT), _bucket(f"unix_micros({_TIME})", range_us)).otherwise(F.lit(0).cast("bigint"))
    events = events.withColumn(_BUCKET, ranged).drop(_HOT)
    entity = entity.withColumn(_BUCKET, ranged)
    # The winner of each (hot key, range): the greatest by the winner order's terms (event
    # time, then created time with a missing one first, then ingest order), which are
    # unique per row, so the rest of the struct never decides.
    order = WinnerOrder(layout.ts, layout.created)
    term = {order.ts: F.unix_micros(F.col(_TIME)),
            order.created: F.coalesce(F.unix_micros(F.col(_CREATED)), F.lit(NO_CREATED_US)), SEQ: F.col(_ORDER)}
    ranked = F.struct(*(term[t].alias(f"k{i}") for i, t in enumerate(order.terms)),
                      *(F.col(c).alias(c) for c in (_TIME, _CREATED, _ORDER, _VALUE)))
    hot_events = events.join(F.broadcast(hot.select(*keys)), on=keys, how="left_semi")
    winners = hot_events.groupBy(*keys, _BUCKET).agg(F.max(ranked).alias(_MATCH)).withColumn(_KIND, F.lit(0))
    read = entity.where(F.col(_HOT)).select(*keys, _BUCKET).distinct().select(
        *keys, _BUCKET, F.lit(None).cast(winners.schema[_MATCH].dataType).alias(_MATCH), F.lit(1).alias(_KIND))
    entity = entity.drop(_HOT)
    # Per range read: the last winner of the ranges strictly before it.
    before = Window.partitionBy(*keys).orderBy(_BUCKET).rangeBetween(Window.unboundedPreceding, -1)
    carried = winners.unionByName(read).withColumn(_MATCH, F.last(_MATCH, ignorenulls=True).over(before))
    carried = carried.where((F.col(_KIND) == 1) & F.col(_MATCH).isNotNull()).select(
        *keys, *(F.col(f"{_MATCH}.{c}").alias(c) for c in (_TIME, _CREATED, _ORDER)), F.lit(0).alias(_KIND),
        F.lit(None).cast("bigint").alias(_ROW), F.col(f"{_MATCH}.{_VALUE}").alias(_VALUE), _BUCKET)
    return events.unionByName(carried), entity


def _aggregates(probes: DataFrame, history: DataFrame, layout: ViewLayout,
                aggregations: Sequence[Aggregation]) -> DataFrame:
    """``_ROW`` and every aggregation at each entity row, computed by featurelite's
    compiled window engine (:mod:`featurelite.windows`, the kernel the store calls) inside
    Spark, so the sums are the same exact, correctly rounded ones.

    Time is cut into buckets ``BUCKET_WINDOWS`` longest windows wide; an entity row reads
    the bucket of its time, and each event is copied into every bucket whose rows its
    windows reach (its own and at most one more). The rows are shuffled by (keys, bucket)
    and sorted by the winner order within each partition; each Python worker streams its
    partition's Arrow batches through the engine one (key, bucket) group at a time. A hot
    key's history is thus split across buckets (tasks), and no worker holds more than one
    group and one batch beyond it."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructField, StructType, _parse_datatype_string

    keys = layout.key_names
    longest = max(a.window_us for a in aggregations)
    width = BUCKET_WINDOWS * longest

    columns = list(dict.fromkeys(a.column for a in aggregations))
    events = _keyed_events(history, layout, [F.col(c).alias(c) for c in columns]).select(
        *keys, F.unix_micros(F.col(_TIME)).alias(_TIME), F.unix_micros(F.col(_CREATED)).alias(_CREATED), _ORDER,
        F.lit(0).cast("bigint").alias(_KIND), F.lit(None).cast("bigint").alias(_ROW), *columns,
    )
    # Every bucket an event's windows reach: its time's up to that of its time + longest - 1.
    events = events.withColumn(_BUCKET, F.explode(F.sequence(_bucket(_TIME, width),
                                                             _bucket(f"{_TIME} + {longest - 1}", width))))
    entity = probes.select(
        *keys, F.unix_micros(F.col(_TIME)).alias(_TIME), F.lit(None).cast("bigint").alias(_CREATED),
        F.lit(None).cast("bigint").alias(_ORDER), F.lit(1).cast("bigint").alias(_KIND), _ROW,
        *(F.lit(None).cast(events.schema[c].dataType).alias(c) for c in columns),
    ).withColumn(_BUCKET, _bucket(_TIME, width))
    rows = events.unionByName(entity).repartition(*keys, _BUCKET).sortWithinPartitions(
        *keys, _BUCKET, F.col(_TIME).asc(), *_tie_order(layout))
    dtypes = {c: layout.view.schema[c] for c in columns}
    out_types = dict(layout.view.aggregation_schema)
    schema = StructType([StructField(_ROW, _parse_datatype_string("bigint"), False)] + [
        StructField(a.name, _parse_datatype_string(dtype_of(out_types[a.name]).spark), True) for a in aggregations])
    group_by = [*keys, _BUCKET]
    wanted = tuple(aggregations)
    names = (_KIND, _TIME, _ROW)

    def compute(batches: Any) -> Any:
        from .window_stream import stream_groups

        yield from stream_groups(batches, group_by, names, wanted, dtypes, out_types)

    return rows.mapInArrow(compute, schema)


def _run_featurizers(frame: DataFrame, plan: HistoricalPlan) -> DataFrame:
    """``frame`` with every asked on-demand feature appended (``_fl_value__VIEW__FEATURE``),
    computed by the featurizers' compiled batch kernels inside Spark (``mapInArrow``): each
    Python worker rebuilds a featurizer from its stored spec once (compiled by Numba, kept
    per process and in Numba's disk cache), as a fresh process of the store does."""
    from pyspark.sql.types import StructField, StructType, _parse_datatype_string

    calls = []
    fields = list(frame.schema.fields)
    features_of = {g.view: g.features for g in plan.groups}
    for name, on_demand in plan.on_demand.items():
        schema_of = plan.catalog.schema_of(name)
        calls.extend(_calls(on_demand, features_of[name], schema_of))
        for feature in features_of[name]:
            fields.append(StructField(_value_column(name, feature),
                                      _parse_datatype_string(dtype_of(schema_of[feature]).spark), True))
    schema = StructType(fields)
    names = [f.name for f in schema.fields]
    width = len(frame.schema.fields)

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
                    added[column] = outputs[output].cast(arrow_type(dtype))
            arrays = list(batch.columns) + [added[n] for n in names[width:]]
            yield pa.RecordBatch.from_arrays(arrays, names=names)

    return frame.mapInArrow(compute, schema)


def _calls(on_demand: OnDemandPlan, features: Sequence[str], schema: Mapping[str, str]) -> list[Any]:
    """Each featurizer run of an on-demand plan as (spec, [(input, column)], [(column,
    output, dtype)]): what a Spark worker needs to run it, picklable."""
    calls = []
    for call in on_demand.calls:
        inputs = [(param, _value_column(source, field) if kind == "view" else field)
                  for (param, _), (kind, source, field) in zip(call.featurizer.inputs, call.bindings, strict=True)]
        places = [(_value_column(on_demand.view, features[position]), output, schema[features[position]])
                  for position, output in call.places]
        calls.append((call.featurizer.spec(), inputs, places))
    return calls


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
