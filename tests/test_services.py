"""Feature services: pinned versions, explicit ``view@version:feature`` references, and
what they refuse."""

from __future__ import annotations

from datetime import datetime, timedelta

import pyarrow as pa
import pytest

import featurelite as fl
from featurelite.planning import Catalog

T0 = datetime(2026, 1, 1)
MIN = timedelta(minutes=1)
user = fl.Entity("user", ["user_id"])
request = fl.RequestSource("req", {"basket": "float64"})


def stats_view(*, ttl: str = "30d", window: str = "1h", spend: str = "float64") -> fl.FeatureView:
    return fl.FeatureView(
        "stats", entities=[user], schema={"spend": spend, "country": "string"}, ttl=ttl,
        aggregations=[fl.Aggregation("spend", "sum", window, name="spend_sum")],
    )


@fl.featurizer
def share(spend: float, basket: float) -> float:
    return basket / spend


@fl.featurizer
def share_percent(spend: float, basket: float) -> float:
    return basket / spend * 100.0


def shares_view(fz: fl.Featurizer = share, stats: fl.FeatureView | None = None) -> fl.OnDemandFeatureView:
    return fl.OnDemandFeatureView("shares", sources=[stats or stats_view(), request], featurizers={"basket_share": fz})


FRAUD = fl.FeatureService("fraud", ["stats:spend_sum", "stats:country", "shares:basket_share"])
ROWS = pa.table({
    "user_id": [1, 1, 2],
    "spend": [10.0, 20.0, 4.0],
    "country": ["NL", "DE", "FR"],
    "event_timestamp": [T0, T0 + 5 * MIN, T0 + 2 * MIN],
})
READ_AT = T0 + 10 * MIN


@pytest.fixture
def fraud_store(store):
    store.apply([user, stats_view(), shares_view(), FRAUD])
    store.ingest("stats", ROWS)
    return store


def online(store, **kw):
    kw.setdefault("request_data", {"basket": [5.0]})
    return store.get_online_features([{"user_id": 1}], now=READ_AT, **kw).to_dict()


def spine(**extra) -> pa.Table:
    return pa.table({"user_id": [1, 2, 1], "event_timestamp": [T0 + MIN, T0 + 3 * MIN, READ_AT], "basket": [5.0, 5.0, 5.0], **extra})


def test_a_service_reads_what_its_references_read(fraud_store):
    refs = ["stats:spend_sum", "stats:country", "shares:basket_share"]
    assert online(fraud_store, service="fraud") == online(fraud_store, features=refs)
    assert online(fraud_store, service="fraud") == {"user_id": [1], "spend_sum": [30.0], "country": ["DE"], "basket_share": [0.25]}
    by_service = fraud_store.get_historical_features(spine(), service="fraud")
    by_refs = fraud_store.get_historical_features(spine(), refs)
    assert by_service.to_pydict() == by_refs.to_pydict()
    assert by_service.column("basket_share").to_pylist() == [0.5, 1.25, 0.25]


def test_apply_pins_every_definition_the_service_reads(fraud_store):
    pinned = fraud_store.get_feature_service("fraud")
    stats, shares = fraud_store.get_feature_view("stats"), fraud_store.list_on_demand_feature_views()[0]
    assert pinned.pins == {"stats": stats.version, "shares": shares.version}
    assert pinned.features == FRAUD.features
    assert fraud_store.list_feature_services() == [pinned]
    described = fraud_store.describe("fraud")
    assert described["kind"] == "feature_service" and described["pins"] == pinned.pins
    assert described["version"] == pinned.version


