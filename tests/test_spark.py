"""featurelite.spark (issue 16): the store exported (``Store.export`` / ``featurelite
export``) and joined on Spark in local mode gives the table ``store.get_historical_features``
gives, bit for bit: a Hypothesis property over small random histories (ties on key and event
time, late rows, ttl, created times, nulls, NaN, -0.0, float32, several views, windowed
aggregations of every function with their exact sums across Spark's time buckets, on-demand
featurizers over stored features, aggregates and request fields, run inside Spark); services
and references pinned at older versions; and the errors of bad input.

One Spark session (local[2]) for the module; small data, few examples: Spark answers a
job in about a second."""

from __future__ import annotations

import json
import math
import os
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from spark_helpers import assert_same_bits, collect, frame

import featurelite as fl
from featurelite import demo
from featurelite.cli import main

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pyspark warns about pandas 3 on import

    from featurelite import spark as fls

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


# -- the property ------------------------------------------------------------------------


user = fl.Entity("user", join_keys=["user_id"])
shop = fl.Entity("shop", join_keys=["shop_id"], dtype="int32")
#: Every window function over each kind of column; windows of 90 minutes and 3 hours make
#: Spark's time buckets 12 hours wide, so events late in the morning are copied into the
#: afternoon's bucket (the property's hours straddle that edge).
WINDOWED = [
    *(fl.Aggregation("amount", f, "3h") for f in ("sum", "mean", "std", "var", "min", "max", "last", "count")),
    fl.Aggregation("amount", "sum", "90m", name="amount_sum_short"),
    fl.Aggregation("small", "sum", "3h"), fl.Aggregation("small", "max", "90m"),
    fl.Aggregation("count", "sum", "3h"), fl.Aggregation("count", "mean", "90m"),
    fl.Aggregation("name", "last", "3h"), fl.Aggregation("name", "count", "90m"),
    fl.Aggregation("seen", "last", "3h"),
]
STATS = fl.FeatureView(
    "stats", entities=[user], timestamp_field="ts", created_timestamp_field="created", ttl="3h",
    schema={"amount": "float64", "small": "float32", "count": "int64", "flag": "bool", "name": "string",
            "seen": "timestamp"}, aggregations=WINDOWED,
)
RATINGS = fl.FeatureView("ratings", entities=[user, shop], timestamp_field="ts", schema={"rating": "float64",
                                                                                          "votes": "int32"},
                         aggregations=[fl.Aggregation("votes", "sum", "3h")])


@fl.featurizer
def scaled(amount: float, factor: float = 2.0) -> float:
    """An on-demand featurizer over a stored feature and a request field (a default when
    the request gives none)."""
    return amount * factor


@fl.featurizer
def spread(rating: float, votes: int, count: int = 0) -> tuple[float, int]:
    return rating - votes, votes + count


@fl.featurizer
def share(amount: float, amount_sum_3h: float) -> float:
    """An on-demand featurizer over a stored feature and a windowed aggregate."""
    return amount / amount_sum_3h


DERIVED = fl.OnDemandFeatureView(
    "derived", sources=[STATS, RATINGS, fl.RequestSource("req", schema={"factor": "float64"})],
    featurizers={"scaled": scaled, ("gap", "total"): spread, "share": share},
)
FEATURES = ["stats:amount", "stats:small", "stats:count", "stats:flag", "stats:name", "stats:seen",
            "ratings:rating", "ratings:votes", "derived:scaled", "derived:total", "derived:gap", "derived:share",
            *(f"stats:{a.name}" for a in WINDOWED), "ratings:votes_sum_3h"]

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
@given(batches=stats_batches(), ratings=ratings_batch(), spine=spines(), full=st.booleans(),
       split=st.sampled_from([None, "2h", "5h"]), hot=st.sampled_from([0, 2]),
       arrow_batch=st.sampled_from([10_000, 3]))
def test_a_training_set_on_spark_equals_the_store_bit_for_bit(spark, tmp_path_factory, batches, ratings, spine,
                                                              full, split, hot, arrow_batch):
    """``split``: the point-in-time joins cut the rows of each key with more than ``hot``
    rows into time ranges (hot keys; with 2, some keys are split and some not);
    ``arrow_batch``: Arrow batches of 3 rows make the windowed aggregates' groups span
    batches in the Python workers."""
    folder = tmp_path_factory.mktemp("equal")
    with fl.open(folder / "s.duckdb") as store:
        store.apply([user, shop, STATS, RATINGS, DERIVED])
        for batch in batches:
            store.ingest("stats", batch)
        if ratings.num_rows:
            store.ingest("ratings", ratings)
        expected = store.get_historical_features(spine, FEATURES, full_feature_names=full)
        store.export(folder / "export")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(arrow_batch))
    try:
        got = collect(fls.get_historical_features(spark, frame(spark, spine), FEATURES, history=folder / "export",
                                                  full_feature_names=full, split_keys_by=split,
                                                  hot_key_rows=hot))
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    assert_same_bits(got, expected)


