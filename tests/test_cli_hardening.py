"""The command line's hardening (issue 10): no output can destroy the store, outputs are
written whole or not at all, every failure is one ``Error:`` line with exit code 1 (2 for
usage), an empty token never turns auth off, bad ports / hosts / counts are usage errors,
and the README's example shows values with statuses a person can read.

Each test names the defect it pins; each fails against the CLI before the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

import featurelite as fl
import featurelite.cli as cli_module
from featurelite import demo
from featurelite.cli import main

ROOT = Path(__file__).resolve().parent.parent

#: A fixed "now" for reads, inside the example data's window, so fingerprints are stable.
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


# -- helpers shared with the fuzz suite (tests/test_cli_fuzz.py) ---------------------------


def make_store(path: Path) -> None:
    """A small store with the demo's definitions: 50 users, 500 events up to NOW."""
    with fl.open(path) as store:
        store.apply(demo.definitions())
        store.ingest("user_stats", demo.example_events(users=50, events=500, end=NOW))


def fingerprint(path: Path) -> dict[str, Any]:
    """What a store holds, as plain data: it opens, its registry (every version of every
    definition), history row counts, the online value and status of every user, and the
    recorded models."""
    assert path.stat().st_size > 100_000, f"{path} shrank to {path.stat().st_size} bytes"
    with fl.open(path, read_only=True) as store:
        names = [e.name for e in store.list_entities()] + [v.name for v in store.list_feature_views()]
        names += [o.name for o in store.list_on_demand_feature_views()]
        registry = {name: [(v["version"], v["current"]) for v in store.list_versions(name)] for name in names}
        views = {v.name: store.describe(v.name)["history_rows"] for v in store.list_feature_views()}
        online = store.get_online_features(
            [{"user_id": u} for u in range(50)], ["user_stats:spend_7d", "user_stats:country"], now=NOW
        )
        models = [m.to_dict() for m in store.list_models()]
        return {"registry": registry, "history_rows": views, "online": online.to_dict(), "statuses": online.statuses,
                "models": models}


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_one_error_line(result: Result, code: int) -> str:
    """Exit ``code``; stderr holds exactly one line starting with ``Error:`` and no
    traceback. For a usage error (2) click also prints a ``Usage:`` line, a ``Try ...
    --help`` line and a blank line before it: those are allowed, nothing else."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    others = [line for line in lines if not line.startswith("Error:")]
    if code == 2:
        assert all(line == "" or line.startswith(("Usage: ", "Try ")) for line in others), result.stderr
    else:
        assert others == [], result.stderr
    return errors[0]


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """The CLI in-process, as the console script runs it (standalone mode, so exit codes
    and messages are the real ones); an exception that escapes fails the test."""
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert "Traceback" not in result.stderr
    return result


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pristine") / "shop.duckdb"
    make_store(path)
    return path


@pytest.fixture
def shop(pristine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the small store in the test's working folder, with a spine beside it."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "shop.duckdb"
    path.write_bytes(pristine.read_bytes())
    pq.write_table(demo.example_spine(users=50, rows=5, end=NOW), tmp_path / "spine.parquet")
    return path


# -- 1: no output can destroy the store --------------------------------------------------------


def _output_spellings(tmp_path: Path) -> dict[str, str]:
    """Ways to name the store's own files as an output."""
    (tmp_path / "sub").mkdir()
    os.symlink("shop.duckdb", tmp_path / "link.duckdb")
    os.symlink("shop.duckdb.wal", tmp_path / "wal-link")  # to a .wal that does not exist yet
    os.link(tmp_path / "shop.duckdb", tmp_path / "hard.duckdb")
    return {
        "the store": "shop.duckdb",
        "its absolute path": str(tmp_path / "shop.duckdb"),
        "a path through ..": "sub/../shop.duckdb",
        "its .wal (not there yet)": "shop.duckdb.wal",
        "a symbolic link to it": "link.duckdb",
        "a symbolic link to its future .wal": "wal-link",
        "a hard link to it": "hard.duckdb",
        "the server's note beside it": "shop.duckdb.serve.json",
    }


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json", "table"])
def test_an_output_that_is_the_store_is_refused_in_every_spelling(shop: Path, tmp_path: Path, fmt: str) -> None:
    """#1: `get-historical-features shop.duckdb spine.parquet -o shop.duckdb` exited 0 and
    left a 1 KB file that no longer opened."""
    before, digest = fingerprint(shop), file_digest(shop)
    for what, output in _output_spellings(tmp_path).items():
        for command in (
            ["get-historical-features", "shop.duckdb", "spine.parquet", "-f", "user_stats:spend_7d"],
            ["get-online-features", "shop.duckdb", "-f", "user_stats:spend_7d", "-e", "user_id=1"],
        ):
            result = invoke(*command, "--format", fmt, "-o", output)
            line = assert_one_error_line(result, 2)
            assert "would destroy the store" in line, (what, line)
        assert not (tmp_path / "shop.duckdb.wal").exists(), what
        assert not (tmp_path / "shop.duckdb.serve.json").exists(), what
    assert file_digest(shop) == digest and fingerprint(shop) == before


