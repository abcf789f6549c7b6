"""The command line on a running server (issue 14): `--url` / `$FEATURELITE_URL` in place of
the store path (with `--token` / `$FEATURELITE_TOKEN`), a store held by `featurelite serve`
used through that server (said in one line on stderr), and the new commands `freshness`
(exit code 3 on a broken SLO), `consistency` (exit code 3 under `--min-consistency`) and
`snapshot`. A command through the server prints what the same command prints on a byte
copy of the file taken before the server started."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from test_client import NOW, T0, build, manifest_without_time, spine
from test_server import Server, serving

import featurelite as fl
from featurelite.cli import main
from featurelite.http_client import connect

TOKEN = "cli-s3cret"
LOGGED = '''
logged = fl.FeatureView("logged", entities=[user], timestamp_field="ts", schema={"x": "float64"}, log=True)
'''


def run(*args: object, env: dict[str, str] | None = None, folder: Path | None = None) -> Result:
    """A command, never with a traceback; the server's variables unset unless ``env`` sets them."""
    base = {"FEATURELITE_URL": None, "FEATURELITE_TOKEN": None}
    result = CliRunner().invoke(main, [str(a) for a in args], env={**base, **(env or {})}, catch_exceptions=False)
    assert "Traceback" not in result.output + result.stderr, result.stderr
    return result


@dataclass
class Served:
    server: Server
    copy: Path  #: a byte copy of the served file, taken before the server started


