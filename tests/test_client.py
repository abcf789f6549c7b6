"""The remote client (`featurelite.connect`, issue 14) against a real `featurelite serve`
subprocess: reads, listings and reports equal to what the Store gives in process on the
same file before it was served; training sets streamed in record batches with their
manifest; pushes; snapshots; and every kind of failure as the featurelite error it stands
for (same class, message and details), never an httpx exception.

The definitions here are shared with test_client_parity.py and test_cli_remote.py."""

from __future__ import annotations

import contextlib
import json
import math
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from test_server import Server, free_port, serving

import featurelite as fl
from featurelite.cli import load_definitions
from featurelite.http_client import RemoteStore, connect

DEFINITIONS = '''
import featurelite as fl


@fl.featurizer
def scaled(amount: float, factor: float) -> float:
    return amount * factor


@fl.featurizer
def waited(seen: fl.Timestamp, at: fl.Timestamp) -> int:
    return at - seen


@fl.featurizer
def later(seen: fl.Timestamp) -> fl.Timestamp:
    return seen + 1_000_000


user = fl.Entity("user", join_keys=["user_id"])
account = fl.Entity("account", join_keys={"code": "string"})
stats = fl.FeatureView(
    "stats", entities=[user], timestamp_field="ts", ttl="2d", freshness="1h",
    schema={"amount": "float64", "small": "float32", "count": "int32", "flag": "bool", "name": "string",
            "seen": "timestamp"},
    aggregations=[fl.Aggregation("amount", "sum", "1d")],
)
accounts = fl.FeatureView("accounts", entities=[account], timestamp_field="ts", schema={"balance": "float64"})
derived = fl.OnDemandFeatureView(
    "derived", sources=[stats, fl.RequestSource("req", schema={"factor": "float64", "at": "timestamp"})],
    featurizers={"scaled": scaled, "waited": waited, "later": later},
)
fraud = fl.FeatureService("fraud", ["stats:amount", "derived:scaled"])
'''
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
NOW = T0 + timedelta(hours=30)
FEATURES = ["stats:amount", "stats:small", "stats:count", "stats:flag", "stats:name", "stats:seen",
            "stats:amount_sum_1d", "derived:scaled", "derived:waited", "derived:later"]
ROWS = [{"user_id": 1}, {"user_id": 2}, {"user_id": 3}, {"user_id": None}]
REQUEST = {"factor": [2.0, float("inf"), -1.5, 1.0], "at": [NOW, NOW - timedelta(hours=1), NOW, NOW]}
LARGE_IDS = [i % 7 for i in range(3000)]
LARGE_REQUEST = {"factor": [float(i) for i in range(3000)], "at": [NOW] * 3000}


def events() -> pa.Table:
    """Stats for users 1 and 2 (and 5, long ago): NaN, -0.0, a null, text that is not
    ASCII, timestamps; the NaN amount makes the window sum NaN too."""
    return pa.table({
        "user_id": [1, 2, 1, 5],
        "amount": [1.5, float("nan"), -0.0, 7.0],
        "small": pa.array([0.1, -0.0, 3.5, 1.0], pa.float32()),
        "count": pa.array([1, 2, 3, 4], pa.int32()),
        "flag": [True, None, False, True],
        "name": ["a", "é\u2603", None, "old"],
        "seen": [T0, T0 - timedelta(days=400), T0 + timedelta(hours=5), T0],
        "ts": [T0, T0 + timedelta(hours=1), T0 + timedelta(hours=20), T0 - timedelta(days=30)],
    })


def spine(rows: int) -> pa.Table:
    """``rows`` entity rows over users 0..5 and the first day, with the request fields."""
    return pa.table({
        "user_id": pa.array([i % 6 for i in range(rows)], pa.int64()),
        "event_timestamp": pa.array([T0 + timedelta(minutes=(i * 7) % 2880) for i in range(rows)],
                                    pa.timestamp("us", tz="UTC")),
        "factor": [float(i % 5) - 1.0 for i in range(rows)],
        "at": pa.array([T0 + timedelta(hours=1)] * rows, pa.timestamp("us", tz="UTC")),
        "label": [i % 2 for i in range(rows)],
    })


