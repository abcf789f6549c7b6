"""Feature services and training-set manifests on the command line (issue 13): `apply` with
services (and the services a change affects), `list` / `describe` / `list-versions` /
`delete-feature-service`, `get-online-features --service / --manifest` and
`get-historical-features --service / --as-of`, each checked against the Python API; and
every kind of bad input as one `Error:` line with exit code 1 (2 for usage) that leaves the
store as it was."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

import featurelite as fl
from featurelite.cli import load_definitions, main

ENTITIES_AND_VIEWS = '''
import featurelite as fl

@fl.featurizer
def share(basket: float, spend: float = 0.0) -> float:
    return SHARE_BODY

user = fl.Entity("user", join_keys=["user_id"])
stats = fl.FeatureView("stats", entities=[user], timestamp_field="ts", schema={"spend": "float64", "orders": "int64"})
profile = fl.FeatureView("profile", entities=[user], timestamp_field="ts", schema=PROFILE_SCHEMA)
shares = fl.OnDemandFeatureView(
    "shares", sources=[stats, fl.RequestSource("req", schema={"basket": "float64"})], featurizers={"share": share}
)
'''
FIRST = {"SHARE_BODY": "basket / (basket + spend)", "PROFILE_SCHEMA": '{"tier": "string", "age": "int64"}'}
#: The on-demand view's featurizer computes something else: a compatible change.
NEW_BODY = {**FIRST, "SHARE_BODY": "2.0 * basket / (basket + spend)"}
#: `profile` loses `tier`: allowed while it stores no rows, but a service pinning `tier` can no longer serve.
NO_TIER = {**FIRST, "PROFILE_SCHEMA": '{"age": "int64"}'}
SERVICES = '''
fraud = fl.FeatureService("fraud", ["stats:spend", "shares:share"], owner="risk", description="the fraud model")
legacy = fl.FeatureService("legacy", ["stats:orders", "profile:tier"])
'''
NOW = "2026-01-06T00:00:00"
ENTITY_ARGS = ["-e", "user_id=42", "-e", "user_id=7", "-e", "user_id=9", "-r", "basket=10", "-r", "basket=1",
               "-r", "basket=2", "--now", NOW]
ENTITY_ROWS = [{"user_id": 42}, {"user_id": 7}, {"user_id": 9}]
REQUEST = {"basket": [10.0, 1.0, 2.0]}


def definitions(values: dict[str, str], services: bool = True) -> str:
    text = ENTITIES_AND_VIEWS
    for name, value in values.items():
        text = text.replace(name, value)
    return text + (SERVICES if services else "")


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """Run a command in ``tmp_path``: click's Result, never with a traceback."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def run(*args: str) -> Result:
        result = runner.invoke(main, [str(a) for a in args], catch_exceptions=False)
        assert "Traceback" not in result.output + result.stderr
        return result

    return run


@pytest.fixture
def shop(tmp_path, cli) -> Path:
    """A store with the definitions and two services applied, and events for users 42 and 7."""
    (tmp_path / "defs.py").write_text(definitions(FIRST))
    pq.write_table(pa.table({
        "user_id": [42, 42, 7], "spend": [10.0, 30.0, 3.0], "orders": [1, 2, 1],
        "ts": [datetime(2026, 1, 1), datetime(2026, 1, 5), datetime(2026, 1, 2)],
    }), tmp_path / "events.parquet")
    pq.write_table(pa.table({
        "user_id": [42, 42, 7], "event_timestamp": [datetime(2026, 1, 2), datetime(2026, 1, 6), datetime(2026, 1, 3)],
        "basket": [10.0, 10.0, 1.0],
    }), tmp_path / "spine.parquet")
    assert cli("apply", "shop.duckdb", "defs.py").exit_code == 0
    assert cli("ingest", "shop.duckdb", "stats", "events.parquet").exit_code == 0
    return tmp_path / "shop.duckdb"