# -- services and pinned versions ------------------------------------------------------------


def test_services_and_references_pinned_at_older_versions_read_those_versions_on_spark(spark, tmp_path):
    """A service applied before its view changed keeps reading the view as it was (its ttl,
    its aggregations), on Spark as in process; so does a ``view@version:feature`` reference;
    the references without a version read the version in force."""
    price = fl.Entity("item", join_keys=["item_id"])
    old = fl.FeatureView("prices", entities=[price], timestamp_field="ts", ttl="1h", schema={"price": "float64"},
                         aggregations=[fl.Aggregation("price", "sum", "2h", name="recent")])
    new = fl.FeatureView("prices", entities=[price], timestamp_field="ts", ttl="5h", schema={"price": "float64"},
                         aggregations=[fl.Aggregation("price", "sum", "30m", name="recent")])
    pinned = fl.FeatureService("pricing", ["prices:price", "prices:recent"])
    history = pa.table({
        "item_id": pa.array([1, 1, 1, 2, 2], pa.int64()),
        "price": [0.1, 0.2, 0.3, 1e16, 1.0],
        "ts": pa.array([T0 + timedelta(hours=h) for h in (0, 1, 3, 0, 0)], pa.timestamp("us", tz="UTC")),
    })
    spine = pa.table({
        "item_id": pa.array([1, 1, 2, 2, 3], pa.int64()),
        "event_timestamp": pa.array([T0 + timedelta(hours=h) for h in (1.5, 4.5, 0.25, 3, 1)],
                                    pa.timestamp("us", tz="UTC")),
    })
    with fl.open(tmp_path / "s.duckdb") as store:
        store.apply([price, old, pinned])
        store.ingest("prices", history)
        first = store.get_feature_view("prices").version
        store.apply([new])
        assert store.get_feature_view("prices").version != first
        asked = {
            "service": {"service": "pricing"},
            "pinned": {"features": [f"prices@{first[:8]}:price", f"prices@{first[:8]}:recent"]},
            "current": {"features": ["prices:price", "prices:recent"]},
        }
        expected = {name: store.get_historical_features(spine, **kwargs) for name, kwargs in asked.items()}
        store.export(tmp_path / "export")
    assert expected["service"].column("price").to_pylist() != expected["current"].column("price").to_pylist()
    assert expected["service"].column("recent").to_pylist() != expected["current"].column("recent").to_pylist()
    for name, kwargs in asked.items():
        got = collect(fls.get_historical_features(spark, frame(spark, spine), history=tmp_path / "export", **kwargs))
        assert_same_bits(got, expected[name])
        # The store file answers for the registry as the export does.
        again = collect(fls.get_historical_features(spark, frame(spark, spine), history=tmp_path / "export",
                                                    registry=tmp_path / "s.duckdb", **kwargs))
        assert_same_bits(again, expected[name])


