"""Windowed aggregations, the definition side: fl.Aggregation, FeatureView(aggregations=...),
their versions and specs, and how the registry stores and applies them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

import featurelite as fl
from featurelite.definitions import MAX_TTL

user = fl.Entity("user", join_keys=["user_id"])
SCHEMA = {"amount": "float64", "items": "int64", "country": "string"}
#: The version of ``view()`` (no aggregations) computed by featurelite before aggregations
#: existed (commit bcb65dd): store files written then must keep finding their views unchanged.
OLD_VERSION = "f66642532ab04d40"
#: Its spec then, written out by hand.
OLD_SPEC = {
    "kind": "feature_view", "name": "payments", "entities": ["user"],
    "schema": [["amount", "float64"], ["items", "int64"], ["country", "string"]],
    "timestamp_field": "ts", "created_timestamp_field": None, "ttl_us": 30 * 86_400_000_000,
    "description": "", "owner": "", "tags": {},
}


def view(**changes) -> fl.FeatureView:
    kwargs = dict(entities=[user], schema=SCHEMA, timestamp_field="ts", ttl="30d")
    kwargs.update(changes)
    return fl.FeatureView("payments", **kwargs)


def rows(n: int = 3) -> pa.Table:
    return pa.table({
        "user_id": list(range(n)),
        "amount": [1.5 * i for i in range(n)],
        "items": list(range(n)),
        "country": ["de"] * n,
        "ts": pa.array([datetime(2024, 1, 1) + timedelta(hours=i) for i in range(n)], pa.timestamp("us")),
    })


# -- Aggregation ---------------------------------------------------------------------------


def test_default_names_and_window_text_as_given():
    agg = fl.Aggregation("amount", "sum", "1h")
    assert agg.name == "amount_sum_1h"
    assert (agg.column, agg.function, agg.window, agg.window_text) == ("amount", "sum", timedelta(hours=1), "1h")
    assert agg.window_us == 3_600_000_000
    ninety = fl.Aggregation("amount", "mean", "90s")
    assert (ninety.window_text, ninety.name, ninety.window) == ("90s", "amount_mean_90s", timedelta(seconds=90))
    assert fl.Aggregation("items", "count", "7d").name == "items_count_7d"
    assert fl.Aggregation("amount", "max", "1.5h", name="amount_max_90m").window_text == "1.5h"
    assert fl.Aggregation("amount", "max", "1.5h", name="amount_max_90m").window == timedelta(minutes=90)
    assert fl.Aggregation("amount", "sum", "1h", name="spend_1h").name == "spend_1h"


@pytest.mark.parametrize(
    "window, text",
    [
        (timedelta(seconds=90), "90s"),
        (timedelta(hours=1), "1h"),
        (timedelta(minutes=90), "90m"),
        (timedelta(days=7), "1w"),
        (timedelta(days=8), "8d"),
        (timedelta(milliseconds=1500), "1500ms"),
        (timedelta(microseconds=1), "1us"),
        (timedelta(days=3_652_058), "3652058d"),
        (MAX_TTL, f"{MAX_TTL // timedelta(microseconds=1)}us"),  # not a whole number of any larger unit
    ],
)
def test_timedelta_windows_get_text_in_the_largest_whole_unit(window, text):
    agg = fl.Aggregation("amount", "sum", window)
    assert (agg.window, agg.window_text, agg.name) == (window, text, f"amount_sum_{text}")
    assert agg.window_us == window // timedelta(microseconds=1)


@given(st.timedeltas(min_value=timedelta(microseconds=1), max_value=MAX_TTL))
def test_timedelta_window_text_reads_back_as_the_same_window(window):
    agg = fl.Aggregation("amount", "sum", window)
    assert fl.Aggregation("amount", "sum", agg.window_text) == agg
    assert fl.Aggregation.from_spec(json.loads(json.dumps(agg.spec()))) == agg


def test_aggregation_spec_round_trip_and_equality():
    agg = fl.Aggregation("amount", "std", "90s", name="spread")
    assert agg.spec() == {"column": "amount", "function": "std", "window": "90s", "name": "spread"}
    assert fl.Aggregation.from_spec(agg.spec()) == agg
    assert hash(fl.Aggregation.from_spec(agg.spec())) == hash(agg)
    assert agg != fl.Aggregation("amount", "var", "90s", name="spread")
    with pytest.raises(AttributeError):
        agg.window = timedelta(hours=2)  # type: ignore[misc]  # frozen


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: fl.Aggregation("amount", "median", "1h"),
         "function 'median' is not known; use one of count, sum, mean, min, max, last, std, var"),
        (lambda: fl.Aggregation("amount", "Sum", "1h"), "'Sum' is not known; use one of count"),
        (lambda: fl.Aggregation("amount", None, "1h"), "None is not known"),
        (lambda: fl.Aggregation("amount", "sum", "0s"), "must be positive, got 0:00:00; use a window of at least"),
        (lambda: fl.Aggregation("amount", "sum", timedelta(0)), "must be positive"),
        (lambda: fl.Aggregation("amount", "sum", timedelta(hours=-1)), "must be positive"),
        (lambda: fl.Aggregation("amount", "sum", "-1h"), "'-1h' is not a duration; write it like '90s'"),
        (lambda: fl.Aggregation("amount", "sum", "soon"), "not a duration"),
        (lambda: fl.Aggregation("amount", "sum", "99999999d"), "longer than the longest window.*use a shorter window"),
        (lambda: fl.Aggregation("amount", "sum", MAX_TTL + timedelta(microseconds=1)), "use a shorter window"),
        (lambda: fl.Aggregation("amount", "sum", None), "needs a window, like '1h'"),
        (lambda: fl.Aggregation("amount", "sum", 3600), "must be a timedelta or a string like '90s', not int"),
        (lambda: fl.Aggregation("amount", "sum", "1.5h"), "default name 'amount_sum_1.5h'.*pass name="),
        (lambda: fl.Aggregation("amount", "sum", "1h", name="bad name"), "aggregation name 'bad name'.* not valid"),
        (lambda: fl.Aggregation("amount", "sum", "1h", name="_fl_x"), "reserved prefix"),
        (lambda: fl.Aggregation("a b", "sum", "1h"), "column name 'a b'.* not valid"),
    ],
)
def test_bad_aggregations_are_refused(build, message):
    with pytest.raises(fl.DefinitionError, match=message):
        build()


# -- FeatureView(aggregations=...) -------------------------------------------------------


def test_output_dtypes():
    schema = {"i32": "int32", "i64": "int64", "f32": "float32", "f64": "float64",
              "s": "string", "b": "bool", "t": "timestamp"}
    numeric = ["i32", "i64", "f32", "f64"]
    functions = ["count", "sum", "mean", "min", "max", "last", "std", "var"]
    aggs = [fl.Aggregation(c, f, "1h") for c in numeric for f in functions]
    aggs += [fl.Aggregation(c, f, "1h") for c in ["s", "b", "t"] for f in ["count", "last"]]
    got = view(schema=schema, aggregations=aggs).aggregation_schema
    expected = {
        "i32": {"count": "int64", "sum": "int64", "mean": "float64", "min": "int32", "max": "int32",
                "last": "int32", "std": "float64", "var": "float64"},
        "i64": {"count": "int64", "sum": "int64", "mean": "float64", "min": "int64", "max": "int64",
                "last": "int64", "std": "float64", "var": "float64"},
        "f32": {"count": "int64", "sum": "float64", "mean": "float64", "min": "float32", "max": "float32",
                "last": "float32", "std": "float64", "var": "float64"},
        "f64": {"count": "int64", "sum": "float64", "mean": "float64", "min": "float64", "max": "float64",
                "last": "float64", "std": "float64", "var": "float64"},
        "s": {"count": "int64", "last": "string"},
        "b": {"count": "int64", "last": "bool"},
        "t": {"count": "int64", "last": "timestamp"},
    }
    assert got == {f"{c}_{f}_1h": dtype for c, by_function in expected.items() for f, dtype in by_function.items()}
    assert list(got) == [a.name for a in aggs]  # in the order given


def test_feature_schema_adds_the_aggregates_and_schema_stays_the_stored_columns():
    v = view(aggregations=[fl.Aggregation("amount", "sum", "1h"), fl.Aggregation("country", "last", "7d")])
    assert v.schema == SCHEMA
    assert v.features == list(SCHEMA)
    assert v.aggregation_schema == {"amount_sum_1h": "float64", "country_last_7d": "string"}
    assert v.feature_schema == {**SCHEMA, "amount_sum_1h": "float64", "country_last_7d": "string"}
    assert list(v.feature_schema) == [*SCHEMA, "amount_sum_1h", "country_last_7d"]
    assert view().aggregations == ()
    assert view().aggregation_schema == {}
    assert view().feature_schema == SCHEMA


def test_a_single_aggregation_or_any_iterable_is_taken():
    agg = fl.Aggregation("amount", "sum", "1h")
    assert view(aggregations=agg).aggregations == (agg,)
    assert view(aggregations=iter([agg])).aggregations == (agg,)
    assert view(aggregations=[agg]) == view(aggregations=(agg,))


@pytest.fixture(scope="module")
def doubled():
    @fl.featurizer
    def doubled(amount: float) -> float:
        return amount * 2.0

    return doubled


def test_derived_columns_can_be_aggregated(doubled):
    v = view(featurizers={"twice": doubled}, aggregations=[fl.Aggregation("twice", "max", "1h")])
    assert v.aggregation_schema == {"twice_max_1h": "float64"}
    assert fl.FeatureView.from_spec(json.loads(json.dumps(v.spec()))) == v


def agg_view(*aggs: fl.Aggregation, **changes) -> fl.FeatureView:
    return view(aggregations=list(aggs), **changes)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: agg_view(fl.Aggregation("spend", "sum", "1h")),
         "reads column 'spend', which is not a feature of the view; aggregate one of its features "
         r"\(amount, items, country\)"),
        (lambda: agg_view(fl.Aggregation("ts", "count", "1h")), "'ts', which is its timestamp field"),
        (lambda: agg_view(fl.Aggregation("written", "count", "1h"), created_timestamp_field="written"),
         "'written', which is its created timestamp field"),
        (lambda: agg_view(fl.Aggregation("user_id", "count", "1h")), "'user_id', which is a join key"),
        (lambda: agg_view(fl.Aggregation("Amount", "sum", "1h")), "'Amount', which is not a feature"),
        (lambda: agg_view(fl.Aggregation("country", "sum", "1h")),
         "applies sum to column 'country' of dtype string, which it does not fit; use one of count, last "
         r"\(the others need a column of dtype int32, int64, float32, float64\)"),
        (lambda: agg_view(fl.Aggregation("flag", "mean", "1h"), schema={"flag": "bool"}), "dtype bool"),
        (lambda: agg_view(fl.Aggregation("at", "max", "1h"), schema={"at": "timestamp"}), "dtype timestamp"),
        (lambda: agg_view(fl.Aggregation("amount", "sum", "1h"), fl.Aggregation("amount", "sum", "1h")),
         "aggregation name 'amount_sum_1h' is already the name of aggregation 'amount_sum_1h'"),
        (lambda: agg_view(fl.Aggregation("amount", "sum", "1h", name="x"), fl.Aggregation("items", "sum", "1h", name="X")),
         "'X' is already the name of aggregation 'x'.*ignoring case"),
        (lambda: agg_view(fl.Aggregation("amount", "sum", "1h", name="items")),
         "aggregation name 'items' is already the name of feature 'items'.*pass the Aggregation another name="),
        (lambda: agg_view(fl.Aggregation("amount", "sum", "1h", name="Country")), "name of feature 'country'"),
        (lambda: agg_view(fl.Aggregation("amount", "sum", "1h", name="ts")), "name of its timestamp field 'ts'"),
        (lambda: agg_view(fl.Aggregation("amount", "sum", "1h", name="user_id")), "name of a join key 'user_id'"),
        (lambda: view(aggregations="amount_sum_1h"), "aggregations must be a list of fl.Aggregation objects"),
        (lambda: view(aggregations={"amount": "sum"}), "aggregations must be a list"),
        (lambda: view(aggregations=3), "aggregations must be a list"),
        (lambda: view(aggregations=[("amount", "sum", "1h")]), "must be fl.Aggregation objects"),
    ],
)
def test_bad_view_aggregations_are_refused(build, message):
    with pytest.raises(fl.DefinitionError, match=message) as info:
        build()
    assert info.value.message.startswith("feature view 'payments'")


def test_errors_carry_details():
    with pytest.raises(fl.DefinitionError) as info:
        agg_view(fl.Aggregation("country", "mean", "1h"))
    assert (info.value.column, info.value.dtype, info.value.name) == ("country", "string", "country_mean_1h")


# -- versions and specs ----------------------------------------------------------------------


def test_a_view_without_aggregations_keeps_its_old_version_and_spec():
    assert view().spec() == OLD_SPEC
    assert view().version == OLD_VERSION
    assert view(aggregations=None).version == OLD_VERSION
    assert view(aggregations=[]).version == OLD_VERSION
    assert "aggregations" not in view(aggregations=()).spec()
    assert view(aggregations=[]) == view()


def test_versions_change_with_aggregations():
    one = agg_view(fl.Aggregation("amount", "sum", "1h"))
    assert one.version != OLD_VERSION
    assert one.spec() == {**OLD_SPEC, "aggregations": [
        {"column": "amount", "function": "sum", "window": "1h", "name": "amount_sum_1h"},
    ]}
    variants = [
        one,
        agg_view(fl.Aggregation("amount", "mean", "1h")),
        agg_view(fl.Aggregation("amount", "sum", "2h")),
        agg_view(fl.Aggregation("items", "sum", "1h")),
        agg_view(fl.Aggregation("amount", "sum", "1h", name="spend_1h")),
        agg_view(fl.Aggregation("amount", "sum", "1h"), fl.Aggregation("items", "count", "1h")),
        agg_view(fl.Aggregation("items", "count", "1h"), fl.Aggregation("amount", "sum", "1h")),
    ]
    assert len({v.version for v in variants}) == len(variants)
    assert len(set(variants)) == len(variants)  # hash and equality see the aggregations too
    assert one == agg_view(fl.Aggregation("amount", "sum", "1h"))
    assert hash(one) == hash(agg_view(fl.Aggregation("amount", "sum", "1h")))
    assert one.version == agg_view(fl.Aggregation("amount", "sum", timedelta(hours=1))).version
    assert one != view()


def test_from_spec_reads_aggregations_back():
    v = agg_view(fl.Aggregation("amount", "sum", timedelta(seconds=90)), fl.Aggregation("country", "last", "7d"))
    back = fl.FeatureView.from_spec(json.loads(json.dumps(v.spec())))
    assert back == v
    assert back.aggregations == v.aggregations
    assert back.version == v.version
    assert back.aggregation_schema == v.aggregation_schema
    assert fl.FeatureView.from_spec(OLD_SPEC) == view()


# -- the registry ------------------------------------------------------------------------------


def test_round_trip_through_a_store_file(tmp_path):
    path = tmp_path / "store.duckdb"
    original = agg_view(
        fl.Aggregation("amount", "sum", "1h"), fl.Aggregation("amount", "mean", timedelta(days=7)),
        fl.Aggregation("country", "last", "90s", name="last_country"),
    )
    with fl.open(path) as store:
        store.apply([original])
    with fl.open(path) as store:
        got = store.get_feature_view("payments")
        assert got == original
        assert got.version == original.version
        assert got.aggregations == original.aggregations
        assert [a.window_text for a in got.aggregations] == ["1h", "1w", "90s"]
        assert got.feature_schema == original.feature_schema
        assert store.apply([original]).unchanged  # the same definition: nothing to do


def test_aggregation_changes_to_a_view_holding_rows_are_not_breaking(store):
    store.apply([view()])
    store.ingest("payments", rows())
    columns = lambda table: store.con.sql(f"DESCRIBE {table}").fetchall()  # noqa: E731
    before = {t: columns(t) for t in ("fl_history__payments", "fl_online__payments")}
    steps = [
        agg_view(fl.Aggregation("amount", "sum", "1h")),  # added
        agg_view(fl.Aggregation("amount", "sum", "1h"), fl.Aggregation("items", "count", "1d")),  # another
        agg_view(fl.Aggregation("amount", "mean", "2h", name="amount_sum_1h")),  # changed
        view(),  # removed
    ]
    for step in steps:
        result = store.apply([step])
        assert [c.name for c in result.changed] == ["payments"]
        assert store.get_feature_view("payments") == step
    assert {t: columns(t) for t in before} == before  # tables are unchanged by aggregations
    assert store.describe("payments")["history_rows"] == 3
    got = store.get_online_features([{"user_id": 2}], ["payments:amount"], now=datetime(2024, 1, 2))
    assert got.to_dict()["amount"] == [3.0]
    versions = store.list_versions("payments")
    # The last step brings back the first version (same content, same hash): recorded once.
    assert [v["version"] for v in versions] == [s.version for s in steps[-1:] + steps[:-1]]
    assert [v["current"] for v in versions] == [True, False, False, False]
    assert versions[1]["spec"]["aggregations"] == [steps[0].aggregations[0].spec()]
    log = store.con.sql("SELECT change FROM fl_apply_log WHERE name = 'payments' ORDER BY applied_at").fetchall()
    assert [c for (c,) in log] == ["added", "changed", "changed", "changed", "changed"]


def test_an_aggregation_does_not_let_a_breaking_change_through(store):
    store.apply([view()])
    store.ingest("payments", rows())
    smaller = {"amount": "float64", "country": "string"}
    with pytest.raises(fl.BreakingChangeError, match="feature 'items' is removed"):
        store.apply([agg_view(fl.Aggregation("amount", "sum", "1h"), schema=smaller)])
    assert store.get_feature_view("payments") == view()


def test_refused_aggregations_apply_nothing(store):
    store.apply([user])
    # The join keys of an entity given by name are known only to the registry.
    clash = fl.FeatureView(
        "payments", entities=["user"], schema=SCHEMA, timestamp_field="ts",
        aggregations=[fl.Aggregation("amount", "sum", "1h", name="User_Id")],
    )
    with pytest.raises(fl.DefinitionError, match=r"aggregation 'User_Id' has the name of join key 'user_id'.*name="):
        store.apply([clash])
    assert store.list_feature_views() == []
    store.apply([view()])
    with pytest.raises(fl.DefinitionError, match="which it does not fit"):
        store.apply([agg_view(fl.Aggregation("country", "sum", "1h"))])
    with pytest.raises(fl.DefinitionError, match="name of join key"):
        store.apply([fl.FeatureView(
            "payments", entities=["user"], schema=SCHEMA, timestamp_field="ts", ttl="30d",
            aggregations=[fl.Aggregation("amount", "sum", "1h", name="user_id")],
        )])
    assert store.get_feature_view("payments") == view()
    assert [v["version"] for v in store.list_versions("payments")] == [OLD_VERSION]


def test_a_damaged_aggregation_spec_is_reported_at_open(tmp_path):
    path = tmp_path / "store.duckdb"
    with fl.open(path) as store:
        store.apply([agg_view(fl.Aggregation("amount", "sum", "1h"))])
        store.con.execute("UPDATE fl_versions SET spec = replace(spec, '\"sum\"', '\"median\"') WHERE name = 'payments'")
    with pytest.raises(fl.StoreFormatError, match=r"damaged.*'payments'"):
        fl.open(path)
