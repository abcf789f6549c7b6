"""Write-time featurizers (features a FeatureView derives at ingest), and featurizers over
every supported type end to end: strings, timestamps, several outputs, request data."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from model import same, ts_array

import featurelite as fl

DAY = 86_400_000_000
EPOCH = datetime(1970, 1, 1)
user = fl.Entity("user", join_keys=["user_id"])


@fl.featurizer
def per_order(spend: float, orders: int) -> float:
    return spend / orders if orders > 0 else 0.0


@fl.featurizer
def city_parts(city: str, ts: fl.Timestamp) -> tuple[str, int, bool]:
    return city.strip().upper(), ts // 86_400_000_000, len(city) > 3


stats = fl.FeatureView(
    "stats", entities=[user], timestamp_field="ts", ttl="3d",
    schema={"spend": "float64", "orders": "int32", "city": "string"},
    featurizers={"per_order": per_order, ("city_upper", "day", "long_name"): city_parts},
)


@fl.featurizer
def since(ts_day: int, seen_at: fl.Timestamp, city_upper: str = "") -> tuple[float, str]:
    return seen_at / 86_400_000_000 - ts_day, city_upper + ("@" if ts_day % 2 == 0 else "#")


@fl.featurizer
def day_of(ts: fl.Timestamp) -> int:
    return ts // 86_400_000_000


# A second view whose write-time features feed an on-demand view with request timestamps.
days = fl.FeatureView(
    "days", entities=[user], timestamp_field="ts", schema={"city_upper": "string"}, featurizers={"ts_day": day_of}
)
visit = fl.RequestSource("visit", schema={"seen_at": "timestamp"})
ages = fl.OnDemandFeatureView("ages", sources=[days, visit], featurizers={("days_since", "stamp"): since})

FLOATS = st.sampled_from([None, 0.0, -0.0, 1.5, -2.0, float("nan"), float("inf"), 5e-324, 1e308])
TEXT = st.one_of(st.none(), st.sampled_from(["", " köln ", "paris", "日本語", "a\x00", "𝄞x"]), st.text(max_size=6))
ROW = st.fixed_dictionaries({
    "user_id": st.integers(0, 3),
    "spend": FLOATS,
    "orders": st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1), st.integers(-1, 3)),
    "city": TEXT,
    "ts": st.integers(-3, 6).map(lambda d: d * DAY),
})


def events(rows: list[dict]) -> pa.Table:
    return pa.table({
        "user_id": pa.array([r["user_id"] for r in rows], pa.int64()),
        "spend": pa.array([r["spend"] for r in rows], pa.float64()),
        "orders": pa.array([r["orders"] for r in rows], pa.int32()),
        "city": pa.array([r["city"] for r in rows], pa.string()),
        "ts": ts_array([r["ts"] for r in rows]),
    })


def stamp(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


@given(st.lists(ROW, max_size=12))
def test_derived_values_are_the_kernels_results_row_by_row(rows):
    """Every stored derived value equals the featurizer's per-request result on that row's
    raw values, bit for bit, in history and online."""
    with fl.open() as store:
        store.apply([stats])
        store.ingest("stats", events(rows))
        history = store.con.sql("SELECT * FROM fl_history__stats ORDER BY _fl_seq").to_arrow_table().to_pylist()
        assert len(history) == len(rows)
        for row, stored in zip(rows, history, strict=True):
            want_ratio = per_order.run_args([row["spend"], row["orders"]])
            want_parts = city_parts.run_args([row["city"], stamp(row["ts"])])
            got_parts = (stored["city_upper"], stored["day"], stored["long_name"])
            assert same(stored["per_order"], want_ratio) and got_parts == want_parts, (row, stored)
        keys = sorted({r["user_id"] for r in rows})
        online = store.get_online_features(
            {"user_id": keys}, ["stats:per_order", "stats:city_upper", "stats:day"], now=stamp(7 * DAY)
        ).to_dict()
        latest = {r["user_id"]: r for r in sorted(rows, key=lambda r: r["ts"])}  # stable: ingest order breaks ties
        for i, key in enumerate(keys):
            row = latest[key]
            fresh = row["ts"] >= 4 * DAY  # ttl 3d at day 7
            assert same(online["per_order"][i], per_order.run_args([row["spend"], row["orders"]]) if fresh else None)
            parts = city_parts.run_args([row["city"], stamp(row["ts"])]) if fresh else (None, None, None)
            assert (online["city_upper"][i], online["day"][i]) == parts[:2]


@given(
    st.lists(ROW, max_size=12),
    st.integers(0, 6).map(lambda d: d * DAY + DAY // 2),
    st.lists(st.one_of(st.none(), st.integers(-2, 9).map(lambda d: stamp(d * DAY))), min_size=4, max_size=4),
)
def test_training_set_at_t_equals_serving_after_ingesting_up_to_t(rows, t_us, seen):
    """Strings, timestamps, several outputs, defaults, request timestamps, write-time
    features feeding on-demand ones: offline at t == online at t."""
    features = ["stats:per_order", "stats:long_name", "ages:days_since", "ages:stamp"]
    keys = [0, 1, 2, 3]
    spine = pa.table({
        "user_id": pa.array(keys, pa.int64()),
        "event_timestamp": ts_array([t_us] * len(keys)),
        "seen_at": pa.array(seen, pa.timestamp("us")),
    })
    day_rows = [{"user_id": r["user_id"], "city_upper": r["city"], "ts": r["ts"]} for r in rows]

    def day_events(rs: list[dict]) -> pa.Table:
        return pa.table({
            "user_id": pa.array([r["user_id"] for r in rs], pa.int64()),
            "city_upper": pa.array([r["city_upper"] for r in rs], pa.string()),
            "ts": ts_array([r["ts"] for r in rs]),
        })

    with fl.open() as everything, fl.open() as so_far:
        for store, kept in ((everything, rows), (so_far, [r for r in rows if r["ts"] <= t_us])):
            store.apply([stats, days, ages])
            store.ingest("stats", events(kept))
            store.ingest("days", day_events([r for r in day_rows if r["ts"] <= t_us] if store is so_far else day_rows))
        offline = everything.get_historical_features(spine, features)
        online = so_far.get_online_features({"user_id": keys}, features, request_data={"seen_at": seen}, now=stamp(t_us)).to_dict()
    for ref in features:
        name = ref.split(":")[1]
        got, want = online[name], offline.column(name).to_pylist()
        assert all(same(g, w) for g, w in zip(got, want, strict=True)), (ref, got, want)


def test_input_must_not_carry_derived_columns_and_the_store_is_unchanged(store):
    store.apply([stats])
    rows = [{"user_id": 1, "spend": 2.0, "orders": 1, "city": "x", "ts": 0}]
    bad = events(rows).append_column("per_order", pa.array([9.0]))
    with pytest.raises(fl.SchemaError, match=r"computes at ingest.*drop them"):
        store.ingest("stats", bad)
    assert store.describe("stats")["history_rows"] == 0
    store.ingest("stats", events(rows))
    assert store.get_online_features([{"user_id": 1}], ["stats:per_order"], now=stamp(DAY)).to_dict()["per_order"] == [2.0]


@fl.featurizer
def bad_text(city: str) -> str:
    return chr(0xD800) if city == "boom" else city


def test_a_featurizer_failing_at_ingest_writes_nothing(store):
    view = fl.FeatureView("t", entities=[user], schema={"city": "string"}, featurizers={"clean": bad_text})
    store.apply([view])
    table = pa.table({"user_id": [1, 2], "city": ["ok", "boom"], "event_timestamp": ts_array([0, 0])})
    with pytest.raises(fl.FeaturizerError, match="not valid Unicode"):
        store.ingest("t", table)
    assert store.describe("t")["history_rows"] == 0 and store.describe("t")["online_rows"] == 0


def test_binding_and_definition_errors(store):
    @fl.featurizer
    def needs_tips(tips: float) -> float:
        return tips

    @fl.featurizer
    def wants_text(spend: str) -> str:
        return spend

    with pytest.raises(fl.DefinitionError, match="input 'tips' matches no raw column"):
        store.apply([fl.FeatureView("v", entities=[user], schema={"spend": "float64"}, featurizers={"t": needs_tips})])
    with pytest.raises(fl.DefinitionError, match="declared string but v:spend is float64"):
        store.apply([fl.FeatureView("v", entities=[user], schema={"spend": "float64"}, featurizers={"t": wants_text})])
    with pytest.raises(fl.DefinitionError, match="both in the schema and computed"):
        fl.FeatureView("v", entities=[user], schema={"spend": "float64", "t": "float64"}, featurizers={"t": per_order})
    with pytest.raises(fl.DefinitionError, match="returns 3 value"):
        fl.FeatureView("v", entities=[user], schema={"city": "string"}, featurizers={"t": city_parts})
    with pytest.raises(fl.DefinitionError, match="returns one value but is bound to 2 names"):
        fl.FeatureView("v", entities=[user], schema={"spend": "float64"}, featurizers={("a", "b"): per_order})
    assert store.list_feature_views() == []


def test_changing_a_write_time_featurizer_is_breaking_once_data_is_stored(store):
    store.apply([stats])

    @fl.featurizer(name="per_order")
    def changed(spend: float, orders: int) -> float:
        return spend / orders if orders > 1 else 0.0

    def with_ratio(fz):
        return fl.FeatureView(
            "stats", entities=[user], timestamp_field="ts", ttl="3d",
            schema={"spend": "float64", "orders": "int32", "city": "string"},
            featurizers={"per_order": fz, ("city_upper", "day", "long_name"): city_parts},
        )

    assert [c.name for c in store.apply([with_ratio(changed)]).changed] == ["stats"]  # empty: allowed
    store.apply([stats])
    store.ingest("stats", events([{"user_id": 1, "spend": 2.0, "orders": 1, "city": "x", "ts": 0}]))
    with pytest.raises(fl.BreakingChangeError, match=r"per_order.*another featurizer version"):
        store.apply([with_ratio(changed)])
    more = fl.FeatureView(
        "stats", entities=[user], timestamp_field="ts", ttl="3d",
        schema={"spend": "float64", "orders": "int32", "city": "string"},
        featurizers={"per_order": per_order, ("city_upper", "day", "long_name"): city_parts, "again": per_order},
    )
    with pytest.raises(fl.BreakingChangeError, match="write-time feature 'again' is added"):
        store.apply([more])
    assert store.get_feature_view("stats").version == stats.version


def test_verify_covers_write_time_featurizers_with_history_samples(store):
    store.apply([stats])
    store.ingest("stats", events([{"user_id": i, "spend": i * 0.5, "orders": i % 3, "city": f"c{i}é", "ts": 0} for i in range(30)]))
    results = store.verify(examples=300)
    assert [(r.view, r.features, r.ok) for r in results] == [
        ("stats", ("per_order",), True), ("stats", ("city_upper", "day", "long_name"), True)
    ]


def test_a_fresh_process_ingests_with_the_stored_featurizer(tmp_path):
    """A process that never imported the defining module computes derived columns from the
    source stored in the file."""
    path = tmp_path / "s.duckdb"
    (tmp_path / "defs.py").write_text(textwrap.dedent("""
        import featurelite as fl

        @fl.featurizer
        def shout(city: str) -> str:
            return city.upper() + "!"

        user = fl.Entity("user", join_keys=["user_id"])
        view = fl.FeatureView("v", entities=[user], schema={"city": "string"}, featurizers={"loud": shout})
    """))
    define = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import featurelite as fl, defs\n" \
             f"with fl.open({str(path)!r}) as s: s.apply([defs.view])"
    ingest = textwrap.dedent(f"""
        import sys, featurelite as fl, pyarrow as pa
        from datetime import datetime
        with fl.open({str(path)!r}) as s:
            s.ingest("v", pa.table({{"user_id": [1], "city": ["köln"], "event_timestamp": [datetime(2024, 1, 1)]}}))
            got = s.get_online_features([{{"user_id": 1}}], ["v:loud"]).to_dict()["loud"]
        assert "defs" not in sys.modules
        print(got[0])
    """)
    for code in (define, ingest):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "KÖLN!"


def test_request_data_of_the_wrong_kind_is_an_input_error(store):
    store.apply([stats, days, ages])
    with pytest.raises(fl.InputError, match=r"featurizer 'since'.*datetime"):
        store.get_online_features([{"user_id": 1}], ["ages:stamp"], request_data={"seen_at": ["2024-01-01"]})
    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    got = store.get_online_features([{"user_id": 1}], ["ages:stamp"], request_data={"seen_at": [now]}).to_dict()
    assert got["stamp"] == [None]  # no stored day for user 1: null in, null out
