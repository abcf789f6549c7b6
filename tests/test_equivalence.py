"""The promises, as Hypothesis properties against a plain-Python model.

- get_historical_features == a brute-force oracle of the point-in-time rules;
- get_online_features == get_historical_features at "now" (ttl judged at the same instant);
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st
from model import StoreModel, same, ts_array

import featurelite as fl

DAY = 86_400_000_000
HALF_DAY = DAY // 2
EPOCH = datetime(1970, 1, 1)

user = fl.Entity("user", join_keys=["user_id"])
shop = fl.Entity("shop", join_keys={"shop": "string"})

FLOATS = st.sampled_from([None, 0.0, -0.0, 1.5, -2.25, float("nan"), float("inf"), float("-inf"), 1e-310])
# Values a float32 holds exactly (the smallest subnormal float32 among them).
FLOATS32 = st.sampled_from([None, 0.0, -0.0, 1.5, -2.25, float("nan"), float("inf"), float("-inf"), 2.0**-149])
INTS = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.integers(-3, 3))
TEXT = st.one_of(st.none(), st.sampled_from(["", "a", "ü", "日本", "a b"]))
# Whole days make ties on (key, event time) common; arbitrary microseconds make them rare,
# so both the tie-breaking and the tie-free join paths are exercised.
# Negative values reach before 1970.
EVENT_TS = st.one_of(st.integers(-2, 6).map(lambda d: d * DAY), st.integers(-2 * DAY, 7 * DAY))
USERS = st.integers(-2, 3)


@st.composite
def view_defs(draw: st.DrawFn) -> tuple[fl.FeatureView, fl.FeatureView]:
    ttl_a = draw(st.sampled_from([None, timedelta(days=1), timedelta(days=2)]))
    ttl_b = draw(st.sampled_from([None, timedelta(days=1)]))
    with_created = draw(st.booleans())
    a = fl.FeatureView(
        "a", entities=[user], schema={"x": "float64", "n": "int64", "s": "string"},
        timestamp_field="ts", created_timestamp_field="created" if with_created else None, ttl=ttl_a,
    )
    b = fl.FeatureView("b", entities=[user, shop], schema={"y": "float64", "z": "float32"}, timestamp_field="ts", ttl=ttl_b)
    return a, b


def rows_a(with_created: bool) -> st.SearchStrategy[dict[str, Any]]:
    fields = {
        "user_id": USERS,
        "x": FLOATS,
        "n": INTS,
        "s": TEXT,
        "ts": EVENT_TS,
    }
    if with_created:
        fields["created"] = st.one_of(st.none(), st.integers(0, 3).map(lambda d: d * DAY))
    return st.fixed_dictionaries(fields)


ROWS_B = st.fixed_dictionaries({
    "user_id": USERS,
    "shop": st.sampled_from(["x", "y"]),
    "y": FLOATS,
    "z": FLOATS32,  # float32: -0.0, NaN, inf and subnormals must survive the point-in-time join too
    "ts": EVENT_TS,
})


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[fl.FeatureView, fl.FeatureView, list[tuple[str, list[dict[str, Any]]]]]:
    a, b = draw(view_defs())
    batches = draw(
        st.lists(
            st.one_of(
                st.tuples(st.just("a"), st.lists(rows_a(a.created_timestamp_field is not None), max_size=8)),
                st.tuples(st.just("b"), st.lists(ROWS_B, max_size=8)),
            ),
            max_size=5,
        )
    )
    return a, b, batches


def to_table(view: fl.FeatureView, rows: list[dict[str, Any]]) -> pa.Table:
    names = ["user_id", "shop"] if view.name == "b" else ["user_id"]
    types = {"user_id": pa.int64(), "shop": pa.string(), "x": pa.float64(), "n": pa.int64(), "s": pa.string(), "y": pa.float64(), "z": pa.float32()}
    columns = {k: pa.array([r[k] for r in rows], types[k]) for k in names + list(view.schema)}
    columns["ts"] = ts_array([r["ts"] for r in rows])
    if view.created_timestamp_field:
        columns["created"] = ts_array([r["created"] for r in rows])
    return pa.table(columns)


def build(a: fl.FeatureView, b: fl.FeatureView, batches: list) -> tuple[fl.Store, StoreModel]:
    store = fl.open(":memory:")
    store.apply([user, shop, a, b])
    model = StoreModel()
    model.add_view(a, ["user_id"])
    model.add_view(b, ["user_id", "shop"])
    views = {"a": a, "b": b}
    for name, rows in batches:
        store.ingest(name, to_table(views[name], rows))
        model.ingest(name, rows)
    return store, model


FEATURES = ["a:x", "a:n", "a:s", "b:y", "b:z"]


def expected_value(model: StoreModel, ref: str, row: dict[str, Any]) -> Any:
    view, feature = ref.split(":")
    key = (row["user_id"],) if view == "a" else (row["user_id"], row["shop"])
    best, _ = model.lookup(view, key, row["event_timestamp"])
    return None if best is None else best[feature]


SPINE = st.lists(
    st.fixed_dictionaries({
        "user_id": st.one_of(st.integers(-2, 4), st.none()),
        "shop": st.sampled_from(["x", "y", "z"]),
        "event_timestamp": st.one_of(st.integers(-5, 16).map(lambda k: k * HALF_DAY), st.none()),
    }),
    max_size=12,
)


@given(scenarios(), SPINE)
def test_historical_features_match_the_oracle(scenario, spine_rows):
    a, b, batches = scenario
    store, model = build(a, b, batches)
    with store:
        spine = pa.table({
            "user_id": pa.array([r["user_id"] for r in spine_rows], pa.int64()),
            "shop": pa.array([r["shop"] for r in spine_rows], pa.string()),
            "event_timestamp": ts_array([r["event_timestamp"] for r in spine_rows]),
            "row_tag": pa.array(range(len(spine_rows)), pa.int64()),
        })
        result = store.get_historical_features(spine, FEATURES, full_feature_names=True)
    assert result.num_rows == len(spine_rows)
    assert result.column("row_tag").to_pylist() == list(range(len(spine_rows)))
    for ref in FEATURES:
        got = result.column(ref.replace(":", "__")).to_pylist()
        want = [expected_value(model, ref, r) for r in spine_rows]
        assert all(same(g, w) for g, w in zip(got, want, strict=True)), (ref, got, want)


@given(scenarios(), st.integers(-5, 16).map(lambda k: k * HALF_DAY))
def test_online_equals_historical_at_now(scenario, now_us):
    a, b, batches = scenario
    store, model = build(a, b, batches)
    now = EPOCH + timedelta(microseconds=now_us)
    keys = [{"user_id": u, "shop": s} for u in range(-2, 5) for s in ("x", "y")]
    with store:
        online = store.get_online_features(keys, FEATURES, now=now, full_feature_names=True)
        spine = pa.table({
            "user_id": [k["user_id"] for k in keys],
            "shop": [k["shop"] for k in keys],
            "event_timestamp": ts_array([now_us] * len(keys)),
        })
        offline = store.get_historical_features(spine, FEATURES, full_feature_names=True)
    served = online.to_dict()
    for ref in FEATURES:
        name = ref.replace(":", "__")
        want = offline.column(name).to_pylist()
        assert all(same(g, w) for g, w in zip(served[name], want, strict=True)), (ref, served[name], want)
        view = ref.split(":")[0]
        for k, status, value in zip(keys, online.statuses[name], served[name], strict=True):
            key = (k["user_id"],) if view == "a" else (k["user_id"], k["shop"])
            _, model_status = model.lookup(view, key, now_us)
            if model_status == fl.Status.PRESENT and value is None:
                model_status = fl.Status.NULL_VALUE
            assert status == model_status, (ref, k, status, model_status)