def build(folder: Path, name: str = "served.duckdb", extra: str = "") -> Path:
    """The store the tests serve: the definitions (plus ``extra``) and :func:`events`."""
    (folder / "defs.py").write_text(DEFINITIONS + extra)
    path = folder / name
    with fl.open(path) as store:
        store.apply(load_definitions(str(folder / "defs.py")))
        store.ingest("stats", events())
    return path


def caught(call: Any) -> FeatureliteErrorInfo:
    with pytest.raises(fl.FeatureliteError) as info:
        call()
    return FeatureliteErrorInfo(type(info.value), str(info.value), dict(info.value.details))


@dataclass(frozen=True)
class FeatureliteErrorInfo:
    kind: type
    message: str
    details: dict[str, Any]


def same(a: Any, b: Any) -> bool:
    """Equal down to the bit and the type: floats by their encoding (NaN equals NaN, 0.0
    is not -0.0), datetimes with their zone, containers element by element."""
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, datetime) and isinstance(b, datetime):
        return a == b and a.utcoffset() == b.utcoffset()
    return type(a) is type(b) and a == b


def manifest_without_time(table: pa.Table) -> dict[str, Any]:
    data = json.loads(fl.Manifest.from_table(table).to_json())
    data.pop("created_at")
    return data


def same_training_set(got: pa.Table, expected: pa.Table) -> None:
    """Equal schemas (types, field metadata) and the same bits (the manifest digests), with
    the same manifest but for when it was built."""
    assert got.schema.equals(expected.schema, check_metadata=False), (got.schema, expected.schema)
    assert set(got.schema.metadata) == set(expected.schema.metadata)
    assert manifest_without_time(got) == manifest_without_time(expected)
    assert fl.Manifest.from_table(got).matches(got) and got.num_rows == expected.num_rows


