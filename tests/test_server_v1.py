"""The server's versioned API (`/v1/...`, issue 14), over HTTP against a real `featurelite
serve` subprocess and, for limits and odd stores, against `create_app` in process: the
shape of every answer, the OpenAPI document naming every route, the error bodies (with
`details` under /v1/, the old shape without the prefix), the training-set stream's
refusals and upload limits, and the snapshot stream."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pyarrow as pa
import pytest
from starlette.routing import Mount, Route
from test_client import FEATURES, NOW, REQUEST, ROWS, T0, build, spine
from test_server import Server, serving

import featurelite as fl
from featurelite import wire
from featurelite.results import VerifyResult
from featurelite.server import create_app
from featurelite.server_openapi import ARROW_STREAM, OPENAPI, STREAM_ROWS, arrow_chunks
from featurelite.verification import Mismatch

ARROW = {"content-type": ARROW_STREAM}
TOKEN = "v1-s3cret"
LOGGED = '''
logged = fl.FeatureView("logged", entities=[user], timestamp_field="ts", schema={"x": "float64"}, log=True)
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("v1")
    build(folder, extra=LOGGED)
    with serving(folder, "--max-upload", "200000", token=TOKEN) as served:
        yield served


def get(server: Server, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(server.url + path, headers=server.headers, timeout=60, **kwargs)


def post(server: Server, path: str, **kwargs: Any) -> httpx.Response:
    headers = {**server.headers, **kwargs.pop("headers", {})}
    return httpx.post(server.url + path, headers=headers, timeout=60, **kwargs)


def error(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["type"] == kind and body["message"] and "Traceback" not in response.text, body
    return dict(body)


def stream(table: pa.Table, request: dict[str, Any] | None) -> bytes:
    metadata = dict(table.schema.metadata or {})
    if request is not None:
        metadata[b"featurelite.request"] = json.dumps(request).encode()
    return b"".join(arrow_chunks(table.schema.with_metadata(metadata), table.to_batches(max_chunksize=STREAM_ROWS)))


# -- the document --------------------------------------------------------------------------


def test_the_openapi_document_names_every_route_with_its_method(server):
    with fl.open() as store:
        app = create_app(store)
    routes = {}
    for route in app.routes:
        if isinstance(route, Mount):  # the web UI's pages (HTML, not the API): documented in docs/discovery.md
            assert route.path == "/ui"
            continue
        assert isinstance(route, Route)
        routes[route.path.replace(":path}", "}")] = {m.lower() for m in route.methods or ()} - {"head"}
    documented = {path: set(item) for path, item in OPENAPI["paths"].items()}
    assert routes == documented
    served = get(server, "/openapi.json").json()
    assert served == json.loads(wire.encode(OPENAPI)) and "/v1/get-historical-features" in served["paths"]
    for path, item in OPENAPI["paths"].items():
        for method, operation in item.items():
            assert operation["summary"] and "200" in operation["responses"], (path, method)
            if "{name}" in path:
                assert any(p["name"] == "name" and p["in"] == "path" for p in operation["parameters"]), path


# -- answers ---------------------------------------------------------------------------------


def test_health_needs_no_token_and_says_the_api_version(server):
    for path in ("/v1/health", "/health"):
        answer = httpx.get(server.url + path, timeout=30)
        assert answer.status_code == 200 and answer.json() == {"status": "ok", "version": fl.__version__, "api": ["v1"]}
    assert error(httpx.get(server.url + "/v1/info", timeout=30), 401, "Unauthorized")["details"] == {}
    info = get(server, "/v1/info").json()
    assert info == {"store_id": info["store_id"], "version": fl.__version__, "api": ["v1"],
                    "max_body": 16 * 1024 * 1024, "max_upload": 200000}
    assert len(info["store_id"]) == 32


def test_listings_are_items_of_specs_and_one_definition_its_spec(server):
    names = {path: [item["name"] for item in get(server, path).json()["items"]] for path in (
        "/v1/entities", "/v1/feature-views", "/v1/on-demand-feature-views", "/v1/feature-services")}
    assert names == {"/v1/entities": ["account", "user"], "/v1/feature-views": ["accounts", "logged", "stats"],
                     "/v1/on-demand-feature-views": ["derived"], "/v1/feature-services": ["fraud"]}
    stats = get(server, "/v1/feature-views/stats").json()["spec"]
    assert fl.FeatureView.from_spec(stats).freshness == timedelta(hours=1) and stats["kind"] == "feature_view"
    service = get(server, "/v1/feature-services/fraud").json()["spec"]
    assert dict(service["pins"]).keys() == {"derived", "stats"}
    assert get(server, "/v1/entities/account").json()["spec"]["join_keys"] == [["code", "string"]]
    with fl.open() as store, pytest.raises(fl.UnknownFeatureViewError) as expected:
        store.get_feature_view("ghost")
    missing = error(get(server, "/v1/feature-views/ghost"), 404, "UnknownFeatureViewError")
    assert missing["details"] == wire.plain(expected.value.details) and missing["details"]


def test_describe_versions_verify_freshness_and_consistency(server):
    described = get(server, "/v1/describe/stats").json()
    assert described["last_event"] == (T0 + timedelta(hours=20)).isoformat() and described["history_rows"] == 4
    assert get(server, "/v1/describe/fraud").json()["kind"] == "feature_service"
    versions = get(server, "/v1/versions/stats", params={"kind": "feature_view"}).json()["items"]
    assert [v["current"] for v in versions] == [True] and versions[0]["applied_at"].endswith("+00:00")
    bad_kind = error(get(server, "/v1/versions/stats", params={"kind": "nope"}), 422, "InputError")
    assert "kind must be one of" in bad_kind["message"]
    verified = post(server, "/v1/verify", json={"name": "derived", "examples": 20}).json()["items"]
    assert {item["featurizer"] for item in verified} == {"scaled", "waited", "later"}
    assert all(item["mismatch"] is None and item["examples"] == 20 for item in verified)
    assert error(post(server, "/v1/verify", json={"examples": 0}), 422, "InputError")
    fresh = get(server, "/v1/freshness", params={"now": NOW.isoformat()}).json()
    assert fresh["ok"] is False and [v["view"] for v in fresh["views"]] == ["accounts", "logged", "stats"]
    stats = fresh["views"][2]
    assert stats["breached"] is True and stats["slo_seconds"] == 3600 and stats["newest_age_seconds"] == 36000
    assert error(get(server, "/v1/freshness", params={"now": "yesterday"}), 422, "InputError")
    replay = post(server, "/v1/consistency", json={"target": "logged", "since": T0.isoformat()}).json()
    assert replay["target"] == "logged" and replay["kind"] == "feature_view" and replay["since"] == T0.isoformat()
    assert replay["requests"] == 0 and replay["consistency"] == 1.0
    assert error(post(server, "/v1/consistency", json={}), 422, "InputError")["message"].startswith("'target'")
    assert error(post(server, "/v1/consistency", json={"target": "ghost"}), 404, "UnknownFeatureViewError")
    assert "no serving log" in error(post(server, "/v1/consistency", json={"target": "stats"}), 422,
                                     "InputError")["message"]
    assert error(post(server, "/v1/consistency", json={"target": "logged", "until": "soon"}), 422, "InputError")


def test_a_mismatch_travels_as_its_text_and_its_parts():
    with fl.open() as store:
        mismatch = Mismatch("f", {"x": float("nan")}, 1.0, float("inf"), 1.0)
        store.verify = lambda *a, **k: [VerifyResult("v", ("f",), "f", 7, mismatch)]  # type: ignore[method-assign]
        app = create_app(store)

        async def go() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fl") as client:
                return await client.post("/v1/verify", json={})

        answer = asyncio.run(go())
    assert answer.status_code == 200, answer.text
    item = answer.json()["items"][0]
    assert item["mismatch"] == {"text": str(mismatch), "featurizer": "f", "inputs": {"x": "NaN"}, "batch": 1.0,
                                "request": "Infinity", "moved": 1.0}


def read(server: Server, path: str, body: dict[str, Any]) -> httpx.Response:
    """A read as the client sends it: NaN and infinities as the JSON tokens Python reads."""
    return post(server, path, content=json.dumps(body, default=str), headers={"content-type": "application/json"})


def test_an_online_read_answers_its_arrow_schema_when_asked(server):
    body = {"features": FEATURES, "entities": ROWS, "request_data": REQUEST, "now": NOW.isoformat(),
            "request_times": ["at"]}
    plain = read(server, "/get-online-features", body).json()
    assert set(plain) == {"values", "statuses"}, plain
    typed = read(server, "/v1/get-online-features", {**body, "arrow_schema": True}).json()
    assert typed["values"] == plain["values"] and typed["statuses"] == plain["statuses"]
    schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(typed["arrow_schema"])))
    assert dict(zip(schema.names, schema.types, strict=True)) == {
        "user_id": pa.int64(), "amount": pa.float64(), "small": pa.float32(), "count": pa.int32(),
        "flag": pa.bool_(), "name": pa.string(), "seen": pa.timestamp("us", tz="UTC"), "amount_sum_1d": pa.float64(),
        "scaled": pa.float64(), "waited": pa.int64(), "later": pa.timestamp("us", tz="UTC"),
    }
    assert typed["values"]["amount"][1] == "NaN" and typed["values"]["scaled"][1] == "NaN"
    # request_times: the request fields sent as ISO-8601 text that are times; without it, the featurizer refuses text
    untimed = read(server, "/v1/get-online-features", {k: v for k, v in body.items() if k != "request_times"})
    assert "expected a datetime" in error(untimed, 422, "InputError")["message"]
    assert error(read(server, "/v1/get-online-features", {**body, "request_times": ["basket"]}), 422, "InputError")


def test_v1_errors_carry_details_and_the_old_endpoints_keep_their_shape(server):
    read = {"features": ["stats:nope"], "entities": [{"user_id": 1}]}
    new = error(post(server, "/v1/get-online-features", json=read), 404, "UnknownFeatureError")
    assert new["details"] == {"view": "stats", "reference": "stats:nope"}
    old = error(post(server, "/get-online-features", json=read), 404, "UnknownFeatureError")
    assert set(old) == {"type", "message"} and old["message"] == new["message"]
    nowhere = error(get(server, "/v1/nowhere"), 404, "NotFound")
    assert nowhere["details"] == {} and set(error(get(server, "/nowhere"), 404, "NotFound")) == {"type", "message"}
    assert error(httpx.delete(server.url + "/v1/health", timeout=30), 405, "MethodNotAllowed")["details"] == {}
    pushed = error(post(server, "/v1/push", json={"view": "stats", "rows": [{"user_id": 1}]}), 422, "SchemaError")
    assert pushed["details"]["view"] == "stats" and "ts" in pushed["details"]["missing"]


def test_a_push_takes_its_batch_size_from_the_query(server):
    table = pa.table({"code": ["b1", "b2", "b3"], "balance": [1.0, 2.0, 3.0], "ts": [T0] * 3})
    answer = post(server, "/v1/push", params={"view": "accounts", "batch_rows": "2"}, content=stream(table, None),
                  headers=ARROW)
    assert answer.status_code == 200 and answer.json() == {"view": "accounts", "rows": 3}
    for bad in ("0", "-1", "x", "1.5"):
        refused = post(server, "/v1/push", params={"view": "accounts", "batch_rows": bad}, content=stream(table, None),
                       headers=ARROW)
        assert "batch_rows" in error(refused, 422, "InputError")["message"]


# -- training sets ---------------------------------------------------------------------------


def test_a_training_set_request_is_refused_unless_it_is_one(server):
    entities = spine(10)
    url = "/v1/get-historical-features"
    assert "Arrow IPC stream" in error(post(server, url, json={"features": FEATURES}), 422, "InputError")["message"]
    assert "carries no request" in error(post(server, url, content=stream(entities, None), headers=ARROW), 422,
                                         "InputError")["message"]
    for request, says in (({"features": FEATURES, "bogus": 1}, "unknown field"),
                          ({"features": FEATURES, "full_feature_names": "yes"}, "true or false"),
                          ({"service": 7}, "'service'"), ({"features": FEATURES, "timestamp_field": 3}, "timestamp")):
        assert says in error(post(server, url, content=stream(entities, request), headers=ARROW), 422,
                             "InputError")["message"]
    manifest = error(post(server, url, content=stream(entities, {"as_of": "{}"}), headers=ARROW), 422, "ManifestError")
    assert "not a featurelite manifest" in manifest["message"]
    garbage = error(post(server, url, content=b"\xff\xff\xff\xffjunk", headers=ARROW), 422, "InputError")
    assert "not a readable Arrow IPC stream" in garbage["message"]
    unknown = error(post(server, url, content=stream(entities, {"features": ["stats:nope"]}), headers=ARROW), 404,
                    "UnknownFeatureError")
    assert unknown["details"]["reference"] == "stats:nope"


def test_a_training_set_answers_in_batches_and_can_leave_out_the_entity_columns(server):
    entities = spine(3000)
    full = post(server, "/v1/get-historical-features", content=stream(entities, {"features": FEATURES}),
                headers=ARROW)
    assert full.status_code == 200 and full.headers["content-type"] == ARROW_STREAM
    table = pa.ipc.open_stream(full.content).read_all()
    assert table.column_names == [*entities.column_names, "amount", "small", "count", "flag", "name", "seen",
                                  "amount_sum_1d", "scaled", "waited", "later"]
    manifest = fl.Manifest.from_table(table)
    assert manifest.rows == 3000 and manifest.matches(table)
    slim = post(server, "/v1/get-historical-features", headers=ARROW,
                content=stream(entities, {"features": FEATURES, "omit_entity_columns": True}))
    reader = pa.ipc.open_stream(slim.content)
    omitted = json.loads(reader.schema.metadata[b"featurelite.entity_columns"])
    assert omitted == [[0, "user_id"], [1, "event_timestamp"], [2, "factor"], [3, "at"], [4, "label"]]
    assert reader.schema.names == table.column_names[5:] and len(slim.content) < len(full.content) * 2 / 3


def test_an_upload_over_max_upload_is_413_before_the_store_sees_it(server):
    big = stream(spine(10_000), {"features": FEATURES})
    assert len(big) > 200_000
    refused = error(post(server, "/v1/get-historical-features", content=big, headers=ARROW), 413, "PayloadTooLarge")
    assert "200000" in refused["message"] and "--max-upload" in refused["message"]

    def chunks() -> Iterator[bytes]:  # no content-length: measured as it arrives
        yield from (big[i:i + 50_000] for i in range(0, len(big), 50_000))

    assert error(post(server, "/v1/get-historical-features", content=chunks(), headers=ARROW), 413, "PayloadTooLarge")
    # a push is limited by --max-body, not --max-upload: 200 kB is fine there
    rows = 5000
    table = pa.table({"code": [f"u{i}" for i in range(rows)], "balance": [1.0] * rows, "ts": [T0] * rows})
    body = stream(table, None)
    assert len(body) > 50_000
    assert post(server, "/v1/push", params={"view": "accounts"}, content=body, headers=ARROW).status_code == 200


def test_the_upload_decodes_to_at_most_eight_times_max_upload():
    with fl.open() as store:
        store.apply(fl.FeatureView("v", entities=[fl.Entity("user", ["user_id"])], schema={"x": "int64"}))
        app = create_app(store, max_upload=20_000)
        rows = 40_000  # 640 kB decoded (two int64 columns), compressed to far below 20 kB
        entities = pa.table({"user_id": pa.array([1] * rows, pa.int64()),
                             "event_timestamp": pa.array([T0] * rows, pa.timestamp("us", tz="UTC"))})
        entities = entities.replace_schema_metadata({b"featurelite.request": json.dumps({"features": ["v:x"]})})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, entities.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
            writer.write_table(entities)
        body = sink.getvalue().to_pybytes()
        assert len(body) < 20_000

        async def go() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fl") as client:
                return await client.post("/v1/get-historical-features", content=body, headers=ARROW)

        refused = asyncio.run(go())
        assert "decodes to more than 160000 bytes" in error(refused, 413, "PayloadTooLarge")["message"]
        with pytest.raises(fl.ServerError, match="max_upload"):
            create_app(store, max_upload=0)


# -- snapshots -------------------------------------------------------------------------------


def test_a_snapshot_streams_the_file_and_leaves_nothing_behind(server, tmp_path):
    answer = get(server, "/v1/snapshot")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/octet-stream"
    assert int(answer.headers["content-length"]) == len(answer.content) and answer.content[8:12] == b"DUCK"
    (tmp_path / "copy.duckdb").write_bytes(answer.content)
    with fl.open(tmp_path / "copy.duckdb", read_only=True) as copy:
        assert copy.store_id == get(server, "/v1/info").json()["store_id"]
    assert not [p for p in server.path.parent.iterdir() if ".snapshot-" in p.name]
    assert error(httpx.get(server.url + "/v1/snapshot", timeout=30), 401, "Unauthorized")


def test_a_snapshot_of_a_store_in_memory_is_a_store_error():
    with fl.open() as store:
        app = create_app(store)

        async def go() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fl") as client:
                return await client.get("/v1/snapshot")

        answer = asyncio.run(go())
    assert "in-memory store" in error(answer, 500, "StoreError")["message"]
