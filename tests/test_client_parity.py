"""Client parity (issue 14): the same calls in process and through `featurelite.connect` give
the same results, as a Hypothesis property over one `featurelite serve` subprocess.

The server holds its file, so the in-process side is a second file, a byte copy of the
first taken before the server started (the same store id, definitions and rows), that
gets every ingest the server gets, in the same order. For generated pushes, entity rows
(present, missing and None keys, keys of the wrong type), feature lists and services,
request data (NaN, infinities, -0.0, datetimes), `now` values and spines, each side must
give the same answer: equal `to_dict()` (bit for bit, types and zones included) and
statuses, equal training sets (schema and manifest digest), or the same error (class,
message and details).

One documented difference: an online read travels as JSON, which has one NaN, so a NaN's
sign and payload bits are not carried (in a value served, or in request data a featurizer
computes from); online NaNs are compared as NaN. Training sets travel as Arrow: every bit."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_client import T0, build, manifest_without_time, same
from test_server import serving

import featurelite as fl
from featurelite.http_client import RemoteStore, connect

STORED = ["stats:amount", "stats:small", "stats:count", "stats:flag", "stats:name", "stats:seen",
          "stats:amount_sum_1d"]
DERIVED = ["derived:scaled", "derived:waited", "derived:later"]


@pytest.fixture(scope="module")
def sides(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RemoteStore, fl.Store]]:
    """The client of a server over one file, and the Store over its copy."""
    folder = tmp_path_factory.mktemp("parity")
    path = build(folder)
    shutil.copyfile(path, folder / "local.duckdb")
    with serving(folder) as server, connect(server.url) as remote, fl.open(folder / "local.duckdb") as local:
        assert remote.store_id == local.store_id
        yield remote, local


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """What a call gives: ("ok", result) or ("error", (class, message, details))."""
    try:
        return "ok", call()
    except fl.FeatureliteError as exc:
        return "error", (type(exc), str(exc), dict(exc.details))


def assert_same_outcome(remote: tuple[str, Any], local: tuple[str, Any], compare: Callable[[Any, Any], None]) -> None:
    event(remote[0] if remote[0] == "ok" else f"error: {remote[1][0].__name__}")
    assert remote[0] == local[0], (remote, local)
    if remote[0] == "error":
        assert remote[1] == local[1]
    else:
        compare(remote[1], local[1])


# -- strategies --------------------------------------------------------------------------------

floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64), st.sampled_from([-0.0, 0.0]))
moments = st.integers(-24 * 60, 4 * 24 * 60).map(lambda minutes: T0 + timedelta(minutes=minutes))
# A time as a caller may give it: aware in UTC, aware in another zone, or naive (taken as UTC).
given_moments = st.tuples(moments, st.sampled_from(["utc", "plus2", "naive"])).map(
    lambda m: m[0] if m[1] == "utc" else m[0].astimezone(timezone(timedelta(hours=2))) if m[1] == "plus2"
    else m[0].replace(tzinfo=None))
keys = st.one_of(st.integers(0, 8), st.none(), st.sampled_from(["3", 2.0, "x", 2.5]))


@st.composite
def pushes(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(1, 6))
    column = lambda strategy: draw(st.lists(strategy, min_size=n, max_size=n))  # noqa: E731
    return pa.table({
        "user_id": pa.array(column(st.integers(0, 8)), pa.int64()),
        "amount": column(st.one_of(st.none(), floats)),
        "small": pa.array(column(st.one_of(st.none(), st.floats(width=32))), pa.float32()),
        "count": pa.array(column(st.integers(-(2**31), 2**31 - 1)), pa.int32()),
        "flag": pa.array(column(st.one_of(st.none(), st.booleans())), pa.bool_()),
        "name": pa.array(column(st.one_of(st.none(), st.text(max_size=5))), pa.string()),
        "seen": pa.array(column(st.one_of(st.none(), moments)), pa.timestamp("us", tz="UTC")),
        "ts": pa.array(column(moments), pa.timestamp("us", tz="UTC")),
    })


@st.composite
def reads(draw: st.DrawFn) -> dict[str, Any]:
    """The arguments of one online read."""
    n = draw(st.integers(0, 4))
    ids = draw(st.lists(keys, min_size=n, max_size=n))
    entity_rows: Any = {"user_id": ids} if draw(st.booleans()) else [{"user_id": i} for i in ids]
    arguments: dict[str, Any] = {"entity_rows": entity_rows, "now": draw(given_moments),
                                 "full_feature_names": draw(st.booleans())}
    if draw(st.integers(0, 5)) == 0:
        arguments["service"] = "fraud"
    else:
        pool = STORED + DERIVED + ["stats:nope"]
        arguments["features"] = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=5, unique=True))
    if draw(st.integers(0, 6)) > 0:  # sometimes none: a derived feature then needs it (the same error both ways)
        arguments["request_data"] = {
            "factor": draw(st.lists(floats, min_size=n, max_size=n)),
            "at": draw(st.lists(st.one_of(st.none(), given_moments), min_size=n, max_size=n)),
        }
    return arguments


@st.composite
def spines(draw: st.DrawFn) -> tuple[pa.Table, dict[str, Any]]:
    n = draw(st.integers(0, 8))
    table = pa.table({
        "user_id": pa.array(draw(st.lists(st.one_of(st.none(), st.integers(0, 8)), min_size=n, max_size=n)),
                            pa.int64()),
        "event_timestamp": pa.array(draw(st.lists(moments, min_size=n, max_size=n)), pa.timestamp("us", tz="UTC")),
        "factor": pa.array(draw(st.lists(floats, min_size=n, max_size=n)), pa.float64()),
        "at": pa.array(draw(st.lists(moments, min_size=n, max_size=n)), pa.timestamp("us", tz="UTC")),
        "label": pa.array(draw(st.lists(st.text(max_size=3), min_size=n, max_size=n)), pa.string()),
    })
    if draw(st.integers(0, 4)) == 0:
        return table, {"service": "fraud", "full_feature_names": draw(st.booleans())}
    features = draw(st.lists(st.sampled_from(STORED + DERIVED), min_size=1, max_size=4, unique=True))
    return table, {"features": features, "full_feature_names": draw(st.booleans())}


# -- comparisons -------------------------------------------------------------------------------


def one_nan(values: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Every NaN as the one NaN JSON has (see the module)."""
    return {k: [math.nan if isinstance(v, float) and math.isnan(v) else v for v in column]
            for k, column in values.items()}