@dataclass
class Served:
    server: Server
    store_id: str
    expected: dict[str, Any]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The store, served; what the Store says in process, computed before serving it."""
    folder = tmp_path_factory.mktemp("client")
    path = build(folder)
    with fl.open(folder / "other.duckdb") as other:  # the same definitions, another store
        other.apply(load_definitions(str(folder / "defs.py")))
        foreign = fl.Manifest.from_table(other.get_historical_features(spine(3), service="fraud"))
    with fl.open(path) as store:
        read = store.get_online_features(ROWS, FEATURES, request_data=REQUEST, now=NOW)
        big = spine(150_000)
        expected = {
            "read": read,
            "large": store.get_online_features({"user_id": LARGE_IDS}, FEATURES, request_data=LARGE_REQUEST, now=NOW),
            "service": store.get_online_features(ROWS, service="fraud", request_data=REQUEST, now=NOW,
                                                 full_feature_names=True),
            "training": store.get_historical_features(big, FEATURES),
            "spine": big,
            "entities": [e.spec() for e in store.list_entities()],
            "views": [v.spec() for v in store.list_feature_views()],
            "odfvs": [v.spec() for v in store.list_on_demand_feature_views()],
            "services": [s.spec() for s in store.list_feature_services()],
            "describe": {n: store.describe(n) for n in ("stats", "derived", "fraud")},
            "versions": store.list_versions("stats"),
            "verify": [(r.view, r.features, r.featurizer, r.examples, r.ok) for r in store.verify(examples=30)],
            "freshness": store.freshness(now=NOW),
            "search": store.search("amount"),
            "search_tagged": store.search(kinds=["feature_view", "feature_service"], limit=3),
            "search_error": caught(lambda: store.search("x", kinds=["table"])),
            "errors": {
                "feature": caught(lambda: store.get_online_features(ROWS, ["stats:nope"])),
                "view": caught(lambda: store.describe("ghost")),
                "entity": caught(lambda: store.get_online_features([{"customer": 1}], ["stats:amount"])),
                "foreign": caught(lambda: store.get_online_features(ROWS, manifest=foreign)),
                "push": caught(lambda: store.ingest("stats", pa.table({"user_id": [1]}))),
                "versions": caught(lambda: store.list_versions("ghost")),
                "service": caught(lambda: store.get_feature_service("ghost")),
            },
            "foreign": foreign,
            # issue 15: a recorded model, statistics (cached in the file: the server answers
            # from that cache), lineage
            "model": store.record_model("scorer", store.get_historical_features(spine(3), service="fraud"),
                                        uri="models:/scorer/1"),
            "stats": store.stats("stats"),
            "lineage": store.lineage(),
            "lineage_fraud": store.lineage("fraud"),
            "lineage_error": caught(lambda: store.lineage("ghost")),
            "stats_error": caught(lambda: store.stats("fraud")),
        }
        store_id = store.store_id
    with serving(folder) as server:
        yield Served(server, store_id, expected)


@pytest.fixture
def client(served: Served) -> Iterator[RemoteStore]:
    with connect(served.server.url) as remote:
        yield remote


# -- reads, listings, reports --------------------------------------------------------


def test_an_online_read_gives_what_the_store_gives_in_process(served, client):
    expected: fl.OnlineResponse = served.expected["read"]
    got = client.get_online_features(ROWS, FEATURES, request_data=REQUEST, now=NOW)
    assert same(got.to_dict(), expected.to_dict()) and got.statuses == expected.statuses
    table = got.to_arrow()  # typed as in process (NaN is no equal of itself to Table.equals: compared as bits)
    assert table.schema == expected.to_arrow().schema and same(table.to_pylist(), expected.to_arrow().to_pylist())
    # what makes the comparison able to fail: the values the wire must carry back
    values = got.to_dict()
    assert math.isnan(values["amount"][1]) and values["small"][1] == 0.0 and math.copysign(1, values["small"][1]) < 0
    assert values["seen"][0] == T0 + timedelta(hours=5) and values["seen"][0].tzinfo is not None and values["name"][1] == "é\u2603"
    assert values["waited"][1] == (NOW - timedelta(hours=1) - (T0 - timedelta(days=400))) // timedelta(microseconds=1)
    service = client.get_online_features(ROWS, service="fraud", request_data=REQUEST, now=NOW, full_feature_names=True)
    assert same(service.to_dict(), served.expected["service"].to_dict())
    assert list(service.to_dict()) == ["user_id", "stats__amount", "derived__scaled"]


def test_a_large_read_answered_in_steps_is_the_same(served, client):
    """Over 256 entities the server answers from a worker thread, in steps: the same values."""
    got = client.get_online_features({"user_id": LARGE_IDS}, FEATURES, request_data=LARGE_REQUEST, now=NOW)
    expected = served.expected["large"]
    assert same(got.to_dict(), expected.to_dict()) and got.statuses == expected.statuses
    assert len(got) == 3000 and got.to_dict()["seen"][1] == T0 + timedelta(hours=5)


def test_definitions_listings_and_reports_equal_the_store_in_process(served, client):
    expected = served.expected
    assert [e.spec() for e in client.list_entities()] == expected["entities"]
    assert [v.spec() for v in client.list_feature_views()] == expected["views"]
    odfvs = client.list_on_demand_feature_views()
    assert [v.spec() for v in odfvs] == expected["odfvs"]
    assert odfvs[0].featurizers["scaled"].run_one({"amount": 2.0, "factor": 3.0}) == 6.0  # compiled here
    services = client.list_feature_services()
    assert [s.spec() for s in services] == expected["services"] and services[0].pins
    assert client.get_entity("account").join_keys == ("code",)
    assert client.get_feature_view("stats").spec() == next(v for v in expected["views"] if v["name"] == "stats")
    assert client.get_feature_service("fraud").spec() == expected["services"][0]
    for name, info in expected["describe"].items():
        assert client.describe(name) == info
    assert client.describe("stats")["last_event"] == T0 + timedelta(hours=20)
    assert client.list_versions("stats") == expected["versions"]
    assert isinstance(client.list_versions("stats", kind="feature_view")[0]["applied_at"], datetime)
    assert [(r.view, r.features, r.featurizer, r.examples, r.ok) for r in client.verify(examples=30)] == \
        expected["verify"]
    assert {r.featurizer for r in client.verify("derived", examples=5)} == {"later", "scaled", "waited"}
    assert client.store_id == served.store_id and client.server_version == fl.__version__


def test_search_finds_what_the_store_finds(served, client):
    assert served.expected["search"] and client.search("amount") == served.expected["search"]
    assert client.search(kinds=("feature_view", "feature_service"), limit=3) == served.expected["search_tagged"]
    assert caught(lambda: client.search("x", kinds=["table"])) == served.expected["search_error"]


def test_statistics_lineage_and_models_equal_the_store_in_process(served, client):
    expected = served.expected
    stats = client.stats("stats")
    assert stats.cached and stats.features == expected["stats"].features and stats.rows == expected["stats"].rows
    assert stats.to_dict() == {**expected["stats"].to_dict(), "cached": True}
    assert client.lineage() == expected["lineage"] and client.lineage("fraud") == expected["lineage_fraud"]
    assert ("feature_service:fraud", "model:scorer#1") in {(e.source, e.target) for e in client.lineage("fraud").edges}
    assert client.list_models() == [expected["model"]] and client.list_models("scorer")[0].uri == "models:/scorer/1"
    assert client.list_models("nobody") == []
    assert caught(lambda: client.lineage("ghost")) == expected["lineage_error"]
    assert caught(lambda: client.stats("fraud")) == expected["stats_error"]


def test_freshness_is_the_servers_report(served, client):
    expected: fl.FreshnessReport = served.expected["freshness"]
    got = client.freshness(now=NOW)
    assert got.now == expected.now and [v.view for v in got.views] == [v.view for v in expected.views]
    stats = got["stats"]
    assert stats.slo == timedelta(hours=1) and stats.last_event == T0 + timedelta(hours=20)
    assert stats.breached and stats.newest_age == timedelta(hours=10) and not got.ok
    assert got["stats"].to_dict()["newest_age_seconds"] == expected["stats"].to_dict()["newest_age_seconds"]


# -- training sets -------------------------------------------------------------------


def test_a_training_set_streams_in_batches_with_its_manifest(served, client):
    expected = served.expected["training"]
    big = served.expected["spine"]
    with httpx.Client(timeout=60) as raw:  # the wire: several record batches, the manifest in the schema
        sink = pa.BufferOutputStream()
        request = {"features": FEATURES}
        with pa.ipc.new_stream(sink, big.schema.with_metadata({b"featurelite.request": json.dumps(request)})) as w:
            w.write_table(big)
        answer = raw.post(served.server.url + "/v1/get-historical-features", content=sink.getvalue().to_pybytes(),
                          headers={"content-type": "application/vnd.apache.arrow.stream"})
        assert answer.status_code == 200, answer.text
        reader = pa.ipc.open_stream(answer.content)
        batches = list(reader)
        assert [b.num_rows for b in batches] == [65536, 65536, 150_000 - 2 * 65536]
        assert b"featurelite.manifest" in reader.schema.metadata
    got = client.get_historical_features(big, FEATURES)
    same_training_set(got, expected)
    assert got.column_names[:5] == big.column_names and got.column("label").equals(big.column("label"))
    # as_of: the same training set again, whatever was pushed since
    manifest = fl.Manifest.from_table(got)
    rebuilt = client.get_historical_features(big, as_of=manifest)
    assert fl.Manifest.from_table(rebuilt).digest == manifest.digest
    assert client.get_historical_features(big, service="fraud").num_rows == 150_000


def test_an_as_of_rebuild_leaves_out_a_later_push(served, client, tmp_path):
    entities = pa.table({"code": ["k1", "k2"], "event_timestamp": [T0 + timedelta(hours=5)] * 2})
    client.ingest("accounts", pa.table({"code": ["k1"], "balance": [1.0], "ts": [T0]}))
    first = client.get_historical_features(entities, ["accounts:balance"])
    assert first.column("balance").to_pylist() == [1.0, None]
    client.ingest("accounts", pa.table({"code": ["k2"], "balance": [2.0], "ts": [T0 + timedelta(hours=1)]}))  # late
    fresh = client.get_historical_features(entities, ["accounts:balance"])
    assert fresh.column("balance").to_pylist() == [1.0, 2.0]
    rebuilt = client.get_historical_features(entities, as_of=fl.Manifest.from_table(first))
    assert rebuilt.column("balance").to_pylist() == [1.0, None]
    assert fl.Manifest.from_table(rebuilt).digest == fl.Manifest.from_table(first).digest
    # the entity rows may come from a file of this machine, as in process
    pcsv.write_csv(entities, tmp_path / "spine.csv")
    from_file = client.get_historical_features(tmp_path / "spine.csv", ["accounts:balance"])
    assert from_file.column("balance").to_pylist() == [1.0, 2.0]


# -- pushes --------------------------------------------------------------------------


def test_a_push_lands_whole_or_not_at_all_and_csv_columns_keep_their_text(served, client, tmp_path):
    result = client.ingest("accounts", pa.table({"code": ["p1", "p2"], "balance": [5.0, 6.0], "ts": [T0, T0]}))
    assert result == fl.IngestResult("accounts", 2)
    read = client.get_online_features({"code": ["p1", "p2"]}, ["accounts:balance"], now=NOW)
    assert read.to_dict()["balance"] == [5.0, 6.0]
    # CSV: "0123" stays the text key it is (a guessed type would make it 123), as in process
    (tmp_path / "accounts.csv").write_text("code,balance,ts\n0123,7.5,2026-03-01T00:00:00\n")
    assert client.ingest("accounts", tmp_path / "accounts.csv", batch_rows=1).rows == 1
    assert client.get_online_features([{"code": "0123"}], ["accounts:balance"]).to_dict()["balance"] == [7.5]
    # a push that does not fit changes nothing
    bad = pa.table({"code": ["p1", "p3"], "balance": [9.0, 9.0], "ts": pa.array([T0, None], pa.timestamp("us"))})
    with pytest.raises(fl.SchemaError):
        client.ingest("accounts", bad)
    after = client.get_online_features({"code": ["p1", "p3"]}, ["accounts:balance"], now=NOW)
    assert after.to_dict()["balance"] == [5.0, None] and after.statuses["balance"][1] == "NOT_FOUND"
    with pytest.raises(fl.SourceError, match="does not exist"):
        client.ingest("accounts", tmp_path / "missing.parquet")


# -- errors --------------------------------------------------------------------------


@pytest.mark.parametrize(("what", "call", "kind"), [
    ("feature", lambda c: c.get_online_features(ROWS, ["stats:nope"]), fl.UnknownFeatureError),  # 404
    ("view", lambda c: c.describe("ghost"), fl.UnknownFeatureViewError),  # 404
    ("entity", lambda c: c.get_online_features([{"customer": 1}], ["stats:amount"]), fl.InputError),  # 422
    ("push", lambda c: c.ingest("stats", pa.table({"user_id": [1]})), fl.SchemaError),  # 422
    ("versions", lambda c: c.list_versions("ghost"), fl.NotFoundError),  # 404
    ("service", lambda c: c.get_feature_service("ghost"), fl.UnknownFeatureServiceError),  # 404
])
def test_an_error_comes_back_as_the_class_message_and_details_raised(served, client, what, call, kind):
    expected: FeatureliteErrorInfo = served.expected["errors"][what]
    got = caught(lambda: call(client))
    assert got.kind is expected.kind and issubclass(got.kind, kind)
    assert got.message == expected.message and got.details == expected.details


def test_a_manifest_of_another_store_is_refused_as_in_process(served, client):  # 409
    expected: FeatureliteErrorInfo = served.expected["errors"]["foreign"]
    got = caught(lambda: client.get_online_features(ROWS, manifest=served.expected["foreign"]))
    assert got.kind is fl.ManifestError and got.message == expected.message
    with pytest.raises(fl.ManifestError, match=r"must be a featurelite\.Manifest"):
        client.get_online_features(ROWS, manifest={"not": "a manifest"})


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with a token and small limits."""
    folder = tmp_path_factory.mktemp("strict")
    build(folder)
    with serving(folder, "--max-body", "20000", "--max-upload", "60000", token="s3cret") as server:
        yield server


