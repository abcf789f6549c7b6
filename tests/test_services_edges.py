"""Feature services, pins and manifests at their edges: pinned ttls and windows online and
offline, future-dated reads, created-time ties under ``as_of``, on-demand views a pinned
catalog cannot bind, manifests asked with other features, digests of odd layouts, reopening,
and plans made while another thread applies."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import featurelite as fl
from featurelite.digest import column_digest, table_digest

T0 = datetime(2026, 1, 1)
MIN = timedelta(minutes=1)
user = fl.Entity("user", ["user_id"])
request = fl.RequestSource("req", {"basket": "float64"})


def stats_view(*, ttl: str = "30d", window: str = "1h", function: str = "sum", extra: dict | None = None,
               created: str | None = None) -> fl.FeatureView:
    return fl.FeatureView(
        "stats", entities=[user], schema={"spend": "float64", "country": "string", **(extra or {})}, ttl=ttl,
        aggregations=[fl.Aggregation("spend", function, window, name="spend_agg")],
        **({"created_timestamp_field": created} if created else {}),
    )


@fl.featurizer
def share(spend: float, basket: float) -> float:
    return basket / spend


@fl.featurizer
def share_of_agg(spend_agg: float, basket: float) -> float:
    return basket / spend_agg


@fl.featurizer
def bonus_double(bonus: float) -> float:
    return bonus * 2.0


ROWS = pa.table({
    "user_id": [1, 1, 2],
    "spend": [10.0, 20.0, 4.0],
    "country": ["NL", "DE", "FR"],
    "event_timestamp": [T0, T0 + 5 * MIN, T0 + 2 * MIN],
})
READ_AT = T0 + 10 * MIN


def shares_view(fz: fl.Featurizer = share, stats: fl.FeatureView | None = None, name: str = "shares"):
    return fl.OnDemandFeatureView(name, sources=[stats or stats_view(), request], featurizers={"basket_share": fz})


# -- pinned catalogs and on-demand views the request does not read ------------------------


def test_a_service_pinned_to_an_older_view_keeps_serving_after_a_new_odfv_reads_a_new_feature(store):
    """A service pins stats v1; stats v2 adds a feature 'bonus' and a new on-demand view reads
    it. Reading the service must not try to bind the unrelated new on-demand view to stats v1."""
    store.apply([user, stats_view(), fl.FeatureService("svc", ["stats:country", "stats:spend_agg"])])
    store.ingest("stats", ROWS)
    v2 = stats_view(extra={"bonus": "float64"})
    doubled = fl.OnDemandFeatureView("doubled", sources=[v2], featurizers={"bonus2": bonus_double})
    store.apply([v2, doubled])
    got = store.get_online_features([{"user_id": 1}], service="svc", now=READ_AT).to_dict()
    assert got == {"user_id": [1], "country": ["DE"], "spend_agg": [30.0]}
    train = store.get_historical_features(
        pa.table({"user_id": [1], "event_timestamp": [READ_AT]}), service="svc"
    )
    assert train.column("country").to_pylist() == ["DE"]


def test_apply_does_not_report_a_problem_for_a_service_an_unrelated_odfv_cannot_bind_to(store):
    """The dry run's ``problem`` says whether the service can still serve its pinned version:
    it can (nothing it reads changed in storage), whatever an unrelated new odfv reads."""
    store.apply([user, stats_view(), fl.FeatureService("svc", ["stats:country"])])
    store.ingest("stats", ROWS)
    v2 = stats_view(extra={"bonus": "float64"})
    doubled = fl.OnDemandFeatureView("doubled", sources=[v2], featurizers={"bonus2": bonus_double})
    result = store.apply([v2, doubled], dry_run=True)
    assert [(i.service, i.problem) for i in result.affected_services] == [("svc", None)]


def test_an_explicit_old_version_reference_ignores_unrelated_odfvs(store):
    store.apply([user, stats_view()])
    store.ingest("stats", ROWS)
    old = store.get_feature_view("stats").version
    v2 = stats_view(extra={"bonus": "float64"})
    store.apply([v2, fl.OnDemandFeatureView("doubled", sources=[v2], featurizers={"bonus2": bonus_double})])
    got = store.get_online_features([{"user_id": 1}], [f"stats@{old[:8]}:country"], now=READ_AT).to_dict()
    assert got == {"user_id": [1], "country": ["DE"]}


# -- online vs offline through pinned versions ---------------------------------------------


def _spine_at(*times: datetime, users=None) -> pa.Table:
    users = users or [1] * len(times)
    return pa.table({"user_id": users, "event_timestamp": list(times), "basket": [5.0] * len(times)})


@pytest.mark.parametrize("now", [T0 + 3 * MIN, T0 + 7 * MIN, T0 + 70 * MIN, T0 + 2 * MIN + 30 * timedelta(seconds=1)])
def test_pinned_ttl_and_aggregation_agree_online_and_offline_including_future_dated_reads(store, now):
    """A service pinned at ttl=4m / mean over 1h; the view moves to ttl=30d / sum over 2m. Online
    (a read time before the latest event: future-dated) and offline must agree at every time."""
    pinned_view = stats_view(ttl="4m", function="mean")
    store.apply([user, pinned_view, shares_view(share_of_agg, pinned_view),
                 fl.FeatureService("svc", ["stats:country", "stats:spend_agg", "shares:basket_share"])])
    store.ingest("stats", ROWS)
    moved = stats_view(ttl="30d", window="2m", function="sum")
    store.apply([moved, shares_view(share_of_agg, moved)])
    store.warm()
    online = store.get_online_features(
        [{"user_id": 1}, {"user_id": 2}], service="svc", now=now, request_data={"basket": [5.0, 5.0]}
    ).to_dict()
    offline = store.get_historical_features(_spine_at(now, now, users=[1, 2]), service="svc")
    for column in ("country", "spend_agg", "basket_share"):
        assert online[column] == offline.column(column).to_pylist(), column


def test_pinned_ttl_applies_to_future_dated_online_reads(store):
    """The view's ttl is shortened after the service was applied: a future-dated read through
    the service uses the pinned (long) ttl, a plain read the new (short) one."""
    store.apply([user, stats_view(ttl="30d"), fl.FeatureService("svc", ["stats:country"])])
    store.ingest("stats", ROWS)
    store.apply([stats_view(ttl="1m")])
    now = T0 + 4 * MIN  # before user 1's latest event (T0+5m): resolved from history
    assert store.get_online_features([{"user_id": 1}], service="svc", now=now).to_dict()["country"] == ["NL"]
    assert store.get_online_features([{"user_id": 1}], ["stats:country"], now=now).to_dict()["country"] == [None]


# -- as_of with created timestamps ------------------------------------------------------------


def test_as_of_with_a_late_row_that_wins_a_created_timestamp_tie(store):
    view = stats_view(created="created")
    store.apply([user, view])
    store.ingest("stats", pa.table({
        "user_id": [1, 1], "spend": [1.0, 2.0], "country": ["A", "B"],
        "event_timestamp": [T0, T0], "created": [T0, T0 + MIN],
    }))
    spine = _spine_at(T0 + MIN, T0 + 2 * MIN)
    first = store.get_historical_features(spine, ["stats:country", "stats:spend_agg"])
    manifest = fl.Manifest.from_table(first)
    assert first.column("country").to_pylist() == ["B", "B"]
    # a late row, same event time, newer created time: it wins now, but not as of the manifest
    store.ingest("stats", pa.table({
        "user_id": [1], "spend": [4.0], "country": ["C"], "event_timestamp": [T0], "created": [T0 + 2 * MIN],
    }))
    # and a late row that loses its tie (older created time)
    store.ingest("stats", pa.table({
        "user_id": [1], "spend": [8.0], "country": ["D"], "event_timestamp": [T0], "created": [T0 - MIN],
    }))
    now = store.get_historical_features(spine, ["stats:country", "stats:spend_agg"])
    assert now.column("country").to_pylist() == ["C", "C"]
    again = store.get_historical_features(spine, as_of=manifest)
    assert again.column("country").to_pylist() == ["B", "B"]
    assert again.column("spend_agg").to_pylist() == [3.0, 3.0]
    assert fl.Manifest.from_table(again).digest == manifest.digest
    assert manifest.changed_features(fl.Manifest.from_table(now)) == ["country", "spend_agg"]


def test_as_of_with_a_null_created_timestamp_late_row(store):
    store.apply([user, stats_view(created="created")])
    store.ingest("stats", pa.table({
        "user_id": [1], "spend": [1.0], "country": ["A"], "event_timestamp": [T0],
        "created": pa.array([None], pa.timestamp("us")),
    }))
    spine = _spine_at(T0 + MIN)
    manifest = fl.Manifest.from_table(store.get_historical_features(spine, ["stats:country"]))
    store.ingest("stats", pa.table({
        "user_id": [1], "spend": [2.0], "country": ["B"], "event_timestamp": [T0],
        "created": pa.array([None], pa.timestamp("us")),
    }))
    assert store.get_historical_features(spine, ["stats:country"]).column("country").to_pylist() == ["B"]
    again = store.get_historical_features(spine, as_of=manifest)
    assert again.column("country").to_pylist() == ["A"]
    assert fl.Manifest.from_table(again).digest == manifest.digest


# -- manifests after a view changed ------------------------------------------------------------


def test_a_manifest_serves_after_the_view_gained_a_feature(store):
    store.apply([user, stats_view(), shares_view()])
    store.ingest("stats", ROWS)
    train = store.get_historical_features(_spine_at(READ_AT), ["stats:country", "shares:basket_share"])
    manifest = fl.Manifest.from_table(train)
    v2 = stats_view(extra={"bonus": "float64"})
    store.apply([v2, shares_view(stats=v2)])
    served = store.get_online_features([{"user_id": 1}], manifest=manifest, now=READ_AT, request_data={"basket": [5.0]})
    assert served.to_dict() == {"user_id": [1], "country": ["DE"], "basket_share": [0.25]}
    again = store.get_historical_features(_spine_at(READ_AT), as_of=manifest)
    assert fl.Manifest.from_table(again).digest == manifest.digest
    # asking for the features in force now is refused: stats moved
    with pytest.raises(fl.ManifestError, match="other versions than the manifest pins"):
        store.get_online_features(
            [{"user_id": 1}], ["stats:country", "shares:basket_share"], manifest=manifest, request_data={"basket": [5.0]}
        )


# -- full_feature_names combinations --------------------------------------------------------------


def test_full_feature_names_through_a_service_and_its_manifest(store):
    svc = fl.FeatureService("svc", ["stats:country", "shares:basket_share"], full_feature_names=True)
    store.apply([user, stats_view(), shares_view(), svc])
    store.ingest("stats", ROWS)
    online = store.get_online_features([{"user_id": 1}], service="svc", now=READ_AT, request_data={"basket": [5.0]})
    assert list(online.to_dict()) == ["user_id", "stats__country", "shares__basket_share"]
    # asked False: the service's own naming holds
    plain = store.get_online_features(
        [{"user_id": 1}], service="svc", now=READ_AT, request_data={"basket": [5.0]}, full_feature_names=False,
    )
    assert list(plain.to_dict()) == ["user_id", "stats__country", "shares__basket_share"]
    train = store.get_historical_features(_spine_at(READ_AT), service="svc")
    manifest = fl.Manifest.from_table(train)
    assert manifest.full_feature_names and manifest.outputs == ("stats__country", "shares__basket_share")
    served = store.get_online_features([{"user_id": 1}], manifest=manifest, now=READ_AT, request_data={"basket": [5.0]})
    assert list(served.to_dict()) == ["user_id", "stats__country", "shares__basket_share"]
    assert store.get_online_features(
        [{"user_id": 1}], service="svc", manifest=manifest, now=READ_AT, request_data={"basket": [5.0]},
    ).to_dict() == served.to_dict()
    again = store.get_historical_features(_spine_at(READ_AT), as_of=manifest)
    assert fl.Manifest.from_table(again).digest == manifest.digest


def test_plain_references_with_full_feature_names_rebuild_as_of(store):
    store.apply([user, stats_view()])
    store.ingest("stats", ROWS)
    train = store.get_historical_features(_spine_at(READ_AT), ["stats:country"], full_feature_names=True)
    manifest = fl.Manifest.from_table(train)
    assert manifest.outputs == ("stats__country",)
    again = store.get_historical_features(_spine_at(READ_AT), as_of=manifest)
    assert again.column_names == train.column_names
    served = store.get_online_features([{"user_id": 1}], manifest=manifest, now=READ_AT)
    assert served.to_dict() == {"user_id": [1], "stats__country": ["DE"]}


# -- digests ---------------------------------------------------------------------------------------


def test_digest_of_empty_and_all_null_columns():
    for kind in (pa.float64(), pa.int64(), pa.bool_(), pa.string(), pa.timestamp("us", tz="UTC")):
        empty = pa.array([], kind)
        assert column_digest(empty) == column_digest(pa.chunked_array([], kind))
        nulls = pa.nulls(3, kind)
        assert column_digest(nulls) == column_digest(pa.array([None, None, None], kind))
        assert column_digest(nulls) != column_digest(pa.nulls(2, kind))
    assert table_digest(pa.table({"a": pa.array([], pa.float64())})) != table_digest(pa.table({"a": pa.array([1.0])}))


def test_digest_of_sliced_and_chunked_columns_agrees():
    values = [1.5, None, -0.0, float("nan"), 7.0, None]
    whole = pa.array(values, pa.float64())
    sliced = pa.array([99.0, *values, 3.0], pa.float64()).slice(1, len(values))
    chunked = pa.chunked_array([pa.array(values[:2], pa.float64()), pa.array(values[2:], pa.float64())])
    assert column_digest(whole) == column_digest(sliced) == column_digest(chunked)
    text = ["a", None, "", "long text", None]
    assert column_digest(pa.array(text)) == column_digest(pa.array(["zz", *text]).slice(1))
    assert column_digest(pa.array(text)) == column_digest(pa.chunked_array([pa.array(text[:3]), pa.array(text[3:])]))
    flags = [True, None, False, True, True, False, None, True, False]
    assert column_digest(pa.array(flags)) == column_digest(pa.array([False, False, False, *flags]).slice(3))
    assert column_digest(pa.array([True, False])) != column_digest(pa.array([False, True]))


def test_digest_of_timestamps_with_time_zones():
    moment = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    utc = pa.array([moment], pa.timestamp("us", tz="UTC"))
    berlin = utc.cast(pa.timestamp("us", tz="Europe/Berlin"))
    # same instant, same bits: the zone is presentation; but the kind differs in the table digest
    assert column_digest(utc) == column_digest(berlin)
    sliced = pa.array([None, moment, moment], pa.timestamp("us", tz="UTC")).slice(1, 1)
    assert column_digest(sliced) == column_digest(utc)


def test_entity_df_with_zone_aware_timestamps_rebuilds_as_of(store, tmp_path):
    store.apply([user, stats_view()])
    store.ingest("stats", ROWS)
    berlin = timezone(timedelta(hours=1))
    spine = pa.table({
        "user_id": [1, 2], "event_timestamp": pa.array(
            [READ_AT.replace(tzinfo=timezone.utc).astimezone(berlin)] * 2, pa.timestamp("us", tz="+01:00"),
        ),
    })
    train = store.get_historical_features(spine, ["stats:country", "stats:spend_agg"])
    manifest = fl.Manifest.from_table(train)
    assert train.column("country").to_pylist() == ["DE", "FR"]
    assert manifest.time_range[0] == "2026-01-01T00:10:00+00:00"
    pq.write_table(train, tmp_path / "t.parquet")
    back = pq.read_table(tmp_path / "t.parquet")
    assert fl.Manifest.from_table(back) == manifest
    assert manifest.matches(back)
    again = store.get_historical_features(spine, as_of=manifest)
    assert fl.Manifest.from_table(again).digest == manifest.digest


def test_an_empty_entity_df_gets_a_manifest(store):
    store.apply([user, stats_view(), fl.FeatureService("svc", ["stats:country"])])
    store.ingest("stats", ROWS)
    empty = pa.table({"user_id": pa.array([], pa.int64()), "event_timestamp": pa.array([], pa.timestamp("us"))})
    train = store.get_historical_features(empty, service="svc")
    manifest = fl.Manifest.from_table(train)
    assert manifest.rows == 0 and manifest.time_range == (None, None)
    assert fl.Manifest.from_table(store.get_historical_features(empty, as_of=manifest)).digest == manifest.digest


# -- reopening the file --------------------------------------------------------------------------


def test_reopen_serves_a_pinned_window_function_and_ttl_and_old_featurizer(tmp_path):
    path = tmp_path / "s.duckdb"
    pinned_view = stats_view(ttl="4m", function="mean")
    with fl.open(path) as s:
        s.apply([user, pinned_view, shares_view(share_of_agg, pinned_view),
                 fl.FeatureService("svc", ["stats:country", "stats:spend_agg", "shares:basket_share"])])
        s.ingest("stats", ROWS)
        before_online = s.get_online_features(
            [{"user_id": 1}], service="svc", now=READ_AT, request_data={"basket": [5.0]}
        ).to_dict()
        before = s.get_historical_features(_spine_at(T0 + 3 * MIN, READ_AT), service="svc")
        moved = stats_view(ttl="30d", window="2m")
        s.apply([moved, shares_view(share, moved)])
    with fl.open(path) as s:
        assert s.get_online_features(
            [{"user_id": 1}], service="svc", now=READ_AT, request_data={"basket": [5.0]}
        ).to_dict() == before_online
        after = s.get_historical_features(_spine_at(T0 + 3 * MIN, READ_AT), service="svc")
        assert after.to_pydict() == before.to_pydict()
        assert fl.Manifest.from_table(after).digest == fl.Manifest.from_table(before).digest
        # a manifest built before the reopen still serves and rebuilds
        manifest = fl.Manifest.from_table(before)
        assert s.get_online_features(
            [{"user_id": 1}], manifest=manifest, now=READ_AT, request_data={"basket": [5.0]}
        ).to_dict() == before_online


# -- apply of a service together with a changed view ----------------------------------------


def test_apply_a_service_together_with_a_changed_view_pins_the_new_version(store):
    store.apply([user, stats_view(), fl.FeatureService("svc", ["stats:country"])])
    store.ingest("stats", ROWS)
    moved = stats_view(ttl="1m")
    result = store.apply([moved, fl.FeatureService("svc", ["stats:country"])])
    assert store.get_feature_service("svc").pins == {"stats": moved.version}
    assert result.affected_services == []
    assert store.get_online_features([{"user_id": 1}], service="svc", now=READ_AT).to_dict()["country"] == [None]
    # a service that pins the old version explicitly, applied along with the change
    old = store.list_versions("stats")[0]["version"]
    store.apply([stats_view(ttl="2m"), fl.FeatureService("old", [f"stats@{old[:6]}:country"])])
    assert store.get_feature_service("old").pins == {"stats": old}
    assert store.get_online_features([{"user_id": 1}], service="old", now=READ_AT).to_dict()["country"] == ["DE"]


# -- explicit odfv version whose source view changed since --------------------------------------


def test_explicit_odfv_version_after_its_source_changed(store):
    store.apply([user, stats_view(), shares_view()])
    store.ingest("stats", ROWS)
    first = store.list_on_demand_feature_views()[0].version
    moved = stats_view(extra={"bonus": "float64"})

    @fl.featurizer
    def share_bonus(spend: float, basket: float, bonus: float) -> float:
        return basket / spend + bonus

    store.apply([moved, shares_view(share_bonus, moved)])
    got = store.get_online_features(
        [{"user_id": 1}], [f"shares@{first[:6]}:basket_share"], now=READ_AT, request_data={"basket": [5.0]}
    ).to_dict()
    assert got["basket_share"] == [0.25]
    train = store.get_historical_features(_spine_at(READ_AT), [f"shares@{first[:6]}:basket_share"])
    assert train.column("basket_share").to_pylist() == [0.25]


# -- deleting -----------------------------------------------------------------------------------------


def test_a_deleted_and_reapplied_view_does_not_serve_a_stale_pin(store):
    store.apply([user, stats_view()])
    store.ingest("stats", ROWS)
    train = store.get_historical_features(_spine_at(READ_AT), ["stats:country"])
    manifest = fl.Manifest.from_table(train)
    store.delete_feature_view("stats")
    with pytest.raises((fl.PinnedVersionError, fl.UnknownFeatureViewError, fl.ManifestError)):
        store.get_online_features([{"user_id": 1}], manifest=manifest, now=READ_AT)
    store.apply([stats_view()])  # the same definition again, but the data went with the delete
    again = store.get_historical_features(_spine_at(READ_AT), as_of=manifest)
    # the rows the manifest was built from are gone: a rebuild cannot give the same digest, and
    # must not claim to
    assert fl.Manifest.from_table(again).digest != manifest.digest


# -- multi-entity through a service --------------------------------------------------------------


def test_multi_entity_reads_through_a_service_match_the_training_set(store):
    other = fl.Entity("shop", ["shop_id"])
    shops = fl.FeatureView("shops", entities=[other], schema={"rating": "float64"})
    pairs = fl.FeatureView("pairs", entities=[user, other], schema={"visits": "int64"})
    svc = fl.FeatureService("svc", ["stats:country", "shops:rating", "pairs:visits", "stats:spend_agg"])
    store.apply([user, other, stats_view(), shops, pairs, svc])
    store.ingest("stats", ROWS)
    store.ingest("shops", pa.table({"shop_id": [7, 8], "rating": [4.5, 3.0], "event_timestamp": [T0, T0]}))
    store.ingest("pairs", pa.table({"user_id": [1, 2], "shop_id": [8, 7], "visits": [3, 9], "event_timestamp": [T0, T0]}))
    rows = [{"user_id": 1, "shop_id": 8}, {"user_id": 2, "shop_id": 7}, {"user_id": 3, "shop_id": 7}]
    online = store.get_online_features(rows, service="svc", now=READ_AT).to_dict()
    spine = pa.table({"user_id": [1, 2, 3], "shop_id": [8, 7, 7], "event_timestamp": [READ_AT] * 3})
    train = store.get_historical_features(spine, service="svc")
    for column in ("country", "rating", "visits", "spend_agg"):
        assert online[column] == train.column(column).to_pylist(), column
    assert online["user_id"] == [1, 2, 3] and online["shop_id"] == [8, 7, 7]


# -- thread safety of plan caches --------------------------------------------------------------------


def test_concurrent_service_reads_while_applying(store):
    store.apply([user, stats_view(), shares_view(), fl.FeatureService("svc", ["stats:country", "shares:basket_share"])])
    store.ingest("stats", ROWS)

    @fl.featurizer
    def share_x(spend: float, basket: float) -> float:
        return basket / spend * 100.0

    errors: list[BaseException] = []
    seen: set = set()
    stop = threading.Event()

    def reader():
        try:
            while not stop.is_set():
                got = store.get_online_features(
                    [{"user_id": 1}], service="svc", now=READ_AT, request_data={"basket": [5.0]}
                ).to_dict()
                seen.add(got["basket_share"][0])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(6):
            store.apply([shares_view(share_x if i % 2 == 0 else share)])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert seen == {0.25}  # the service never moved


# -- a manifest together with features= / service= that ask for other features -------------------


@pytest.fixture
def trained(store):
    store.apply([user, stats_view(), shares_view(),
                 fl.FeatureService("fraud", ["stats:country", "shares:basket_share"]),
                 fl.FeatureService("small", ["stats:spend"])])
    store.ingest("stats", ROWS)
    train = store.get_historical_features(_spine_at(READ_AT), service="fraud")
    return store, fl.Manifest.from_table(train)


def test_serving_a_manifest_with_features_it_does_not_hold_is_refused(trained):
    """Same versions, other features: what would be served ("stats:spend") differs from what
    the manifest pinned, so it must refuse, not silently serve the manifest's columns."""
    store, manifest = trained
    with pytest.raises(fl.ManifestError):
        store.get_online_features(
            [{"user_id": 1}], ["stats:spend"], manifest=manifest, now=READ_AT, request_data={"basket": [5.0]}
        )


