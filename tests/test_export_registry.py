"""The export's registry (format version 2): every version of every definition round-trips
through ``registry.json`` (a catalog read back plans every request as the store's own
does, a Hypothesis property over apply sequences); a damaged or hand-edited document (a
missing entry, a mistyped one, a spec that is not the version it is filed under) is a
featurelite error naming the fix; the store's own damage handling, now shared with the
export's reader (``Registry.install``); and the ``featurelite export`` CLI's errors."""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from click.testing import CliRunner

import featurelite as fl
from featurelite import export
from featurelite.cli import main
from featurelite.planning import HistoricalPlan

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
user = fl.Entity("user", join_keys=["user_id"])
shop = fl.Entity("shop", join_keys=["shop_id"], dtype="int32")
req = fl.RequestSource("req", schema={"factor": "float64"})


@fl.featurizer
def doubled(amount: float) -> float:
    return amount * 2.0


@fl.featurizer
def tripled(amount: float) -> float:
    return amount * 3.0


@fl.featurizer
def scaled(amount: float, factor: float = 2.0) -> float:
    return amount * factor


@fl.featurizer
def scaled_plus(amount: float, factor: float = 2.0) -> float:
    return amount * factor + 1.0


@fl.featurizer
def share(amount: float, amount_sum: float) -> float:
    return amount / amount_sum


@fl.featurizer
def pair(rating: float, votes: int) -> tuple[float, int]:
    return rating - votes, votes + 1


def stats_view(ttl: str | None = "3h", window: str = "2h", write_fz: Any = None, extra: bool = False,
               desc: str = "") -> fl.FeatureView:
    schema: dict[str, Any] = {"amount": "float64", "name": "string"}
    if extra:
        schema["count"] = "int64"
    kwargs: dict[str, Any] = {}
    if write_fz is not None:
        kwargs["featurizers"] = {"amount_x": write_fz}
    return fl.FeatureView(
        "stats", entities=[user], timestamp_field="ts", ttl=ttl, schema=schema, description=desc,
        aggregations=[fl.Aggregation("amount", "sum", window, name="amount_sum")], **kwargs,
    )


def ratings_view(ttl: str | None = None) -> fl.FeatureView:
    return fl.FeatureView("ratings", entities=[user, shop], timestamp_field="ts", ttl=ttl,
                          schema={"rating": "float64", "votes": "int64"})


def derived_view(fz: Any = scaled, stats: fl.FeatureView | None = None) -> fl.OnDemandFeatureView:
    return fl.OnDemandFeatureView("derived", sources=[stats or stats_view(), req],
                                  featurizers={"scaled": fz, "share": share})


def document_of(store: fl.Store) -> dict[str, Any]:
    """The export's registry document, through JSON text as a file would hold it."""
    doc = export.registry_document(store.store_id or "", store._seq.next - 1, store._registry)
    return json.loads(json.dumps(doc, indent=1))


def rebuilt(store: fl.Store) -> Any:
    return export.registry_of(document_of(store), "probe").catalog()


def plan_signature(plan: HistoricalPlan) -> dict[str, Any]:
    cat = plan.catalog
    views = sorted({*plan.joins, *plan.windows})
    return {
        "groups": [(g.view, g.features, g.outputs) for g in plan.groups],
        "order": plan.order,
        "joins": plan.joins,
        "windows": {v: [a.spec() for a in aggs] for v, aggs in plan.windows.items()},
        "pins": dict(plan.pins),
        "references": plan.references,
        "service": None if plan.service is None else plan.service.spec(),
        "on_demand": {
            v: (p.stored, [(c.featurizer.version, tuple(c.bindings), c.places) for c in p.calls])
            for v, p in plan.on_demand.items()
        },
        "layouts": {v: (cat.layout(v).view.spec(), cat.layout(v).view.version, cat.layout(v).keys,
                        cat.layout(v).ttl_us) for v in views},
        "tables": {v: (cat.tables[v].view.version if v in cat.tables else None) for v in views},
        "odfvs": {v: cat.odfvs[v].version for v in plan.on_demand},
    }


