"""Feast 0.67.0's Spark offline store computing a training set on a local SparkSession,
timed: the peer of ``featurelite.spark`` in the ``spark_feast`` benchmark workload. Runs in
a venv with ``feast[spark]==0.67.0`` (never featurelite's: ``feast_setup``, ``spark=True``).

    <venv>/bin/python feast_spark_driver.py HISTORY ENTITY.parquet OUT.parquet \
        [--work DIR] [--features f0,...,f9] [--repeats 2] [--driver-memory 1g] \
        [--entity-mode pandas|spark] [--collect to_arrow|spark_arrow] [--date-partition-column COL]

HISTORY: a Parquet file or directory (user_id int64, f0..f9 float64, ts timestamp; a hive
partitioned directory such as a featurelite export's ``views/VIEW`` works too).
ENTITY.parquet: user_id, event_timestamp (naive UTC), label.
Writes OUT.parquet (the last timed result) and OUT.parquet.json (timings); prints the same
JSON on stdout. Everything Feast/Spark prints goes to stderr.
"""

from __future__ import annotations

import os
import sys

# benchmarks/ has modules (config, data, ...) that must not shadow Feast's imports.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

# Before pandas/pyspark/Feast are imported: naive times are UTC everywhere (Python side too:
# pyspark converts TimestampType values with the process's local zone in some paths).
os.environ["TZ"] = "UTC"
os.environ.setdefault("FEAST_USAGE", "False")
os.environ.setdefault("TQDM_DISABLE", "1")

import argparse
import contextlib
import gc
import json
import platform
import shutil
import statistics
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

if hasattr(time, "tzset"):
    time.tzset()

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

PROJECT = "featurelite_bench_spark"
ENTITY = "user"
KEY = "user_id"
VIEW = "user_stats"
TS = "ts"
EVENT_TS = "event_timestamp"


def spark_conf(driver_memory: str) -> dict[str, str]:
    """The session featurelite's Spark path uses (benchmarks/spark_scale.py::_session), plus
    what Feast's spark template sets. Feast reuses an *active* session and then ignores
    ``spark_conf``; it is in the RepoConfig too so that a session Feast starts is the same."""
    return {
        "spark.master": "local[2]",
        "spark.app.name": "feast-spark-benchmark",
        "spark.ui.enabled": "false",
        "spark.eventLog.enabled": "false",
        "spark.driver.memory": driver_memory,
        "spark.driver.host": "127.0.0.1",          # as Feast's own Spark tests: no DNS lookups
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "8",
        "spark.sql.execution.arrow.pyspark.enabled": "true",            # createDataFrame(pandas) / toPandas
        "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",  # fail instead of the slow row path
        "spark.sql.execution.arrow.maxRecordsPerBatch": "100000",
        "spark.sql.parser.quotedRegexColumnNames": "true",              # Feast sets it anyway
        # No "spark.sql.catalogImplementation: hive" (Feast's template has it): it would start a
        # Derby metastore (metastore_db/ in the cwd) that temp views do not need.
    }


def start_spark(conf: dict[str, str]) -> Any:
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.config(conf=SparkConf().setAll(list(conf.items()))).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def repo_config(work: Path, conf: dict[str, str]) -> Any:
    from feast.repo_config import RepoConfig

    return RepoConfig(
        project=PROJECT,
        registry=str(work / "registry.db"),
        provider="local",
        offline_store={"type": "spark", "spark_conf": conf},
        online_store={"type": "sqlite", "path": str(work / "online.db")},
        entity_key_serialization_version=3,
        auth={"type": "no_auth"},
    )


def definitions(history: Path, features: list[str], date_partition_column: str | None) -> list[Any]:
    from feast import Entity, FeatureView, Field
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
    from feast.types import Float64
    from feast.value_type import ValueType

    user = Entity(name=ENTITY, join_keys=[KEY], value_type=ValueType.INT64)  # value_type: no schema inference
    source = SparkSource(
        name="user_stats_source",
        path=str(history),                  # a file or a directory; read with spark.read.format(...).load(path)
        file_format="parquet",
        timestamp_field=TS,
        date_partition_column=date_partition_column,  # e.g. "fl_event_date" for a featurelite export
        date_partition_column_format="%Y-%m-%d",
    )
    view = FeatureView(
        name=VIEW,
        entities=[user],
        ttl=timedelta(0),  # 0: no lower bound on the feature rows' age
        schema=[Field(name=f, dtype=Float64) for f in features],
        online=False,      # no materialization here: nothing for the online store to create
        source=source,
    )
    return [user, source, view]


def drop_feast_temp_views(spark: Any) -> None:
    """Each get_historical_features registers ``feast_entity_df_<uuid>`` views (the entity
    dataframe, and the source's file read) and never drops them; drop them between runs."""
    for table in spark.catalog.listTables():
        if table.isTemporary and table.name.startswith("feast_entity_df_"):
            spark.catalog.dropTempView(table.name)


