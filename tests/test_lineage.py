"""Lineage (issue 15): which views, on-demand views, services, featurizers and models depend
on which, at which versions, as data (``store.lineage``), through the CLI and from a
recorded model (``store.record_model`` / ``featurelite record-model``)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import featurelite as fl
from featurelite.cli import main

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@fl.featurizer
def doubled(amount: float) -> float:
    return amount * 2.0


@fl.featurizer
def share(basket: float, amount: float = 0.0) -> float:
    return basket / (basket + amount) if basket + amount != 0.0 else 0.0


def definitions(description: str = "spend") -> list:
    user = fl.Entity("user", join_keys=["user_id"])
    merchant = fl.Entity("merchant", join_keys=["merchant_id"])
    txn = fl.FeatureView("txn", entities=[user], schema={"amount": "float64"}, timestamp_field="ts",
                         featurizers={"twice": doubled}, description=description)
    shop = fl.FeatureView("shop", entities=[merchant], schema={"rating": "float64"}, timestamp_field="ts")
    basket = fl.RequestSource("checkout", schema={"basket": "float64"})
    shares = fl.OnDemandFeatureView("shares", sources=[txn, basket], featurizers={"share": share})
    fraud = fl.FeatureService("fraud", ["txn:amount", "txn:twice", "shares:share"])
    return [user, merchant, txn, shop, shares, fraud]


def edges(graph: fl.Lineage) -> set[tuple[str, str, str]]:
    return {(e.source, e.relation, e.target) for e in graph.edges}


@pytest.fixture
def shop(tmp_path):
    with fl.open(tmp_path / "lineage.duckdb") as store:
        store.apply(definitions())
        store.ingest("txn", pa.table({"user_id": [1, 2], "amount": [3.0, 4.0], "ts": [T0, T0]}))
        yield store


def training_set(store: fl.Store, **kwargs) -> pa.Table:
    spine = pa.table({"user_id": [1, 2], "event_timestamp": [T0, T0], "basket": [1.0, 2.0]})
    return store.get_historical_features(spine, **kwargs)


def test_the_whole_graph_has_exactly_the_dependencies_of_the_definitions(shop):
    graph = shop.lineage()
    assert graph.root is None
    assert edges(graph) == {
        ("entity:user", "keys", "feature_view:txn"),
        ("entity:merchant", "keys", "feature_view:shop"),
        ("featurizer:doubled", "computes", "feature_view:txn"),
        ("featurizer:share", "computes", "on_demand_feature_view:shares"),
        ("feature_view:txn", "source", "on_demand_feature_view:shares"),
        ("feature_view:txn", "serves", "feature_service:fraud"),
        ("on_demand_feature_view:shares", "serves", "feature_service:fraud"),
    }
    service = shop.get_feature_service("fraud")
    versions = {(e.source, e.target): e.version for e in graph.edges}
    assert versions["feature_view:txn", "feature_service:fraud"] == service.pins["txn"] == \
        shop.get_feature_view("txn").version
    assert versions["featurizer:doubled", "feature_view:txn"] == shop.get_feature_view("txn").featurizers["twice"].version
    kinds = [n.kind for n in graph.nodes]
    assert kinds == sorted(kinds, key=["entity", "featurizer", "feature_view", "on_demand_feature_view",
                                       "feature_service", "model"].index)  # upstream first
    assert graph.node("feature_view:txn").description == "spend"
    assert fl.Lineage.from_dict(json.loads(json.dumps(graph.to_dict()))) == graph


def test_a_name_gives_only_what_is_upstream_and_downstream_of_it(shop):
    graph = shop.lineage("shares")
    assert graph.root == "on_demand_feature_view:shares"
    assert {n.id for n in graph.nodes} == {
        "entity:user", "featurizer:doubled", "feature_view:txn", "featurizer:share",
        "on_demand_feature_view:shares", "feature_service:fraud",
    }  # not the merchant, not shop: unrelated
    assert {n.id for n in graph.upstream()} == {"entity:user", "featurizer:doubled", "feature_view:txn",
                                                 "featurizer:share"}
    assert {n.id for n in graph.downstream()} == {"feature_service:fraud"}
    assert shop.lineage("feature_view:shop").nodes == shop.lineage("shop").nodes
    assert {n.id for n in shop.lineage("merchant").nodes} == {"entity:merchant", "feature_view:shop"}
    assert shop.lineage("doubled").root == "featurizer:doubled"


def test_a_service_shows_the_versions_it_pins_beside_the_versions_in_force(shop):
    pinned = shop.get_feature_service("fraud").pins["txn"]
    shop.apply([d for d in definitions(description="spend, described again") if not isinstance(d, fl.FeatureService)])
    graph = shop.lineage("fraud")
    current = graph.node("feature_view:txn").version
    assert current == shop.get_feature_view("txn").version != pinned
    served = next(e for e in graph.edges if e.relation == "serves" and e.source == "feature_view:txn")
    assert served.version == pinned  # the service still reads the version it pinned


def test_a_recorded_model_links_to_the_service_version_it_was_trained_on(shop):
    first = shop.record_model("scorer", training_set(shop, service="fraud"), uri="models:/scorer/1",
                              description="fraud score", tags={"team": "risk"})
    second = shop.record_model("scorer", fl.Manifest.from_table(training_set(shop, service="fraud")))
    loose = shop.record_model("rater", training_set(shop, features=["txn:amount", "shares:share"]).schema)
    assert (first.number, second.number, loose.number) == (1, 2, 1) and first.id == "scorer#1"
    service = shop.get_feature_service("fraud")
    assert first.service == "fraud" and first.service_version == service.version and first.pins["txn"] == \
        service.pins["txn"]
    assert shop.list_models() == [loose, first, second] and shop.list_models("scorer") == [first, second]
    assert shop.list_models("nobody") == []
    graph = shop.lineage()
    assert ("feature_service:fraud", "trained_on", "model:scorer#1") in edges(graph)
    assert {("feature_view:txn", "trained_on", "model:rater#1"),
            ("on_demand_feature_view:shares", "trained_on", "model:rater#1")} <= edges(graph)
    trained = next(e for e in graph.edges if e.target == "model:scorer#1")
    assert trained.version == service.version
    assert shop.lineage("scorer").root == "model:scorer#2"  # a model's name: its latest record
    assert shop.lineage("scorer#1").root == "model:scorer#1"  # one record
    assert {n.id for n in shop.lineage("model:scorer#1").upstream()} == {
        "entity:user", "featurizer:doubled", "featurizer:share", "feature_view:txn",
        "on_demand_feature_view:shares", "feature_service:fraud",
    }
    assert fl.ModelRecord.from_dict(json.loads(json.dumps(first.to_dict()))) == first


def test_a_model_keeps_its_service_in_the_graph_after_the_service_is_deleted(shop):
    shop.record_model("scorer", training_set(shop, service="fraud"))
    shop.delete_feature_service("fraud")
    graph = shop.lineage("scorer")
    assert ("feature_service:fraud", "trained_on", "model:scorer#1") in edges(graph)
    assert graph.node("feature_service:fraud").version is None  # no longer registered


@pytest.mark.parametrize("call, error, match", [
    (lambda s: s.lineage("ghost"), fl.NotFoundError, r"nothing in the store is named 'ghost'"),
    (lambda s: s.lineage(3), fl.InputError, r"must be a name"),
    (lambda s: s.record_model("", training_set(s, service="fraud")), fl.InputError, r"non-blank"),
    (lambda s: s.record_model("a#1", training_set(s, service="fraud")), fl.InputError, r"without '#'"),
    (lambda s: s.record_model("m", training_set(s, service="fraud"), uri=5), fl.InputError, r"uri must be text"),
    (lambda s: s.record_model("m", training_set(s, service="fraud"), tags={"a": 1}), fl.InputError, r"tags must map"),
    (lambda s: s.record_model("m", pa.table({"x": [1]})), fl.ManifestError, r"manifest"),
    (lambda s: s.list_models(7), fl.InputError, r"must be a name"),
])
def test_bad_input_is_refused_with_the_fix_and_records_nothing(shop, call, error, match):
    with pytest.raises(error, match=match):
        call(shop)
    assert shop.list_models() == []


def test_a_training_set_of_another_store_is_refused(shop, tmp_path):
    with fl.open(tmp_path / "other.duckdb") as other:
        other.apply(definitions())
        foreign = training_set(other, service="fraud")
    with pytest.raises(fl.ManifestError, match="another store"):
        shop.record_model("scorer", foreign)
    assert shop.list_models() == []


def test_the_cli_records_lists_and_traces(tmp_path):
    path = tmp_path / "cli.duckdb"
    with fl.open(path) as store:
        store.apply(definitions())
        store.ingest("txn", pa.table({"user_id": [1], "amount": [3.0], "ts": [T0]}))
        table = training_set(store, service="fraud")
    pq.write_table(table, tmp_path / "train.parquet")
    (tmp_path / "manifest.json").write_text(fl.Manifest.from_table(table).to_json())
    run = CliRunner().invoke
    recorded = run(main, ["record-model", str(path), "scorer", str(tmp_path / "train.parquet"), "--uri", "runs:/1/m"])
    assert recorded.exit_code == 0, recorded.output
    assert json.loads(recorded.output)["service"] == "fraud"
    again = run(main, ["record-model", str(path), "scorer", str(tmp_path / "manifest.json")])
    assert again.exit_code == 0 and json.loads(again.output)["number"] == 2
    listed = run(main, ["list-models", str(path), "scorer"])
    assert [r["uri"] for r in json.loads(listed.output)] == ["runs:/1/m", None]
    graph = json.loads(run(main, ["lineage", str(path), "fraud"]).output)
    assert graph["root"] == "feature_service:fraud"
    assert {"source": "feature_service:fraud", "target": "model:scorer#2", "relation": "trained_on",
            "version": table_service_version(path)} in graph["edges"]
    text = run(main, ["lineage", str(path), "--format", "table"]).output
    assert "featurizer:doubled" in text and "computes" in text
    missing = run(main, ["lineage", str(path), "ghost"])
    assert missing.exit_code == 1 and "nothing in the store is named 'ghost'" in missing.output
    bad = run(main, ["record-model", str(path), "scorer", str(tmp_path / "nothing.parquet")])
    assert bad.exit_code != 0 and "nothing.parquet" in bad.output
    with fl.open(path, read_only=True) as store:
        assert len(store.list_models()) == 2  # the refused one recorded nothing


def table_service_version(path) -> str:
    with fl.open(path, read_only=True) as store:
        return store.get_feature_service("fraud").version