def outcome(catalog: Any, features: Any, full: bool, service: str | None) -> Any:
    try:
        return ("ok", plan_signature(catalog.historical_plan(features, full, service=service)))
    except fl.FeatureliteError as exc:
        return ("error", type(exc).__name__, str(exc))


def assert_same_catalogs(store: fl.Store, requests: list[tuple[Any, bool, str | None]]) -> None:
    mine = store._catalog
    theirs = rebuilt(store)
    assert sorted(mine.layouts) == sorted(theirs.layouts)
    assert sorted(mine.odfvs) == sorted(theirs.odfvs)
    assert sorted(mine.broken) == sorted(theirs.broken)
    assert {n: s.spec() for n, s in mine.services.items()} == {n: s.spec() for n, s in theirs.services.items()}
    for name in [*mine.layouts, *mine.odfvs, *mine.services, "stats", "ratings", "derived", "pricing", "gone"]:
        assert mine.versions.versions_of(name) == theirs.versions.versions_of(name), name
        for kind, version in mine.versions.versions_of(name):
            if kind == "feature_view":
                assert mine.versions.view_at(name, version).spec() == theirs.versions.view_at(name, version).spec()
                assert theirs.versions.view_at(name, version).version == version
            elif kind == "on_demand_feature_view":
                assert mine.versions.odfv_at(name, version).spec() == theirs.versions.odfv_at(name, version).spec()
                assert theirs.versions.odfv_at(name, version).version == version
    for features, full, service in requests:
        assert outcome(mine, features, full, service) == outcome(theirs, features, full, service), (features, service)


def history(n: int = 3) -> pa.Table:
    return pa.table({
        "user_id": pa.array([1, 2, 1][:n], pa.int64()),
        "amount": [1.0, 2.0, 3.0][:n],
        "name": ["a", "b", "c"][:n],
        "ts": pa.array([T0 + timedelta(hours=h) for h in (0, 1, 2)][:n], pa.timestamp("us", tz="UTC")),
    })


# -- (1) round trip, a scripted history ------------------------------------------------


def scripted(store: fl.Store) -> dict[str, str]:
    """Several applies: ttl changes, write-time featurizers, aggregations, on-demand
    versions, services pinning old versions, deleted views and services."""
    seen: dict[str, str] = {}
    v1 = stats_view(ttl="3h", window="2h")
    store.apply([user, shop, v1, ratings_view(), derived_view(scaled, v1),
                 fl.FeatureService("pricing", ["stats:amount", "stats:amount_sum", "derived:scaled"]),
                 fl.FeatureService("full", ["stats:amount", "ratings:rating"], full_feature_names=True)])
    seen["stats1"] = store.get_feature_view("stats").version
    seen["derived1"] = store._registry.odfvs["derived"].version
    store.ingest("stats", history())
    v2 = stats_view(ttl="5h", window="30m", desc="second")
    store.apply([v2, derived_view(scaled_plus, v2)])
    seen["stats2"] = store.get_feature_view("stats").version
    seen["derived2"] = store._registry.odfvs["derived"].version
    v3 = stats_view(ttl=None, window="30m", desc="third")
    store.apply([v3])
    store.apply([fl.FeatureService("later", ["stats:amount", f"derived@{seen['derived1'][:8]}:scaled"])])
    # a view and a service that are deleted
    gone = fl.FeatureView("gone", entities=[user], timestamp_field="ts", schema={"x": "float64"})
    store.apply([gone, fl.FeatureService("gone_svc", ["gone:x"])])
    store.delete_feature_service("gone_svc")
    store.delete_feature_view("gone")
    # ttl changes on ratings over several applies
    store.apply([ratings_view("1h")])
    store.apply([ratings_view("2h")])
    seen["ratings_old"] = store.list_versions("ratings")[0]["version"]
    return seen