def _serve(factory: pytest.TempPathFactory, name: str) -> Iterator[Served]:
    folder = factory.mktemp(name)
    path = build(folder, extra=LOGGED)
    copy = folder / "copy.duckdb"
    shutil.copyfile(path, copy)
    with serving(folder, token=TOKEN) as server:
        yield Served(server, copy)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server nothing is pushed to: its answers equal its copy's."""
    yield from _serve(tmp_path_factory, "cli-read")


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server the tests push to."""
    yield from _serve(tmp_path_factory, "cli-write")


def remote(served: Served) -> list[str]:
    return ["--url", served.server.url, "--token", TOKEN]


READ = ["-f", "stats:amount", "-f", "stats:seen", "-f", "derived:scaled", "-e", "user_id=1", "-e", "user_id=2",
        "-e", "user_id=9", "--request-data", json.dumps({"factor": [2.0, 1.0, 3.0], "at": [None, None, None]}),
        "--now", NOW.isoformat(), "--statuses"]


# -- --url in place of the store ------------------------------------------------------------


@pytest.mark.parametrize("command", [
    ["get-online-features", *READ],
    ["get-online-features", *READ, "--format", "table"],
    ["get-online-features", *READ, "--format", "csv"],
    ["list"],
    ["list", "--format", "table"],
    ["describe", "stats"],
    ["describe", "stats", "--format", "table"],
    ["describe", "derived"],
    ["list-versions", "stats"],
    ["verify", "--examples", "20"],
    ["verify", "derived", "--examples", "20"],
])
def test_a_command_through_the_server_prints_what_it_prints_on_the_file(served, command):
    through = run(*command[:1], *remote(served), *command[1:])
    local = run(command[0], served.copy, *command[1:])
    assert through.exit_code == local.exit_code == 0, (through.stderr, local.stderr)
    assert through.stderr == ""
    if command[0] == "describe" and "table" not in command:
        # (a featurizer's spec may list its keys in another order in another process: equal as JSON)
        assert json.loads(through.stdout) == json.loads(local.stdout)
    else:
        assert through.stdout == local.stdout


def test_a_training_set_through_the_server_is_the_one_built_from_the_file(served, tmp_path):
    pq.write_table(spine(2000), tmp_path / "spine.parquet")
    features = ["-f", "stats:amount", "-f", "stats:name", "-f", "derived:waited"]
    through = run("get-historical-features", *remote(served), tmp_path / "spine.parquet", *features,
                  "-o", tmp_path / "remote.parquet")
    local = run("get-historical-features", served.copy, tmp_path / "spine.parquet", *features,
                "-o", tmp_path / "local.parquet")
    assert through.exit_code == local.exit_code == 0, through.stderr
    remote_table, local_table = pq.read_table(tmp_path / "remote.parquet"), pq.read_table(tmp_path / "local.parquet")
    assert remote_table.schema.equals(local_table.schema, check_metadata=False) and remote_table.num_rows == 2000
    assert manifest_without_time(remote_table) == manifest_without_time(local_table)
    # --as-of: the training set rebuilt through the server, the same digest
    again = run("get-historical-features", *remote(served), tmp_path / "spine.parquet", "--as-of",
                tmp_path / "remote.parquet", "-o", tmp_path / "again.parquet")
    assert again.exit_code == 0, again.stderr
    assert fl.Manifest.from_table(pq.read_table(tmp_path / "again.parquet")).digest == \
        fl.Manifest.from_table(remote_table).digest
    missing = run("get-historical-features", *remote(served), tmp_path / "nope.parquet", *features)
    assert missing.exit_code == 2 and "'ENTITY_FILE'" in missing.stderr


def test_the_url_and_token_can_come_from_the_environment(served):
    env = {"FEATURELITE_URL": served.server.url, "FEATURELITE_TOKEN": TOKEN}
    through = run("describe", "stats", env=env)
    assert through.exit_code == 0 and json.loads(through.stdout)["history_rows"] == 4
    # a store file named first is used, $FEATURELITE_URL or not
    local = run("describe", served.copy, "stats", env=env)
    assert local.exit_code == 0 and local.stdout == through.stdout
    listed = run("list", env=env)
    assert listed.exit_code == 0 and listed.stdout == run("list", served.copy).stdout
    refused = run("describe", "stats", env={"FEATURELITE_URL": served.server.url})
    assert refused.exit_code == 1 and "refused the token" in refused.stderr and "--token" in refused.stderr


@pytest.mark.parametrize(("args", "says"), [
    (["describe", "--url", "URL", "STORE", "stats"], "leave STORE out"),
    (["describe"], "give the store file STORE, or a server with --url URL"),
    (["describe", "stats"], "Missing argument 'NAME'"),
    (["get-online-features", "--url", "URL", "STORE", "-f", "stats:amount", "-e", "user_id=1"], "leave STORE out"),
    (["ingest", "--url", "URL", "accounts"], "Missing argument 'FILES...'"),
    (["describe", "--url", "URL", "--token", "two words", "stats"], "'--token'"),
])
def test_a_store_and_a_url_together_or_neither_is_a_usage_error(served, args, says):
    args = [served.server.url if a == "URL" else served.copy if a == "STORE" else a for a in args]
    result = run(*args)
    assert result.exit_code == 2 and says in result.stderr and result.stderr.count("Error:") == 1, result.stderr


def test_a_url_nobody_answers_at_is_one_error_line(served):
    result = run("list", "--url", "http://127.0.0.1:9")
    assert result.exit_code == 1 and result.stderr.startswith("Error: no featurelite server answers at")
    bad = run("list", "--url", "ftp://example.org")
    assert bad.exit_code == 1 and "not the http:// or https:// URL" in bad.stderr


# -- a store held by a server ---------------------------------------------------------------


def test_a_store_held_by_a_server_is_used_through_it(served):
    path, url = served.server.path, served.server.url
    result = run("list", path, "--token", TOKEN)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == f"using the server at {url}, which holds {path}\n"
    assert result.stdout == run("list", *remote(served)).stdout
    from_env = run("describe", path, "stats", env={"FEATURELITE_TOKEN": TOKEN})
    assert from_env.exit_code == 0 and json.loads(from_env.stdout)["name"] == "stats"
    without = run("describe", path, "stats")
    assert without.exit_code == 1 and without.stderr.startswith("using the server at")
    assert "refused the token" in without.stderr.splitlines()[1]


def test_a_push_goes_through_the_server_that_holds_the_store(written, tmp_path):
    (tmp_path / "accounts.csv").write_text("code,balance,ts\n0042,3.25,2026-03-01T00:00:00\n")
    pushed = run("ingest", *remote(written), "accounts", tmp_path / "accounts.csv")
    assert pushed.exit_code == 0, pushed.stderr
    assert json.loads(pushed.stdout) == {"view": "accounts", "rows": 1, "files": [
        {"file": str(tmp_path / "accounts.csv"), "view": "accounts", "rows": 1}]}
    (tmp_path / "more.csv").write_text("code,balance,ts\n0042,4.5,2026-03-01T01:00:00\n")
    held = run("ingest", written.server.path, "accounts", tmp_path / "more.csv", "--token", TOKEN)
    assert held.exit_code == 0 and held.stderr.startswith("using the server at"), held.stderr
    read = run("get-online-features", *remote(written), "-f", "accounts:balance", "-e", 'code="0042"')
    assert json.loads(read.stdout) == {"code": ["0042"], "balance": [4.5]}


# -- freshness ------------------------------------------------------------------------------


def test_freshness_exits_3_when_a_view_breaks_its_slo(served):
    # stats: freshness="1h", newest event T0+20h; accounts and logged declare no SLO
    for where in (remote(served), [served.copy]):
        late = run("freshness", *where, "--now", NOW.isoformat())
        assert late.exit_code == 3, late.stderr
        report = json.loads(late.stdout)
        assert report["ok"] is False and [v["view"] for v in report["views"] if v["breached"]] == ["stats"]
        assert late.stderr.startswith("SLO breached: 1 view(s)") and "stats (newest value 10h old, SLO 1h)" in late.stderr
        fresh = run("freshness", *where, "--now", (T0 + timedelta(hours=20, minutes=30)).isoformat())
        assert fresh.exit_code == 0 and fresh.stderr == "" and json.loads(fresh.stdout)["ok"] is True
    table = run("freshness", *remote(served), "--now", NOW.isoformat(), "--format", "table")
    assert table.exit_code == 3 and "BREACHED" in table.stdout and "10h" in table.stdout


def test_freshness_of_a_missing_store_is_an_error_not_a_breach(tmp_path):
    result = run("freshness", tmp_path / "nowhere.duckdb")
    assert result.exit_code == 1 and "no store at" in result.stderr


# -- consistency ----------------------------------------------------------------------------


def test_consistency_through_the_server_exits_3_under_the_minimum(written):
    rows = pa.table({"user_id": [1, 2], "x": [1.0, 2.0], "ts": [T0, T0]})
    with connect(written.server.url, token=TOKEN) as client:
        client.ingest("logged", rows)
        for _ in range(3):
            client.get_online_features([{"user_id": 1}, {"user_id": 2}], ["logged:x"], now=NOW)
    clean = run("consistency", *remote(written), "logged", "--min-consistency", "1")
    assert clean.exit_code == 0, clean.stderr
    report = json.loads(clean.stdout)
    assert report["requests"] == 3 and report["rows"] == 6 and report["consistency"] == 1.0
    # a late event: dated before the reads, pushed after them; a training set sees it, the reads did not
    with connect(written.server.url, token=TOKEN) as client:
        client.ingest("logged", pa.table({"user_id": [2], "x": [20.0], "ts": [NOW - timedelta(hours=1)]}))
    late = run("consistency", *remote(written), "logged", "--min-consistency", "0.99")
    assert late.exit_code == 3, late.stderr
    assert "consistency below 99.0000%: logged:x 50.0000% (3 of 6 rows differ)" in late.stderr
    differences = json.loads(late.stdout)["features"][0]["differences"]
    assert differences and differences[0]["served"] == 2.0 and differences[0]["training"] == 20.0
    table = run("consistency", *remote(written), "logged", "--format", "table")
    assert table.exit_code == 0 and "first differences" in table.stdout  # no minimum given: no check


# -- snapshots ------------------------------------------------------------------------------


def test_a_snapshot_of_a_served_store_or_a_file(served, tmp_path):
    through = run("snapshot", *remote(served), tmp_path / "a.duckdb")
    assert through.exit_code == 0, through.stderr
    answer = json.loads(through.stdout)
    with fl.open(tmp_path / "a.duckdb", read_only=True) as copy:
        assert copy.store_id == answer["store_id"] and answer["snapshot"] == str(tmp_path / "a.duckdb")
        assert copy.describe("stats")["history_rows"] == 4
    held = run("snapshot", served.server.path, tmp_path / "b.duckdb", "--token", TOKEN)
    assert held.exit_code == 0 and held.stderr.startswith("using the server at"), held.stderr
    assert (tmp_path / "b.duckdb").exists()
    local_copy = tmp_path / "local.duckdb"
    shutil.copyfile(served.copy, local_copy)
    local = run("snapshot", local_copy, tmp_path / "c.duckdb")
    assert local.exit_code == 0 and json.loads(local.stdout)["store_id"] == answer["store_id"]
    assert not Path(f"{tmp_path / 'c.duckdb'}.wal").exists()
    exists = run("snapshot", *remote(served), tmp_path / "a.duckdb")
    assert exists.exit_code == 1 and "exists" in exists.stderr
    itself = run("snapshot", local_copy, local_copy)
    assert itself.exit_code == 2 and "the store's own file" in itself.stderr
