"""On-demand feature views: featurizers over stored features and request data, one
compiled kernel offline (batch) and online (per request)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from model import same, ts_array

import featurelite as fl

DAY = 86_400_000_000
EPOCH = datetime(1970, 1, 1)
user = fl.Entity("user", join_keys=["user_id"])
stats = fl.FeatureView("stats", entities=[user], schema={"spend": "float64", "orders": "int32"}, timestamp_field="ts", ttl="2d")
basket = fl.RequestSource("req", schema={"basket": "float64"})


@fl.featurizer
def spend_per_order(spend: float, orders: int) -> float:
    return spend / orders if orders > 0 else 0.0


@fl.featurizer
def basket_share(basket: float, spend: float = 0.0) -> float:
    return basket / (basket + spend)


ratios = fl.OnDemandFeatureView(
    "ratios", sources=[stats, basket], featurizers={"spend_per_order": spend_per_order, "basket_share": basket_share}
)
FEATURES = ["stats:spend", "ratios:spend_per_order", "ratios:basket_share"]

FLOATS = st.sampled_from([None, 0.0, -0.0, 1.5, -2.0, float("nan"), float("inf"), 5e-324, 1e308])
ROW = st.fixed_dictionaries({
    "user_id": st.integers(-1, 3),
    "spend": FLOATS,
    "orders": st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1), st.integers(-1, 3)),
    "ts": st.integers(0, 6).map(lambda d: d * DAY),
})


def events(rows: list[dict]) -> pa.Table:
    return pa.table({
        "user_id": pa.array([r["user_id"] for r in rows], pa.int64()),
        "spend": pa.array([r["spend"] for r in rows], pa.float64()),
        "orders": pa.array([r["orders"] for r in rows], pa.int32()),
        "ts": ts_array([r["ts"] for r in rows]),
    })


@given(
    st.lists(ROW, max_size=14),
    st.integers(0, 8).map(lambda d: d * DAY // 2 * 3),
    st.lists(st.one_of(st.none(), st.sampled_from([0.0, -0.0, 2.5, float("nan"), -1.0])), min_size=6, max_size=6),
)
def test_training_set_at_t_equals_serving_after_ingesting_up_to_t(rows, t_us, baskets):
    """Offline with featurizers at time t == online, served at t, from a store that got
    exactly the events up to t."""
    keys = list(range(-1, 5))
    spine = pa.table({
        "user_id": pa.array(keys, pa.int64()),
        "event_timestamp": ts_array([t_us] * len(keys)),
        "basket": pa.array(baskets, pa.float64()),
    })
    with fl.open() as everything, fl.open() as so_far:
        everything.apply([ratios])
        so_far.apply([ratios])
        everything.ingest("stats", events(rows))
        so_far.ingest("stats", events([r for r in rows if r["ts"] <= t_us]))
        offline = everything.get_historical_features(spine, FEATURES)
        online = so_far.get_online_features(
            {"user_id": keys}, FEATURES, request_data={"basket": baskets}, now=EPOCH + timedelta(microseconds=t_us)
        ).to_dict()
    for ref in FEATURES:
        name = ref.split(":")[1]
        got, want = online[name], offline.column(name).to_pylist()
        assert all(same(g, w) for g, w in zip(got, want, strict=True)), (ref, got, want)


def test_values_nulls_and_defaults(store):
    store.apply([ratios])
    store.ingest("stats", events([{"user_id": 1, "spend": 10.0, "orders": 4, "ts": 0}, {"user_id": 2, "spend": None, "orders": 0, "ts": 0}]))
    got = store.get_online_features(
        {"user_id": [1, 2, 3]}, ["ratios:spend_per_order", "ratios:basket_share"], request_data={"basket": [10.0, 5.0, None]}, now=EPOCH
    )
    assert got.to_dict() == {"user_id": [1, 2, 3], "spend_per_order": [2.5, None, None], "basket_share": [0.5, 1.0, None]}
    assert got.statuses["spend_per_order"] == [fl.Status.PRESENT, fl.Status.NULL_VALUE, fl.Status.NULL_VALUE]
    spine = pa.table({"user_id": [1, 2, 3], "event_timestamp": ts_array([0, 0, 0]), "basket": [10.0, 5.0, None]})
    train = store.get_historical_features(spine, ["ratios:basket_share", "ratios:spend_per_order"])
    assert train.column("basket_share").to_pylist() == [0.5, 1.0, None]
    assert train.column("spend_per_order").to_pylist() == [2.5, None, None]


def test_binding_errors_and_missing_request_data(store):
    @fl.featurizer
    def uses_unknown(tips: float) -> float:
        return tips

    @fl.featurizer
    def wrong_type(orders: bool) -> bool:
        return orders

    with pytest.raises(fl.DefinitionError, match="input 'tips' matches no feature"):
        store.apply([fl.OnDemandFeatureView("o", sources=[stats], featurizers={"t": uses_unknown})])
    with pytest.raises(fl.DefinitionError, match="declared bool but stats:orders is int32"):
        store.apply([fl.OnDemandFeatureView("o", sources=[stats], featurizers={"t": wrong_type})])
    with pytest.raises(fl.UnknownFeatureViewError, match="'ghost'"):
        store.apply([fl.OnDemandFeatureView("o", sources=["ghost"], featurizers={"t": spend_per_order})])
    with pytest.raises(fl.DefinitionError, match="name of a feature view"):
        store.apply([fl.OnDemandFeatureView("stats", sources=[stats], featurizers={"t": spend_per_order})])
    assert store.list_on_demand_feature_views() == []
    store.apply([ratios])
    with pytest.raises(fl.InputError, match="request_data=\\{'basket'"):
        store.get_online_features([{"user_id": 1}], ["ratios:basket_share"])
    with pytest.raises(fl.SchemaError, match="no column 'basket'"):
        store.get_historical_features(pa.table({"user_id": [1], "event_timestamp": ts_array([0])}), ["ratios:basket_share"])
    with pytest.raises(fl.DefinitionError, match="source of on-demand feature view"):
        store.delete_feature_view("stats")
    store.delete_feature_view("ratios")
    store.delete_feature_view("stats")


def test_changing_the_body_makes_a_new_version(store):
    store.apply([ratios])

    @fl.featurizer(name="spend_per_order")
    def changed(spend: float, orders: int) -> float:
        return spend / orders if orders > 1 else 0.0

    new = fl.OnDemandFeatureView("ratios", sources=[stats, basket], featurizers={"spend_per_order": changed, "basket_share": basket_share})
    result = store.apply([new])
    assert [c.name for c in result.changed] == ["ratios"]
    assert len(store.list_versions("ratios")) == 2


def test_a_fresh_process_serves_featurizers_from_the_file_alone(tmp_path):
    """The defining module is never imported there: the featurizer's source comes from the
    registry in the file and is compiled on open."""
    path = tmp_path / "s.duckdb"
    module = tmp_path / "my_features.py"
    module.write_text(textwrap.dedent("""
        import math
        import featurelite as fl

        SCALE = 2.0

        @fl.featurizer
        def log_spend(spend: float) -> float:
            return math.log1p(spend) * SCALE
    """))
    define = f"""
        import sys, featurelite as fl, pyarrow as pa
        from datetime import datetime
        sys.path.insert(0, {str(tmp_path)!r})
        from my_features import log_spend
        user = fl.Entity("user", join_keys=["user_id"])
        stats = fl.FeatureView("stats", entities=[user], schema={{"spend": "float64"}}, timestamp_field="ts")
        with fl.open({str(path)!r}) as store:
            store.apply([fl.OnDemandFeatureView("logs", sources=[stats], featurizers={{"log_spend": log_spend}})])
            store.ingest("stats", pa.table({{"user_id": [1], "spend": [3.0], "ts": pa.array([datetime(2024, 1, 1)], pa.timestamp("us"))}}))
    """
    serve = f"""
        import json, sys, featurelite as fl
        from datetime import datetime
        with fl.open({str(path)!r}, read_only=True) as store:
            got = store.get_online_features([{{"user_id": 1}}], ["logs:log_spend"], now=datetime(2024, 1, 2)).to_dict()
        print(json.dumps({{"value": got["log_spend"][0], "imported": "my_features" in sys.modules}}))
    """
    for code in (define, serve):
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    import math

    assert json.loads(done.stdout) == {"value": math.log1p(3.0) * 2.0, "imported": False}


def test_verify_passes_and_apply_refuses_a_skewed_featurizer(store):
    from skewing import skewed

    store.apply([ratios])
    store.ingest("stats", events([{"user_id": i, "spend": float(i) * 1.5, "orders": i % 4, "ts": 0} for i in range(50)]))
    results = store.verify(examples=400)
    assert [(r.view, r.features, r.ok) for r in results] == [
        ("ratios", ("spend_per_order",), True), ("ratios", ("basket_share",), True)
    ]

    @fl.featurizer
    def cancel(spend: float, basket: float) -> float:
        return (spend + basket) - basket

    broken = skewed(cancel, fastmath=True)
    with pytest.raises(fl.FeaturizerError, match="differs between the batch and per-request paths") as info:
        store.apply([fl.OnDemandFeatureView("skew", sources=[stats, basket], featurizers={"c": broken})])
    assert "0x" in str(info.value) and info.value.mismatch.inputs.keys() == {"spend", "basket"}
    assert [o.name for o in store.list_on_demand_feature_views()] == ["ratios"]
    with pytest.raises(fl.InputError, match="has no featurizers to verify"):
        store.verify("stats")