def test_a_wrong_or_missing_token_is_a_store_error_that_says_so(strict):
    for token in (None, "wrong"):
        # connecting asks /v1/health, which needs no token; the first call that does is refused
        with connect(strict.url, token=token) as remote, pytest.raises(fl.StoreError, match=r"refused the token.*token="):
            remote.list_feature_views()
    with connect(strict.url, token="s3cret") as remote:
        assert [v.name for v in remote.list_feature_views()] == ["accounts", "stats"]
    with pytest.raises(fl.InputError, match="printable ASCII"):
        connect(strict.url, token="two words")


def test_a_push_or_an_upload_over_the_limit_is_an_input_error_and_nothing_lands(strict):
    rows = 5000
    big = pa.table({"code": [f"c{i}" for i in range(rows)], "balance": [1.0] * rows, "ts": [T0] * rows})
    with connect(strict.url, token="s3cret") as remote:
        before = remote.describe("accounts")["history_rows"]
        with pytest.raises(fl.InputError, match=r"more than the 20000 bytes.*never split.*--max-body") as info:
            remote.ingest("accounts", big)
        assert info.value.view == "accounts"
        assert remote.describe("accounts")["history_rows"] == before
        with pytest.raises(fl.InputError, match=r"too large.*60000.*--max-upload"):
            remote.get_historical_features(spine(5000), ["stats:amount"])
        assert remote.get_historical_features(spine(100), ["stats:amount"]).num_rows == 100  # under the limit


