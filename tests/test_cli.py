"""The command line: every command's happy path and an error path (exit code, one-line
message, nothing written), output formats, and the CLI docs page (every command listed,
its session runs)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import featurelite as fl
from featurelite.cli import main

ROOT = Path(__file__).resolve().parent.parent

DEFINITIONS = '''
import featurelite as fl

@fl.featurizer
def spend_per_order(spend: float, orders: int) -> float:
    return spend / orders if orders > 0 else 0.0

@fl.featurizer
def share(basket: float, spend: float = 0.0) -> float:
    return basket / (basket + spend)

user = fl.Entity("user", join_keys=["user_id"])
stats = fl.FeatureView(
    "stats", entities=[user], timestamp_field="ts", schema={"spend": "float64", "orders": "int64"},
    featurizers={"per_order": spend_per_order},
)
shares = fl.OnDemandFeatureView(
    "shares", sources=[stats, fl.RequestSource("req", schema={"basket": "float64"})], featurizers={"share": share}
)
'''


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """Run a command in ``tmp_path``: returns click's Result (stdout, stderr, exit_code)."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def run(*args: str):
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert "Traceback" not in result.output + result.stderr
        return result

    return run


@pytest.fixture
def shop(tmp_path, cli):
    """A store with the definitions applied and three events ingested."""
    (tmp_path / "defs.py").write_text(DEFINITIONS)
    pq.write_table(pa.table({
        "user_id": [42, 42, 7], "spend": [10.0, 12.5, 3.0], "orders": [1, 2, 0],
        "ts": [datetime(2026, 1, 1), datetime(2026, 1, 5), datetime(2026, 1, 2)],
    }), tmp_path / "events.parquet")
    assert cli("apply", "shop.duckdb", "defs.py").exit_code == 0
    assert cli("ingest", "shop.duckdb", "stats", "events.parquet").exit_code == 0
    return tmp_path / "shop.duckdb"


def rows_of(path: Path) -> int:
    with fl.open(path, read_only=True) as store:
        return store.describe("stats")["history_rows"]


def test_version_and_help(cli):
    assert cli("--version").output.strip() == f"featurelite, version {fl.__version__}"
    text = cli("--help").output
    assert "get-online-features" in text and "mirrors a Store method" in text


def test_init(cli, tmp_path):
    result = cli("init", "new.duckdb")
    assert result.exit_code == 0 and json.loads(result.output)["created"] is True
    example = cli("init", "ex.duckdb", "--example")
    assert example.exit_code == 0
    with fl.open(tmp_path / "ex.duckdb", read_only=True) as store:
        assert store.describe("user_stats")["history_rows"] == 20_000
    (tmp_path / "notes.txt").write_text("not a store")
    bad = cli("init", "notes.txt")
    assert bad.exit_code == 1 and bad.stderr.startswith("Error: ") and bad.stderr.count("\n") == 1


def test_apply_plan_dry_run_and_refusal(cli, tmp_path):
    (tmp_path / "defs.py").write_text(DEFINITIONS)
    dry = cli("apply", "s.duckdb", "defs.py", "--dry-run")
    plan = json.loads(dry.output)
    assert plan["dry_run"] is True and not (tmp_path / "s.duckdb").exists()  # a dry run creates nothing
    assert {(r["action"], r["name"]) for r in plan["plan"]} == {("added", "user"), ("added", "stats"), ("added", "shares")}
    applied = json.loads(cli("apply", "s.duckdb", "defs.py").output)
    assert [r["action"] for r in applied["plan"]] == ["added"] * 3
    again = json.loads(cli("apply", "s.duckdb", "defs.py", "--format", "json").output)
    assert [r["action"] for r in again["plan"]] == ["unchanged"] * 3
    table = cli("apply", "s.duckdb", "defs.py", "--format", "table").output
    assert table.splitlines()[0].split() == ["action", "kind", "name", "version", "previous_version"]
    (tmp_path / "empty.py").write_text("x = 1\n")
    empty = cli("apply", "s.duckdb", "empty.py")
    assert empty.exit_code == 1 and "defines no Entity" in empty.stderr
    (tmp_path / "broken.py").write_text("import featurelite as fl\nfl.Entity('bad name')\n")
    broken = cli("apply", "s.duckdb", "broken.py")
    assert broken.exit_code == 1 and "not valid" in broken.stderr