def test_serving_a_manifest_with_another_service_is_refused(trained):
    store, manifest = trained
    with pytest.raises(fl.ManifestError):
        store.get_online_features(
            [{"user_id": 1}], service="small", manifest=manifest, now=READ_AT, request_data={"basket": [5.0]}
        )


def test_rebuilding_as_of_with_features_it_does_not_hold_is_refused(trained):
    store, manifest = trained
    with pytest.raises(fl.ManifestError):
        store.get_historical_features(_spine_at(READ_AT), ["stats:spend"], as_of=manifest)


def test_serving_a_manifest_with_its_own_features_or_service_is_allowed(trained):
    store, manifest = trained
    kw = {"now": READ_AT, "request_data": {"basket": [5.0]}}
    alone = store.get_online_features([{"user_id": 1}], manifest=manifest, **kw).to_dict()
    assert alone == {"user_id": [1], "country": ["DE"], "basket_share": [0.25]}
    assert store.get_online_features([{"user_id": 1}], service="fraud", manifest=manifest, **kw).to_dict() == alone
    assert store.get_online_features(
        [{"user_id": 1}], ["stats:country", "shares:basket_share"], manifest=manifest, **kw
    ).to_dict() == alone


# -- affected_services says which services an apply leaves behind --------------------------------


def test_affected_services_names_only_definitions_the_apply_changes(store):
    store.apply([user, stats_view(), shares_view(), fl.FeatureService("svc", ["shares:basket_share"])])

    @fl.featurizer
    def share_x(spend: float, basket: float) -> float:
        return basket / spend * 100.0

    first = store.apply([shares_view(share_x)])
    assert [(i.service, i.definition) for i in first.affected_services] == [("svc", "shares")]
    # an apply that changes nothing the service reads: no service is left behind by it
    unrelated = store.apply([fl.Entity("shop", ["shop_id"])])
    assert unrelated.affected_services == []