def test_nothing_listening_at_the_url_is_a_store_error_naming_it():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(fl.StoreError, match=rf"no featurelite server answers at {url}.*featurelite serve"):
        connect(url)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:6566", "127.0.0.1:6566", "localhost", "", "http://", 6566,
                                 "http://127.0.0.1:port", "http://127.0.0.1:6566/?x=1"])
def test_a_url_that_is_not_an_http_url_is_an_input_error(url):
    with pytest.raises(fl.InputError, match="URL"):
        connect(url)


def test_a_server_that_is_not_featurelite_is_a_store_error(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with pytest.raises(fl.StoreError, match=r"not a featurelite server.*HTTP 404"):
            connect(f"http://127.0.0.1:{port}")
    finally:
        proc.kill()
        proc.wait()


def test_a_closed_client_refuses_further_calls(served):
    remote = connect(served.server.url)
    remote.close()
    assert remote.closed and "closed" in repr(remote)
    with pytest.raises(fl.StoreClosedError):
        remote.get_online_features(ROWS, ["stats:amount"])
    with pytest.raises(fl.StoreClosedError):
        remote.list_entities()


# -- snapshots -----------------------------------------------------------------------


def test_a_snapshot_is_a_complete_copy_that_opens_read_only(served, client, tmp_path):
    target = tmp_path / "copy.duckdb"
    assert client.snapshot(target) == str(target)
    assert not list(tmp_path.glob("*.partial")) and not Path(f"{target}.wal").exists()
    with fl.open(target, read_only=True) as copy:
        assert copy.store_id == served.store_id == client.store_id
        assert copy.describe("stats")["history_rows"] == client.describe("stats")["history_rows"]
        local = copy.get_online_features(ROWS, FEATURES, request_data=REQUEST, now=NOW)
    assert same(local.to_dict(), client.get_online_features(ROWS, FEATURES, request_data=REQUEST, now=NOW).to_dict())
    with pytest.raises(fl.InputError, match="exists"):
        client.snapshot(target)
    with pytest.raises(fl.StoreError, match="could not write the snapshot"):
        client.snapshot(tmp_path / "missing" / "copy.duckdb")
    # nothing stays beside the served store, and the server still holds it alone
    assert not [p for p in served.server.path.parent.iterdir() if ".snapshot-" in p.name]
    with pytest.raises(fl.StoreLockedError, match=r"featurelite\.connect"):
        fl.open(served.server.path, read_only=True)
