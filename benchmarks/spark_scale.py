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

from . import data
from .measure import stopwatch
from .model import metric_row, skipped_workload, workload
from .workloads import Context, _check

__all__ = ["NAMES", "SCALES", "SparkScale", "run"]

NAMES = ["spark_training", "spark_scaling"]
#: Issue 16 asks for these times beside each other, not for a threshold.
REPORTED = "reported, no target: issue 16 asks for the times beside in-process and DuckDB's, and the curve"
REFS = [f"stats:{f}" for f in data.FEATURES]


@dataclass(frozen=True)
class SparkScale:
    entities: int
    history_rows: int
    spine_rows: int
    curve: tuple[int, ...]
    repeats: int
    driver_memory: str


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
        _, got = _spark_join(spark, entity, folder / "export")
        # Spark reads the entity dataframe's naive times as UTC instants: the same microseconds.
        at = got.schema.get_field_index("event_timestamp")
        got = got.set_column(at, "event_timestamp", got.column(at).cast(pa.timestamp("us")))
        _check(got.equals(expected.replace_schema_metadata(None)),
               "spark_training: Spark's training set differs from the store's")
        del got
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
    finally:
        spark.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return {"spark_training": {**training, "reported": REPORTED}, "spark_scaling": {**scaling, "reported": REPORTED}}