def test_the_pin_holds_across_a_featurizer_change_until_the_service_is_applied_again(fraud_store):
    before = online(fraud_store, service="fraud")
    train_before = fraud_store.get_historical_features(spine(), service="fraud")
    result = fraud_store.apply([shares_view(share_percent)])
    assert [c.name for c in result.changed] == ["shares"]
    # The service still serves the old featurizer, compiled from its stored source ...
    assert online(fraud_store, service="fraud") == before
    assert fraud_store.get_historical_features(spine(), service="fraud").to_pydict() == train_before.to_pydict()
    # ... while a plain reference reads the version in force.
    assert online(fraud_store, features=["shares:basket_share"])["basket_share"] == [25.0]
    again = fraud_store.apply([FRAUD])
    assert [c.name for c in again.changed] == ["fraud"]
    assert online(fraud_store, service="fraud")["basket_share"] == [25.0]


def test_the_pin_holds_across_a_reopen(tmp_path):
    path = tmp_path / "s.duckdb"
    with fl.open(path) as s:
        s.apply([user, stats_view(), shares_view(), FRAUD])
        s.ingest("stats", ROWS)
        s.apply([shares_view(share_percent)])
    with fl.open(path) as s:  # the old featurizer comes back from the file alone
        assert online(s, service="fraud")["basket_share"] == [0.25]
        assert online(s, features=["shares:basket_share"])["basket_share"] == [25.0]


def test_the_pin_holds_across_ttl_and_window_changes(fraud_store):
    before = online(fraud_store, service="fraud")
    train_before = fraud_store.get_historical_features(spine(), service="fraud")
    fraud_store.apply([stats_view(ttl="1m", window="2m")])
    assert online(fraud_store, features=["stats:spend_sum", "stats:country"]) == {
        "user_id": [1], "spend_sum": [0.0], "country": [None],
    }
    assert online(fraud_store, service="fraud") == before
    assert fraud_store.get_historical_features(spine(), service="fraud").to_pydict() == train_before.to_pydict()


def test_a_window_longer_than_the_current_ones_is_read_from_history(fraud_store):
    fraud_store.apply([stats_view(window="1h")])
    old = fraud_store.list_versions("stats")[0]["version"]
    fraud_store.apply([stats_view(window="1m")])
    fraud_store.warm()
    pinned = online(fraud_store, features=[f"stats@{old[:8]}:spend_sum"])
    assert pinned["spend_sum"] == [30.0]  # the 1h window, though the buffer keeps 1m of events
    assert online(fraud_store, features=["stats:spend_sum"])["spend_sum"] == [0.0]


def test_explicit_version_references_work_online_and_offline(fraud_store):
    first = fraud_store.list_on_demand_feature_views()[0].version
    fraud_store.apply([shares_view(share_percent)])
    for prefix in (first[:4], first[:9], first):
        ref = f"shares@{prefix}:basket_share"
        assert online(fraud_store, features=[ref]) == {"user_id": [1], "basket_share": [0.25]}
        train = fraud_store.get_historical_features(spine(), [ref, "stats:country"])
        assert train.column("basket_share").to_pylist() == [0.5, 1.25, 0.25]
        manifest = fl.Manifest.from_table(train)
        assert manifest.features[0].reference == f"shares@{first}:basket_share"


def test_an_unknown_version_prefix_lists_the_candidates(fraud_store):
    versions = [v["version"] for v in fraud_store.list_versions("stats")]
    with pytest.raises(fl.UnknownVersionError, match="'stats' has no version starting with 'ffff0000'") as info:
        online(fraud_store, features=["stats@ffff0000:country"])
    assert info.value.candidates == versions
    with pytest.raises(fl.UnknownFeatureError, match="at least 4 lowercase hex digits"):
        online(fraud_store, features=["stats@ab:country"])
    with pytest.raises(fl.UnknownFeatureError, match="at least 4 lowercase hex digits"):
        online(fraud_store, features=["stats@XYZW:country"])


class FakeVersions:
    """Stored versions chosen to share prefixes (real hashes rarely do)."""

    def __init__(self, versions):
        self.versions = versions

    def versions_of(self, name):
        return [("feature_view", v) for v in self.versions]