def requests_of(seen: dict[str, str]) -> list[tuple[Any, bool, str | None]]:
    return [
        (["stats:amount", "stats:amount_sum"], False, None),
        (["stats:amount", "stats:amount_sum"], True, None),
        (["derived:scaled", "derived:share", "ratings:rating"], False, None),
        (None, False, "pricing"),
        (None, True, "pricing"),
        (None, False, "full"),
        (None, False, "later"),
        (None, False, "gone_svc"),
        ([f"stats@{seen['stats1'][:8]}:amount", f"stats@{seen['stats1'][:8]}:amount_sum"], False, None),
        ([f"stats@{seen['stats2'][:6]}:amount_sum"], False, None),
        ([f"derived@{seen['derived1'][:8]}:scaled"], False, None),
        ([f"derived@{seen['derived2'][:8]}:share", "stats:amount"], False, None),
        ([f"ratings@{seen['ratings_old'][:8]}:rating"], False, None),
        (["gone:x"], False, None),
        (["stats:nothing"], False, None),
        (["stats@0000:amount"], False, None),
    ]


def test_scripted_history_plans_the_same_from_the_export_document(tmp_path):
    with fl.open(tmp_path / "s.duckdb") as store:
        seen = scripted(store)
        assert_same_catalogs(store, requests_of(seen))
    # and after reopening (the registry loaded from the file, not adopted)
    with fl.open(tmp_path / "s.duckdb", read_only=True) as store:
        assert_same_catalogs(store, requests_of(seen))


def test_real_export_directory_round_trip(tmp_path):
    with fl.open(tmp_path / "s.duckdb") as store:
        seen = scripted(store)
        store.export(tmp_path / "export")
        doc = export.read_registry(tmp_path / "export")
        theirs = export.registry_of(doc, "probe").catalog()
        for features, full, service in requests_of(seen):
            assert outcome(store._catalog, features, full, service) == outcome(theirs, features, full, service)


# -- (1) round trip, a Hypothesis property over random apply sequences -----------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_WRITE_FZ = {None: None, "doubled": doubled, "tripled": tripled}
_ODFV_FZ = {"scaled": scaled, "scaled_plus": scaled_plus}
_FEATURE_POOL = ["stats:amount", "stats:name", "stats:amount_sum", "stats:amount_x", "ratings:rating",
                 "ratings:votes", "derived:scaled", "derived:share", "pairs:gap", "pairs:total", "gone:x"]


def _stats_of(params: tuple) -> fl.FeatureView:
    ttl, window, fz, extra, desc = params
    return stats_view(ttl=ttl, window=window, write_fz=_WRITE_FZ[fz], extra=extra, desc=desc)


stats_params = st.tuples(st.sampled_from([None, "1h", "3h"]), st.sampled_from(["30m", "2h"]),
                         st.sampled_from([None, "doubled", "tripled"]), st.booleans(), st.sampled_from(["", "d"]))
operations = st.one_of(
    st.tuples(st.just("stats"), stats_params),
    st.tuples(st.just("ratings"), st.sampled_from([None, "1h", "2h"])),
    st.tuples(st.just("derived"), st.sampled_from(sorted(_ODFV_FZ)), stats_params),
    st.tuples(st.just("pairs"), st.booleans()),
    st.tuples(st.just("service"), st.sampled_from(["svc_a", "svc_b"]),
              st.lists(st.sampled_from(_FEATURE_POOL), min_size=1, max_size=4, unique=True), st.booleans(),
              st.integers(0, 5)),
    st.tuples(st.just("delete_view"), st.sampled_from(["stats", "ratings", "derived", "pairs", "gone"])),
    st.tuples(st.just("delete_service"), st.sampled_from(["svc_a", "svc_b"])),
    st.tuples(st.just("gone"), st.booleans()),
    st.tuples(st.just("ingest"), st.integers(1, 3)),
)


def _pin_some(store: fl.Store, features: list[str], which: int) -> list[str]:
    """Pin some references at an older version of their view (by prefix)."""
    out = []
    for i, ref in enumerate(features):
        view, feature = ref.split(":")
        try:
            versions = [v["version"] for v in store.list_versions(view) if v["kind"] != "feature_service"]
        except fl.FeatureliteError:
            versions = []
        if versions and (i + which) % 3 == 0:
            out.append(f"{view}@{versions[which % len(versions)][:8]}:{feature}")
        else:
            out.append(ref)
    return out


def _known(store: fl.Store, ref: str) -> bool:
    view, feature = ref.split(":")
    try:
        return feature in store._catalog.schema_of(view)
    except fl.FeatureliteError:
        return False


