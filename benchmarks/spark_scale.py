"""Scaling out (issue 16): the training set of the ``training`` workload built on Apache
Spark in local mode from the store's export, beside the same training set in process and
a hand-written DuckDB ASOF join; and the Spark join's time at several history sizes.

- ``spark_training``: ``featurelite.spark.get_historical_features`` of
  :attr:`SparkScale.spine_rows` entity rows against :attr:`SparkScale.history_rows` history
  rows (the suite's data: 10 float64 features, one key, random times over 180 days) on
  ``local[2]``, its result collected as Arrow (``toArrow()``); ``store.get_historical_features``
  of the same rows; the limit, a hand-written ``ASOF LEFT JOIN`` in a plain DuckDB file.
  Checked first: Spark's table equals the store's (values, order, types).
- ``spark_scaling``: the Spark join alone at each of :attr:`SparkScale.curve` history
  sizes (the same keys and entity rows), one run each after a warm-up join.
- ``spark_aggregations``: the windowed aggregations of the aggregation workloads (sum 1h,
  count 1d, mean 7d, max 7d over the suite's events) at the aggregation training set's
  entity rows, on Spark (featurelite's window engine in the Python workers) beside
  ``store.get_historical_features``; checked equal first.
- ``spark_hot_key``: the training-set join against a history in which one key holds
  :attr:`SparkScale.hot_share` of the rows, with each key's rows in one window partition
  and with ``split_keys_by`` (time ranges); checked equal to each other and the store.
"""

from __future__ import annotations

import shutil
import statistics
import warnings
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

import featurelite as fl

from . import aggregations, data
from .measure import stopwatch
from .model import metric_row, skipped_workload, workload
from .workloads import Context, _check

__all__ = ["NAMES", "SCALES", "SparkScale", "run"]

NAMES = ["spark_training", "spark_scaling", "spark_aggregations", "spark_hot_key"]
#: Issue 16 asks for these times beside each other, not for a threshold.
REPORTED = ("reported, no target: issue 16 asks for these times side by side (in process, DuckDB, the curve), "
            "not for thresholds")
REFS = [f"stats:{f}" for f in data.FEATURES]


@dataclass(frozen=True)
class SparkScale:
    entities: int
    history_rows: int
    spine_rows: int
    curve: tuple[int, ...]
    repeats: int
    driver_memory: str
    #: share of the hot-key workload's history rows that belong to one key
    hot_share: float = 0.5
    #: the hot-key workload's time ranges
    split: str = "7d"


SCALES = {
    "quick": SparkScale(entities=2_000, history_rows=20_000, spine_rows=2_000, curve=(5_000, 20_000), repeats=1,
                        driver_memory="1g"),
    "full": SparkScale(entities=1_000_000, history_rows=10_000_000, spine_rows=1_000_000,
                       curve=(1_000_000, 10_000_000, 30_000_000), repeats=2, driver_memory="12g"),
}


def _scale(ctx: Context, spark_scale: SparkScale, rows: int) -> Any:
    return replace(ctx.scale, entities=spark_scale.entities, history_rows=rows, spine_rows=spark_scale.spine_rows)


