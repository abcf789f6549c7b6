"""featurelite.spark (issue 16, first part): the store exported (``Store.export`` /
``featurelite export``) and joined on Spark in local mode gives the table
``store.get_historical_features`` gives, bit for bit: a Hypothesis property over small
random histories (ties on key and event time, late rows, ttl, created times, nulls, NaN,
-0.0, float32, several views, on-demand featurizers over stored features and request
fields, run inside Spark), and the errors of bad input.

One Spark session (local[2]) for the module; small data, few examples: Spark answers a
job in about a second."""

from __future__ import annotations

import json
import math
import os
import struct
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import featurelite as fl
from featurelite import demo
from featurelite.cli import main

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pyspark warns about pandas 3 on import
    from pyspark.sql import SparkSession

    from featurelite import spark as fls

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        session = (SparkSession.builder.master("local[2]").appName("featurelite-tests")
                   .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false")
                   .config("spark.sql.shuffle.partitions", "2").config("spark.default.parallelism", "2")
                   .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def frame(spark: SparkSession, table: pa.Table) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return spark.createDataFrame(table)


def collect(df: Any) -> pa.Table:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return df.toArrow()


def bits(value: Any, kind: pa.DataType) -> Any:
    """A value as what must be equal: a float's bit pattern (NaN payloads, -0.0), else the value."""
    if value is None:
        return None
    if pa.types.is_float64(kind):
        return struct.pack("<d", value)
    if pa.types.is_float32(kind):
        return struct.pack("<f", value)
    return value


def assert_same_bits(got: pa.Table, expected: pa.Table) -> None:
    expected = expected.replace_schema_metadata(None)
    assert got.column_names == expected.column_names
    assert got.schema.equals(expected.schema), (got.schema, expected.schema)
    for name in expected.column_names:
        kind = expected.schema.field(name).type
        mine = [bits(v, kind) for v in got.column(name).to_pylist()]
        theirs = [bits(v, kind) for v in expected.column(name).to_pylist()]
        assert mine == theirs, name


# -- the property ------------------------------------------------------------------------


user = fl.Entity("user", join_keys=["user_id"])
shop = fl.Entity("shop", join_keys=["shop_id"], dtype="int32")
STATS = fl.FeatureView(
    "stats", entities=[user], timestamp_field="ts", created_timestamp_field="created", ttl="3h",
    schema={"amount": "float64", "small": "float32", "count": "int64", "flag": "bool", "name": "string",
            "seen": "timestamp"},
)
RATINGS = fl.FeatureView("ratings", entities=[user, shop], timestamp_field="ts", schema={"rating": "float64",
                                                                                          "votes": "int32"})


@fl.featurizer
def scaled(amount: float, factor: float = 2.0) -> float:
    """An on-demand featurizer over a stored feature and a request field (a default when
    the request gives none)."""
    return amount * factor


@fl.featurizer
def spread(rating: float, votes: int, count: int = 0) -> tuple[float, int]:
    return rating - votes, votes + count


DERIVED = fl.OnDemandFeatureView(
    "derived", sources=[STATS, RATINGS, fl.RequestSource("req", schema={"factor": "float64"})],
    featurizers={"scaled": scaled, ("gap", "total"): spread},
)
FEATURES = ["stats:amount", "stats:small", "stats:count", "stats:flag", "stats:name", "stats:seen",
            "ratings:rating", "ratings:votes", "derived:scaled", "derived:total", "derived:gap"]

floats = st.sampled_from([0.0, -0.0, 1.5, -2.25, math.inf, -math.inf, math.nan, 1e300, 5e-324, None])
hours = st.integers(0, 12)


@st.composite
def stats_batches(draw: st.DrawFn) -> list[pa.Table]:
    """One to three ingests of the stats view: repeated (user, hour) pairs make ties, later
    batches with earlier hours are late rows; created times sometimes missing."""
    batches = []
    for _ in range(draw(st.integers(1, 3))):
        n = draw(st.integers(1, 8))
        users = draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))
        at = draw(st.lists(hours, min_size=n, max_size=n))
        created = draw(st.lists(st.one_of(st.none(), hours), min_size=n, max_size=n))
        amounts = draw(st.lists(floats, min_size=n, max_size=n))
        batches.append(pa.table({
            "user_id": pa.array(users, pa.int64()),
            "amount": pa.array(amounts, pa.float64()),
            "small": pa.array([None if a is None else a for a in amounts], pa.float32()),
            "count": pa.array(draw(st.lists(st.one_of(st.none(), st.integers(-5, 5)), min_size=n, max_size=n)),
                              pa.int64()),
            "flag": pa.array(draw(st.lists(st.one_of(st.none(), st.booleans()), min_size=n, max_size=n))),
            "name": pa.array(draw(st.lists(st.one_of(st.none(), st.text(max_size=3)), min_size=n, max_size=n)),
                             pa.string()),
            "seen": pa.array([T0 + timedelta(minutes=m) for m in range(n)], pa.timestamp("us", tz="UTC")),
            "ts": pa.array([T0 + timedelta(hours=h) for h in at], pa.timestamp("us", tz="UTC")),
            "created": pa.array([None if c is None else T0 + timedelta(hours=c) for c in created],
                                pa.timestamp("us", tz="UTC")),
        }))
    return batches