def test_the_store_reached_through_a_link_protects_the_real_wal(shop: Path, tmp_path: Path) -> None:
    os.symlink("shop.duckdb", tmp_path / "link.duckdb")
    for output in ("shop.duckdb.wal", "link.duckdb.wal", "shop.duckdb"):
        result = invoke("get-historical-features", "link.duckdb", "spine.parquet", "-f", "user_stats:spend_7d",
                        "-o", output)
        assert "would destroy the store" in assert_one_error_line(result, 2)


def test_an_output_that_is_the_input_file_is_refused(shop: Path, tmp_path: Path) -> None:
    """Overwriting the entity file (the labels) is always a slip; so is an @FILE input."""
    spine = (tmp_path / "spine.parquet").read_bytes()
    result = invoke("get-historical-features", "shop.duckdb", "spine.parquet", "-f", "user_stats:spend_7d",
                    "-o", "./spine.parquet")
    assert "input file" in assert_one_error_line(result, 2)
    assert (tmp_path / "spine.parquet").read_bytes() == spine
    (tmp_path / "ents.json").write_text('{"user_id": [1, 2]}')
    result = invoke("get-online-features", "shop.duckdb", "-f", "user_stats:spend_7d", "--entities", "@ents.json",
                    "-o", "ents.json")
    assert "input file" in assert_one_error_line(result, 2)
    assert (tmp_path / "ents.json").read_text() == '{"user_id": [1, 2]}'


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json", "table"])
def test_an_output_in_a_missing_folder_is_one_error_line(shop: Path, fmt: str) -> None:
    """#4: `-o /missing/dir/x.parquet` was a pyarrow FileNotFoundError traceback."""
    for command in (
        ["get-historical-features", "shop.duckdb", "spine.parquet", "-f", "user_stats:spend_7d"],
        ["get-online-features", "shop.duckdb", "-f", "user_stats:spend_7d", "-e", "user_id=1"],
    ):
        line = assert_one_error_line(invoke(*command, "--format", fmt, "-o", "/missing/dir/x.out"), 1)
        assert "'/missing/dir' does not exist" in line


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json", "table"])
@pytest.mark.parametrize("command", ["get-historical-features", "get-online-features"])
def test_every_output_is_written_whole_or_not_at_all(
    shop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, command: str
) -> None:
    """Each output goes to a temporary file in the same folder that is renamed into place:
    a write that fails (here: the disk fills up at the final flush) leaves the previous
    file as it was and no temporary file behind."""
    args = {
        "get-historical-features": ["shop.duckdb", "spine.parquet", "-f", "user_stats:spend_7d"],
        "get-online-features": ["shop.duckdb", "-f", "user_stats:spend_7d", "-e", "user_id=1", "--now", NOW.isoformat()],
    }[command]
    ok = invoke(command, *args, "--format", fmt, "-o", "out.data")
    assert ok.exit_code == 0 and ok.stdout == ""
    written = (tmp_path / "out.data").read_bytes()
    assert written and oct((tmp_path / "out.data").stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    (tmp_path / "out.data").write_bytes(b"the previous content")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli_module.os, "fsync", disk_full)
    failed = invoke(command, *args, "--format", fmt, "-o", "out.data")
    assert "No space left on device" in assert_one_error_line(failed, 1)
    assert (tmp_path / "out.data").read_bytes() == b"the previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.data", "shop.duckdb", "spine.parquet"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_an_output_through_a_link_replaces_the_linked_file(shop: Path, tmp_path: Path) -> None:
    (tmp_path / "real.csv").write_text("old\n")
    os.symlink("real.csv", tmp_path / "alias.csv")
    result = invoke("get-historical-features", "shop.duckdb", "spine.parquet", "-f", "user_stats:spend_7d",
                    "--format", "csv", "-o", "alias.csv")
    assert result.exit_code == 0
    assert (tmp_path / "alias.csv").is_symlink() and (tmp_path / "real.csv").read_text().startswith('"user_id"')