def _session(scale: SparkScale) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pyspark.sql import SparkSession

        spark = (SparkSession.builder.master("local[2]").appName("featurelite-benchmarks")
                 .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false")
                 .config("spark.driver.memory", scale.driver_memory)
                 .config("spark.sql.shuffle.partitions", "8")
                 .config("spark.sql.execution.arrow.maxRecordsPerBatch", "100000").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _definitions() -> list[Any]:
    user = fl.Entity("user", join_keys=[data.KEY])
    return [user, fl.FeatureView("stats", entities=[user], timestamp_field=data.TS,
                                 schema={f: "float64" for f in data.FEATURES})]


def _export(ctx: Context, history: pa.Table, folder: Path) -> tuple[Path, float, float]:
    """A store of ``history`` and its export; the seconds each took."""
    path = folder / "store.duckdb"
    watch = stopwatch()
    with fl.open(path) as store:
        store.apply(_definitions())
        store.ingest("stats", history)
        ingest_s = watch()
        watch = stopwatch()
        store.export(folder / "export")
        export_s = watch()
    return path, ingest_s, export_s


def _spark_join(spark: Any, entity: Any, export: Path) -> tuple[float, pa.Table]:
    from featurelite import spark as fls

    watch = stopwatch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = fls.get_historical_features(spark, entity, REFS, history=export).toArrow()
    return watch(), table


def _check_same(got: pa.Table, expected: pa.Table, message: str) -> None:
    """Spark's table equals the store's (values, row order, types)."""
    # Spark reads the entity dataframe's naive times as UTC instants: the same microseconds.
    at = got.schema.get_field_index("event_timestamp")
    got = got.set_column(at, "event_timestamp", got.column(at).cast(pa.timestamp("us")))
    _check(got.equals(expected.replace_schema_metadata(None)), message)


def _limit(sql_path: Path, history: pa.Table, spine: pa.Table) -> float:
    with duckdb.connect(str(sql_path)) as con:
        con.register("h", history)
        con.register("s", spine)
        con.execute("CREATE OR REPLACE TABLE history AS SELECT * FROM h")
        con.execute("CREATE OR REPLACE TABLE spine AS SELECT * FROM s")
        features = ", ".join(f"h.{f}" for f in data.FEATURES)
        watch = stopwatch()
        con.sql(f"SELECT p.*, {features} FROM spine p ASOF LEFT JOIN history h ON p.{data.KEY} = h.{data.KEY} "
                f"AND p.event_timestamp >= h.{data.TS}").to_arrow_table()
        return watch()


def _training(ctx: Context, scale: SparkScale, spark: Any, folder: Path) -> tuple[dict[str, Any], Any, Path]:
    history = data.history(_scale(ctx, scale, scale.history_rows), ctx.seed)
    spine = data.spine(_scale(ctx, scale, scale.history_rows), ctx.seed)
    path, ingest_s, export_s = _export(ctx, history, folder)
    ctx.log(f"spark: store of {history.num_rows:,} rows ingested in {ingest_s:.1f} s, exported in {export_s:.1f} s")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        entity = spark.createDataFrame(spine).cache()
    entity.count()
    seconds: dict[str, list[float]] = {"spark": [], "featurelite": [], "limit": []}
    with fl.open(path, read_only=True) as store:
        expected = store.get_historical_features(spine, REFS)  # a warm-up of each side, checked
        _check_same(_spark_join(spark, entity, folder / "export")[1], expected,
                    "spark_training: Spark's training set differs from the store's")
        for _ in range(scale.repeats):
            watch = stopwatch()
            store.get_historical_features(spine, REFS)
            seconds["featurelite"].append(watch())
            seconds["spark"].append(_spark_join(spark, entity, folder / "export")[0])
            seconds["limit"].append(_limit(folder / "limit.duckdb", history, spine))
    ctx.log("spark: training set runs (s): " + "; ".join(
        f"{side} " + ", ".join(f"{s:.2f}" for s in runs) for side, runs in seconds.items()))
    spark_s, fl_s, limit_s = (statistics.median(seconds[s]) for s in ("spark", "featurelite", "limit"))
    rows = [
        metric_row("Spark local[2] vs DuckDB's ASOF join (median)", "s", spark_s, limit_s),
        metric_row("in process (store.get_historical_features) vs DuckDB's ASOF join (median)", "s", fl_s, limit_s),
        metric_row("Spark local[2] vs in process (median)", "s", spark_s, fl_s),
        metric_row("export of the store (featurelite export), once", "s", export_s, None),
    ]
    result = workload(
        f"Scaling out: a training set on Spark ({spine.num_rows:,} entity rows, {history.num_rows:,} history rows)",
        f"`featurelite.spark.get_historical_features(spark, entity_df, {len(REFS)} features, history=export)` on "
        f"Spark local[2] ({scale.driver_memory} driver memory), collected with `toArrow()`; entity_df a cached Spark "
        f"DataFrame of {spine.num_rows:,} rows, history the store's export ({history.num_rows:,} rows of "
        f"{history.num_rows // max(scale.entities, 1)} per key on average over 180 days, Parquet partitioned by "
        f"day). Beside it, in one run, alternating: the same training set in process "
        "(`store.get_historical_features`) and the limit. Checked first: Spark's table equals the store's "
        f"(values, row order, types). {scale.repeats} runs per side after a warm-up; medians.",
        "a hand-written `ASOF LEFT JOIN` of the same entity rows against the same history in a plain DuckDB file, "
        "`.to_arrow_table()` (DuckDB on the same two cores)",
        rows,
        {"seconds": seconds, "ingest_s": ingest_s, "export_s": export_s},
    )
    return result, entity, folder / "export"


def _scaling(ctx: Context, scale: SparkScale, spark: Any, entity: Any, folder: Path,
             known: tuple[int, float]) -> dict[str, Any]:
    points: dict[int, float] = {}
    for rows in scale.curve:
        if rows == known[0]:
            points[rows] = known[1]
            continue
        history = data.history(_scale(ctx, scale, rows), ctx.seed)
        part = folder / f"curve-{rows}"
        part.mkdir()
        _export(ctx, history, part)
        del history
        points[rows] = _spark_join(spark, entity, part / "export")[0]
        ctx.log(f"spark: {rows:,} history rows joined in {points[rows]:.1f} s")
        shutil.rmtree(part, ignore_errors=True)
    rows_out = [metric_row(f"{rows:,} history rows", "s", seconds, None) for rows, seconds in points.items()]
    sizes = sorted(points)
    for low, high in pairwise(sizes):
        rows_out.append(metric_row(f"growth {low:,} -> {high:,} rows (time ratio / size ratio)", "x",
                                   (points[high] / points[low]) / (high / low), None))
    return workload(
        "Scaling out: the Spark join as the history grows",
        f"the Spark join above (the same {scale.spine_rows:,} entity rows, {len(REFS)} features, local[2]) against "
        f"histories of {', '.join(f'{r:,}' for r in sizes)} rows of the same {scale.entities:,} keys, each exported "
        "from its own store; one run each (the size the training workload measured reuses its median).",
        "none: the curve's shape (growth per size step; 1.0 is linear in the history)",
        rows_out,
        {"seconds": {str(k): v for k, v in points.items()}},
    )


def _aggregations(ctx: Context, scale: SparkScale, spark: Any, folder: Path) -> dict[str, Any]:
    """The aggregation workloads' training set on Spark beside in process."""
    from featurelite import spark as fls

    events = data.events(ctx.scale, ctx.seed)
    spine = data.agg_spine(ctx.scale, ctx.seed)
    path = folder / "agg.duckdb"
    with fl.open(path) as store:
        store.apply(aggregations._definitions())
        store.ingest(aggregations.AGG_VIEW, events)
        store.export(folder / "agg-export")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        entity = spark.createDataFrame(spine).cache()
    entity.count()
    refs = aggregations.AGG_REFS

    def on_spark() -> tuple[float, pa.Table]:
        watch = stopwatch()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = fls.get_historical_features(spark, entity, refs, history=folder / "agg-export").toArrow()
        return watch(), table

    seconds: dict[str, list[float]] = {"spark": [], "featurelite": []}
    with fl.open(path, read_only=True) as store:
        expected = store.get_historical_features(spine, refs)
        _check_same(on_spark()[1], expected, "spark_aggregations: Spark's windowed aggregates differ from the store's")
        for _ in range(scale.repeats):
            watch = stopwatch()
            store.get_historical_features(spine, refs)
            seconds["featurelite"].append(watch())
            seconds["spark"].append(on_spark()[0])
    entity.unpersist()
    ctx.log("spark: aggregation runs (s): " + "; ".join(
        f"{side} " + ", ".join(f"{s:.2f}" for s in runs) for side, runs in seconds.items()))
    spark_s, fl_s = statistics.median(seconds["spark"]), statistics.median(seconds["featurelite"])
    return workload(
        f"Scaling out: windowed aggregations on Spark ({spine.num_rows:,} entity rows, {events.num_rows:,} events)",
        f"`featurelite.spark.get_historical_features` of {len(refs)} windowed aggregates "
        f"({', '.join(aggregations.NAMES)}) at {spine.num_rows:,} entity rows over {events.num_rows:,} events of "
        f"{ctx.scale.agg_entities:,} keys ({data.AGG_DAYS} days) on Spark local[2]: rows shuffled by (key, time "
        "bucket), featurelite's window engine in the Python workers (`mapInArrow`), collected with `toArrow()`. "
        "Beside it, alternating, in process (`store.get_historical_features`). Checked first: the same table. "
        f"{scale.repeats} runs per side after a warm-up; medians.",
        "in process: `store.get_historical_features` of the same rows (the same engine, one process)",
        [metric_row("Spark local[2] vs in process (median)", "s", spark_s, fl_s)],
        {"seconds": seconds},
    )


def _hot_key(ctx: Context, scale: SparkScale, spark: Any, entity: Any, folder: Path) -> dict[str, Any]:
    """The training-set join against a history with one hot key, unsplit and split."""
    from featurelite import spark as fls

    history = data.history(_scale(ctx, scale, scale.history_rows), ctx.seed)
    hot = int(history.num_rows * scale.hot_share)
    keys = history.column(data.KEY).to_numpy().copy()
    keys[:hot] = 0  # the rows are in random order: the first share of them, anywhere in time
    history = history.set_column(0, data.KEY, pa.array(keys))
    part = folder / "hot"
    part.mkdir()
    _export(ctx, history, part)
    del history

    def join(split: str | None) -> tuple[float, pa.Table]:
        watch = stopwatch()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = fls.get_historical_features(spark, entity, REFS, history=part / "export",
                                                split_keys_by=split).toArrow()
        return watch(), table

    _, whole = join(None)
    _, split = join(scale.split)
    _check(whole.equals(split), "spark_hot_key: the split join's table differs from the unsplit one's")
    del whole, split
    seconds: dict[str, list[float]] = {"unsplit": [], "split": []}
    for _ in range(scale.repeats):
        seconds["unsplit"].append(join(None)[0])
        seconds["split"].append(join(scale.split)[0])
    shutil.rmtree(part, ignore_errors=True)
    ctx.log("spark: hot-key runs (s): " + "; ".join(
        f"{side} " + ", ".join(f"{s:.2f}" for s in runs) for side, runs in seconds.items()))
    split_s, whole_s = statistics.median(seconds["split"]), statistics.median(seconds["unsplit"])
    return workload(
        f"Scaling out: a hot key ({scale.hot_share:.0%} of {scale.history_rows:,} history rows in one key)",
        f"the Spark join of the training workload ({scale.spine_rows:,} entity rows, {len(REFS)} features) against "
        f"a history of {scale.history_rows:,} rows in which key 0 holds {scale.hot_share:.0%}, with "
        f"`split_keys_by={scale.split!r}` (the rows of each key with more than 100,000 rows, the default "
        f"`hot_key_rows`, joined in {scale.split} time ranges, the winner of earlier ranges carried in) beside the "
        "default (each key's rows sorted by one task). Checked first: the same table. "
        f"{scale.repeats} runs per side after a warm-up each, alternating; medians. On two cores the split can only "
        "balance two tasks; what it bounds on a cluster is the longest task (see docs/scaling-out.md).",
        "the same join without `split_keys_by` (the hot key's rows sorted by one task)",
        [metric_row(f"split_keys_by={scale.split!r} vs unsplit (median)", "s", split_s, whole_s)],
        {"seconds": seconds},
    )


def feast_spark(ctx: Context, training: dict[str, Any] | None) -> dict[str, Any]:
    """``spark_feast``: the training set of ``spark_training`` on Feast 0.67's Spark offline
    store (its own venv and process, local[2], the same session settings), over the same
    export's Parquet; checked against the store's table (as a multiset: Feast returns
    the rows in another order); beside ``featurelite.spark``'s median of the same run."""
    import json
    import subprocess

    import pyarrow.parquet as pq

    from .config import REPO, WORK_DIR
    from .feast_setup import ensure_feast_venv

    scale = SCALES[ctx.scale.name]
    python = ensure_feast_venv(WORK_DIR, spark=True)
    folder = ctx.work / "feast-spark"
    folder.mkdir()
    history = data.history(_scale(ctx, scale, scale.history_rows), ctx.seed)
    spine = data.spine(_scale(ctx, scale, scale.history_rows), ctx.seed)
    path, _, _ = _export(ctx, history, folder)
    del history
    pq.write_table(spine, folder / "entity.parquet")
    with fl.open(path, read_only=True) as store:
        expected = store.get_historical_features(spine, REFS)
    done = subprocess.run(
        [str(python), str(REPO / "benchmarks" / "feast_spark_driver.py"), str(folder / "export" / "views" / "stats"),
         str(folder / "entity.parquet"), str(folder / "feast.parquet"), "--repeats", str(scale.repeats),
         "--driver-memory", scale.driver_memory, "--entity-mode", "spark", "--collect", "spark_arrow"],
        cwd=folder, capture_output=True, text=True, check=False, timeout=3600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"Feast's Spark offline store failed: {done.stderr[-3000:]}")
    report = json.loads(done.stdout)
    got = pq.read_table(folder / "feast.parquet")
    order = [(data.KEY, "ascending"), ("event_timestamp", "ascending"), ("label", "ascending"),
             *((f, "ascending") for f in data.FEATURES)]
    theirs = got.cast(pa.schema([(n, pa.timestamp("us") if n == "event_timestamp" else got.schema.field(n).type)
                                 for n in got.column_names])).sort_by(order)
    mine = expected.select(got.column_names).replace_schema_metadata(None).sort_by(order)
    _check(theirs.num_rows == mine.num_rows and all(
        theirs.column(n).to_pylist() == mine.column(n).to_pylist() for n in got.column_names),
        "spark_feast: Feast's Spark offline store gives another training set than the store")
    shutil.rmtree(folder, ignore_errors=True)
    runs = [r["seconds"] for r in report["runs"]]
    ctx.log("spark: Feast's Spark offline store runs (s): " + ", ".join(f"{s:.2f}" for s in runs))
    feast_s = statistics.median(runs)
    ours = None if training is None or "details" not in training else statistics.median(
        training["details"]["seconds"]["spark"])
    rows = [metric_row("featurelite.spark vs Feast's Spark offline store (median)", "s", ours, feast_s)
            if ours is not None else metric_row("Feast's Spark offline store (median)", "s", feast_s, None)]
    return {**workload(
        f"Scaling out: Feast's Spark offline store on the same data ({spine.num_rows:,} entity rows, "
        f"{scale.history_rows:,} history rows)",
        "`featurelite.spark.get_historical_features` (the median of `spark_training`, this run) beside Feast "
        f"{report['versions']['feast']}'s Spark offline store on Spark {report['versions']['spark']} local[2] "
        f"({scale.driver_memory} driver memory, the same session settings) in its own venv and process: a "
        "`SparkSource` over the same export's Parquet, the entity dataframe a cached Spark DataFrame, "
        "`get_historical_features(...).to_spark_df().toArrow()` (collected as featurelite's is). Checked first: "
        f"Feast's table holds the store's rows (compared sorted: Feast reorders them). {scale.repeats} runs after a "
        "warm-up; median.",
        "Feast's Spark offline store on the same data (`benchmarks/feast_spark_driver.py`)",
        rows,
        {"feast": report},
    ), "reported": REPORTED}


def run(ctx: Context) -> dict[str, dict[str, Any]]:
    """Both Spark workloads, on data generated for them (skipped without pyspark or Java)."""
    scale = SCALES[ctx.scale.name]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pyspark  # noqa: F401 - only checking it is installed
    except ImportError:
        reason = "pyspark is not installed (pip install 'featurelite[spark]')"
        return {name: skipped_workload(name, "", "", reason, [REPORTED]) for name in NAMES}
    folder = ctx.work / "spark"
    folder.mkdir()
    spark = _session(scale)
    try:
        training, entity, _ = _training(ctx, scale, spark, folder)
        known = (scale.history_rows, statistics.median(training["details"]["seconds"]["spark"]))
        scaling = _scaling(ctx, scale, spark, entity, folder, known)
        hot = _hot_key(ctx, scale, spark, entity, folder)
        entity.unpersist()
        windowed = _aggregations(ctx, scale, spark, folder)
    finally:
        spark.stop()
        shutil.rmtree(folder, ignore_errors=True)
    found = {"spark_training": training, "spark_scaling": scaling, "spark_aggregations": windowed,
             "spark_hot_key": hot}
    return {name: {**result, "reported": REPORTED} for name, result in found.items()}
