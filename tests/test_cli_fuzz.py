"""Hypothesis against the command line (issue 10): random arguments to every command.

Arguments are drawn per command from its click parameters: good values, bad paths (the
store itself as an output, its ``.wal``, links, missing folders), bad JSON (wrong shapes,
deep nesting, huge numbers), bad times (out of range in UTC), huge and negative numbers,
odd unicode, missing and extra arguments. Every invocation must:

- exit with 0, 1 or 2, never let an exception escape (no traceback);
- on exit 1 write exactly one line to stderr, starting ``Error:``; on exit 2 exactly one
  ``Error:`` line, after at most click's ``Usage:`` and ``Try ... --help`` lines (see
  ``assert_one_error_line`` in tests/test_cli_hardening.py);
- leave the store intact: it opens, its registry, history row counts and online values are
  unchanged, unless a command that writes succeeded (then the store is restored from a
  pristine copy for the next example).

Runs in-process with click's CliRunner for speed; a handful of real subprocess runs show
the same at the process level. ``featurelite serve`` runs against a stub server (its
arguments are checked by the CLI before the server starts).

Knobs (environment variables):
  FEATURELITE_CLI_FUZZ_EXAMPLES  examples (default 1000, ~25 s on 2 cores)
  FEATURELITE_CLI_FUZZ_SOAK=1    record every failure and report counts at the end instead
                                 of stopping (and shrinking) at the first; print the counts
A soak: FEATURELITE_CLI_FUZZ_EXAMPLES=2000 FEATURELITE_CLI_FUZZ_SOAK=1 \\
        python -m pytest tests/test_cli_fuzz.py -q -s -p no:cacheprovider
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import traceback
from collections import Counter
from pathlib import Path

import click
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cli_hardening import NOW, fingerprint, make_store, write_odd_spine

from featurelite import demo
from featurelite.cli import main

EXAMPLES = int(os.environ.get("FEATURELITE_CLI_FUZZ_EXAMPLES", "500"))
SOAK = os.environ.get("FEATURELITE_CLI_FUZZ_SOAK") == "1"

#: Commands that may change the store when they succeed.
WRITERS = {"init", "apply", "ingest", "materialize", "delete-feature-view", "checkpoint", "record-model", "stats"}

# -- values ------------------------------------------------------------------------------------

# Each parameter's values: (good ones, bad ones). A good value is drawn half the time, so
# that many command lines get past parsing into the store and its error paths.
STORES = (["shop.duckdb", "./shop.duckdb", "sub/../shop.duckdb", "link.duckdb"],
          ["new.duckdb", "missing/dir/s.duckdb", "notes.txt", "empty.duckdb", "sub", ".", "", "shop.duckdb.wal",
           "spine.parquet", "ünïcødé 店.duckdb", "hard.duckdb", "\udcff.duckdb"])
OUTPUTS = (["out.parquet", "out.csv", "sub/out.json", "/dev/null", "ünïcødé 店.parquet", "events.parquet"],
           ["shop.duckdb", "./shop.duckdb", "sub/../shop.duckdb", "link.duckdb", "wal-link", "hard.duckdb",
            "shop.duckdb.wal", "link.duckdb.wal", "shop.duckdb.serve.json", "spine.parquet", "ents.json",
            "missing/dir/x.parquet", "/missing/dir/x.parquet", "sub", ".", "", "\udcff.parquet", "notes.txt/x.csv",
            "x" * 300 + ".parquet"])
FILES = (["events.parquet", "events.csv", "*.parquet"],
         ["spine.parquet", "bad_events.parquet", "garbage.csv", "header.csv", "notes.txt", "shop.duckdb", "defs.py", "missing.parquet",
          "*.nothing", "sub", "[", "empty.parquet"])
ENTITY_FILES = (["spine.parquet", "spine.csv", "odd_spine.parquet"],
                ["events.parquet", "garbage.csv", "header.csv", "notes.txt", "shop.duckdb", "missing.parquet", "sub", "defs.py", "empty.parquet"])
DEFINITIONS = (["defs.py"], ["changed.py", "bad.py", "exits.py", "invalid.py", "events.parquet", "notes.txt", "missing.py", "sub"])
NAMES = (["user_stats", "shares", "user"], ["ghost", "", "user_stats\n", "ünï", "user_stats; DROP TABLE x"])
FEATURES = (["user_stats:spend_7d", "user_stats:country", "user_stats:spend_per_order", "shares:basket_share"],
            ["user_stats", "nope:x", ":", "", "user_stats:nope", "shares:", "user_stats:spend_7d:x"])
PAIRS = (["user_id=1", "user_id=42", "user_id=7", "basket=1.5", "basket=20"],
         ["user_id=abc", "user_id=", "=1", "user_id", "user_id=[1]", "user_id={}", "user_id=1e999",
          "user_id=18446744073709551616", "user_id=-1", "user_id=null", "user_id=true", "user_id=" + "9" * 5000,
          "basket=NaN", "basket=-Infinity", "x=y=z", 'user_id="42"'])
DEEP = "[" * 50_000 + "]" * 50_000
JSONS = (['{"user_id": [1, 2]}', '[{"user_id": 1}, {"user_id": 2}]', "@ents.json", '{"basket": [1.5, 2]}',
          '{"basket": [1.5, 2, 3]}', '{"user_id": [1], "basket": [2.0]}'],
         ['{"user_id": 5}', "5", "null", "[", "", '{"user_id": ["x"]}', DEEP, '{"user_id": [' * 3000, "@deep.json",
          "@missing.json", "@spine.parquet", "@", "@sub", '{"user_id": [1e999]}',
          '{"user_id": [18446744073709551616]}', '{"basket": [1.5]}', '{"": []}', '{"user_id": []}', "[]", "{}",
          '[{"user_id": [1]}]', '{"user_id": [' + "9" * 5000 + "]}", '{"user_id": ["\\ud800"]}',
          '{"user_id": [1, 2], "other": [1]}'])
TIMES = (["2026-06-01", "2026-06-01T00:00:00+00:00", "2026-06-01T00:00:00Z", "2026-05-20T12:00:00+02:00"],
         ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01", "9999-12-31",
          "9999-12-31T23:59:59+00:00", "yesterday", "", "2026-13-01", "2026-06-01T00:00:00+25:00", "1970-01-01",
          "2026-06-01T25:00", "١٢٣٤-01-01"])
INTS = (["1", "5", "300", str(2**31)],
        ["0", "-1", "-5", "65535", "65536", "99999", str(2**63), str(10**30), "abc", "1.5", "", "1e3", " 7", "٣"])
HOSTS = (["127.0.0.1", "localhost"], ["::1", "203.0.113.1", "not a host", "", "0.0.0.0", "256.1.1.1", "[::1]", "a" * 300])
TOKENS = (["s3cret"], ["", " ", "a b", "ünï", "tok\n", "x" * 1000])
FIELDS = (["event_timestamp"], ["ts", "label", "nope", ""])
JUNK = ["--nope", "-x", "--", "-", "--format", "extra", "--help", "-h", "--output", "-o", "--now=2026-01-01"]

POOLS: dict[str, tuple[list[str], list[str]]] = {
    "store": STORES, "output": OUTPUTS, "files": FILES, "entity_file": ENTITY_FILES, "definitions": DEFINITIONS,
    "view": NAMES, "views": NAMES, "name": NAMES, "features": FEATURES, "entity_pairs": PAIRS,
    "request_pairs": PAIRS, "entities_json": JSONS, "request_json": JSONS, "now": TIMES, "end_date": TIMES,
    # verify's --examples: no large valid count among the "wrong" values (99999 examples of a
    # featurizer check run for minutes; the bound itself, 10,000,000, is tested as a usage error).
    "examples": (["1", "5", "300"], [v for v in INTS[1] if v not in ("65535", "65536", "99999")] + ["10000001"]),
    "seed": INTS, "port": (["6566", "8080"], INTS[1]), "max_body": INTS, "host": HOSTS,
    "token": TOKENS, "timestamp_field": FIELDS,
}

# Text an argument can hold (no NUL: argv cannot carry one; no lone surrogates but the
# ones Python makes of bytes that are not UTF-8, which come from the pools above).
_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)


def _value(name: str, choices: list[str] | None, *, bad: bool) -> st.SearchStrategy[str]:
    """A good value of the parameter, or a bad one (1 in 5 of those: random text). Random
    text for a path is kept inside the working folder (prefixed), so a fuzzed `init`
    cannot create files elsewhere on the machine."""
    good, wrong = POOLS.get(name) or (choices or ["x"], ["", "nope"])
    if not bad:
        return st.sampled_from(good)
    if name in ("store", "output", "files", "entity_file", "definitions"):
        random = _text.map(lambda t: "fz-" + t.replace("/", "_"))
    elif name == "host":
        random = st.sampled_from(wrong)  # random host names would be DNS queries
    else:
        random = _text
    return st.integers(0, 4).flatmap(lambda i: random if i == 0 else st.sampled_from(wrong))


#: Commands drawn more often: the ones with the most inputs, and the only ones that write
#: files besides the store.
WEIGHTS = {"get-online-features": 4, "get-historical-features": 4}


@st.composite
def argvs(draw: st.DrawFn) -> list[str]:
    """A command line: a command and its arguments and options, mostly good values with one
    parameter (sometimes more) given a bad value, maybe missing, repeated or in any order,
    and sometimes junk."""
    names = [n for n in sorted(main.commands) for _ in range(WEIGHTS.get(n, 1))]
    odd = draw(st.integers(0, 19)) == 0  # 1 in 20: no command, an unknown one, --help, --version
    name = draw(st.sampled_from(["nope", "", "--help", "--version", "-V"] if odd else names))
    command = main.commands.get(name)
    if command is None:
        return [name, *draw(st.lists(st.sampled_from(JUNK) | _text, max_size=2))]
    params = [p for p in command.params if not (isinstance(p, click.Option) and p.opts[0] in ("--help", "-h"))]
    target = draw(st.integers(0, len(params)))  # len(params): no parameter is the target
    positional: list[str] = []
    options: list[list[str]] = []
    for i, param in enumerate(params):
        choices = list(param.type.choices) if isinstance(param.type, click.Choice) else None
        bad = i == target or draw(st.integers(0, 9)) == 0
        name_ = param.name or ""
        if isinstance(param, click.Argument):
            if bad and not draw(st.integers(0, 9)):  # sometimes missing
                continue
            count = draw(st.integers(1, 3)) if param.nargs == -1 else 1
            positional += [draw(_value(name_, choices, bad=bad)) for _ in range(count)]
            continue
        assert isinstance(param, click.Option)
        include = (not bad or draw(st.integers(0, 9)) > 0) if param.required else (
            i == target or draw(st.integers(0, 2)) == 0)
        if not include:
            continue
        flag = draw(st.sampled_from(param.opts))
        repeats = draw(st.integers(1, 3)) if param.multiple else 1
        for _ in range(repeats):
            if param.is_flag:
                options.append([flag])
            else:
                value = draw(_value(name_, choices, bad=bad))
                options.append([f"{flag}={value}"] if flag.startswith("--") and draw(st.integers(0, 5)) == 0
                               else [flag, value])
    options = draw(st.permutations(options))
    argv = [name, *positional, *(token for option in options for token in option)]
    junk_count = draw(st.integers(0, 9)) // 9  # one in ten command lines get junk
    for junk in draw(st.lists(st.sampled_from(JUNK) | _text, min_size=junk_count, max_size=junk_count)):
        argv.insert(draw(st.integers(1, len(argv))), junk)
    return argv


# -- the working folder ------------------------------------------------------------------------

DEFS = "from featurelite.demo import definitions\n\nuser, user_stats, shares = definitions()\n"
CHANGED = DEFS + "user_stats = user_stats.__class__('user_stats', entities=[user], timestamp_field='ts', " \
                 "schema={'spend_7d': 'int64'})\n"


def _build(folder: Path, pristine: Path) -> None:
    shutil.copyfile(pristine, folder / "shop.duckdb")
    events = demo.example_events(users=50, events=20, seed=3, end=NOW)
    pq.write_table(events, folder / "events.parquet")
    import pyarrow.csv as pcsv

    pcsv.write_csv(events, folder / "events.csv")
    pq.write_table(events.drop(["spend_7d"]), folder / "bad_events.parquet")
    spine = demo.example_spine(users=50, rows=5, end=NOW)
    pq.write_table(spine, folder / "spine.parquet")
    pcsv.write_csv(spine, folder / "spine.csv")
    pq.write_table(pa.table({"user_id": pa.array([], pa.int64())}), folder / "empty.parquet")
    write_odd_spine(folder / "odd_spine.parquet")
    (folder / "defs.py").write_text(DEFS)
    (folder / "changed.py").write_text(CHANGED)
    (folder / "bad.py").write_text("raise RuntimeError('a definitions file that fails')\n")
    (folder / "exits.py").write_text("import sys\nsys.exit(3)\n")
    (folder / "invalid.py").write_text("import featurelite as fl\nfl.Entity('')\n")
    (folder / "notes.txt").write_text("not a store\n")
    (folder / "garbage.csv").write_bytes(bytes(range(256)) * 4)
    (folder / "header.csv").write_text("user_id,event_timestamp,ts,spend_7d,orders_7d,country\n")
    (folder / "empty.duckdb").write_bytes(b"")
    (folder / "ents.json").write_text('{"user_id": [1, 2, 42]}')
    (folder / "deep.json").write_text(DEEP)
    (folder / "sub").mkdir()
    (folder / "sub" / "keep").write_text("")
    os.symlink("shop.duckdb", folder / "link.duckdb")
    os.symlink("shop.duckdb.wal", folder / "wal-link")
    os.link(folder / "shop.duckdb", folder / "hard.duckdb")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "-"


class Workspace:
    """The fuzz's working folder: a store and inputs, reset between examples."""

    def __init__(self, folder: Path, pristine: Path) -> None:
        self.folder, self.pristine = folder, pristine
        _build(folder, pristine)
        self.baseline = {p.relative_to(folder): _digest(p) for p in folder.rglob("*") if not p.is_symlink()
                         and p.is_file()}
        self.links = {p.relative_to(folder) for p in folder.rglob("*") if p.is_symlink()}
        self.folders = {p.relative_to(folder) for p in folder.rglob("*") if p.is_dir() and not p.is_symlink()}
        self.store_fingerprint = fingerprint(folder / "shop.duckdb")
        self.store_digest = _digest(folder / "shop.duckdb")

    def reset(self) -> None:
        """Remove what a command created, restore what it changed (the hard link to the
        store is one file with it: restored together)."""
        for path in sorted(self.folder.rglob("*"), key=lambda p: -len(p.parts)):
            rel = path.relative_to(self.folder)
            if rel in self.links or rel in self.folders:
                continue
            if rel not in self.baseline:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        store = self.folder / "shop.duckdb"
        if _digest(store) != self.store_digest or _digest(self.folder / "hard.duckdb") != self.store_digest:
            (self.folder / "hard.duckdb").unlink(missing_ok=True)
            store.unlink(missing_ok=True)
            shutil.copyfile(self.pristine, store)
            os.link(store, self.folder / "hard.duckdb")
        for rel, digest in self.baseline.items():
            if rel.name not in ("shop.duckdb", "hard.duckdb") and _digest(self.folder / rel) != digest:
                (self.folder / rel).unlink(missing_ok=True)
                _build_one(self.folder, rel)
        for link in self.links:
            if not (self.folder / link).is_symlink():
                (self.folder / link).unlink(missing_ok=True)
                os.symlink({"link.duckdb": "shop.duckdb", "wal-link": "shop.duckdb.wal"}[str(link)], self.folder / link)