# -- 4: every failure is one Error: line ----------------------------------------------------


@pytest.mark.parametrize(("args", "option"), [
    (["--entities", '{"user_id": 5}'], "--entities"),
    (["--entities", "5"], "--entities"),
    (["--entities", '[{"user_id": [1]}]'], "--entities"),
    (["--entities", "[" * 100_000 + "]" * 100_000], "--entities"),
    (["--entities", "1" * 5000], "--entities"),
    (["--entities", "@missing.json"], "--entities"),
    (["--entities", "@spine.parquet"], "--entities"),  # not UTF-8 text
    (["-e", "user_id=[1, 2]"], "--entity"),
    (["-e", "user_id=" + "9" * 5000], "--entity"),  # more digits than Python's int() takes
    (["-e", "user_id=" + "[" * 5000], "--entity"),
    (["-e", "user_id"], "--entity"),
    (["-e", "user_id=1", "--request-data", '{"basket": 5}'], "--request-data"),
    (["-e", "user_id=1", "--request-data", '[{"basket": 5}]'], "--request-data"),
    (["-e", "user_id=1", "-r", 'basket={"a": 1}'], "--request"),
    (["-e", "user_id=1", "--now", "0001-01-01T00:00:00+01:00"], "--now"),
    (["-e", "user_id=1", "--now", "9999-12-31T23:59:59-01:00"], "--now"),
    (["-e", "user_id=1", "--now", "yesterday"], "--now"),
])
def test_bad_online_arguments_are_usage_errors_naming_the_option(shop: Path, args: list[str], option: str) -> None:
    """#4: `{"user_id": 5}` (TypeError), an out-of-range --now (OverflowError) and deep
    JSON (RecursionError) were tracebacks."""
    before = file_digest(shop)
    result = invoke("get-online-features", "shop.duckdb", "-f", "user_stats:spend_7d", *args)
    assert f"'{option}'" in assert_one_error_line(result, 2)
    assert file_digest(shop) == before


def test_an_out_of_range_end_date_is_a_usage_error(shop: Path) -> None:
    before = fingerprint(shop)
    result = invoke("materialize", "shop.duckdb", "--end-date", "0001-01-01T00:00:00+01:00")
    assert "'--end-date'" in assert_one_error_line(result, 2)
    assert fingerprint(shop) == before


def test_a_message_with_a_line_break_stays_one_line(shop: Path) -> None:
    assert_one_error_line(invoke("list", "shop.duckdb", "extra\nargument"), 2)
    assert_one_error_line(invoke("describe", "shop.duckdb", "no\nsuch view"), 1)


def test_featurelite_alone_shows_help_and_exits_0() -> None:
    """click would print the help on stderr with exit code 2 and no Error: line."""
    result = invoke()
    assert result.exit_code == 0 and result.stdout.startswith("Usage: ") and result.stderr == ""


# -- 9, 14: serve's token, port and host; verify's counts --------------------------------------


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """featurelite.server.run replaced by a recorder: the checks must refuse before it."""
    import featurelite.server

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(featurelite.server, "run", lambda path, **kw: calls.append({"path": path, **kw}))
    return calls


