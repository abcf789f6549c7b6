"""Definitions, apply and versions."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import datetime, timedelta

import pyarrow as pa
import pytest

import featurelite as fl

user = fl.Entity("user", join_keys=["user_id"])


def view(**changes) -> fl.FeatureView:
    kwargs = dict(entities=[user], schema={"spend": "float64", "orders": "int64"}, timestamp_field="ts", ttl="30d")
    kwargs.update(changes)
    return fl.FeatureView("stats", **kwargs)


def one_row(**extra) -> pa.Table:
    return pa.table({"user_id": [1], "spend": [1.0], "orders": [2], "ts": pa.array([datetime(2024, 1, 1)], pa.timestamp("us")), **extra})


# -- definitions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: fl.Entity("bad name"), "not valid"),
        (lambda: fl.Entity("_fl_user"), "reserved prefix"),
        (lambda: fl.Entity("user", join_keys=[]), "at least one join key"),
        (lambda: fl.Entity("user", join_keys=["a", "a"]), "twice"),
        (lambda: fl.Entity("user", join_keys={"a": "float64"}), "not supported"),
        (lambda: view(schema={"spend": "decimal"}), "dtype 'decimal'"),
        (lambda: view(schema={}), "needs a schema"),
        (lambda: view(schema={"user_id": "int64"}), "'user_id' twice"),
        (lambda: view(schema={"ts": "int64"}), "'ts' twice"),
        (lambda: view(schema={"a:b": "int64"}), "not valid"),
        (lambda: view(ttl="soon"), "not a duration"),
        (lambda: view(ttl="-1d"), "not a duration"),
        (lambda: view(ttl=timedelta(0)), "positive"),
        (lambda: view(entities=[]), "at least one entity"),
        (lambda: view(created_timestamp_field="ts"), "both timestamp_field and created"),
        (lambda: view(tags={"a": 1}), "strings to strings"),
    ],
)
def test_invalid_definitions_are_refused(build, message):
    with pytest.raises(fl.DefinitionError, match=message):
        build()


def test_names_that_differ_only_in_case_are_refused(store):
    with pytest.raises(fl.DefinitionError, match="ignoring case"):
        view(schema={"spend": "float64", "Spend": "int64"})
    with pytest.raises(fl.DefinitionError, match="ignoring case"):
        fl.FeatureView("v", entities=[fl.Entity("u", join_keys=["Spend"])], schema={"spend": "float64"})
    store.apply([fl.Entity("u", join_keys=["Spend"])])
    with pytest.raises(fl.DefinitionError, match="clashes"):
        store.apply([fl.FeatureView("v", entities=["u"], schema={"spend": "float64"})])
    store.apply([user, view()])
    with pytest.raises(fl.DefinitionError, match="differ only in case"):
        store.apply([fl.FeatureView("Stats", entities=[user], schema={"x": "float64"}, timestamp_field="ts")])
    assert [v.name for v in store.list_feature_views()] == ["stats"]


def test_ttl_strings_and_versions():
    assert view(ttl="36h").ttl == timedelta(hours=36)
    assert view(ttl="2w").ttl == timedelta(weeks=2)
    assert view(ttl=None).ttl is None
    assert view().version == view().version
    assert view().version != view(description="changed").version
    assert fl.FeatureView.from_spec(view().spec()) == view()
    assert fl.Entity.from_spec(user.spec()) == user
    assert fl.Entity("store", join_keys={"store_id": "string", "region": "int32"}).key_schema == {"store_id": "string", "region": "int32"}


# -- apply -----------------------------------------------------------------------------------


def test_apply_is_idempotent_and_reports_changes(store):
    first = store.apply([user, view()])
    assert [c.name for c in first.added] == ["user", "stats"] and bool(first)
    again = store.apply([user, view()])
    assert not again and [c.name for c in again.unchanged] == ["user", "stats"]
    changed = store.apply([view(description="7-day stats")])
    assert [(c.name, c.previous_version) for c in changed.changed] == [("stats", view().version)]
    assert store.get_feature_view("stats").description == "7-day stats"


def test_dry_run_writes_nothing(store):
    result = store.apply([user, view()], dry_run=True)
    assert result.dry_run and [c.name for c in result.added] == ["user", "stats"]
    assert store.list_feature_views() == []
    with pytest.raises(fl.NotFoundError, match="was ever applied"):
        store.list_versions("stats")


def test_entities_embedded_in_a_view_are_applied_with_it(store):
    store.apply([view()])
    assert store.get_entity("user") == user


def test_unknown_entity_and_duplicates(store):
    with pytest.raises(fl.UnknownEntityError, match="'ghost'"):
        store.apply([view(entities=["ghost"])])
    with pytest.raises(fl.DefinitionError, match="two different feature views named 'stats'"):
        store.apply([user, view(), view(description="other")])
    with pytest.raises(fl.DefinitionError, match="takes Entity, FeatureView, OnDemandFeatureView and FeatureService"):
        store.apply([user, "stats"])
    with pytest.raises(fl.DefinitionError, match="different entity 'user'"):
        store.apply([fl.Entity("user", join_keys=["uid"]), view()])
    assert store.list_entities() == [] and store.list_feature_views() == []


def test_every_version_is_kept(store):
    store.apply([user, view()])
    store.apply([view(ttl="7d")])
    store.apply([view()])
    versions = store.list_versions("stats")
    assert [v["version"] for v in versions] == [view().version, view(ttl="7d").version]
    assert [v["current"] for v in versions] == [True, False]
    assert versions[1]["spec"]["ttl_us"] == 7 * 86_400_000_000
    assert all(isinstance(v["applied_at"], datetime) for v in versions)
    log = store.con.sql("SELECT change FROM fl_apply_log WHERE name = 'stats' ORDER BY applied_at").fetchall()
    assert [c for (c,) in log] == ["added", "changed", "changed"]


@pytest.mark.parametrize(
    "changed, reason",
    [
        (view(schema={"spend": "int64", "orders": "int64"}), "changes dtype"),
        (view(schema={"spend": "float64"}), "'orders' is removed"),
        (view(timestamp_field="event_ts"), "timestamp_field changes"),
        (view(entities=[fl.Entity("user", join_keys={"user_id": "string"})]), "join keys change"),
    ],
)
def test_breaking_changes_are_refused_once_data_exists(store, changed, reason):
    store.apply([user, view()])
    store.ingest("stats", one_row())
    with pytest.raises(fl.BreakingChangeError, match=reason) as info:
        store.apply([changed])
    assert "delete_feature_view('stats')" in str(info.value) and info.value.rows == 1
    assert store.get_feature_view("stats") == view()
    assert store.describe("stats")["history_rows"] == 1


def test_breaking_change_on_an_empty_view_recreates_it(store):
    store.apply([user, view()])
    store.apply([view(schema={"spend": "int64"})])
    store.ingest("stats", pa.table({"user_id": [1], "spend": [3], "ts": pa.array([datetime(2024, 1, 1)], pa.timestamp("us"))}))
    assert store.describe("stats")["history_rows"] == 1


def test_adding_a_feature_keeps_data_and_old_rows_read_null(store):
    store.apply([user, view()])
    store.ingest("stats", one_row())
    store.get_online_features([{"user_id": 1}], ["stats:spend"])
    store.apply([view(schema={"spend": "float64", "orders": "int64", "country": "string"})])
    got = store.get_online_features([{"user_id": 1}], ["stats:spend", "stats:country"], now=datetime(2024, 1, 2))
    assert got.to_dict() == {"user_id": [1], "spend": [1.0], "country": [None]}
    assert got.statuses["country"] == [fl.Status.NULL_VALUE]
    store.ingest("stats", one_row(country=["de"]))
    assert store.get_online_features([{"user_id": 1}], ["stats:country"], now=datetime(2024, 1, 2)).to_dict()["country"] == ["de"]


def test_delete_feature_view_drops_its_data(store):
    store.apply([user, view()])
    store.ingest("stats", one_row())
    store.delete_feature_view("stats")
    with pytest.raises(fl.UnknownFeatureViewError):
        store.describe("stats")
    store.apply([view(schema={"spend": "int64"})])
    assert store.describe("stats")["history_rows"] == 0


def test_plan_refuses_what_is_not_a_list_of_definitions():
    # The registry's own check, whatever the Store checked before calling it.
    from featurelite.registry import Registry

    registry = Registry()
    for given in (1, None, 2.5):
        with pytest.raises(fl.DefinitionError, match="apply takes an Entity"):
            registry.plan(given, lambda name: 0)  # type: ignore[arg-type]
    with pytest.raises(fl.DefinitionError, match="got int"):
        registry.plan([user, 1], lambda name: 0)  # type: ignore[list-item]


def test_apply_does_not_import_hypothesis(tmp_path):
    # Apply checks featurizers with a seeded sweep; Hypothesis (search, shrinking) is for
    # verify and for a featurizer that fails. A fresh process, so no test imported it first.
    (tmp_path / "defs.py").write_text(textwrap.dedent('''
        import featurelite as fl

        @fl.featurizer
        def ratio(spend: float, orders: int) -> float:
            return spend / orders if orders else 0.0

        @fl.featurizer
        def doubled(spend: float) -> float:
            return spend * 2

        user = fl.Entity("user", join_keys=["user_id"])
        stats = fl.FeatureView("stats", entities=[user], schema={"spend": "float64", "orders": "int64"},
                               timestamp_field="ts", featurizers={"spend2": doubled})
        shares = fl.OnDemandFeatureView("shares", sources=[stats], featurizers={"ratio": ratio})
    '''))
    script = textwrap.dedent('''
        import sys
        import featurelite as fl
        import defs

        with fl.open(":memory:") as store:
            result = store.apply([defs.user, defs.stats, defs.shares])
            assert len(result.added) == 3, result
        print(sorted(name for name in sys.modules if name.split(".")[0] == "hypothesis"))
    ''')
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
