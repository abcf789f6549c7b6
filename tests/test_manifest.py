"""Training-set manifests: what they record, that they survive Parquet, that ``as_of``
rebuilds the same set, and that serving checks them."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_services import FRAUD, MIN, READ_AT, ROWS, T0, online, share_percent, shares_view, spine, stats_view, user

import featurelite as fl
from featurelite.digest import column_digest, table_digest


@pytest.fixture
def fraud_store(store):
    store.apply([user, stats_view(), shares_view(), FRAUD])
    store.ingest("stats", ROWS)
    return store


def test_a_training_set_carries_its_manifest(fraud_store):
    train = fraud_store.get_historical_features(spine(), service="fraud")
    manifest = fl.Manifest.from_table(train)
    data = json.loads(train.schema.metadata[b"featurelite.manifest"])
    assert data["service"] == "fraud" and manifest.service == "fraud"
    assert manifest.service_version == fraud_store.get_feature_service("fraud").version
    assert manifest.store_id == fraud_store.store_id and len(manifest.store_id) == 32
    assert manifest.pins == fraud_store.get_feature_service("fraud").pins
    assert manifest.outputs == ("spend_sum", "country", "basket_share")
    stats_version = fraud_store.get_feature_view("stats").version
    odfv = fraud_store.list_on_demand_feature_views()[0]
    assert [(f.kind, f.view, f.version, f.dtype, f.reference) for f in manifest.features] == [
        ("aggregation", "stats", stats_version, "float64", f"stats@{stats_version}:spend_sum"),
        ("feature_view", "stats", stats_version, "string", f"stats@{stats_version}:country"),
        ("on_demand_feature_view", "shares", odfv.version, "float64", f"shares@{odfv.version}:basket_share"),
    ]
    assert manifest.features[2].featurizer == share_version() and manifest.features[0].featurizer is None
    assert manifest.entity_keys == ("user_id",) and manifest.request_fields == ("basket",)
    assert manifest.timestamp_field == "event_timestamp"
    assert manifest.time_range == ((T0 + MIN).isoformat() + "+00:00", READ_AT.isoformat() + "+00:00")
    assert manifest.rows == 3 and manifest.ingest_position == 2
    assert manifest.digest == table_digest(train) and manifest.matches(train)
    assert [f.digest for f in manifest.features] == [column_digest(train.column(o)) for o in manifest.outputs]


def share_version() -> str:
    from test_services import share

    return share.version


def test_plain_references_get_a_manifest_too(fraud_store):
    train = fraud_store.get_historical_features(spine(), ["stats:country"], full_feature_names=True)
    manifest = fl.Manifest.from_table(train)
    assert manifest.service is None and manifest.service_version is None
    assert manifest.outputs == ("stats__country",) and manifest.full_feature_names
    assert manifest.pins == {"stats": fraud_store.get_feature_view("stats").version}


def test_the_manifest_survives_parquet(fraud_store, tmp_path):
    train = fraud_store.get_historical_features(spine(), service="fraud")
    pq.write_table(train, tmp_path / "train.parquet")
    back = pq.read_table(tmp_path / "train.parquet")
    assert fl.Manifest.from_table(back) == fl.Manifest.from_table(train)
    assert fl.Manifest.from_table(pq.read_schema(tmp_path / "train.parquet")) == fl.Manifest.from_table(train)
    assert fl.Manifest.from_table(train).matches(back)
    assert fl.Manifest.from_json(fl.Manifest.from_table(train).to_json()) == fl.Manifest.from_table(train)


def test_as_of_rebuilds_the_same_set_after_late_rows_and_says_what_moved(fraud_store):
    train = fraud_store.get_historical_features(spine(), service="fraud")
    manifest = fl.Manifest.from_table(train)
    # Late rows: an event before the spine's times (changes a sum and a country), and a
    # tie with an existing event that wins it (ingested later).
    fraud_store.ingest("stats", pa.table({
        "user_id": [1, 1], "spend": [1.0, 99.0], "country": ["FR", "BE"], "event_timestamp": [T0 + 2 * MIN, T0 + 5 * MIN],
    }))
    rebuilt = fraud_store.get_historical_features(spine(), service="fraud", as_of=manifest)
    again = fl.Manifest.from_table(rebuilt)
    assert again.digest == manifest.digest and rebuilt.to_pydict() == train.to_pydict()
    assert again.ingest_position == manifest.ingest_position and again.service == "fraud"
    now = fraud_store.get_historical_features(spine(), service="fraud")
    moved = fl.Manifest.from_table(now)
    assert moved.digest != manifest.digest
    assert manifest.changed_features(moved) == ["spend_sum", "country", "basket_share"]
    assert manifest.changed_features(now) == ["spend_sum", "country", "basket_share"]
    assert manifest.changed_features(rebuilt) == []
    assert moved.ingest_position == 4


def test_as_of_alone_uses_the_manifests_features_and_versions(fraud_store):
    train = fraud_store.get_historical_features(spine(), service="fraud")
    manifest = fl.Manifest.from_table(train)
    fraud_store.apply([shares_view(share_percent), FRAUD])  # the service moves on
    rebuilt = fraud_store.get_historical_features(spine(), as_of=manifest)
    assert fl.Manifest.from_table(rebuilt).digest == manifest.digest
    with pytest.raises(fl.ManifestError, match="rebuilding would read other versions than the manifest pins"):
        fraud_store.get_historical_features(spine(), service="fraud", as_of=manifest)


def test_serving_with_a_manifest_serves_what_it_pinned_and_refuses_anything_else(fraud_store):
    manifest = fl.Manifest.from_table(fraud_store.get_historical_features(spine(), service="fraud"))
    expected = online(fraud_store, service="fraud")
    assert online(fraud_store, manifest=manifest) == expected
    assert online(fraud_store, manifest=manifest, service="fraud") == expected
    fraud_store.apply([shares_view(share_percent), FRAUD])
    assert online(fraud_store, manifest=manifest) == expected  # still its own versions
    with pytest.raises(fl.ManifestError, match=r"serving would read other versions than the manifest pins \(shares: manifest"):
        online(fraud_store, manifest=manifest, service="fraud")
    with pytest.raises(fl.ManifestError, match="shares: manifest"):
        online(fraud_store, manifest=manifest, features=["stats:spend_sum", "stats:country", "shares:basket_share"])
    with pytest.raises(fl.ManifestError, match=r"other features than the manifest holds \(in the manifest but not asked: stats:country") as info:
        online(fraud_store, manifest=manifest, features=["stats:spend_sum", "shares:basket_share"])
    assert info.value.features == ["stats:country"]


def test_a_manifest_from_another_store_is_refused(fraud_store):
    manifest = fl.Manifest.from_table(fraud_store.get_historical_features(spine(), service="fraud"))
    with fl.open(":memory:") as other:
        other.apply([user, stats_view(), shares_view(), FRAUD])
        with pytest.raises(fl.ManifestError, match="the manifest is from another store"):
            online(other, manifest=manifest)
        with pytest.raises(fl.ManifestError, match="the manifest is from another store"):
            other.get_historical_features(spine(), as_of=manifest)
    with pytest.raises(fl.ManifestError, match=r"must be a featurelite\.Manifest"):
        online(fraud_store, manifest={"store_id": fraud_store.store_id})


def test_unreadable_manifests_are_refused_with_the_fix():
    with pytest.raises(fl.ManifestError, match="carries no featurelite manifest"):
        fl.Manifest.from_table(pa.table({"a": [1]}))
    with pytest.raises(fl.ManifestError, match="not a featurelite manifest"):
        fl.Manifest.from_json("{}")
    with pytest.raises(fl.ManifestError, match="not a featurelite manifest"):
        fl.Manifest.from_json("not json")
    with pytest.raises(fl.ManifestError, match="newer than this featurelite reads"):
        fl.Manifest.from_json(json.dumps({"format": 99}))


def test_a_deleted_views_sequence_numbers_are_not_reused(tmp_path):
    path = tmp_path / "s.duckdb"
    other = fl.FeatureView("other", entities=[user], schema={"x": "int64"})
    with fl.open(path) as s:
        s.apply([user, stats_view(), other])
        s.ingest("stats", ROWS)
        s.ingest("other", pa.table({"user_id": [1], "x": [1], "event_timestamp": [T0]}))  # sequence 3
        position = fl.Manifest.from_table(s.get_historical_features(spine(), ["stats:country"])).ingest_position
        assert position == 3
        s.delete_feature_view("other")
    with fl.open(path) as s:
        s.ingest("stats", pa.table({"user_id": [1], "spend": [1.0], "country": ["XX"], "event_timestamp": [T0]}))
        assert fl.Manifest.from_table(s.get_historical_features(spine(), ["stats:country"])).ingest_position == 4


# -- digests -------------------------------------------------------------------------------


def test_a_digest_ignores_layout_and_sees_every_bit():
    values = pa.array([1.5, None, -0.0, float("nan"), 3.0])
    assert column_digest(values) == column_digest(pa.chunked_array([values[:2], values[2:]]))
    assert column_digest(values[1:]) == column_digest(pa.array([None, -0.0, float("nan"), 3.0]))
    assert column_digest(pa.array([0.0])) != column_digest(pa.array([-0.0]))
    assert column_digest(pa.array([1.0, None])) != column_digest(pa.array([1.0, 0.0]))
    text = pa.array(["a", None, "bc"])
    assert column_digest(text) == column_digest(text.cast(pa.large_string())) == column_digest(pa.chunked_array([text[:1], text[1:]]))
    assert column_digest(pa.array(["ab", "c"])) != column_digest(pa.array(["a", "bc"]))
    assert column_digest(pa.array([True, None])) != column_digest(pa.array([True, False]))
    stamps = pa.array([T0, None], pa.timestamp("us"))
    assert column_digest(stamps) == column_digest(pa.chunked_array([stamps]))
    assert table_digest(pa.table({"a": [1]})) != table_digest(pa.table({"b": [1]}))


# -- the promise, as a property ----------------------------------------------------------

EVENT = st.fixed_dictionaries({
    "user_id": st.integers(1, 3),
    "spend": st.sampled_from([None, 0.0, -0.0, 1.5, float("nan"), 7.0]),
    "country": st.sampled_from([None, "NL", "DE"]),
    "minute": st.integers(0, 12),
})


def event_table(rows):
    return pa.table({
        "user_id": pa.array([r["user_id"] for r in rows], pa.int64()),
        "spend": pa.array([r["spend"] for r in rows], pa.float64()),
        "country": pa.array([r["country"] for r in rows], pa.string()),
        "event_timestamp": pa.array([T0 + r["minute"] * MIN for r in rows], pa.timestamp("us")),
    })


def same_bits(a: pa.Table, b: pa.Table) -> bool:
    return a.column_names == b.column_names and all(
        column_digest(a.column(n)) == column_digest(b.column(n)) for n in a.column_names
    )


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40)
@given(
    first=st.lists(EVENT, min_size=1, max_size=8),
    later=st.lists(EVENT, min_size=1, max_size=8),
    probes=st.lists(st.tuples(st.integers(1, 4), st.integers(0, 14)), min_size=1, max_size=6),
)
def test_as_of_is_the_store_as_it_was(first, later, probes):
    """A rebuild ``as_of`` a manifest equals, bit for bit, the same training set from a store
    that never received the later rows (ties, late events and backfills among them), and
    equals the original build."""
    entity = pa.table({
        "user_id": pa.array([u for u, _ in probes], pa.int64()),
        "event_timestamp": pa.array([T0 + m * MIN for _, m in probes], pa.timestamp("us")),
        "basket": pa.array([2.0] * len(probes)),
    })
    with fl.open(":memory:") as grown, fl.open(":memory:") as frozen:
        for s in (grown, frozen):
            s.apply([user, stats_view(), shares_view(), FRAUD])
            s.ingest("stats", event_table(first))
        train = grown.get_historical_features(entity, service="fraud")
        grown.ingest("stats", event_table(later))
        rebuilt = grown.get_historical_features(entity, as_of=fl.Manifest.from_table(train))
        oracle = frozen.get_historical_features(entity, service="fraud")
    assert same_bits(rebuilt, oracle)
    assert same_bits(rebuilt, train)
    assert fl.Manifest.from_table(rebuilt).digest == fl.Manifest.from_table(train).digest == table_digest(oracle)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=30)
@given(rows=st.lists(EVENT, min_size=1, max_size=8), minute=st.integers(0, 14), basket=st.sampled_from([1.0, -0.0, 2.5]))
def test_a_service_serves_its_pinned_versions_as_its_training_set_saw_them(rows, minute, basket):
    """After a definition change, the service (online, at time t) equals its own training
    set at t (built before the change), and a plain reference equals the new definition."""
    at = T0 + minute * MIN
    with fl.open(":memory:") as s:
        s.apply([user, stats_view(), shares_view(), FRAUD])
        s.ingest("stats", event_table(rows))
        entity = pa.table({"user_id": pa.array([1], pa.int64()), "event_timestamp": pa.array([at], pa.timestamp("us")), "basket": [basket]})
        train = s.get_historical_features(entity, service="fraud")
        changed = stats_view(ttl="2m", window="3m")
        s.apply([changed, shares_view(share_percent, changed)])
        served = s.get_online_features([{"user_id": 1}], service="fraud", request_data={"basket": [basket]}, now=at)
        assert same_bits(served.to_arrow(), train.drop_columns(["event_timestamp", "basket"]))
        current = s.get_historical_features(entity, ["stats:spend_sum", "stats:country", "shares:basket_share"])
        now = s.get_online_features(
            [{"user_id": 1}], ["stats:spend_sum", "stats:country", "shares:basket_share"], request_data={"basket": [basket]}, now=at
        )
        assert same_bits(now.to_arrow(), current.drop_columns(["event_timestamp", "basket"]))


def test_an_as_of_rebuild_keeps_negative_zero(tmp_path):
    """A history (found by the client parity property) whose -0.0 an as_of rebuild once
    returned as 0.0: DuckDB's ASOF join reset the sign when the narrowing filters sat under
    the tie-deciding QUALIFY beside a text column. Rebuilt, it must give the same digest."""
    history = pq.read_table(Path(__file__).parent / "data" / "negzero_history.parquet")
    stats = fl.FeatureView("stats", entities=[user], timestamp_field="ts", ttl="2d", schema={
        "amount": "float64", "small": "float32", "count": "int32", "flag": "bool", "name": "string", "seen": "timestamp"})
    with fl.open(tmp_path / "s.duckdb") as store:
        store.apply([user, stats])
        for i in range(history.num_rows):  # one row per ingest: the sequence numbers of the original
            store.ingest("stats", history.slice(i, 1))
        at = datetime(2026, 3, 2, tzinfo=timezone.utc)
        entity = pa.table({"user_id": pa.array([1, 2, 3], pa.int64()), "event_timestamp": pa.array([at] * 3, pa.timestamp("us", tz="UTC"))})
        built = store.get_historical_features(entity, ["stats:amount", "stats:name"])
        rebuilt = store.get_historical_features(entity, as_of=fl.Manifest.from_table(built))
        assert str(built.column("amount")[1].as_py()) == "-0.0"
        assert str(rebuilt.column("amount")[1].as_py()) == "-0.0"
        assert fl.Manifest.from_table(rebuilt).digest == fl.Manifest.from_table(built).digest