def _build_one(folder: Path, rel: Path) -> None:
    """Rebuild one baseline input a command overwrote (a legitimate -o onto it)."""
    scratch = folder.parent / f"{folder.name}-rebuild"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    _build(scratch, folder.parent / "pristine.duckdb")
    shutil.copyfile(scratch / rel, folder / rel)
    shutil.rmtree(scratch)


# -- the checks -----------------------------------------------------------------------------------

STATS: Counter[str] = Counter()
FAILURES: list[str] = []


def _fail(kind: str, argv: list[str], detail: str) -> None:
    STATS[kind] += 1
    message = f"{kind}: featurelite {argv!r}\n{detail}"
    if SOAK:
        if len(FAILURES) < 50:
            FAILURES.append(message)
        return
    raise AssertionError(message)


def check_invocation(workspace: Workspace, argv: list[str]) -> None:
    workspace.reset()
    STATS["invocations"] += 1
    result = CliRunner().invoke(main, argv)
    STATS[f"exit {result.exit_code}"] += 1
    out, err = result.stdout, result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        exc = result.exception
        _fail("traceback", argv, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-3000:])
        return
    if "Traceback" in out + err:
        _fail("traceback", argv, err[-3000:])
        return
    if result.exit_code not in (0, 1, 2):
        _fail("exit code", argv, f"exit {result.exit_code}\n{err}")
    elif result.exit_code:
        lines = err.splitlines()
        errors = [line for line in lines if line.startswith("Error:")]
        others = [line for line in lines if not line.startswith("Error:")]
        allowed = (lambda line: line == "" or line.startswith(("Usage: ", "Try "))) if result.exit_code == 2 \
            else (lambda line: False)
        if len(errors) != 1 or not all(allowed(line) for line in others):
            _fail("not one Error: line", argv, f"exit {result.exit_code}, stderr:\n{err}")
    store = workspace.folder / "shop.duckdb"
    if _digest(store) == workspace.store_digest:
        return
    try:
        now = fingerprint(store)
    except Exception as exc:  # noqa: BLE001 - a store that no longer opens is the failure reported
        _fail("store damaged", argv, f"exit {result.exit_code}: {type(exc).__name__}: {exc}\n{err}")
        return
    if now != workspace.store_fingerprint:
        if result.exit_code == 0 and argv and argv[0] in WRITERS:
            STATS["store changed by a command that succeeded (restored)"] += 1
        elif result.exit_code == 1 and argv[0] == "ingest" and "(already ingested, each whole:" in err:
            # Each file is its own atomic ingest (documented): the files before the one
            # refused have landed, and the message says which.
            STATS["store changed by the files before a refused one of several (restored)"] += 1
        else:
            _fail("store changed", argv, f"exit {result.exit_code}, a command that did not write changed the store\n{err}")