@st.composite
def ratings_batch(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(0, 6))
    return pa.table({
        "user_id": pa.array(draw(st.lists(st.integers(1, 4), min_size=n, max_size=n)), pa.int64()),
        "shop_id": pa.array(draw(st.lists(st.integers(1, 2), min_size=n, max_size=n)), pa.int32()),
        "rating": pa.array(draw(st.lists(floats, min_size=n, max_size=n)), pa.float64()),
        "votes": pa.array(draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n)), pa.int32()),
        "ts": pa.array([T0 + timedelta(hours=draw(hours)) for _ in range(n)], pa.timestamp("us", tz="UTC")),
    })


@st.composite
def spines(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(1, 10))
    return pa.table({
        "user_id": pa.array(draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)), pa.int64()),
        "shop_id": pa.array(draw(st.lists(st.integers(1, 3), min_size=n, max_size=n)), pa.int32()),
        "event_timestamp": pa.array([T0 + timedelta(hours=draw(hours), minutes=draw(st.sampled_from([0, 30])))
                                     for _ in range(n)], pa.timestamp("us", tz="UTC")),
        "label": pa.array(range(n), pa.int64()),
        "factor": pa.array(draw(st.lists(floats, min_size=n, max_size=n)), pa.float64()),
    })


# No shrinking phase: each example is a Spark job (seconds), and shrinking one failure took
# over five minutes; a failure prints the example as generated.
@settings(max_examples=10, deadline=None, phases=[Phase.explicit, Phase.generate], suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(batches=stats_batches(), ratings=ratings_batch(), spine=spines(), full=st.booleans())
def test_a_training_set_on_spark_equals_the_store_bit_for_bit(spark, tmp_path_factory, batches, ratings, spine,
                                                              full):
    folder = tmp_path_factory.mktemp("equal")
    with fl.open(folder / "s.duckdb") as store:
        store.apply([user, shop, STATS, RATINGS, DERIVED])
        for batch in batches:
            store.ingest("stats", batch)
        if ratings.num_rows:
            store.ingest("ratings", ratings)
        expected = store.get_historical_features(spine, FEATURES, full_feature_names=full)
        store.export(folder / "export")
    got = collect(fls.get_historical_features(spark, frame(spark, spine), FEATURES, history=folder / "export",
                                              full_feature_names=full))
    assert_same_bits(got, expected)


# -- the demo, the CLI, services, DataFrames as history ------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("demo")
    checkout = fl.FeatureService("checkout", ["user_stats:spend_7d", "user_stats:country", "user_stats:spend_per_order",
                                              "shares:basket_share"])
    with fl.open(folder / "shop.duckdb") as store:
        store.apply([*demo.definitions(), checkout])
        store.ingest("user_stats", demo.example_events(users=40, events=400, end=T0 + timedelta(days=30)))
        spine = demo.example_spine(users=40, rows=120, end=T0 + timedelta(days=30))
        expected = store.get_historical_features(spine, service="checkout")
    result = CliRunner().invoke(main, ["export", str(folder / "shop.duckdb"), str(folder / "export")])
    assert result.exit_code == 0, result.output
    return {"folder": folder, "spine": spine, "expected": expected, "cli": json.loads(result.output)}


def test_the_demo_store_exported_by_the_cli_joins_the_same_on_spark(spark, exported):
    folder = exported["folder"]
    assert exported["cli"]["rows"] == {"user_stats": 400}
    registry = json.loads((folder / "export" / "registry.json").read_text())
    assert registry["format"] == "featurelite-export" and registry["format_version"] == 1
    days = sorted(p.name for p in (folder / "export" / "views" / "user_stats").iterdir())
    assert days and all(d.startswith("fl_event_date=") for d in days)
    got = collect(fls.get_historical_features(spark, frame(spark, exported["spine"]), service="checkout",
                                              history=folder / "export"))
    assert_same_bits(got, exported["expected"])
    # The registry may come from the store file itself, and the history from DataFrames.
    history = {"user_stats": spark.read.parquet(str(folder / "export" / "views" / "user_stats"))}
    again = collect(fls.get_historical_features(spark, frame(spark, exported["spine"]), service="checkout",
                                                history=history, registry=folder / "shop.duckdb"))
    assert_same_bits(again, exported["expected"])


def test_an_export_into_an_existing_path_is_refused_and_writes_nothing(tmp_path):
    with fl.open(tmp_path / "s.duckdb") as store:
        store.apply(demo.definitions())
        (tmp_path / "taken").mkdir()
        with pytest.raises(fl.InputError, match="exists; export into a new directory"):
            store.export(tmp_path / "taken")
        with pytest.raises(fl.InputError, match="is not a directory"):
            store.export(tmp_path / "missing" / "export")
        empty = store.export(tmp_path / "empty")
    assert empty.rows == {"user_stats": 0} and not list((tmp_path / "taken").iterdir())
    assert not (tmp_path / "empty.partial").exists()


def test_bad_input_gets_featurelite_errors_that_name_the_fix(spark, exported, tmp_path):
    folder, spine = exported["folder"], exported["spine"]
    entity = frame(spark, spine)
    export = folder / "export"

    def join(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("history", export)
        return fls.get_historical_features(spark, *args, **kwargs)

    with pytest.raises(fl.UnknownFeatureViewError, match=r"'ghost' .* not in the registry"):
        join(entity, ["ghost:x"])
    with pytest.raises(fl.UnknownFeatureError, match="no feature 'nope'"):
        join(entity, ["user_stats:nope"])
    with pytest.raises(fl.InputError, match="windowed aggregate"):
        join(entity, ["user_stats:spend_7d_max_30d"])
    with pytest.raises(fl.SchemaError, match="no column 'basket', a request field of on-demand view 'shares'"):
        join(entity.drop("basket"), ["shares:basket_share"])
    with pytest.raises(fl.UnknownFeatureError, match="on-demand view 'shares' has no feature 'nope'"):
        join(entity, ["shares:nope"])
    with pytest.raises(fl.InputError, match="registry="):
        join(entity, ["user_stats:spend_7d"], history={"user_stats": entity})
    with pytest.raises(fl.SchemaError, match="the join key of view 'user_stats'"):
        join(entity.drop("user_id"), ["user_stats:spend_7d"])
    with pytest.raises(fl.SchemaError, match="already has a column 'spend_7d'"):
        join(entity.withColumnRenamed("label", "spend_7d"), ["user_stats:spend_7d"])
    table = spark.read.parquet(str(export / "views" / "user_stats"))
    with pytest.raises(fl.SchemaError, match="no column '_fl_seq'"):
        join(entity, ["user_stats:spend_7d"], history={"user_stats": table.drop("_fl_seq")},
             registry=folder / "shop.duckdb")
    with pytest.raises(fl.SchemaError, match="'spend_7d' is string, not double"):
        join(entity, ["user_stats:spend_7d"], history={"user_stats": table.withColumn("spend_7d",
                                                                                      table.spend_7d.cast("string"))},
             registry=folder / "shop.duckdb")
    # An export of another format version, and a session not in UTC.
    other = tmp_path / "other"
    other.mkdir()
    registry = json.loads((export / "registry.json").read_text())
    (other / "registry.json").write_text(json.dumps({**registry, "format_version": 99}))
    with pytest.raises(fl.InputError, match=r"format version 99.*export the store again"):
        join(entity, ["user_stats:spend_7d"], history=other)
    spark.conf.set("spark.sql.session.timeZone", "Europe/Paris")
    try:
        with pytest.raises(fl.InputError, match="time zone to be UTC"):
            join(entity, ["user_stats:spend_7d"])
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")


def test_the_export_files_hold_keys_features_times_and_ingest_order(exported):
    export = exported["folder"] / "export" / "views" / "user_stats"
    first = next(export.rglob("*.parquet"))
    schema = pq.read_schema(first)
    assert schema.names == ["user_id", "spend_7d", "orders_7d", "country", "spend_per_order", "ts", "_fl_seq"]
    assert schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert os.path.basename(first.parent).startswith("fl_event_date=")
    assert Path(first).stat().st_size > 0


# -- materializing from Spark ----------------------------------------------------------------


def test_a_spark_job_writes_to_a_running_server_and_to_a_store_file(spark, tmp_path):
    """featurelite.spark.write: each partition pushed from its executor as Arrow batches to
    `featurelite serve` (the server's reads see every row), or collected and ingested into a
    store file; what lands equals the DataFrame's rows."""
    from test_server import serving

    rows = pa.table({
        "user_id": pa.array(range(50), pa.int64()),
        "version": pa.array([k * 3 for k in range(50)], pa.int64()),
        "batch": pa.array([7] * 50, pa.int64()),
        "ts": pa.array([T0] * 50, pa.timestamp("us", tz="UTC")),
    })
    df = frame(spark, rows).repartition(3)
    with serving(tmp_path) as server:
        assert fls.write(df, server.url, "stats", batch_rows=8) == 50
        with fl.connect(server.url) as remote:
            read = remote.get_online_features([{"user_id": k} for k in range(50)], ["stats:version", "twice:doubled"])
        assert read.to_dict()["version"] == [k * 3 for k in range(50)]
        assert read.to_dict()["doubled"] == [k * 6 for k in range(50)]
        with pytest.raises(fl.UnknownFeatureViewError, match="ghost"):
            fls.write(df, server.url, "ghost")
    assert fls.write(df, server.path, "stats") == 50  # the server stopped: into the file itself
    with fl.open(server.path, read_only=True) as store:
        assert store.describe("stats")["history_rows"] == 100
    with pytest.raises(fl.InputError, match="batch_rows"):
        fls.write(df, server.path, "stats", batch_rows=0)