@pytest.mark.parametrize(("args", "env", "named"), [
    (["--token", ""], {}, "'--token'"),
    (["--token", "   "], {}, "'--token'"),
    (["--token", "bad token"], {}, "'--token'"),
    (["--token", "caf\u00e9"], {}, "'--token'"),
    ([], {"FEATURELITE_TOKEN": ""}, "'$FEATURELITE_TOKEN'"),
    ([], {"FEATURELITE_TOKEN": " "}, "'$FEATURELITE_TOKEN'"),
])
def test_an_empty_token_is_refused(shop: Path, no_server: list[Any], args: list[str], env: dict[str, str],
                                   named: str) -> None:
    """#9: `FEATURELITE_TOKEN=""` or `--token ""` served with auth off, silently."""
    result = invoke("serve", "shop.duckdb", *args, env=env)
    assert named in assert_one_error_line(result, 2)
    assert no_server == []


def test_a_token_from_the_environment_reaches_the_server(shop: Path, no_server: list[Any]) -> None:
    result = invoke("serve", "shop.duckdb", "--port", str(_free_port()), env={"FEATURELITE_TOKEN": "s3cret"})
    assert result.exit_code == 0 and no_server[-1]["token"] == "s3cret"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(("args", "named"), [
    (["--port", "99999"], "'--port'"),
    (["--port", "0"], "'--port'"),  # would listen on a port nobody is told about
    (["--port", "-1"], "'--port'"),
    (["--max-body", "0"], "'--max-body'"),
    (["--host", "not a host"], "'--host'"),
])
def test_bad_serve_arguments_are_usage_errors(shop: Path, no_server: list[Any], args: list[str], named: str) -> None:
    """#14: `serve --port 99999` listened on another port than the one it advertised."""
    assert named in assert_one_error_line(invoke("serve", "shop.duckdb", *args), 2)
    assert no_server == []


def test_a_host_that_cannot_be_bound_is_one_error_line(shop: Path, no_server: list[Any]) -> None:
    """#14: a host this machine does not have made uvicorn exit 3 with its own line.
    203.0.113.1 (TEST-NET-3) is never a local address: binding fails without traffic."""
    line = assert_one_error_line(invoke("serve", "shop.duckdb", "--host", "203.0.113.1"), 1)
    assert "cannot listen on 203.0.113.1:6566" in line and no_server == []