# -- concurrency: registry versions read while an apply adds definitions -------------------------


def test_plans_made_during_an_apply_that_adds_definitions_do_not_fail(store):
    import itertools
    import sys

    features = {f"f{i}": "float64" for i in range(8)}
    wide = fl.FeatureView("wide", entities=[user], schema=features)
    store.apply([user, wide])
    old = store.get_feature_view("wide").version
    lists = [
        [f"wide@{old[:6]}:{f}" for f in combo]
        for r in (1, 2, 3) for combo in itertools.combinations(features, r)
    ]
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader():
        try:
            while not stop.is_set():
                for refs in lists:
                    store.get_online_features([{"user_id": 1}], refs)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(300):
            store.apply([fl.Entity(f"e{i}", [f"k{i}"])])
            if errors:
                break
    finally:
        stop.set()
        for t in threads:
            t.join()
        sys.setswitchinterval(interval)
    assert errors == []


# -- pinned aggregations served from the in-memory buffer ---------------------------------------


@pytest.mark.parametrize("now", [T0 + 90 * timedelta(seconds=1), T0 + 4 * MIN, T0 + 6 * MIN, READ_AT])
def test_a_pinned_shorter_window_with_another_function_is_served_from_the_buffer_as_offline(store, now):
    """Pinned: max over 3m (shorter than the current 1h window, so the buffer holds it);
    current: sum over 1h. Online through the service equals the training set at each time,
    including read times before the latest events."""
    pinned_view = stats_view(window="3m", function="max")
    store.apply([user, pinned_view, shares_view(share_of_agg, pinned_view),
                 fl.FeatureService("svc", ["stats:spend_agg", "shares:basket_share"])])
    store.ingest("stats", ROWS)
    moved = stats_view(window="1h", function="sum")
    store.apply([moved, shares_view(share_of_agg, moved)])
    store.warm()
    for users in ([1], [1, 2], [2, 1, 3]):
        online = store.get_online_features(
            [{"user_id": u} for u in users], service="svc", now=now, request_data={"basket": [5.0] * len(users)},
        ).to_dict()
        offline = store.get_historical_features(_spine_at(*[now] * len(users), users=users), service="svc")
        for column in ("spend_agg", "basket_share"):
            assert online[column] == offline.column(column).to_pylist(), (column, users)
    current = store.get_online_features([{"user_id": 1}], ["stats:spend_agg"], now=READ_AT).to_dict()
    assert current["spend_agg"] == [30.0]