# -- the tests -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("cli-fuzz")
    pristine = root / "pristine.duckdb"
    make_store(pristine)
    folder = root / "work"
    folder.mkdir()
    return Workspace(folder, pristine)


@pytest.fixture
def in_workspace(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """The working folder as the current directory, and stub servers: `serve` and `ui` with
    good arguments return at once instead of serving forever."""
    import featurelite.server
    import featurelite.ui

    monkeypatch.chdir(workspace.folder)
    monkeypatch.setattr(featurelite.server, "run", lambda path, **kw: None)
    monkeypatch.setattr(featurelite.ui, "run", lambda path, **kw: None)
    monkeypatch.delenv("FEATURELITE_TOKEN", raising=False)
    return workspace


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(argv=argvs())
def test_random_command_lines(in_workspace: Workspace, argv: list[str]) -> None:
    STATS[f"command {argv[0] if argv else ''}"] += 1
    check_invocation(in_workspace, argv)


def test_report(in_workspace: Workspace) -> None:
    """Runs after the fuzz (same module, file order): prints the counts; in a soak,
    fails with the failures recorded."""
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(STATS.items()))
    print(f"\ncli fuzz ({EXAMPLES} examples{', soak' if SOAK else ''}): {summary}")
    assert not FAILURES, "\n\n".join(FAILURES)