def test_a_manifest_rebuilds_its_training_set_on_spark_from_the_rows_it_saw(spark, tmp_path):
    """``as_of=manifest``: the features at the manifest's versions, from the rows ingested
    up to its position only (a late event and a changed ttl since are left out), equal to
    the store's own rebuild and to the original table; and the manifest's mistakes."""
    item = fl.Entity("item", join_keys=["item_id"])
    first = fl.FeatureView("prices", entities=[item], timestamp_field="ts", ttl="2h", schema={"price": "float64"},
                           aggregations=[fl.Aggregation("price", "mean", "3h", name="recent")])
    changed = fl.FeatureView("prices", entities=[item], timestamp_field="ts", ttl="9h", schema={"price": "float64"},
                             aggregations=[fl.Aggregation("price", "mean", "3h", name="recent")])

    def rows(item_ids: list[int], prices: list[float], hours: list[float]) -> pa.Table:
        return pa.table({"item_id": pa.array(item_ids, pa.int64()), "price": prices,
                         "ts": pa.array([T0 + timedelta(hours=h) for h in hours], pa.timestamp("us", tz="UTC"))})

    spine = pa.table({"item_id": pa.array([1, 1, 2], pa.int64()),
                      "event_timestamp": pa.array([T0 + timedelta(hours=h) for h in (2, 5, 4)],
                                                  pa.timestamp("us", tz="UTC"))})
    with fl.open(tmp_path / "s.duckdb") as store:
        store.apply([item, first])
        store.ingest("prices", rows([1, 1, 2], [1.0, 2.0, 3.0], [0, 1, 1]))
        original = store.get_historical_features(spine, ["prices:price", "prices:recent"])
        manifest = fl.Manifest.from_table(original)
        store.ingest("prices", rows([1, 2], [10.0, 30.0], [1.5, 3.5]))  # late rows, after the manifest
        store.apply([changed])
        rebuilt = store.get_historical_features(spine, as_of=manifest)
        now = store.get_historical_features(spine, ["prices:price", "prices:recent"])
        store.export(tmp_path / "export")
    assert now.column("price").to_pylist() != original.column("price").to_pylist()
    got = collect(fls.get_historical_features(spark, frame(spark, spine), history=tmp_path / "export",
                                              as_of=manifest))
    assert_same_bits(got, rebuilt)
    assert got.column("price").to_pylist() == original.column("price").to_pylist()
    assert got.column("recent").to_pylist() == original.column("recent").to_pylist()

    entity = frame(spark, spine)
    with pytest.raises(fl.InputError, match="pass as_of= alone"):
        fls.get_historical_features(spark, entity, ["prices:price"], history=tmp_path / "export", as_of=manifest)
    with pytest.raises(fl.ManifestError, match=r"must be a featurelite\.Manifest"):
        fls.get_historical_features(spark, entity, history=tmp_path / "export", as_of={"pins": {}})
    with fl.open(tmp_path / "other.duckdb") as other:
        other.apply([item, first])
        other.export(tmp_path / "other-export")
    with pytest.raises(fl.ManifestError, match="from another store"):
        fls.get_historical_features(spark, entity, history=tmp_path / "other-export", as_of=manifest)
    with fl.open(tmp_path / "s.duckdb") as store:
        store.ingest("prices", rows([3], [1.0], [0]))
        ahead = fl.Manifest.from_table(store.get_historical_features(spine, ["prices:price"]))
    with pytest.raises(fl.ManifestError, match="export the store again"):
        fls.get_historical_features(spark, entity, history=tmp_path / "export", as_of=ahead)


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
    assert registry["format"] == "featurelite-export" and registry["format_version"] == 2
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

    with pytest.raises(fl.UnknownFeatureViewError, match=r"'ghost' is not registered"):
        join(entity, ["ghost:x"])
    with pytest.raises(fl.UnknownFeatureError, match="no feature 'nope'"):
        join(entity, ["user_stats:nope"])
    with pytest.raises(fl.UnknownVersionError, match="no version starting with 'ffff'"):
        join(entity, ["user_stats@ffff:spend_7d"])
    with pytest.raises(fl.UnknownFeatureServiceError, match="'nobody' is not registered"):
        join(entity, service="nobody")
    with pytest.raises(fl.InputError, match="either features or service"):
        join(entity, ["user_stats:spend_7d"], service="checkout")
    with pytest.raises(fl.SchemaError, match="no column 'basket', a request field of on-demand view 'shares'"):
        join(entity.drop("basket"), ["shares:basket_share"])
    with pytest.raises(fl.UnknownFeatureError, match="'shares' has no feature 'nope'"):
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
    with pytest.raises(fl.InputError, match="split_keys_by 'weekly' is not a duration"):
        join(entity, ["user_stats:spend_7d"], split_keys_by="weekly")
    with pytest.raises(fl.InputError, match="split_keys_by must be a timedelta"):
        join(entity, ["user_stats:spend_7d"], split_keys_by=7)
    with pytest.raises(fl.InputError, match="hot_key_rows must be a whole number of at least 0"):
        join(entity, ["user_stats:spend_7d"], split_keys_by="7d", hot_key_rows=-1)
    # A damaged registry, an export of another format version, and a session not in UTC.
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    document = json.loads((export / "registry.json").read_text())
    (damaged / "registry.json").write_text(json.dumps({k: v for k, v in document.items() if k != "versions"}))
    with pytest.raises(fl.InputError, match=r"is damaged .*export the store again"):
        join(entity, ["user_stats:spend_7d"], history=damaged)
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