def test_an_ambiguous_version_prefix_lists_the_versions_it_matches():
    catalog = Catalog({}, {}, {}, {}, {}, FakeVersions(["abcd000000000001", "abcd000000000002", "beef000000000000"]))
    with pytest.raises(fl.UnknownVersionError, match="ambiguous") as info:
        catalog.resolve_version("stats", "abcd")
    assert info.value.candidates == ["abcd000000000001", "abcd000000000002"]
    assert catalog.resolve_version("stats", "abcd0000000000020"[:16]) == "abcd000000000002"
    assert catalog.resolve_version("stats", "beef") == "beef000000000000"


def test_two_versions_of_one_view_in_one_request_are_refused(fraud_store):
    first = fraud_store.get_feature_view("stats").version
    fraud_store.apply([stats_view(ttl="1d")])
    with pytest.raises(fl.InputError, match="features name two versions of 'stats'"):
        online(fraud_store, features=[f"stats@{first}:country", "stats:spend"])


def test_a_service_refuses_to_serve_storage_that_changed_under_it(store):
    store.apply([user, stats_view(), fl.FeatureService("spend", ["stats:spend"])])
    pinned = store.get_feature_view("stats").version
    # Allowed while the view holds no rows: the dtype of a pinned feature changes.
    result = store.apply([stats_view(spend="int64")])
    assert result.changed[0].name == "stats"
    with pytest.raises(fl.PinnedVersionError, match="feature view 'stats' is pinned at version") as info:
        store.get_online_features([{"user_id": 1}], service="spend")
    assert info.value.pinned == pinned and info.value.current == store.get_feature_view("stats").version
    assert "changes dtype from 'float64' to 'int64'" in str(info.value)
    assert "re-apply the feature service" in str(info.value)
    with pytest.raises(fl.PinnedVersionError):
        store.get_historical_features(pa.table({"user_id": [1], "event_timestamp": [T0]}), service="spend")
    store.apply([fl.FeatureService("spend", ["stats:spend"])])  # the fix the message names
    assert store.get_online_features([{"user_id": 1}], service="spend").to_dict() == {"user_id": [1], "spend": [None]}


def test_a_service_that_still_reads_compatible_columns_keeps_serving(fraud_store):
    fraud_store.apply([
        user,
        fl.FeatureView(
            "stats", entities=[user], schema={"spend": "float64", "country": "string", "extra": "int64"}, ttl="30d",
            aggregations=[fl.Aggregation("spend", "sum", "1h", name="spend_sum")],
        ),
    ])
    assert online(fraud_store, service="fraud")["country"] == ["DE"]


def test_dry_run_names_the_services_a_change_affects(fraud_store):
    old = fraud_store.get_feature_view("stats").version
    result = fraud_store.apply([stats_view(ttl="1d")], dry_run=True)
    assert result.dry_run
    assert [(i.service, i.definition, i.pinned_version, i.problem) for i in result.affected_services] == [
        ("fraud", "stats", old, None),
    ]
    assert result.affected_services[0].new_version == stats_view(ttl="1d").version
    assert fraud_store.get_feature_view("stats").version == old  # nothing changed


def test_list_versions_says_which_services_pin_which_version(fraud_store):
    fraud_store.apply([shares_view(share_percent)])
    fraud_store.apply([fl.FeatureService("fresh", ["shares:basket_share"])])
    pinned = {v["version"]: v["pinned_by"] for v in fraud_store.list_versions("shares")}
    first, second = list(pinned)
    assert pinned == {first: ["fraud"], second: ["fresh"]}