# Known hostile command lines, as a real process runs them: no traceback at the process
# level either (a traceback would be printed by the interpreter, outside click).
PROCESS_CASES = [
    ["get-historical-features", "shop.duckdb", "spine.parquet", "-f", "user_stats:spend_7d", "-o", "shop.duckdb"],
    ["get-historical-features", "shop.duckdb", "spine.parquet", "-f", "user_stats:spend_7d", "-o", "/missing/dir/x"],
    ["get-online-features", "shop.duckdb", "-f", "user_stats:spend_7d", "--entities", '{"user_id": 5}'],
    ["get-online-features", "shop.duckdb", "-f", "user_stats:spend_7d", "--entities", "@deep.json"],
    ["get-online-features", "shop.duckdb", "-f", "user_stats:spend_7d", "-e", "user_id=1",
     "--now", "0001-01-01T00:00:00+01:00"],
    ["materialize", "shop.duckdb", "--end-date", "0001-01-01T00:00:00+01:00"],
    ["verify", "shop.duckdb", "--examples", "-5"],
    ["serve", "shop.duckdb", "--port", "99999"],
    ["serve", "shop.duckdb", "--token", ""],
    ["ui", "shop.duckdb", "--port", "0"],
    ["ui", "shop.duckdb", "--token", " "],
    ["get-online-features", "shop.duckdb", "-f", "user_stats:spend_7d", "-e", "user_id=\udcff", "--format", "table"],
    ["init", "\udcff.duckdb"],
]


def test_hostile_command_lines_in_real_processes(in_workspace: Workspace) -> None:
    in_workspace.reset()
    before = in_workspace.store_digest
    env = {k: v for k, v in os.environ.items() if k != "FEATURELITE_TOKEN"}
    for argv in PROCESS_CASES:
        args = [os.fsencode(a) for a in argv]  # bytes: the \udcff case is the byte 0xff, as a shell passes it
        done = subprocess.run([os.fsencode(sys.executable), b"-m", b"featurelite", *args], cwd=in_workspace.folder,
                              env=env, capture_output=True, timeout=120, check=False)
        err = done.stderr.decode("utf-8", "replace")
        assert "Traceback" not in err and done.returncode in (0, 1, 2), (argv, done.returncode, err)
        if done.returncode:
            assert sum(line.startswith("Error:") for line in err.splitlines()) == 1, (argv, err)
    assert _digest(in_workspace.folder / "shop.duckdb") == before
    assert fingerprint(in_workspace.folder / "shop.duckdb") == in_workspace.store_fingerprint