@contextlib.contextmanager
def stdout_to_stderr() -> Any:
    """fd 1 -> stderr for the duration (Feast prints); yields a file on the real stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    real = os.fdopen(saved, "w", closefd=True)
    try:
        yield real
    finally:
        sys.stdout.flush()
        real.flush()
        os.dup2(saved, 1)
        real.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("history")
    parser.add_argument("entity")
    parser.add_argument("out")
    parser.add_argument("--work", default=None, help="Feast repo folder (default: OUT's folder / feast-spark-repo)")
    parser.add_argument("--features", default=None, help="comma separated (default: every f* column)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--driver-memory", default="1g")
    parser.add_argument("--entity-mode", choices=("pandas", "spark"), default="pandas",
                        help="pandas: the documented API (as benchmarks/feast_driver.py); "
                             "spark: a cached Spark DataFrame (as benchmarks/spark_scale.py)")
    parser.add_argument("--collect", choices=("to_arrow", "spark_arrow"), default="to_arrow",
                        help="to_arrow: Feast's RetrievalJob.to_arrow (Spark -> pandas -> Arrow); "
                             "spark_arrow: job.to_spark_df().toArrow() (what featurelite's Spark path does)")
    parser.add_argument("--date-partition-column", default=None)
    args = parser.parse_args(argv[1:])

    history = Path(args.history).resolve()
    out = Path(args.out).resolve()
    work = Path(args.work).resolve() if args.work else out.parent / "feast-spark-repo"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    names = ds.dataset(str(history), format="parquet", partitioning="hive").schema.names
    numbered = [n for n in names if n.startswith("f") and n[1:].isdigit()]
    features = args.features.split(",") if args.features else numbered
    refs = [f"{VIEW}:{f}" for f in features]

    with stdout_to_stderr() as real_stdout:
        warnings.filterwarnings("ignore", message=r".*experimental feature in alpha development.*")
        report: dict[str, Any] = {"history": str(history), "entity": args.entity, "features": len(features),
                                  "entity_mode": args.entity_mode, "collect": args.collect}
        total = time.perf_counter()

        watch = time.perf_counter()
        conf = spark_conf(args.driver_memory)
        spark = start_spark(conf)          # before Feast: Feast picks up the active session
        report["spark_start_s"] = time.perf_counter() - watch

        import feast
        import pandas as pd
        import pyspark
        from feast import FeatureStore

        watch = time.perf_counter()
        store = FeatureStore(repo_path=str(work), config=repo_config(work, conf))
        store.apply(definitions(history, features, args.date_partition_column))
        report["apply_s"] = time.perf_counter() - watch

        entity_table = pq.read_table(args.entity)
        if args.entity_mode == "pandas":
            entity: Any = entity_table.to_pandas()   # naive datetime64; Feast makes it UTC-aware (a copy)
            # pyarrow>=13 keeps timestamp[us] as datetime64[us]; nanoseconds are the unit every
            # pandas->Spark path accepts (Feast's own tests use ns).
            entity[EVENT_TS] = entity[EVENT_TS].astype("datetime64[ns]")
        else:
            entity = spark.createDataFrame(entity_table).cache()
            entity.count()

        def once() -> tuple[float, float, pa.Table]:
            start = time.perf_counter()
            job = store.get_historical_features(entity_df=entity, features=refs)
            planned = time.perf_counter()
            table = job.to_arrow() if args.collect == "to_arrow" else job.to_spark_df().toArrow()
            return planned - start, time.perf_counter() - planned, table

        watch = time.perf_counter()
        _, _, warm = once()                   # warm-up: the full training set, untimed in the runs
        report["warmup_s"] = time.perf_counter() - watch
        report["warmup_rows"] = warm.num_rows
        del warm

        runs: list[dict[str, float]] = []
        result: pa.Table | None = None
        for _ in range(max(1, args.repeats)):
            result = None
            drop_feast_temp_views(spark)
            gc.collect()
            plan_s, collect_s, result = once()
            runs.append({"seconds": plan_s + collect_s, "get_historical_features_s": plan_s, "collect_s": collect_s})
        assert result is not None

        keep = [c for c in (KEY, EVENT_TS, "label", *features) if c in result.column_names]
        pq.write_table(result.select(keep).replace_schema_metadata(None), out)
        seconds = statistics.median(r["seconds"] for r in runs)
        report.update({
            "seconds": seconds, "runs": runs, "spine_rows": entity_table.num_rows, "rows": result.num_rows,
            "rows_without_match": result.column(features[0]).null_count,
            "rows_per_s": entity_table.num_rows / seconds,
            "schema": {f.name: str(f.type) for f in result.schema},
            "path": str(out), "total_s": time.perf_counter() - total,
            "versions": {"feast": feast.__version__, "pyspark": pyspark.__version__, "spark": spark.version,
                         "pandas": pd.__version__, "pyarrow": pa.__version__, "python": platform.python_version(),
                         "java": spark.sparkContext._jvm.System.getProperty("java.version")},
        })
        spark.stop()
        text = json.dumps(report, indent=2)
        Path(str(out) + ".json").write_text(text)
        print(text, file=real_stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