def test_apply_refuses_a_breaking_change(cli, shop, tmp_path):
    (tmp_path / "changed.py").write_text(DEFINITIONS.replace('"spend": "float64"', '"spend": "float32"'))
    result = cli("apply", str(shop), "changed.py")
    assert result.exit_code == 1 and "would break its 3 stored rows" in result.stderr


def test_ingest_files_globs_and_bad_data(cli, shop, tmp_path):
    for i in range(2):
        pcsv.write_csv(pa.table({
            "user_id": [100 + i], "spend": [1.0], "orders": [1], "ts": ["2026-02-01T00:00:00"],
        }), tmp_path / f"more-{i}.csv")
    result = cli("ingest", str(shop), "stats", "more-*.csv")
    assert result.exit_code == 0 and json.loads(result.output)["rows"] == 2 and result.stderr == ""
    assert rows_of(shop) == 5
    pq.write_table(pa.table({"user_id": [1], "spend": [1.0], "ts": [datetime(2026, 1, 1)]}), tmp_path / "bad.parquet")
    bad = cli("ingest", str(shop), "stats", "bad.parquet")
    assert bad.exit_code == 1 and "no column 'orders'" in bad.stderr and rows_of(shop) == 5
    missing = cli("ingest", str(shop), "stats", "nothing-*.parquet")
    assert missing.exit_code == 1 and "no file matches" in missing.stderr


def test_materialize(cli, shop):
    result = cli("materialize", str(shop))
    assert json.loads(result.output) == [{"view": "stats", "online_rows": 2}]
    bad = cli("materialize", str(shop), "ghost")
    assert bad.exit_code == 1 and "'ghost' is not registered" in bad.stderr
    bad_date = cli("materialize", str(shop), "--end-date", "yesterday")
    assert bad_date.exit_code == 2


def test_get_online_features(cli, shop):
    args = ["get-online-features", str(shop), "-f", "stats:spend", "-f", "stats:per_order", "-f", "shares:share"]
    got = json.loads(cli(*args, "-e", "user_id=42", "-e", "user_id=9", "-r", "basket=12.5", "-r", "basket=1",
                         "--now", "2026-01-06").output)
    assert got == {"user_id": [42, 9], "spend": [12.5, None], "per_order": [6.25, None], "share": [0.5, 1.0]}
    as_json = cli(*args, "--entities", '{"user_id": [42]}', "--request-data", '{"basket": [12.5]}', "--statuses",
                  "--now", "2026-01-06")
    assert json.loads(as_json.output)["statuses"]["spend"] == ["PRESENT"]
    csv = cli(*args, "-e", "user_id=42", "-r", "basket=12.5", "--format", "csv", "--now", "2026-01-06").output
    assert csv.splitlines()[0] == '"user_id","spend","per_order","share"'
    unknown = cli("get-online-features", str(shop), "-f", "stats:nope", "-e", "user_id=42")
    assert unknown.exit_code == 1 and "nope" in unknown.stderr
    no_entity = cli("get-online-features", str(shop), "-f", "stats:spend")
    assert no_entity.exit_code == 2


def test_get_historical_features(cli, shop, tmp_path):
    pq.write_table(pa.table({"user_id": [42, 7], "event_timestamp": [datetime(2026, 1, 2), datetime(2026, 1, 1)]}),
                   tmp_path / "spine.parquet")
    out = cli("get-historical-features", str(shop), "spine.parquet", "-f", "stats:spend", "-f", "stats:per_order",
              "-o", "train.parquet")
    assert out.exit_code == 0
    train = pq.read_table(tmp_path / "train.parquet")
    assert train.column("spend").to_pylist() == [10.0, None] and train.column("per_order").to_pylist() == [10.0, None]
    as_json = json.loads(cli("get-historical-features", str(shop), "spine.parquet", "-f", "stats:spend",
                             "--format", "json").output)
    assert as_json[0]["event_timestamp"].startswith("2026-01-02")
    pq.write_table(pa.table({"customer": [42], "event_timestamp": [datetime(2026, 1, 2)]}), tmp_path / "nokey.parquet")
    bad = cli("get-historical-features", str(shop), "nokey.parquet", "-f", "stats:spend", "--format", "json")
    assert bad.exit_code == 1 and "no column 'user_id'" in bad.stderr