@pytest.mark.parametrize(("service", "error", "message"), [
    (fl.FeatureService("bad", ["stats:nope"]), fl.UnknownFeatureError, "feature service 'bad': feature view 'stats' has no feature 'nope'"),
    (fl.FeatureService("bad", ["ghost:x"]), fl.UnknownFeatureViewError, "feature service 'bad': feature view 'ghost' is not registered"),
    (fl.FeatureService("bad", ["stats@0123456789:spend"]), fl.UnknownVersionError, "feature service 'bad': 'stats' has no version starting with '0123456789'"),
    (fl.FeatureService("stats", ["stats:spend"]), fl.DefinitionError, "feature service 'stats' has the name of a view"),
])
def test_a_bad_service_is_refused_and_changes_nothing(fraud_store, service, error, message):
    before = fraud_store.list_feature_services(), fraud_store.list_versions("stats")
    with pytest.raises(error, match=message):
        fraud_store.apply([service])
    assert (fraud_store.list_feature_services(), fraud_store.list_versions("stats")) == before


def test_a_service_definition_checks_itself():
    with pytest.raises(fl.DefinitionError, match="feature service 'empty' names no features"):
        fl.FeatureService("empty", [])
    with pytest.raises(fl.DefinitionError, match="would both be named 'spend'; pass full_feature_names=True"):
        fl.FeatureService("twice", ["stats:spend", "other:spend"])
    with pytest.raises(fl.DefinitionError, match="would both be named 'spend'; list it once"):
        fl.FeatureService("twice", ["stats:spend", "stats:spend"])
    with pytest.raises(fl.DefinitionError, match="features must be a list"):
        fl.FeatureService("text", "stats:spend")
    with pytest.raises(fl.DefinitionError, match="not of the form 'view:feature'"):
        fl.FeatureService("bad", ["stats.spend"])
    named = fl.FeatureService("both", ["stats:spend", "other:spend"], full_feature_names=True)
    assert named.full_feature_names


def test_a_service_with_full_feature_names_names_its_columns_so(store):
    other = fl.FeatureView("other", entities=[user], schema={"spend": "float64"})
    store.apply([user, stats_view(), other, fl.FeatureService("both", ["stats:spend", "other:spend"], full_feature_names=True)])
    assert list(store.get_online_features([{"user_id": 1}], service="both").to_dict()) == ["user_id", "stats__spend", "other__spend"]


def test_reading_an_unknown_service_or_both_features_and_service_is_refused(fraud_store):
    with pytest.raises(fl.UnknownFeatureServiceError, match=r"feature service 'nope' is not registered \(registered: fraud\)"):
        online(fraud_store, service="nope")
    with pytest.raises(fl.InputError, match="pass either features or service=, not both"):
        online(fraud_store, service="fraud", features=["stats:spend"])
    with pytest.raises(fl.UnknownFeatureServiceError):
        fraud_store.get_historical_features(spine(), service="nope")
    with pytest.raises(fl.InputError, match="no features requested"):
        fraud_store.get_historical_features(spine())


def test_a_pinned_view_cannot_be_deleted_until_its_services_are(fraud_store):
    with pytest.raises(fl.DefinitionError, match="is a source of on-demand feature view"):
        fraud_store.delete_feature_view("stats")
    with pytest.raises(fl.DefinitionError, match=r"view 'shares' is pinned by feature service\(s\) fraud"):
        fraud_store.delete_feature_view("shares")
    fraud_store.delete_feature_service("fraud")
    assert fraud_store.list_feature_services() == []
    fraud_store.delete_feature_view("shares")
    with pytest.raises(fl.UnknownFeatureServiceError):
        fraud_store.delete_feature_service("fraud")


def test_a_file_gets_format_2_only_once_it_holds_a_service(tmp_path):
    path = tmp_path / "s.duckdb"
    with fl.open(path) as s:
        s.apply([user, stats_view()])
        assert s.con.execute("SELECT value FROM fl_meta WHERE key = 'format_version'").fetchall() == [("1",)]
        s.apply([fl.FeatureService("spend", ["stats:spend"])])
        assert s.con.execute("SELECT value FROM fl_meta WHERE key = 'format_version'").fetchall() == [("2",)]
    with fl.open(path, read_only=True) as s:  # and this release reads it
        assert s.get_feature_service("spend").pins == {"stats": stats_view().version}