def ok(result: Result) -> object:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def error_line(result: Result, code: int) -> str:
    """The one ``Error:`` line of a failed command (with click's usage lines for code 2)."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    others = [line for line in lines if not line.startswith("Error: ")]
    assert all(line.startswith(("Usage: ", "Try ")) for line in others) if code == 2 else not others, result.stderr
    assert result.stdout == ""
    return errors[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_of(path: Path) -> fl.Manifest:
    return fl.Manifest.from_table(pq.read_schema(path))


# -- apply, list, describe, list-versions, delete-feature-service ---------------------


def test_apply_with_services_then_list_describe_and_versions(cli, shop):
    again = ok(cli("apply", shop, "defs.py"))
    assert {(r["action"], r["kind"], r["name"]) for r in again["plan"]} >= {
        ("unchanged", "feature_service", "fraud"), ("unchanged", "feature_service", "legacy")}
    assert again["affected_services"] == []
    with fl.open(shop, read_only=True) as store:
        fraud = store.get_feature_service("fraud")
        versions = {v.name: v.version for v in store.list_feature_views()}
        versions["shares"] = store.list_on_demand_feature_views()[0].version
    assert fraud.pins == {"shares": versions["shares"], "stats": versions["stats"]}

    listed = ok(cli("list", shop))
    services = [r for r in listed if r["kind"] == "feature_service"]
    assert [(r["name"], r["version"], r["pins"], r["features"]) for r in services] == [
        ("fraud", fraud.version, dict(fraud.pins), ["stats:spend", "shares:share"]),
        ("legacy", services[1]["version"], {"profile": versions["profile"], "stats": versions["stats"]},
         ["stats:orders", "profile:tier"]),
    ]
    table = cli("list", shop, "--format", "table").stdout
    assert f"2 feature(s); pins shares@{versions['shares']}, stats@{versions['stats']}" in table

    described = ok(cli("describe", shop, "fraud"))
    assert described["kind"] == "feature_service" and described["version"] == fraud.version
    assert described["pins"] == dict(fraud.pins) and described["spec"]["owner"] == "risk"
    assert "pins" in cli("describe", shop, "fraud", "--format", "table").stdout

    stats_versions = ok(cli("list-versions", shop, "stats"))
    assert [(v["version"], v["pinned_by"]) for v in stats_versions] == [(versions["stats"], ["fraud", "legacy"])]
    table = cli("list-versions", shop, "stats", "--format", "table").stdout.splitlines()
    assert table[0].split()[-1] == "pinned_by" and table[2].endswith("fraud, legacy")
    assert [v["version"] for v in ok(cli("list-versions", shop, "fraud"))] == [fraud.version]


def test_delete_feature_service(cli, shop, tmp_path):
    assert ok(cli("delete-feature-service", shop, "legacy")) == {"deleted": "legacy"}
    assert [r["name"] for r in ok(cli("list", shop)) if r["kind"] == "feature_service"] == ["fraud"]
    assert ok(cli("list-versions", shop, "profile"))[0]["pinned_by"] == []
    assert "'legacy' is not registered" in error_line(cli("get-online-features", shop, "-s", "legacy",
                                                          *ENTITY_ARGS), 1)
    before = digest(shop)
    assert "'legacy' is not registered (registered: fraud)" in error_line(
        cli("delete-feature-service", shop, "legacy"), 1)
    assert digest(shop) == before
    assert "featurelite init" in error_line(cli("delete-feature-service", "nowhere.duckdb", "fraud"), 1)
    assert not (tmp_path / "nowhere.duckdb").exists()  # a delete does not create a store


# -- reads through a service, and manifests -------------------------------------------


def test_get_online_features_by_service_equals_the_python_api(cli, shop):
    with fl.open(shop, read_only=True) as store:
        expected = store.get_online_features(ENTITY_ROWS, service="fraud", request_data=REQUEST,
                                             now=datetime.fromisoformat(NOW))
    got = ok(cli("get-online-features", shop, "--service", "fraud", *ENTITY_ARGS, "--statuses"))
    assert got == {"values": expected.to_dict(), "statuses": expected.statuses}
    assert got["values"] == {"user_id": [42, 7, 9], "spend": [30.0, 3.0, None], "share": [0.25, 0.25, 1.0]}
    table = cli("get-online-features", shop, "-s", "fraud", *ENTITY_ARGS, "--format", "table").stdout.splitlines()
    assert table[0].split() == ["user_id", "spend", "share"] and table[-1].split() == ["9", "[NOT_FOUND]", "1.0"]
    named = ok(cli("get-online-features", shop, "-s", "fraud", *ENTITY_ARGS, "--full-feature-names"))
    assert list(named) == ["user_id", "stats__spend", "shares__share"]


def test_get_historical_features_by_service_keeps_the_manifest_and_as_of_rebuilds_it(cli, shop, tmp_path):
    assert cli("get-historical-features", shop, "spine.parquet", "--service", "fraud", "-o", "train.parquet",
               ).exit_code == 0
    train = pq.read_table(tmp_path / "train.parquet")
    manifest = fl.Manifest.from_table(train)
    with fl.open(shop, read_only=True) as store:
        expected = store.get_historical_features(tmp_path / "spine.parquet", service="fraud")
        assert manifest.store_id == store.store_id
    assert manifest.service == "fraud" and manifest.outputs == ("spend", "share") and manifest.rows == 3
    assert manifest.matches(train) and manifest.digest == fl.Manifest.from_table(expected).digest
    assert train.column("spend").to_pylist() == [10.0, 30.0, 3.0]
    # the same through stdout (parquet is the default format when redirected)
    piped = cli("get-historical-features", shop, "spine.parquet", "-s", "fraud")
    assert fl.Manifest.from_table(pq.read_table(pa.BufferReader(piped.stdout_bytes))).digest == manifest.digest
    (tmp_path / "manifest.json").write_text(manifest.to_json())

    # A late event for an earlier time changes the training set; --as-of leaves it out.
    pq.write_table(pa.table({"user_id": [42], "spend": [99.0], "orders": [9], "ts": [datetime(2026, 1, 1, 12)]}),
                   tmp_path / "late.parquet")
    assert cli("ingest", shop, "stats", "late.parquet").exit_code == 0
    for source in ("train.parquet", "manifest.json"):
        out = f"again-{source}.parquet"
        assert cli("get-historical-features", shop, "spine.parquet", "--as-of", source, "-o", out).exit_code == 0
        rebuilt = pq.read_table(tmp_path / out)
        assert manifest_of(tmp_path / out).digest == manifest.digest and rebuilt.equals(train), source
    # --as-of with the service checks it still reads the manifest's versions (it does)
    assert cli("get-historical-features", shop, "spine.parquet", "--as-of", "train.parquet", "-s", "fraud",
               "-o", "checked.parquet").exit_code == 0
    assert manifest_of(tmp_path / "checked.parquet").digest == manifest.digest
    assert cli("get-historical-features", shop, "spine.parquet", "-s", "fraud", "-o", "now.parquet").exit_code == 0
    moved = manifest_of(tmp_path / "now.parquet")
    assert moved.digest != manifest.digest and manifest.changed_features(moved) == ["spend", "share"]


def test_a_change_shows_the_affected_services_and_the_manifest_refuses_what_moved(cli, shop, tmp_path):
    assert cli("get-historical-features", shop, "spine.parquet", "-s", "fraud", "-o", "train.parquet").exit_code == 0
    old = ok(cli("list-versions", shop, "shares"))[0]["version"]
    (tmp_path / "v2.py").write_text(definitions(NEW_BODY, services=False))

    before = digest(shop)
    dry = ok(cli("apply", shop, "v2.py", "--dry-run"))
    assert digest(shop) == before  # a dry run writes nothing
    [changed] = [r for r in dry["plan"] if r["action"] == "changed"]
    assert (changed["name"], changed["previous_version"]) == ("shares", old)
    assert dry["affected_services"] == [{"service": "fraud", "definition": "shares", "pinned_version": old,
                                         "new_version": changed["version"], "problem": None}]
    table = cli("apply", shop, "v2.py", "--dry-run", "--format", "table").stdout
    assert "feature services that pin an older version" in table and f"fraud    shares      {old}" in table

    applied = ok(cli("apply", shop, "v2.py"))
    assert applied["dry_run"] is False and [s["service"] for s in applied["affected_services"]] == ["fraud"]
    pinned = ok(cli("get-online-features", shop, "-s", "fraud", *ENTITY_ARGS))
    assert pinned["share"] == [0.25, 0.25, 1.0]  # the service still serves the version it pinned
    assert ok(cli("get-online-features", shop, "-f", "shares:share", *ENTITY_ARGS))["share"] == [0.5, 0.5, 2.0]
    assert ok(cli("get-online-features", shop, "--manifest", "train.parquet", *ENTITY_ARGS)) == pinned
    assert ok(cli("get-online-features", shop, "--manifest", "train.parquet", "-s", "fraud", *ENTITY_ARGS)) == pinned

    refused = error_line(cli("get-online-features", shop, "--manifest", "train.parquet", "-f", "stats:spend",
                             "-f", "shares:share", *ENTITY_ARGS), 1)
    assert f"would read other versions than the manifest pins (shares: manifest {old}, now " in refused
    # Moving the service forward: apply it again; the old manifest now refuses it.
    (tmp_path / "v2-services.py").write_text(definitions(NEW_BODY))
    moved = ok(cli("apply", shop, "v2-services.py"))
    assert ("changed", "fraud") in [(r["action"], r["name"]) for r in moved["plan"]]
    assert ok(cli("get-online-features", shop, "-s", "fraud", *ENTITY_ARGS))["share"] == [0.5, 0.5, 2.0]
    before = digest(shop)
    assert "would read other versions than the manifest pins" in error_line(
        cli("get-online-features", shop, "--manifest", "train.parquet", "-s", "fraud", *ENTITY_ARGS), 1)
    assert "would read other versions than the manifest pins" in error_line(
        cli("get-historical-features", shop, "spine.parquet", "--as-of", "train.parquet", "-s", "fraud",
            "-o", "refused.parquet"), 1)
    assert digest(shop) == before and not (tmp_path / "refused.parquet").exists()


def test_a_service_whose_pinned_data_is_gone_is_refused_with_the_fix(cli, shop, tmp_path):
    (tmp_path / "no-tier.py").write_text(definitions(NO_TIER, services=False))
    dry = ok(cli("apply", shop, "no-tier.py", "--dry-run"))
    [impact] = dry["affected_services"]
    assert impact["service"] == "legacy" and impact["definition"] == "profile"
    assert "feature 'tier' is removed" in impact["problem"]
    assert cli("apply", shop, "no-tier.py").exit_code == 0
    before = digest(shop)
    line = error_line(cli("get-online-features", shop, "-s", "legacy", "-e", "user_id=42"), 1)
    assert "feature view 'profile' is pinned at version" in line and "re-apply the feature service" in line
    assert "'profile' is pinned" in error_line(
        cli("get-historical-features", shop, "spine.parquet", "-s", "legacy", "-o", "out.parquet"), 1)
    assert not (tmp_path / "out.parquet").exists() and digest(shop) == before
    assert ok(cli("get-online-features", shop, "-s", "fraud", *ENTITY_ARGS))["spend"] == [30.0, 3.0, None]


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["get-online-features", "get-historical-features"])
def test_features_are_named_one_way(cli, shop, command):
    spine = ["spine.parquet"] if command == "get-historical-features" else []
    rest = ENTITY_ARGS if command == "get-online-features" else ["--format", "json"]
    before = digest(shop)
    both = error_line(cli(command, shop, *spine, "-s", "fraud", "-f", "stats:spend", *rest), 2)
    assert both == "Error: give features with --feature or a feature service with --service, not both"
    option = "--manifest" if command == "get-online-features" else "--as-of"
    none = error_line(cli(command, shop, *spine, *rest), 2)
    assert none == f"Error: give the features: --feature VIEW:FEATURE (repeatable), --service NAME or {option} FILE"
    unknown = error_line(cli(command, shop, *spine, "-s", "fruad", *rest), 1)
    assert unknown == "Error: feature service 'fruad' is not registered (registered: fraud, legacy); apply it first"
    version = error_line(cli(command, shop, *spine, "-f", "stats@ffffffff:spend", *rest), 1)
    assert version == ("Error: 'stats' has no version starting with 'ffffffff' (versions, oldest first: "
                       f"{ok(cli('list-versions', shop, 'stats'))[0]['version']}); see "
                       "`featurelite list-versions STORE stats`")
    missing = error_line(cli(command, shop, *spine, option, "nothing.json", *rest), 2)
    assert "nothing.json" in missing
    assert digest(shop) == before


@pytest.mark.parametrize(("content", "expected"), [
    (b"", "this is not a featurelite manifest"),
    (b"user_id,event_timestamp\n42,2026-01-01\n", "this is not a featurelite manifest"),
    (b'{"store_id": "x"}', "this is not a featurelite manifest (KeyError"),
    (b"[1, 2]", "this is not a featurelite manifest"),
    (b"\xff\xfe\x00garbage", "this is not a featurelite manifest"),
    (b"PAR1 but not really Parquet", "is not a readable Parquet file"),
])
def test_a_manifest_file_that_is_not_one_is_one_error_line(cli, shop, tmp_path, content, expected):
    (tmp_path / "bad-manifest").write_bytes(content)
    before = digest(shop)
    for args in (["get-online-features", shop, "--manifest", "bad-manifest", *ENTITY_ARGS],
                 ["get-historical-features", shop, "spine.parquet", "--as-of", "bad-manifest", "-o", "out.parquet"]):
        line = error_line(cli(*args), 1)
        assert line.startswith(f"Error: {args[2] if args[2] == '--manifest' else '--as-of'} 'bad-manifest'"), line
        assert expected in line, line
    assert digest(shop) == before and not (tmp_path / "out.parquet").exists()


def test_a_training_set_without_a_manifest_says_how_to_keep_one(cli, shop):
    line = error_line(cli("get-online-features", shop, "--manifest", "events.parquet", *ENTITY_ARGS), 1)
    assert line.startswith("Error: --manifest 'events.parquet': the table carries no featurelite manifest")


def test_a_manifest_from_another_store_is_refused(cli, shop, tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "defs.py").write_text(definitions(FIRST))
    with fl.open(tmp_path / "other" / "other.duckdb") as other:
        other.apply(load_definitions(str(tmp_path / "other" / "defs.py")))
        pq.write_table(other.get_historical_features(tmp_path / "spine.parquet", service="fraud"),
                       tmp_path / "foreign.parquet")
    before = digest(shop)
    for args in (["get-online-features", shop, "--manifest", "foreign.parquet", *ENTITY_ARGS],
                 ["get-online-features", shop, "--manifest", "foreign.parquet", "-s", "fraud", *ENTITY_ARGS],
                 ["get-historical-features", shop, "spine.parquet", "--as-of", "foreign.parquet", "-o", "o.parquet"]):
        assert "the manifest is from another store" in error_line(cli(*args), 1)
    assert digest(shop) == before and not (tmp_path / "o.parquet").exists()


def test_the_output_may_not_overwrite_the_manifest(cli, shop, tmp_path):
    assert cli("get-historical-features", shop, "spine.parquet", "-s", "fraud", "-o", "train.parquet").exit_code == 0
    kept = digest(tmp_path / "train.parquet")
    line = error_line(cli("get-historical-features", shop, "spine.parquet", "--as-of", "train.parquet",
                          "-o", "train.parquet"), 2)
    assert "is this command's input file" in line and digest(tmp_path / "train.parquet") == kept
    line = error_line(cli("get-online-features", shop, "--manifest", "train.parquet", *ENTITY_ARGS,
                          "--format", "parquet", "-o", "train.parquet"), 2)
    assert "is this command's input file" in line and digest(tmp_path / "train.parquet") == kept


def test_apply_refuses_a_bad_service_and_changes_nothing(cli, shop, tmp_path):
    before = digest(shop)
    cases = {
        "unknown.py": ('fl.FeatureService("s", ["stats:nope"])', "nope"),
        "empty.py": ('fl.FeatureService("s", [])', "names no features"),
        "twice.py": ('fl.FeatureService("s", ["stats:spend", "shares:spend"])', "full_feature_names"),
    }
    for name, (service, expected) in cases.items():
        (tmp_path / name).write_text(definitions(FIRST) + f"\ns = {service}\n")
        assert expected in error_line(cli("apply", shop, name), 1), name
    assert digest(shop) == before