def test_list_describe_and_versions(cli, shop):
    listed = json.loads(cli("list", str(shop)).output)
    kinds = [(r["kind"], r["name"]) for r in listed]
    assert kinds == [("entity", "user"), ("feature_view", "stats"), ("featurizer", "stats:spend_per_order"),
                     ("on_demand_feature_view", "shares"), ("featurizer", "shares:share")]
    view = listed[1]
    assert view["history_rows"] == 3 and view["online_rows"] == 2 and view["last_event"].startswith("2026-01-05")
    assert "computes per_order" in cli("list", str(shop), "--format", "table").output
    described = json.loads(cli("describe", str(shop), "stats").output)
    assert described["history_rows"] == 3 and described["version"] == view["version"]
    assert json.loads(cli("describe", str(shop), "shares").output)["kind"] == "on_demand_feature_view"
    missing = cli("describe", str(shop), "ghost")
    assert missing.exit_code == 1 and missing.stderr.startswith("Error: feature view 'ghost' is not registered")
    versions = json.loads(cli("list-versions", str(shop), "stats").output)
    assert [v["current"] for v in versions] == [True]
    assert cli("list-versions", str(shop), "ghost").exit_code == 1


def test_delete_verify_and_checkpoint(cli, shop):
    results = json.loads(cli("verify", str(shop), "--examples", "200").output)
    assert [(r["view"], r["ok"]) for r in results] == [("shares", True), ("stats", True)]
    assert cli("verify", str(shop), "ghost").exit_code == 1
    assert cli("checkpoint", str(shop)).exit_code == 0
    refused = cli("delete-feature-view", str(shop), "stats")
    assert refused.exit_code == 1 and "delete those first" in refused.stderr
    assert cli("delete-feature-view", str(shop), "shares").exit_code == 0
    assert cli("delete-feature-view", str(shop), "stats").exit_code == 0
    assert [r["kind"] for r in json.loads(cli("list", str(shop)).output)] == ["entity"]


def test_read_commands_on_a_missing_store_say_how_to_create_one(cli):
    result = cli("list", "nowhere.duckdb")
    assert result.exit_code == 1 and "featurelite init nowhere.duckdb" in result.stderr


def test_serve_without_the_server_extra_says_which_to_install(cli, shop, monkeypatch):
    monkeypatch.setitem(sys.modules, "featurelite.server", None)  # as if its imports failed
    result = cli("serve", str(shop))
    assert result.exit_code == 1 and "pip install 'featurelite[server]'" in result.stderr