def same_response(remote: fl.OnlineResponse, local: fl.OnlineResponse) -> None:
    assert same(one_nan(remote.to_dict()), one_nan(local.to_dict())), (remote.to_dict(), local.to_dict())
    assert remote.statuses == local.statuses
    assert remote.types == local.types and remote.to_arrow().schema == local.to_arrow().schema


def same_table(remote: pa.Table, local: pa.Table) -> None:
    assert remote.schema.equals(local.schema, check_metadata=False), (remote.schema, local.schema)
    metadata = {k: v for k, v in (remote.schema.metadata or {}).items() if k != b"featurelite.manifest"}
    assert metadata == {k: v for k, v in (local.schema.metadata or {}).items() if k != b"featurelite.manifest"}
    assert manifest_without_time(remote) == manifest_without_time(local)  # the digest: the same bits
    assert same(remote.to_pylist(), local.to_pylist())


# -- the property ------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(ingests=st.lists(pushes(), max_size=2), read=reads(), spine=spines())
def test_the_client_gives_what_the_store_gives_in_process(sides, ingests, read, spine):
    remote, local = sides
    for table in ingests:
        assert_same_outcome(outcome(lambda t=table: remote.ingest("stats", t)),
                            outcome(lambda t=table: local.ingest("stats", t)), lambda a, b: assert_equal(a, b))
    rows = read["entity_rows"]
    copy = (lambda: {"user_id": list(rows["user_id"])}) if isinstance(rows, dict) else (lambda: [dict(r) for r in rows])
    arguments = {k: v for k, v in read.items() if k != "entity_rows"}
    assert_same_outcome(outcome(lambda: remote.get_online_features(copy(), **arguments)),
                        outcome(lambda: local.get_online_features(copy(), **arguments)), same_response)
    entities, asked = spine
    assert_same_outcome(outcome(lambda: remote.get_historical_features(entities, **asked)),
                        outcome(lambda: local.get_historical_features(entities, **asked)), same_table)


def assert_equal(a: Any, b: Any) -> None:
    assert a == b


def stats_rows(users: list[int], amounts: list[float], names: list[str], hours: list[int]) -> pa.Table:
    n = len(users)
    return pa.table({"user_id": pa.array(users, pa.int64()), "amount": amounts,
                     "small": pa.array([1.0] * n, pa.float32()), "count": pa.array([1] * n, pa.int32()),
                     "flag": [True] * n, "name": names, "seen": pa.array([T0] * n, pa.timestamp("us", tz="UTC")),
                     "ts": pa.array([T0 + timedelta(hours=h) for h in hours], pa.timestamp("us", tz="UTC"))})


def test_a_rebuild_as_of_a_manifest_is_the_same_through_the_client(sides):
    """as_of: the training set rebuilt from its manifest, on both sides, after a late push.
    (Users 100 to 102, which the property above never writes.)"""
    remote, local = sides
    entities = pa.table({"user_id": pa.array([100, 101, 102], pa.int64()),
                         "event_timestamp": pa.array([T0 + timedelta(days=1)] * 3, pa.timestamp("us", tz="UTC"))})
    early = stats_rows([100, 101], [1.5, float("nan")], ["a", "b"], [1, 2])
    assert remote.ingest("stats", early) == local.ingest("stats", early)
    first = remote.get_historical_features(entities, ["stats:amount", "stats:name"])
    same_table(first, local.get_historical_features(entities, ["stats:amount", "stats:name"]))
    late = stats_rows([100], [99.0], ["late"], [23])
    assert remote.ingest("stats", late) == local.ingest("stats", late)
    manifest = fl.Manifest.from_table(first)
    rebuilt = remote.get_historical_features(entities, as_of=manifest)
    same_table(rebuilt, local.get_historical_features(entities, as_of=manifest))
    assert fl.Manifest.from_table(rebuilt).digest == manifest.digest
    now = remote.get_historical_features(entities, ["stats:amount", "stats:name"])
    assert now.column("name").to_pylist()[0] == "late" and json.loads(fl.Manifest.from_table(now).to_json())
    when = datetime(2026, 3, 2, tzinfo=timezone.utc)
    same_response(remote.get_online_features([{"user_id": 100}], ["stats:name"], now=when),
                  local.get_online_features([{"user_id": 100}], ["stats:name"], now=when))