def _run(store: fl.Store, op: tuple) -> None:
    kind = op[0]
    if kind == "stats":
        store.apply([user, _stats_of(op[1])])
    elif kind == "ratings":
        store.apply([user, shop, ratings_view(op[1])])
    elif kind == "derived":
        store.apply([derived_view(_ODFV_FZ[op[1]], _stats_of(op[2]))])
    elif kind == "pairs":
        store.apply([fl.OnDemandFeatureView("pairs", sources=[ratings_view("1h" if op[1] else None)],
                                            featurizers={("gap", "total"): pair})])
    elif kind == "service":
        _, name, features, full, which = op
        features = [f for f in features if _known(store, f)] or features
        store.apply([fl.FeatureService(name, _pin_some(store, features, which), full_feature_names=full)])
    elif kind == "delete_view":
        store.delete_feature_view(op[1])
    elif kind == "delete_service":
        store.delete_feature_service(op[1])
    elif kind == "gone":
        store.apply([user, fl.FeatureView("gone", entities=[user], timestamp_field="ts",
                                          schema={"x": "float64", "y": "int64"}
                                          if op[1] else {"x": "float64"})])
    elif kind == "ingest":
        store.ingest("stats", history(op[1]))


def _all_requests(store: fl.Store) -> list[tuple[Any, bool, str | None]]:
    found: list[tuple[Any, bool, str | None]] = []
    for name in ["svc_a", "svc_b"]:
        found += [(None, False, name), (None, True, name)]
    for feature in _FEATURE_POOL:
        found.append(([feature], False, None))
        view, name = feature.split(":")
        try:
            versions = store.list_versions(view)
        except fl.FeatureliteError:
            continue
        for v in versions:
            found.append(([f"{view}@{v['version'][:10]}:{name}"], False, None))
    found.append((["stats:amount", "derived:scaled", "pairs:gap", "stats:amount_sum"], True, None))
    return found


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operations, min_size=1, max_size=10))
def test_random_apply_sequences_plan_the_same_from_the_export_document(ops):
    with fl.open(":memory:") as store:
        for op in ops:
            with contextlib.suppress(fl.FeatureliteError):  # a refused change: the store is as before
                _run(store, op)
        assert_same_catalogs(store, _all_requests(store))


# -- (2) damaged or hand-edited registry.json ------------------------------------------


with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from featurelite import spark as fls


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("base")
    with fl.open(folder / "s.duckdb") as store:
        seen = scripted(store)
        store.export(folder / "export")
    return {"doc": json.loads((folder / "export" / "registry.json").read_text()), "seen": seen, "folder": folder}


def use_everything(doc: dict[str, Any], seen: dict[str, str]) -> None:
    """Read the document as featurelite.spark does and plan every request; any error must
    be a featurelite error."""
    catalog = export.registry_of(doc, "the registry of the export 'X'").catalog()
    versions = catalog.versions
    for name in ["stats", "ratings", "derived", "gone", "pricing", "later", "full", "user"]:
        for kind, version in versions.versions_of(name):
            try:
                if kind == "feature_view":
                    versions.view_at(name, version)
                elif kind == "on_demand_feature_view":
                    versions.odfv_at(name, version)
            except fl.FeatureliteError:
                pass
    for features, full, service in requests_of(seen):
        with contextlib.suppress(fl.FeatureliteError):
            catalog.historical_plan(features, full, service=service)


def write_doc(folder: Path, doc: Any) -> Path:
    target = folder / "edited"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir()
    (target / "registry.json").write_text(json.dumps(doc))
    return target


def version_of(doc: dict[str, Any], kind: str, name: str, nth: int = 0) -> dict[str, Any]:
    return [v for v in doc["versions"] if v["kind"] == kind and v["name"] == name][nth]


# Each edit: (id, function changing the document in place).
def _drop(key: str):
    return lambda d: d.pop(key)


def _set_current(section: str, index: int, key: str, value: Any):
    def edit(d: dict[str, Any]) -> None:
        d[section][index]["spec"][key] = value
    return edit


def _set_old_stats(key: str, value: Any, where: str = "spec"):
    def edit(d: dict[str, Any]) -> None:
        item = version_of(d, "feature_view", "stats", 0)
        if where == "spec":
            item["spec"][key] = value
        else:
            item[key] = value
    return edit


