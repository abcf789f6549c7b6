"""Per-feature metadata (fl.Field) and search over a store's definitions (issue 15, first part)."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from click.testing import CliRunner

import featurelite as fl
from featurelite.cli import main

user = fl.Entity("user", join_keys=["user_id"], description="a customer")


@fl.featurizer
def spend_share(spend_7d: float, orders_7d: int) -> float:
    return spend_7d / orders_7d if orders_7d else 0.0


def views(description="money spent in the last seven days"):
    stats = fl.FeatureView(
        "user_stats", entities=[user], owner="growth-team", tags={"team": "growth"},
        schema={
            "spend_7d": fl.Field("float64", description=description, tags={"pii": "no"}, owner="ana"),
            "orders_7d": "int64",
        },
        aggregations=[fl.Aggregation("spend_7d", "max", "30d")],
    )
    risk = fl.FeatureView("risk", entities=[user], schema={"score": "float64"}, tags={"team": "fraud"},
                          description="how risky a customer is; not spend")
    ratios = fl.OnDemandFeatureView("ratios", sources=[stats], featurizers={"share": spend_share})
    service = fl.FeatureService("checkout", ["user_stats:spend_7d", "risk:score"], description="the checkout model")
    return [user, stats, risk, ratios, service]


def test_field_metadata_is_versioned_round_trips_and_never_breaks_stored_data(tmp_path):
    plain = fl.FeatureView("v", entities=[user], schema={"x": "float64"})
    bare_field = fl.FeatureView("v", entities=[user], schema={"x": fl.Field("float64")})
    described = fl.FeatureView("v", entities=[user], schema={"x": fl.Field("float64", description="the x")})
    assert bare_field.version == plain.version  # a Field without metadata is the dtype string
    assert "fields" not in plain.spec() and described.version != plain.version
    assert described.schema == {"x": "float64"} and described.fields["x"].description == "the x"
    assert fl.FeatureView.from_spec(described.spec()) == described
    with fl.open(tmp_path / "s.duckdb") as store:
        store.apply([user, plain])
        store.ingest("v", pa.table({"user_id": [1], "x": [1.5], "event_timestamp": pa.array([0], pa.timestamp("us"))}))
        result = store.apply(described)  # metadata only: a new version, never a breaking change
        assert [c.name for c in result.changed] == ["v"]
        assert store.get_feature_view("v").fields["x"].description == "the x"
        assert len(store.list_versions("v")) == 2
    with pytest.raises(fl.DefinitionError, match="dtype"):
        fl.Field("float128")
    with pytest.raises(fl.DefinitionError, match="description must be a string"):
        fl.Field("float64", description=3)


def test_search_ranks_names_first_and_finds_descriptions_tags_and_owners():
    with fl.open() as store:
        store.apply(views())
        names = [hit.name for hit in store.search("spend")]
        # names first (the whole name, then its start, then inside it), then descriptions
        assert names[:3] == ["user_stats:spend_7d", "user_stats:spend_7d_max_30d", "spend_share"]
        assert names.index("risk") > names.index("spend_share")  # only its description says spend
        assert [h.name for h in store.search("seven days")] == ["user_stats:spend_7d"]  # every word must match
        hit = store.search("seven")[0]
        assert (hit.kind, hit.matched, hit.owner, hit.tags) == ("feature", ("description",), "ana",
                                                                 {"pii": "no", "team": "growth"})
        assert {h.name for h in store.search("growth-team")} >= {"user_stats", "user_stats:orders_7d"}
        assert [h.name for h in store.search("checkout")] == ["checkout"]
        assert [h.kind for h in store.search("customer")] == ["feature_view", "entity"]
        assert store.search("nothing matches this") == []


def test_search_filters_by_tags_and_kinds():
    with fl.open() as store:
        store.apply(views())
        growth = store.search(tags={"team": "growth"}, kinds=["feature"])
        assert [h.name for h in growth] == ["user_stats:orders_7d", "user_stats:spend_7d", "user_stats:spend_7d_max_30d"]
        assert [h.name for h in store.search("score", tags={"team": "fraud"})] == ["risk:score"]
        assert store.search("score", tags={"team": "growth"}) == []
        assert [h.kind for h in store.search(kinds="featurizer")] == ["featurizer"]
        assert len(store.search(limit=2)) == 2
        with pytest.raises(fl.InputError, match="not searchable"):
            store.search("x", kinds=["table"])
        with pytest.raises(fl.InputError, match="tags must map"):
            store.search("x", tags={"team": 1})
        with pytest.raises(fl.InputError, match="text must be a string"):
            store.search(["spend"])
        with pytest.raises(fl.InputError, match="limit"):
            store.search("x", limit=0)


def test_a_description_change_is_found_after_apply():
    with fl.open() as store:
        store.apply(views())
        assert store.search("lifetime") == []
        store.apply(views(description="lifetime spend"))
        assert [h.name for h in store.search("lifetime")] == ["user_stats:spend_7d"]


def test_the_command_line_searches(tmp_path):
    path = tmp_path / "s.duckdb"
    with fl.open(path) as store:
        store.apply(views())
    done = CliRunner().invoke(main, ["search", str(path), "seven", "--tag", "pii=no"])
    assert done.exit_code == 0, done.output
    assert [h["name"] for h in json.loads(done.stdout)] == ["user_stats:spend_7d"]
    done = CliRunner().invoke(main, ["search", str(path), "--kind", "feature_service", "--format", "table"])
    assert done.exit_code == 0 and "checkout" in done.stdout
    bad = CliRunner().invoke(main, ["search", str(path), "x", "--tag", "nokey"])
    assert bad.exit_code == 2 and "KEY=VALUE" in bad.output