def test_uvicorns_exit_becomes_one_error_line(shop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Should the port be taken between the CLI's probe and uvicorn's bind, uvicorn raises
    SystemExit(3): the CLI turns it into its one line, exit 1."""
    import featurelite.server

    def exits(path: str, **kw: Any) -> None:
        raise SystemExit(3)

    monkeypatch.setattr(featurelite.server, "run", exits)
    line = assert_one_error_line(invoke("serve", "shop.duckdb", "--port", str(_free_port())), 1)
    assert "could not start" in line


def test_serve_on_a_bad_host_in_a_real_process(shop: Path) -> None:
    """The same at the process level: no uvicorn line, no traceback, exit 1."""
    done = subprocess.run([sys.executable, "-m", "featurelite", "serve", str(shop), "--host", "203.0.113.1"],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.startswith("Error: cannot listen") and done.stderr.count("\n") == 1


@pytest.mark.parametrize(("args", "named"), [
    (["--examples", "-5"], "'--examples'"),
    (["--examples", "0"], "'--examples'"),
    (["--examples", str(10**12)], "'--examples'"),
    (["--seed", "-1"], "'--seed'"),
])
def test_bad_verify_counts_are_usage_errors(shop: Path, args: list[str], named: str) -> None:
    """#14: `verify --examples -5` printed a DuckDB parser error."""
    assert named in assert_one_error_line(invoke("verify", "shop.duckdb", *args), 2)


# -- 15: the README's example shows values, tables show statuses --------------------------------


def test_the_example_store_serves_values_now(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """#15: the example events were fixed in early 2026 with a 30-day ttl, so the README's
    `get-online-features ... -e user_id=42` printed null from February on."""
    monkeypatch.chdir(tmp_path)
    assert invoke("init", "shop.duckdb", "--example").exit_code == 0
    got = json.loads(invoke("get-online-features", "shop.duckdb", "-f", "user_stats:spend_7d", "-e", "user_id=42").stdout)
    assert got["user_id"] == [42] and isinstance(got["spend_7d"][0], float)
    events = demo.example_events()
    latest = max(events.column("ts").to_pylist())
    assert datetime.now(timezone.utc) - latest < timedelta(hours=1)  # the data ends about now


def test_the_examples_values_do_not_depend_on_the_clock() -> None:
    a = demo.example_events(end=NOW)
    b = demo.example_events(end=NOW + timedelta(days=400))
    assert a.drop(["ts"]) == b.drop(["ts"])
    shift = [y - x for x, y in zip(a.column("ts").to_pylist(), b.column("ts").to_pylist(), strict=True)]
    assert set(shift) == {timedelta(days=400)}


def test_a_table_shows_why_a_value_is_missing(shop: Path) -> None:
    """#15: `--format table` printed a bare empty cell for a value that was not found,
    too old, or stored as null alike."""
    args = ["get-online-features", "shop.duckdb", "-f", "user_stats:spend_7d", "-f", "user_stats:country",
            "-e", "user_id=1", "-e", "user_id=999", "--format", "table"]
    text = invoke(*args, "--now", NOW.isoformat()).stdout
    rows = [line.split() for line in text.splitlines()[2:]]
    assert rows[1] == ["999", "[NOT_FOUND]", "[NOT_FOUND]"]
    assert rows[0][0] == "1" and not rows[0][1].startswith("[")
    stale = invoke(*args, "--now", (NOW + timedelta(days=365)).isoformat()).stdout
    assert "[OUTSIDE_MAX_AGE]" in stale.splitlines()[2]
    with_statuses = invoke(*args, "--now", NOW.isoformat(), "--statuses").stdout.splitlines()
    assert with_statuses[0].split() == ["user_id", "spend_7d", "spend_7d:status", "country", "country:status"]
    assert with_statuses[3].split() == ["999", "[NOT_FOUND]", "NOT_FOUND", "[NOT_FOUND]", "NOT_FOUND"]
    csv = invoke(*args[:-2], "--format", "csv", "--statuses", "--now", NOW.isoformat()).stdout.splitlines()
    assert csv[0] == '"user_id","spend_7d","spend_7d:status","country","country:status"'
    assert csv[2] == '999,,"NOT_FOUND",,"NOT_FOUND"'


def _readme_shell_lines() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## From the shell"):]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block is not None
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.startswith("featurelite ")]


def test_the_readme_shell_commands_run_and_show_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's `featurelite ...` lines run in order (all but `serve`, which runs
    until stopped: tests/test_server.py covers it) and the read shows a value."""
    monkeypatch.chdir(tmp_path)
    lines = _readme_shell_lines()
    assert any(" get-online-features " in line for line in lines)
    for line in lines:
        args = shlex.split(line)[1:]
        if args[0] == "serve":
            continue
        result = invoke(*args)
        assert result.exit_code == 0, (line, result.stderr)
        if args[0] == "get-online-features" and "--format" not in args:
            values = json.loads(result.stdout)
            assert all(v is not None for column in values.values() for v in column), (line, values)
        elif args[0] == "get-online-features":  # the table: user 42 has values, an unknown user says so
            rows = {row.split()[0]: row.split()[1:] for row in result.stdout.splitlines()[2:]}
            assert rows["42"] and not any(cell.startswith("[") for cell in rows["42"]), result.stdout
            assert set(rows["5000"]) == {"[NOT_FOUND]"}, result.stdout


def test_docs_cli_page_shows_the_table_statuses() -> None:
    assert "[NOT_FOUND]" in (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")


# -- found by the fuzz suite -------------------------------------------------------------------


def test_materialize_with_an_unknown_view_changes_nothing(shop: Path) -> None:
    """`materialize STORE user_stats ghost --end-date T` rebuilt user_stats (one call per
    view), then failed on ghost with exit 1: a refused command had changed the store."""
    before = fingerprint(shop)
    result = invoke("materialize", "shop.duckdb", "user_stats", "ghost", "--end-date", "2026-05-01")
    assert "'ghost' is not registered" in assert_one_error_line(result, 1)
    assert fingerprint(shop) == before


def test_ingest_of_several_files_says_which_landed(shop: Path, tmp_path: Path) -> None:
    """Each file is its own atomic ingest (documented); when a later one is refused, the
    one Error line says which files landed before it."""
    events = demo.example_events(users=50, events=10, seed=5, end=NOW)
    pq.write_table(events, tmp_path / "a.parquet")
    pq.write_table(events.drop(["country"]), tmp_path / "b.parquet")
    line = assert_one_error_line(invoke("ingest", "shop.duckdb", "user_stats", "a.parquet", "b.parquet"), 1)
    assert line.startswith("Error: b.parquet: ") and "(already ingested, each whole: a.parquet (10 rows))" in line


def test_a_definitions_file_that_exits_is_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A definitions file calling sys.exit(3) made `apply` exit 3 (only 0, 1, 2 are ours)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "defs.py").write_text("import sys\nsys.exit(3)\n")
    assert "exited (sys.exit(3))" in assert_one_error_line(invoke("apply", "s.duckdb", "defs.py"), 1)


def write_odd_spine(path: Path) -> None:
    """An entity file whose extra columns have types JSON and CSV have no words for."""
    import decimal
    from datetime import time

    import pyarrow as pa

    spine = demo.example_spine(users=50, rows=2, end=NOW)
    pq.write_table(spine.append_column("tags", pa.array([[1, 2], [3]]))
                   .append_column("blob", pa.array([b"\x00\xff", b"a"]))
                   .append_column("price", pa.array([decimal.Decimal("1.50"), None], pa.decimal128(5, 2)))
                   .append_column("at", pa.array([time(1, 2), None]))
                   .append_column("wait", pa.array([timedelta(seconds=5), None])), path)


@pytest.mark.parametrize("fmt", ["json", "table", "csv", "parquet"])
def test_entity_file_columns_of_any_type_render_or_are_one_error_line(shop: Path, tmp_path: Path, fmt: str) -> None:
    """A training set carries the entity file's columns: a list column in CSV was a raw
    ArrowInvalid, a binary or decimal column in JSON a raw TypeError."""
    write_odd_spine(tmp_path / "odd.parquet")
    result = invoke("get-historical-features", "shop.duckdb", "odd.parquet", "-f", "user_stats:spend_7d",
                    "--format", fmt, "-o", f"out.{fmt}")
    if fmt == "csv":
        line = assert_one_error_line(result, 1)
        assert "tags (list<element: int64>), blob (binary)" in line and not (tmp_path / "out.csv").exists()
        return
    assert result.exit_code == 0, result.stderr
    if fmt == "json":
        rows = json.loads((tmp_path / "out.json").read_text())
        assert (rows[0]["blob"], rows[0]["price"], rows[0]["at"], rows[0]["tags"]) == ("AP8=", "1.50", "01:02:00", [1, 2])


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_standard_output_is_one_error_line(shop: Path) -> None:
    """`... > /dev/full` (a full disk behind a redirect) was an OSError traceback."""
    with open("/dev/full", "wb") as full:
        for args in (["list", "shop.duckdb"],
                     ["get-historical-features", "shop.duckdb", "spine.parquet", "-f", "user_stats:spend_7d",
                      "--format", "csv"],
                     ["get-historical-features", "shop.duckdb", "spine.parquet", "-f", "user_stats:spend_7d"]):
            done = subprocess.run([sys.executable, "-m", "featurelite", *args], stdout=full, stderr=subprocess.PIPE,
                                  text=True, timeout=120, check=False)
            assert done.returncode == 1 and done.stderr == "Error: cannot write to standard output: No space left on device\n", (
                args, done.stderr)