def _drop_old_stats_key(key: str):
    def edit(d: dict[str, Any]) -> None:
        del version_of(d, "feature_view", "stats", 0)["spec"][key]
    return edit


def _old_derived_source(source: str):
    def edit(d: dict[str, Any]) -> None:
        version_of(d, "on_demand_feature_view", "derived", 0)["spec"]["featurizers"][0][1]["source"] = source
    return edit


EDITS = {
    "no_versions": _drop("versions"),
    "no_entities": _drop("entities"),
    "versions_is_dict": lambda d: d.__setitem__("versions", {"a": 1}),
    "versions_item_is_string": lambda d: d["versions"].append("oops"),
    "versions_item_kind_list": lambda d: d["versions"].append({"kind": ["x"], "name": "stats", "version": "1",
                                                               "spec": {}}),
    "versions_item_name_dict": lambda d: d["versions"].append({"kind": "feature_view", "name": {"a": 1},
                                                               "version": "1", "spec": {}}),
    "old_version_is_int": _set_old_stats("version", 12345678, where="item"),
    "old_version_is_null": _set_old_stats("version", None, where="item"),
    "old_spec_without_schema": _drop_old_stats_key("schema"),
    "old_spec_without_name": _drop_old_stats_key("name"),
    "old_spec_schema_is_string": _set_old_stats("schema", "oops"),
    "old_spec_ttl_is_string": _set_old_stats("ttl_us", "3h"),
    "old_spec_aggregations_bad": _set_old_stats("aggregations", [{"column": "amount"}]),
    "old_spec_is_list": lambda d: version_of(d, "feature_view", "stats", 0).__setitem__("spec", [1, 2]),
    "old_spec_is_string": lambda d: version_of(d, "feature_view", "stats", 0).__setitem__("spec", "x"),
    "current_view_without_name": lambda d: d["feature_views"][0]["spec"].pop("name"),
    "current_view_schema_is_int": _set_current("feature_views", 0, "schema", 3),
    "current_view_ttl_is_string": _set_current("feature_views", 0, "ttl_us", "3h"),
    "current_view_unknown_entity": _set_current("feature_views", 0, "entities", ["nobody"]),
    "current_view_tags_list": _set_current("feature_views", 0, "tags", ["a"]),
    "current_view_spec_is_list": lambda d: d["feature_views"][0].__setitem__("spec", [1]),
    "current_entity_spec_null": lambda d: d["entities"][0].__setitem__("spec", None),
    "current_service_features_string": _set_current("feature_services", 0, "features", "stats:amount"),
    "current_service_pins_bad": _set_current("feature_services", 0, "pins", [["stats"]]),
    "current_service_pins_dict": _set_current("feature_services", 0, "pins", {"stats": "x"}),
    "current_odfv_sources_bad": _set_current("on_demand_feature_views", 0, "sources", [{"nothing": 1}]),
    "current_odfv_featurizers_bad": _set_current("on_demand_feature_views", 0, "featurizers", "x"),
    "old_odfv_source_syntax_error": _old_derived_source("def scaled(amount:\n"),
    "old_odfv_source_empty": _old_derived_source(""),
    "old_odfv_missing_featurizers": lambda d: version_of(d, "on_demand_feature_view", "derived", 0)["spec"].pop(
        "featurizers"),
    "old_odfv_sources_bad": lambda d: version_of(d, "on_demand_feature_view", "derived", 0)["spec"].__setitem__(
        "sources", [{"x": 1}]),
    "old_service_spec_bad": lambda d: version_of(d, "feature_service", "pricing", 0)["spec"].pop("features"),
    "section_is_null": lambda d: d.__setitem__("feature_services", None),
    "current_item_is_list": lambda d: d["entities"].__setitem__(0, ["x"]),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edited_document_raises_featurelite_errors_only(base, edit):
    doc = copy.deepcopy(base["doc"])
    EDITS[edit](doc)
    with contextlib.suppress(fl.FeatureliteError):
        use_everything(doc, base["seen"])


@pytest.mark.parametrize("edit", ["no_versions", "versions_item_kind_list", "old_spec_without_schema",
                                  "old_version_is_int", "current_view_ttl_is_string", "current_odfv_featurizers_bad"])
def test_an_edited_export_read_by_spark_reader_raises_featurelite_errors_only(base, edit):
    doc = copy.deepcopy(base["doc"])
    EDITS[edit](doc)
    folder = write_doc(base["folder"], doc)
    try:
        defs = fls.read_registry_of(folder)
    except fl.FeatureliteError:
        return
    for features, full, service in requests_of(base["seen"]):
        with contextlib.suppress(fl.FeatureliteError):
            defs.catalog.historical_plan(features, full, service=service)


@pytest.mark.parametrize("value", [None, "abc", [1], 1.5])
def test_a_hand_edited_ingest_position_is_a_featurelite_error(base, value):
    doc = copy.deepcopy(base["doc"])
    doc["ingest_position"] = value
    folder = write_doc(base["folder"], doc)
    with contextlib.suppress(fl.FeatureliteError):
        fls.read_registry_of(folder)


def test_a_current_version_that_is_not_its_specs_hash_is_refused(base):
    doc = copy.deepcopy(base["doc"])
    item = next(v for v in doc["feature_views"] if v["spec"]["name"] == "stats")
    item["spec"]["ttl_us"] = 123  # the spec edited, its version not
    try:
        catalog = export.registry_of(doc, "probe").catalog()
    except fl.FeatureliteError as exc:
        assert "export the store again" in str(exc)
        return
    pytest.fail(f"accepted: the document says stats is {item['version']}, the reader uses "
                f"{catalog.version_of('stats')} (ttl {catalog.layout('stats').view.ttl})")


def test_a_stored_version_that_is_not_its_specs_hash_is_refused(base):
    doc = copy.deepcopy(base["doc"])
    item = version_of(doc, "feature_view", "stats", 0)
    item["spec"]["ttl_us"] = 123  # an old version's spec edited: a service pinning it would read another ttl
    try:
        plan = export.registry_of(doc, "probe").catalog().historical_plan(None, False, service="pricing")
    except fl.FeatureliteError as exc:
        assert "export the store again" in str(exc)
        return
    read = plan.catalog.layout("stats").view
    pytest.fail(f"accepted: the plan pins stats@{plan.pins['stats']} but reads a view of version {read.version} "
                f"with ttl {read.ttl}")


def test_a_stored_version_under_another_name_is_refused(base):
    doc = copy.deepcopy(base["doc"])
    item = version_of(doc, "feature_view", "stats", 0)
    item["name"] = "ratings"  # filed under another name
    with pytest.raises(fl.FeatureliteError):
        catalog = export.registry_of(doc, "probe").catalog()
        catalog.historical_plan([f"ratings@{item['version'][:8]}:rating"], False)


# -- (3) the store's own damage handling after the Registry.load refactor ---------------


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    path = tmp_path_factory.mktemp("pristine") / "s.duckdb"
    with fl.open(path) as store:
        seen = scripted(store)
    return path, seen


def damaged_copy(folder: Path, source: Path, *sql: str) -> Path:
    path = folder / "damaged.duckdb"
    shutil.copy(source, path)
    con = duckdb.connect(str(path))
    for statement in sql:
        con.execute(statement).fetchall()
    con.close()
    return path


def _old_stats_row(spec_sql: str, seen: dict[str, str]) -> str:
    return f"UPDATE fl_versions SET spec = {spec_sql} WHERE kind = 'feature_view' AND name = 'stats' " \
           f"AND version = '{seen['stats1']}'"


CURRENT_DAMAGE = {
    "current spec not JSON": "UPDATE fl_versions SET spec = '{not json' WHERE (kind, name, version) IN "
                             "(SELECT kind, name, version FROM fl_current WHERE kind = 'feature_view')",
    "current spec empty": "UPDATE fl_versions SET spec = '{}' WHERE (kind, name, version) IN "
                          "(SELECT kind, name, version FROM fl_current WHERE kind = 'feature_service')",
    "entity gone": "DELETE FROM fl_current WHERE kind = 'entity' AND name = 'user'",
    "unknown kind": "UPDATE fl_current SET kind = 'gadget' WHERE kind = 'entity' AND name = 'shop'",
    "current odfv spec a list": "UPDATE fl_versions SET spec = '[1]' WHERE (kind, name, version) IN "
                                "(SELECT kind, name, version FROM fl_current WHERE kind = 'on_demand_feature_view')",
}


@pytest.mark.parametrize("name", sorted(CURRENT_DAMAGE))
def test_damage_to_definitions_in_force_is_still_a_store_format_error(pristine, tmp_path, name):
    source, _ = pristine
    path = damaged_copy(tmp_path, source, CURRENT_DAMAGE[name])
    with pytest.raises(fl.StoreFormatError, match="is damaged: table fl_"):
        fl.open(path, read_only=True)
    with pytest.raises(fl.StoreFormatError, match="is damaged: table fl_"):
        fls.read_registry_of(path)


def test_a_store_with_a_damaged_old_version_still_exports(pristine, tmp_path):
    """A store with an old version that is not JSON opens (test_file_damage says so), and
    exporting it must not raise a raw JSONDecodeError (before the change the export did not
    read old versions at all)."""
    source, seen = pristine
    path = damaged_copy(tmp_path, source, _old_stats_row("'{oops'", seen))
    with fl.open(path, read_only=True) as store:
        try:
            store.export(tmp_path / "export")
        except fl.FeatureliteError as exc:
            assert "damaged" in str(exc)


def test_the_spark_reader_of_a_store_with_a_damaged_old_version(pristine, tmp_path):
    source, seen = pristine
    path = damaged_copy(tmp_path, source, _old_stats_row("'{oops'", seen))
    try:
        fls.read_registry_of(path)
    except fl.FeatureliteError as exc:
        assert "damaged" in str(exc)


def test_cli_export_of_a_store_with_a_damaged_old_version(pristine, tmp_path):
    source, seen = pristine
    path = damaged_copy(tmp_path, source, _old_stats_row("'{oops'", seen))
    result = CliRunner().invoke(main, ["export", str(path), str(tmp_path / "export")])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def test_a_store_whose_old_version_spec_is_not_a_spec_reads_through_a_service(pristine, tmp_path):
    """The service 'pricing' pins the first version of stats: a read through it parses that
    version; an old spec of valid JSON that is not a view's spec must be a featurelite error."""
    source, seen = pristine
    path = damaged_copy(tmp_path, source, _old_stats_row("'{}'", seen))
    spine = pa.table({"user_id": pa.array([1], pa.int64()),
                      "event_timestamp": pa.array([T0], pa.timestamp("us", tz="UTC"))})
    with fl.open(path, read_only=True) as store, contextlib.suppress(fl.FeatureliteError):
        store.get_historical_features(spine, service="pricing")


# -- (4) the featurelite export CLI -----------------------------------------------------


@pytest.fixture
def small_store(tmp_path: Path) -> Path:
    path = tmp_path / "small.duckdb"
    with fl.open(path) as store:
        store.apply([user, stats_view()])
        store.ingest("stats", history())
    return path


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def assert_clean_failure(result: Any, pattern: str) -> None:
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert pattern in result.output, result.output


def test_cli_export_writes_and_reports(small_store, tmp_path):
    result = cli("export", str(small_store), str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rows"] == {"stats": 3}
    doc = export.read_registry(tmp_path / "out")
    assert doc["format_version"] == 2 and doc["versions"]
    table = cli("export", str(small_store), str(tmp_path / "out2"), "--format", "table")
    assert table.exit_code == 0 and "stats" in table.output


def test_cli_export_errors(small_store, tmp_path):
    (tmp_path / "taken").mkdir()
    assert_clean_failure(cli("export", str(small_store), str(tmp_path / "taken")), "exists")
    assert_clean_failure(cli("export", str(small_store), str(tmp_path / "no" / "out")), "is not a directory")
    assert_clean_failure(cli("export", str(tmp_path / "missing.duckdb"), str(tmp_path / "o1")), "no store at")
    (tmp_path / "o2.partial").mkdir()
    assert_clean_failure(cli("export", str(small_store), str(tmp_path / "o2")), "did not finish")
    (tmp_path / "afile").write_text("x")
    assert_clean_failure(cli("export", str(small_store), str(tmp_path / "afile" / "out")), "is not a directory")
    not_a_store = tmp_path / "notastore.duckdb"
    not_a_store.write_text("hello")
    assert_clean_failure(cli("export", str(not_a_store), str(tmp_path / "o3")), "")
    assert not (tmp_path / "o3").exists() and not (tmp_path / "o3.partial").exists()


def test_cli_export_into_the_store_file_path_or_an_empty_name(small_store, tmp_path):
    assert_clean_failure(cli("export", str(small_store), str(small_store)), "exists")
    result = cli("export", str(small_store), "")
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), repr(result.exception)


def test_cli_export_into_a_directory_with_a_quote_in_its_name(small_store, tmp_path):
    result = cli("export", str(small_store), str(tmp_path / "it's"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rows"] == {"stats": 3}


# -- (1b) an on-demand view this process cannot compile (the store keeps it as broken) ---


def test_an_on_demand_view_that_cannot_compile_is_kept_in_the_export(pristine, tmp_path):
    """The store opens with the view 'broken' (its features raise FeaturizerError); the
    export's registry still holds the definition in force. Here the featurizer breaks
    because its stored source was edited in the file, so its spec is no longer the version
    it is filed under: the export's reader refuses the document, naming the view, rather
    than reading an edited definition."""
    source, _ = pristine
    path = damaged_copy(
        tmp_path, source,
        "UPDATE fl_versions SET spec = replace(spec, 'return amount * factor + 1.0', 'return amount * nowhere') "
        "WHERE (kind, name, version) IN (SELECT kind, name, version FROM fl_current "
        "WHERE kind = 'on_demand_feature_view')",
    )
    with fl.open(path, read_only=True) as store:
        assert "derived" in store._registry.broken, "the damage did not make the view broken"
        doc = document_of(store)
    assert "derived" in [o["spec"]["name"] for o in doc["on_demand_feature_views"]], \
        "the on-demand view in force is missing from the export's on_demand_feature_views"
    with pytest.raises(fl.InputError, match=r"on_demand_feature_view 'derived' at version .*it was edited"):
        export.registry_of(doc, "probe")


# -- one end-to-end check on Spark: services pinning old versions of several kinds ------


def test_spark_reads_the_scripted_store_as_the_store_does(tmp_path):
    from pyspark.sql import SparkSession

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spark = (SparkSession.builder.master("local[2]").appName("probe")
                 .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false")
                 .config("spark.sql.shuffle.partitions", "2").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    ratings = pa.table({
        "user_id": pa.array([1, 1, 2], pa.int64()), "shop_id": pa.array([1, 1, 1], pa.int32()),
        "rating": [4.0, 5.0, 3.0], "votes": pa.array([1, 2, 3], pa.int64()),
        "ts": pa.array([T0, T0 + timedelta(hours=1), T0], pa.timestamp("us", tz="UTC")),
    })
    spine = pa.table({
        "user_id": pa.array([1, 1, 2, 3], pa.int64()), "shop_id": pa.array([1, 1, 1, 1], pa.int32()),
        "event_timestamp": pa.array([T0 + timedelta(hours=h) for h in (0.5, 2.5, 4, 1)], pa.timestamp("us", tz="UTC")),
        "factor": [1.5, None, 3.0, 2.0],
    })
    try:
        with fl.open(tmp_path / "s.duckdb") as store:
            seen = scripted(store)
            store.ingest("ratings", ratings)
            store.ingest("stats", history())
            asked = [
                {"service": "later"},
                {"features": [f"ratings@{seen['ratings_old'][:8]}:rating", "derived:share", "stats:amount_sum"]},
            ]
            expected = [store.get_historical_features(spine, **kwargs) for kwargs in asked]
            store.export(tmp_path / "export")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = spark.createDataFrame(spine)
            for kwargs, want in zip(asked, expected, strict=True):
                got = fls.get_historical_features(spark, frame, history=tmp_path / "export", **kwargs).toArrow()
                want = want.replace_schema_metadata(None)
                assert got.column_names == want.column_names, kwargs
                assert got.to_pylist() == want.to_pylist(), kwargs
    finally:
        spark.stop()
