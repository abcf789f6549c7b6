"""Freshness: each view's newest value against its SLO, the ages of what reads served, and
how long ingests take to be readable."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

import featurelite as fl

user = fl.Entity("user", join_keys=["user_id"])
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def views():
    return [
        user,
        fl.FeatureView("fresh", entities=[user], schema={"x": "float64"}, freshness="1h", log=True),
        fl.FeatureView("plain", entities=[user], schema={"x": "float64"}),
        fl.FeatureView("empty", entities=[user], schema={"x": "float64"}, freshness="1d"),
    ]


def ingest(store, view, at, keys=(1, 2)):
    store.ingest(view, pa.table({"user_id": list(keys), "x": [1.0] * len(keys),
                                 "event_timestamp": pa.array([at] * len(keys), pa.timestamp("us", tz="UTC"))}))


def test_a_view_breaks_its_slo_when_its_newest_value_is_older_than_it():
    with fl.open() as store:
        store.apply(views())
        ingest(store, "fresh", T0)
        ingest(store, "plain", T0 - timedelta(days=300))
        report = store.freshness(now=T0 + timedelta(minutes=30))
        assert report["fresh"].newest_age == timedelta(minutes=30) and not report["fresh"].breached
        assert report["plain"].slo is None and not report["plain"].breached  # no SLO, never breached
        assert report["empty"].breached and report["empty"].last_event is None  # an SLO and no value at all
        assert [v.view for v in report.breaches] == ["empty"] and not report.ok
        later = store.freshness(now=T0 + timedelta(hours=2))
        assert later["fresh"].breached and later["fresh"].newest_age == timedelta(hours=2)
        # an event after `now` is not the newest value at `now`
        ingest(store, "fresh", T0 + timedelta(days=5))
        assert store.freshness(now=T0 + timedelta(minutes=30))["fresh"].last_event == T0


def test_served_ages_stale_values_and_push_latency_are_measured():
    with fl.open() as store:
        store.apply(views())
        ingest(store, "fresh", T0)
        ingest(store, "fresh", T0, keys=(3,))
        for minutes in (10, 30, 90):  # ages of what was served, 2 entities each
            store.get_online_features({"user_id": [1, 2, 99]}, ["fresh:x"], now=T0 + timedelta(minutes=minutes))
        fresh = store.freshness(now=T0)["fresh"]
        assert fresh.served_ages.count == 6  # the unknown entity 99 served nothing
        assert fresh.served_ages.p50 == pytest.approx(1800.0)
        assert fresh.served_ages.max == pytest.approx(5400.0)
        assert fresh.served_stale == 2  # the two served at 90 minutes, over the 1h SLO
        assert fresh.push_to_visible.count == 2 and 0 < fresh.push_to_visible.p50 < 10


def test_reports_round_trip_through_their_dicts():
    with fl.open() as store:
        store.apply(views())
        ingest(store, "fresh", T0)
        store.get_online_features({"user_id": [1]}, ["fresh:x"], now=T0 + timedelta(minutes=10))
        report = store.freshness(now=T0 + timedelta(minutes=20))
        assert fl.FreshnessReport.from_dict(report.to_dict()) == report
        replay = store.consistency("fresh")
        assert fl.ConsistencyReport.from_dict(replay.to_dict()) == replay


def test_freshness_checks_its_argument():
    with fl.open() as store, pytest.raises(fl.InputError, match="now"):
        store.freshness(now="yesterday")