def test_python_dash_m_and_the_console_script_run(tmp_path):
    done = subprocess.run([sys.executable, "-m", "featurelite", "describe", str(tmp_path / "x.duckdb"), "v"],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.startswith("Error: no store at") and "Traceback" not in done.stderr


# -- the docs page ---------------------------------------------------------------------


def _page() -> str:
    return (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")


def test_every_command_is_documented():
    documented = set(re.findall(r"`featurelite ([a-z-]+)", _page()))
    missing = sorted(set(main.commands) - documented)
    assert not missing, f"docs/cli.md does not list {missing}"


def test_the_documented_session_runs(cli, tmp_path):
    from test_docs import python_blocks

    text = _page()
    for block in python_blocks(text):
        exec(compile(block.code, "docs/cli.md", "exec"), {"__name__": "__docs__"})  # noqa: S102
    consoles = re.findall(r"```console\n(.*?)```", text, re.DOTALL)
    assert consoles
    for console in consoles:
        lines = console.splitlines()
        for i, line in enumerate(lines):
            if not line.startswith("$ featurelite "):
                continue
            expected = []
            for after in lines[i + 1:]:
                if after.startswith("$ "):
                    break
                expected.append(after)
            result = cli(*shlex.split(line)[2:])
            if expected and expected[0].startswith("Error:"):  # a shown error: the same text, exit code 1
                assert result.exit_code == 1 and result.stderr.splitlines() == expected, (line, result.stderr)
            elif expected:  # shown output: the same text
                assert result.exit_code == 0 and result.stdout.splitlines() == expected, (line, result.stdout)
            else:
                assert result.exit_code == 0, (line, result.output, result.stderr)


def test_a_progress_bar_shows_on_a_terminal_only(shop, tmp_path):
    """In a pipe (as here) and with --quiet nothing but the JSON is written."""
    script = textwrap.dedent(f"""
        import sys
        from featurelite.cli import main
        sys.argv = ["featurelite", "ingest", {str(shop)!r}, "stats", {str(tmp_path / 'events.parquet')!r}]
        main()
    """)
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == "" and json.loads(done.stdout)["rows"] == 3


def test_the_progress_bar_shows_when_stderr_is_a_terminal(monkeypatch):
    import io

    import featurelite.cli as cli_module

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(cli_module.sys, "stderr", terminal)
    with cli_module._progress("ingest stats", quiet=False)(["a.parquet", "b.parquet"]) as bar:
        assert list(bar) == ["a.parquet", "b.parquet"]
    assert "ingest stats" in terminal.getvalue()
    quiet = Terminal()
    monkeypatch.setattr(cli_module.sys, "stderr", quiet)
    with cli_module._progress("ingest stats", quiet=True)(["a.parquet"]) as bar:
        assert list(bar) == ["a.parquet"]
    assert quiet.getvalue() == ""


AGGREGATING = '''
import featurelite as fl

@fl.featurizer
def spend_per_txn(amount_sum_1d: float, amount_count_1d: int) -> float:
    return amount_sum_1d / amount_count_1d if amount_count_1d > 0 else 0.0

user = fl.Entity("user", join_keys=["user_id"])
txn = fl.FeatureView(
    "txn", entities=[user], timestamp_field="ts", schema={"amount": "float64"},
    aggregations=[fl.Aggregation("amount", "sum", "1d"), fl.Aggregation("amount", "count", "1d"),
                  fl.Aggregation("amount", "max", "1h")],
)
ratios = fl.OnDemandFeatureView("ratios", sources=[txn], featurizers={"spend_per_txn": spend_per_txn})
'''


def test_aggregates_online_historical_list_describe_and_verify(cli, tmp_path):
    (tmp_path / "aggs.py").write_text(AGGREGATING)
    pq.write_table(pa.table({
        "user_id": [42, 42, 7], "amount": [10.0, 12.5, 3.0],
        "ts": [datetime(2026, 1, 1, 10), datetime(2026, 1, 1, 12), datetime(2026, 1, 1, 11)],
    }), tmp_path / "txns.parquet")
    assert cli("apply", "aggs.duckdb", "aggs.py").exit_code == 0
    assert cli("ingest", "aggs.duckdb", "txn", "txns.parquet").exit_code == 0
    features = ["-f", "txn:amount_sum_1d", "-f", "txn:amount_count_1d", "-f", "txn:amount_max_1h",
                "-f", "ratios:spend_per_txn"]
    got = json.loads(cli("get-online-features", "aggs.duckdb", *features, "-e", "user_id=42", "-e", "user_id=9",
                         "--now", "2026-01-01T12:30:00", "--statuses").output)
    assert got["values"] == {"user_id": [42, 9], "amount_sum_1d": [22.5, 0.0], "amount_count_1d": [2, 0],
                             "amount_max_1h": [12.5, None], "spend_per_txn": [11.25, 0.0]}
    assert got["statuses"]["amount_count_1d"] == ["PRESENT", "EMPTY_WINDOW"]
    assert got["statuses"]["amount_max_1h"] == ["PRESENT", "EMPTY_WINDOW"]
    pq.write_table(pa.table({"user_id": [42, 42, 7], "event_timestamp": [
        datetime(2026, 1, 1, 11), datetime(2026, 1, 1, 12, 30), datetime(2026, 1, 3)]}), tmp_path / "spine.parquet")
    train = json.loads(cli("get-historical-features", "aggs.duckdb", "spine.parquet", *features,
                           "--format", "json").output)
    assert [r["amount_sum_1d"] for r in train] == [10.0, 22.5, 0.0]
    assert [r["amount_max_1h"] for r in train] == [None, 12.5, None]
    assert [r["spend_per_txn"] for r in train] == [10.0, 11.25, 0.0]
    listed = json.loads(cli("list", "aggs.duckdb").output)
    assert ("aggregation", "txn:amount_max_1h") in [(r["kind"], r["name"]) for r in listed]
    view = next(r for r in listed if r["name"] == "txn")
    assert view["features"] == ["amount", "amount_sum_1d", "amount_count_1d", "amount_max_1h"]
    assert "count of amount over 1d -> int64" in cli("list", "aggs.duckdb", "--format", "table").output
    spec = json.loads(cli("describe", "aggs.duckdb", "txn").output)["spec"]
    assert [(a["column"], a["function"]) for a in spec["aggregations"]] == [
        ("amount", "sum"), ("amount", "count"), ("amount", "max")]
    checked = json.loads(cli("verify", "aggs.duckdb", "--examples", "50").output)
    assert {(r["view"], r["featurizer"], r["ok"]) for r in checked} == {
        ("txn", "aggregations", True), ("ratios", "spend_per_txn", True)}
