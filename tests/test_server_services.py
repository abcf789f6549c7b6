"""Feature services and manifests over HTTP (issue 13), against a real `featurelite serve`
subprocess: `"feature_service"` in place of `"features"`, a training set's `"manifest"`
(alone it serves the manifest's features at its versions; with features or a service it
refuses, 409, whatever would be served differently), the statuses of every refusal, and
the OpenAPI document. The Python API, on the same file before the server starts, gives
the expected answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from test_cli_services import FIRST, NEW_BODY, NO_TIER, definitions
from test_server import Server, serving

import featurelite as fl
from featurelite.cli import load_definitions
from featurelite.server_bodies import HTTPError, Manifests

NOW = datetime(2026, 1, 6)
ENTITIES = {"user_id": [42, 7, 9]}
REQUEST = {"basket": [10.0, 1.0, 2.0]}
READ = {"entities": ENTITIES, "request_data": REQUEST, "now": NOW.isoformat()}


@dataclass
class Served:
    server: Server
    manifest: str  #: the JSON text of a training set's manifest (service fraud, before the change)
    foreign: str  #: a manifest of the same definitions, from another store
    expected: dict[str, Any]  #: {what: the Python API's answer as {"values", "statuses"}}

    def read(self, **fields: Any) -> httpx.Response:
        return self.server.post("/get-online-features", {**READ, **fields})


def answer(response: fl.OnlineResponse) -> dict[str, Any]:
    return json.loads(json.dumps({"values": response.to_dict(), "statuses": response.statuses}))


def build(folder: Path) -> tuple[str, str, dict[str, Any]]:
    """The store a server will serve: service `fraud` pinned before its on-demand view's
    featurizer changed, `fresh` (the same features) after, `legacy` pinning a feature since
    removed. Returns a manifest of `fraud`, one from another store, and expected answers."""
    for name, values, services in (("v1", FIRST, True), ("v2", NEW_BODY, False),
                                   ("no_tier", {**NEW_BODY, "PROFILE_SCHEMA": NO_TIER["PROFILE_SCHEMA"]}, False)):
        (folder / f"{name}.py").write_text(definitions(values, services))
    spine = pa.table({"user_id": [42, 7], "event_timestamp": [datetime(2026, 1, 6), datetime(2026, 1, 3)],
                      "basket": [10.0, 1.0]})
    with fl.open(folder / "other.duckdb") as other:
        other.apply(load_definitions(str(folder / "v1.py")))
        foreign = fl.Manifest.from_table(other.get_historical_features(spine, service="fraud")).to_json()
    with fl.open(folder / "served.duckdb") as store:
        store.apply(load_definitions(str(folder / "v1.py")))
        store.ingest("stats", pa.table({
            "user_id": [42, 42, 7], "spend": [10.0, 30.0, 3.0], "orders": [1, 2, 1],
            "ts": [datetime(2026, 1, 1), datetime(2026, 1, 5), datetime(2026, 1, 2)],
        }))
        manifest = fl.Manifest.from_table(store.get_historical_features(spine, service="fraud"))
        store.apply(load_definitions(str(folder / "v2.py")))
        store.apply(fl.FeatureService("fresh", ["stats:spend", "shares:share"]))
        store.apply(load_definitions(str(folder / "no_tier.py")))
        read = {"entity_rows": ENTITIES, "request_data": REQUEST, "now": NOW}
        expected = {
            "fraud": answer(store.get_online_features(service="fraud", **read)),
            "fresh": answer(store.get_online_features(service="fresh", **read)),
            "manifest": answer(store.get_online_features(manifest=manifest, **read)),
        }
    return manifest.to_json(), foreign, expected


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("services")
    manifest, foreign, expected = build(folder)
    with serving(folder) as server:
        yield Served(server, manifest, foreign, expected)


def error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["type"] == kind and "Traceback" not in response.text, body
    return str(body["message"])


def test_the_python_api_gives_what_the_tests_expect(served):
    """The expected answers differ where they must (else the tests below could not fail)."""
    fraud, fresh = served.expected["fraud"]["values"], served.expected["fresh"]["values"]
    assert fraud == {"user_id": [42, 7, 9], "spend": [30.0, 3.0, None], "share": [0.25, 0.25, 1.0]}
    assert fresh["share"] == [0.5, 0.5, 2.0] and served.expected["manifest"] == served.expected["fraud"]


def test_a_feature_service_is_read_at_its_pinned_versions(served):
    got = served.read(feature_service="fraud")
    assert got.status_code == 200 and got.json() == served.expected["fraud"]
    assert served.read(feature_service="fresh").json() == served.expected["fresh"]
    named = served.read(feature_service="fraud", full_feature_names=True).json()["values"]
    assert list(named) == ["user_id", "stats__spend", "shares__share"]


def test_a_manifest_alone_serves_its_features_at_its_versions(served):
    as_object = served.read(manifest=json.loads(served.manifest))
    assert as_object.status_code == 200 and as_object.json() == served.expected["fraud"]
    for _ in range(2):  # the text form, read once and then remembered
        assert served.read(manifest=served.manifest).json() == served.expected["fraud"]
    checked = served.read(manifest=served.manifest, feature_service="fraud")
    assert checked.status_code == 200 and checked.json() == served.expected["fraud"]
    pinned = [f["reference"] for f in json.loads(served.manifest)["features"]]
    assert served.read(manifest=served.manifest, features=pinned).json() == served.expected["fraud"]


def test_a_manifest_refuses_what_would_be_served_differently(served):
    moved = error(served.read(manifest=served.manifest, feature_service="fresh"), 409, "ManifestError")
    old = json.loads(served.manifest)["pins"]["shares"]
    assert f"would read other versions than the manifest pins (shares: manifest {old}, now " in moved
    error(served.read(manifest=served.manifest, features=["stats:spend", "shares:share"]), 409, "ManifestError")
    foreign = error(served.read(manifest=served.foreign), 409, "ManifestError")
    assert "the manifest is from another store" in foreign
    error(served.read(manifest=served.foreign, feature_service="fraud"), 409, "ManifestError")
    # and the service itself still serves: nothing was changed by the refusals
    assert served.read(feature_service="fraud").json() == served.expected["fraud"]


@pytest.mark.parametrize(("fields", "status", "kind", "says"), [
    ({"feature_service": "fruad"}, 404, "UnknownFeatureServiceError",
     "feature service 'fruad' is not registered (registered: fraud, fresh, legacy)"),
    ({"features": ["stats@ffffffff:spend"]}, 404, "UnknownVersionError", "no version starting with 'ffffffff'"),
    ({"feature_service": "legacy"}, 409, "PinnedVersionError", "feature view 'profile' is pinned at version"),
    ({"feature_service": "fraud", "features": ["stats:spend"]}, 422, "InputError",
     "give 'features' or 'feature_service', not both"),
    ({"feature_service": ["fraud"]}, 422, "InputError", "'feature_service' must be the name of a feature service"),
    ({}, 422, "InputError", "or give 'feature_service', or a training set's 'manifest'"),
    ({"features": []}, 422, "InputError", "'features' must be a non-empty list"),
    ({"manifest": {"store_id": "x"}}, 422, "ManifestError", "'manifest': this is not a featurelite manifest"),
    ({"manifest": "{not json"}, 422, "ManifestError", "'manifest': this is not a featurelite manifest"),
    ({"manifest": 5}, 422, "ManifestError", "not a JSON number"),
    ({"manifest": [1]}, 422, "ManifestError", "not a JSON array"),
])
def test_bad_requests_get_a_fitting_status_and_one_message(served, fields, status, kind, says):
    assert says in error(served.read(**fields), status, kind)


def test_a_push_is_seen_through_the_service_and_the_manifest(served):
    pushed = served.server.post("/push", {"view": "stats", "rows": [
        {"user_id": 9, "spend": 8.0, "orders": 1, "ts": "2026-01-05T12:00:00"}]})
    assert pushed.status_code == 200
    for fields in ({"feature_service": "fraud"}, {"manifest": served.manifest}):
        values = served.read(**fields).json()["values"]
        assert values["spend"] == [30.0, 3.0, 8.0] and values["share"] == [0.25, 0.25, 0.2], fields


def test_the_openapi_document_describes_the_new_fields(served):
    spec = httpx.get(served.server.url + "/openapi.json", timeout=30).json()["paths"]["/get-online-features"]["post"]
    body = spec["requestBody"]["content"]["application/json"]["schema"]
    assert {"feature_service", "manifest", "features"} <= set(body["properties"]) and body["required"] == ["entities"]
    assert {"409", "404", "422"} <= set(spec["responses"])


def test_manifests_are_read_once_per_text():
    """In process: the cache gives the same Manifest for the same text, and a bad value is a 422."""
    with fl.open() as store:
        user = fl.Entity("user", ["user_id"])
        store.apply([user, fl.FeatureView("v", entities=[user], schema={"x": "int64"})])
        text = fl.Manifest.from_table(store.get_historical_features(
            pa.table({"user_id": [1], "event_timestamp": [NOW]}), ["v:x"])).to_json()
    manifests = Manifests()
    first = manifests.get(text)
    assert manifests.get(text) is first and manifests.get(json.loads(text)) == first
    with pytest.raises(HTTPError) as caught:
        manifests.get("{}")
    assert caught.value.status == 422 and caught.value.kind == "ManifestError"
    for i in range(Manifests.SIZE + 1):  # a client sending endless distinct manifests does not grow it forever
        manifests.get(text.replace("}", " " * i + "}", 1))
    assert len(manifests._read) <= Manifests.SIZE
