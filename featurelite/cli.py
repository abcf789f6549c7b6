"""The ``featurelite`` command line: one command per Store method, the store path first.

A command opens the store (read-only when it only reads), calls one method and renders the
result: JSON on stdout by default, ``--format table`` for people, ``csv`` / ``parquet``
where rows come back. A ``FeatureliteError`` becomes one line on stderr and exit code 1;
usage errors exit 2. This is the only module that prints.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import glob
import importlib
import json
import math
import os
import runpy
import socket
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, BinaryIO

import click
import pyarrow as pa

from ._version import __version__
from .definitions import Entity, FeatureView, OnDemandFeatureView
from .errors import FeatureliteError, StoreLockedError
from .serving_lock import server_holding
from .store import Store
from .types import storable_micros

__all__ = ["main"]

FORMATS = ("json", "table", "csv", "parquet")
#: The most examples ``verify`` generates per featurizer: a bound so that a slip of the
#: finger (an extra zero or three) is a usage error, not a run that fills the memory.
MAX_EXAMPLES = 10_000_000
#: The environment variable ``serve`` reads its bearer token from.
TOKEN_ENV = "FEATURELITE_TOKEN"


# -- rendering -----------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A value as JSON can carry it: datetimes, dates and times as ISO-8601 text, non-finite
    floats as the strings "NaN", "Infinity", "-Infinity" (strict JSON has no such numbers),
    bytes as base64 text, anything else JSON has no type for (a Decimal, a duration) as its
    text. Columns of an entity file come back in a training set whatever their type."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        return value
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)


def to_json(value: Any) -> str:
    """Strict JSON text of a command's result.

    Non-ASCII text stays readable; a lone surrogate (an argument that was not valid UTF-8,
    or a JSON ``\\ud800`` escape given back) cannot be encoded as UTF-8, so then the
    whole text is ASCII with ``\\u`` escapes, which is still valid JSON."""
    plain = _plain(value)
    text = json.dumps(plain, ensure_ascii=False, allow_nan=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(plain, ensure_ascii=True, allow_nan=False)
    return text


def _table_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no rows)"
    header = list(rows[0])
    cells = [[_cell(r.get(h)) for h in header] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (list, tuple, dict)):
        return to_json(value)
    return str(value)


def emit(result: Any, fmt: str, output: str | None = None) -> None:
    """Write a result: a pyarrow Table in any format, other results as JSON or a table.

    ``output`` is a path already checked by :func:`checked_output`; it is written whole
    or not at all (see :func:`write_atomically`)."""
    if isinstance(result, pa.Table):
        _emit_table(result, fmt, output)
        return
    if fmt in ("csv", "parquet"):
        raise click.UsageError(f"--format {fmt} is for commands that return rows; use json or table")
    if fmt == "table":
        rows = result if isinstance(result, list) else [result]
        text = _table_text([r if isinstance(r, dict) else {"value": r} for r in rows])
    else:
        text = to_json(result)
    _write_text(text, output)


def _emit_table(table: pa.Table, fmt: str, output: str | None) -> None:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        if output is None:
            if sys.stdout.isatty():
                raise click.UsageError("--format parquet writes binary; give --output FILE or redirect stdout")
            _to_stdout(lambda stream: pq.write_table(table, stream))
        else:
            write_atomically(output, lambda file: pq.write_table(table, file))
        return
    if fmt == "csv":
        import pyarrow.csv as pcsv

        # CSV has no nested or binary types; an entity file's columns can be anything.
        flat = [f"{field.name} ({field.type})" for field in table.schema
                if pa.types.is_nested(field.type) or pa.types.is_binary(field.type)
                or pa.types.is_large_binary(field.type) or pa.types.is_fixed_size_binary(field.type)]
        if flat:
            raise _Failure(f"CSV cannot hold the column(s) {', '.join(flat)}; use --format parquet or json")
        try:
            if output is None:
                _to_stdout(lambda stream: pcsv.write_csv(table, stream))
            else:
                write_atomically(output, lambda file: pcsv.write_csv(table, file))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise _Failure(f"the result cannot be written as CSV ({exc}); use --format parquet or json") from None
        return
    rows = table.to_pylist()
    _write_text(_table_text(rows) if fmt == "table" else to_json(rows), output)


def _encoded(text: str) -> bytes:
    """UTF-8 bytes of ``text``. A surrogate that came from an argument which was not valid
    UTF-8 turns back into the byte the user gave; any other lone surrogate is written as a
    ``\\udXXX`` escape rather than failing the write after the work is done."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


def _write_text(text: str, output: str | None) -> None:
    data = _encoded(text + "\n")
    if output is None:
        _to_stdout(lambda stream: stream.write(data))
    else:
        write_atomically(output, lambda file: file.write(data))


def _to_stdout(write: Callable[[BinaryIO], object]) -> None:
    """Write to standard output; a full disk or a closed terminal is one Error line. A
    reader that stopped reading (`| head`) is click's to handle: a quiet exit 1, as Unix
    tools do for a broken pipe."""
    stream: BinaryIO = sys.stdout.buffer
    try:
        write(stream)
        stream.flush()
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            raise
        raise _Failure(f"cannot write to standard output: {exc.strerror or exc}") from None


# -- output files ----------------------------------------------------------------------


def _store_files(store: str) -> list[str]:
    """Every file a store at ``store`` owns: the file, DuckDB's write-ahead log beside it
    (named after the path as given, and after the path with links resolved) and the note a
    running server leaves. Writing an output over any of them would destroy the store."""
    files = [store, f"{store}.wal", f"{store}.serve.json"]
    real = os.path.realpath(store)
    files += [real, f"{real}.wal", f"{real}.serve.json"]
    return files


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name one file: the same path once links and ``..`` are resolved
    (this also covers a file that does not exist yet, such as a store's future ``.wal``),
    or, for existing files, the same inode (a hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def checked_output(output: str | None, *, store: str, inputs: Sequence[str] = ()) -> str | None:
    """The file a command will write its result to, checked before any work is done.

    Refused (usage error, exit 2): the store file, its ``.wal`` or server note, through any
    spelling (relative, ``..``, a symbolic or hard link), and the command's own input files
    (overwriting the entity file a training set was built from loses the labels; it is
    always a slip). A folder that does not exist or cannot be written is exit 1. Returns
    the path with links resolved, so that replacing it replaces the file a link points to,
    not the link."""
    if output is None:
        return None
    if output == "":
        raise click.BadParameter("is empty; give a file name", param_hint="'--output'")
    for owned in _store_files(store):
        if _same_file(output, owned):
            raise click.BadParameter(
                f"{output!r} is the store's own file {owned!r}; writing there would destroy the store. "
                "Choose another file", param_hint="'--output'",
            )
    for given in inputs:
        if _same_file(output, given):
            raise click.BadParameter(
                f"{output!r} is this command's input file; choose another file", param_hint="'--output'"
            )
    target = os.path.realpath(output)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise _Failure(f"cannot write {output!r}: the folder {os.path.dirname(output) or '.'!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise _Failure(f"cannot write {output!r}: no permission to create files in {os.path.dirname(output) or '.'!r}")
    if os.path.isdir(target):
        raise click.BadParameter(f"{output!r} is a folder; give a file name", param_hint="'--output'")
    return target


def write_atomically(target: str, write: Callable[[BinaryIO], object]) -> None:
    """Write a file whole or not at all: into a temporary file in the same folder, flushed
    to disk, then renamed over ``target`` (a rename within one file system is atomic). If
    writing fails, the temporary file is removed and ``target`` is as it was.

    An existing ``target`` that is not a regular file (``/dev/stdout``, a named pipe)
    cannot be replaced by a rename and is written in place."""
    try:
        existing: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise _Failure(f"cannot write {target!r}: {exc.strerror or exc}") from None
    try:
        if existing is not None and not stat.S_ISREG(existing.st_mode):
            with open(target, "wb") as stream:
                write(stream)
            return
        folder, name = os.path.split(target)
        fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
        try:
            with os.fdopen(fd, "wb") as stream:
                write(stream)
                stream.flush()
                os.fsync(stream.fileno())
            # mkstemp makes the file private (0600): give it the mode the file had, or the
            # one a plain open() would have given it.
            os.chmod(temporary, stat.S_IMODE(existing.st_mode) if existing is not None else 0o666 & ~_umask())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError as exc:
        raise _Failure(f"cannot write {target!r}: {exc.strerror or exc}; nothing was written") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- errors and the store ------------------------------------------------------------


def _one_line(message: str) -> str:
    """A message as one line: the CLI's contract is one ``Error:`` line per failure, and a
    message may quote text with line breaks (a value, a DuckDB error)."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip()) or message.strip()


class _Failure(click.ClickException):
    """A featurelite error as one line on stderr, exit code 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {_one_line(self.message)}", err=True)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except FeatureliteError as exc:
        raise _Failure(str(exc)) from None


@contextlib.contextmanager
def opened(path: str, *, read_only: bool) -> Iterator[Store]:
    """The store at ``path``; a store held by ``featurelite serve`` is reported as such."""
    if read_only and not os.path.exists(path):
        raise _Failure(f"no store at {path!r}; create one with `featurelite init {path}`")
    with _errors():
        try:
            store = Store(path, read_only=read_only)
        except StoreLockedError as exc:
            server = server_holding(path)
            if server is None:
                raise
            raise _Failure(
                f"store {path!r} is held by `featurelite serve` (pid {server['pid']}, {server['url']}); "
                f"{'read it through the server' if read_only else 'push rows through POST ' + server['url'] + '/push'}, "
                "or stop the server first"
            ) from exc
        with store:
            yield store


def _progress(label: str, quiet: bool) -> Callable[..., Any]:
    """A progress bar on stderr when it is a terminal, and nothing in pipes or with --quiet."""
    show = not quiet and sys.stderr.isatty()

    @contextlib.contextmanager
    def bar(items: Sequence[Any] | None = None, length: int | None = None) -> Iterator[Any]:
        if not show:
            yield _NoBar(items)
            return
        with click.progressbar(items, length=length, label=label, file=sys.stderr) as progress:  # type: ignore[arg-type]
            yield progress

    return bar


class _NoBar:
    def __init__(self, items: Sequence[Any] | None) -> None:
        self._items = items or []

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def update(self, n: int) -> None:
        pass


# -- shared options ------------------------------------------------------------------

_store_arg = click.argument("store", type=click.Path(dir_okay=False))


def _format_option(default: str = "json", choices: Sequence[str] = ("json", "table")) -> Callable[..., Any]:
    return click.option(
        "--format", "fmt", type=click.Choice(list(choices)), default=default, show_default=True,
        help="Output format.",
    )


_quiet = click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
_output = click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to FILE instead of stdout.")


class _Moment(click.ParamType):
    """An ISO-8601 time option. A time that is not ISO-8601, or that falls outside the years
    1 to 9999 once converted to UTC (``0001-01-01T00:00:00+01:00``), is a usage error that
    names the option, before the store is opened."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO-8601 time like 2026-01-31T12:00:00 or 2026-01-31T12:00:00+00:00",
                      param, ctx)
        if storable_micros(moment) is None:  # the store's own bound, checked here to name the option
            self.fail(f"{value!r} is out of range: in UTC it falls outside the years 1 to 9999", param, ctx)
        return moment


MOMENT = _Moment()


# -- commands --------------------------------------------------------------------------


class _Group(click.Group):
    """click's group, with every error message kept to one line.

    click prints a usage error as a ``Usage:`` line, a ``Try ... --help`` line and one
    ``Error:`` line (exit code 2); its messages can quote an argument verbatim, line breaks
    and all, so the message is folded onto one line before it is shown."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            # `featurelite` alone asks for help: give it, on stdout, as --help does (click
            # would print it to stderr with exit code 2, an error without an Error: line).
            click.echo(exc.ctx.get_help())
            sys.exit(0)
        except click.ClickException as exc:
            # click types ``message`` as Final, but it is a plain attribute its own
            # exceptions set in __init__; folding it in place keeps click's usage display.
            exc.message = _one_line(exc.message)  # type: ignore[misc]
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        # Without standalone mode click returns what the command returned (None) or the
        # code of a ctx.exit() (--help, --version).
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", "-V", prog_name="featurelite")
def main() -> None:
    """featurelite: an embedded feature store in one DuckDB file.

    Every command takes the store file first and mirrors a Store method of the Python API
    (`featurelite get-online-features STORE` is `store.get_online_features(...)`). Results
    go to stdout as JSON unless --format says otherwise; errors go to stderr as one line
    with exit code 1.
    """


@main.command()
@_store_arg
@click.option("--example", is_flag=True, help="Also apply the demo definitions and ingest its example data.")
def init(store: str, example: bool) -> None:
    """Create a new, empty store (fails if STORE exists and is not a featurelite store).

    In Python: featurelite.open(STORE)."""
    existed = os.path.exists(store)
    with opened(store, read_only=False) as s, _errors():
        if example:
            from . import demo

            s.apply(demo.definitions())
            s.ingest("user_stats", demo.example_events())
        emit({"store": os.path.abspath(store), "created": not existed, "example": example}, "json")


@main.command()
@_store_arg
@click.argument("definitions", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Only show the plan; change nothing.")
@_format_option()
def apply(store: str, definitions: str, dry_run: bool, fmt: str) -> None:
    """Apply the entities, feature views and on-demand views defined in a Python file.

    Every Entity, FeatureView and OnDemandFeatureView at the top level of DEFINITIONS is
    applied. Shows the plan: added, changed, unchanged (a refused change is an error).

    In Python: store.apply([...], dry_run=...)."""
    objects = load_definitions(definitions)
    exists = os.path.exists(store)
    # A dry run against a store that does not exist yet plans against an empty one, in
    # memory: it must not create the file.
    target = store if exists or not dry_run else ":memory:"
    with opened(target, read_only=dry_run and exists) as s, _errors():
        result = s.apply(objects, dry_run=dry_run)
    rows = [
        {"action": action, "kind": c.kind, "name": c.name, "version": c.version, "previous_version": c.previous_version}
        for action, changes in (("added", result.added), ("changed", result.changed), ("unchanged", result.unchanged))
        for c in changes
    ]
    emit(rows if fmt == "table" else {"dry_run": dry_run, "plan": rows}, fmt)


def load_definitions(path: str) -> list[Entity | FeatureView | OnDemandFeatureView]:
    """The definitions a Python file creates at its top level, in definition order."""
    folder = str(Path(path).resolve().parent)
    sys.path.insert(0, folder)  # so the file can import its neighbours
    try:
        namespace = runpy.run_path(path, run_name="featurelite_definitions")
    except FeatureliteError as exc:
        raise _Failure(f"{path}: {exc}") from None
    except SystemExit as exc:  # the file called sys.exit(): its code is not ours to exit with
        raise _Failure(f"{path} exited (sys.exit({exc.code!r})) instead of defining its objects") from None
    except Exception as exc:  # noqa: BLE001 - the user's file failed to run: say where
        raise _Failure(f"{path} failed to run: {type(exc).__name__}: {exc}") from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
    found = [v for v in namespace.values() if isinstance(v, (Entity, FeatureView, OnDemandFeatureView))]
    if not found:
        raise _Failure(f"{path} defines no Entity, FeatureView or OnDemandFeatureView at its top level")
    return found


@main.command()
@_store_arg
@click.argument("view")
@click.argument("files", nargs=-1, required=True)
@_quiet
def ingest(store: str, view: str, files: tuple[str, ...], quiet: bool) -> None:
    """Append Parquet or CSV FILES (paths or globs) to VIEW's history and update its
    online values. Each file is one atomic ingest.

    In Python: store.ingest(VIEW, FILE)."""
    paths: list[str] = []
    for pattern in files:
        matched = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matched:
            raise _Failure(f"no file matches {pattern!r}")
        paths.extend(matched)
    for path in paths:
        if not os.path.isfile(path):
            raise _Failure(f"no file {path!r}")
    results: list[dict[str, Any]] = []
    with opened(store, read_only=False) as s, _errors(), _progress(f"ingest {view}", quiet)(paths) as bar:
        for path in bar:
            try:
                result = s.ingest(view, path)
            except FeatureliteError as exc:
                # Each file is its own atomic ingest: say which files landed before this one.
                landed = ", ".join(f"{r['file']} ({r['rows']} rows)" for r in results)
                raise _Failure(f"{path}: {exc}" + (f" (already ingested, each whole: {landed})" if landed else "")) from None
            results.append({"file": path, "view": result.view, "rows": result.rows})
    emit({"view": view, "rows": sum(r["rows"] for r in results), "files": results}, "json")


@main.command()
@_store_arg
@click.argument("views", nargs=-1)
@click.option("--end-date", type=MOMENT, help="Count only events at or before this ISO-8601 time.")
@_quiet
def materialize(store: str, views: tuple[str, ...], end_date: datetime | None, quiet: bool) -> None:
    """Rebuild the online values of VIEWS (default: all) from their history, all of them
    or none (an unknown view changes nothing).

    In Python: store.materialize(VIEWS, end_date=...)."""
    # One call for all views: the store rebuilds them in one transaction. A loop of one
    # call per view (as this command once did) left the first views rebuilt when a later
    # name was unknown, with exit code 1.
    with opened(store, read_only=False) as s, _errors(), _progress("materialize", quiet)(length=1) as bar:
        results = s.materialize(list(views) or None, end_date=end_date)
        bar.update(1)
    emit([{"view": r.view, "online_rows": r.online_rows} for r in results], "json")


#: JSON values a join key or request field can take.
_SCALARS = (str, int, float, bool, type(None))


def _parse_pairs(pairs: Sequence[str], what: str) -> dict[str, list[Any]]:
    """``key=value`` pairs (repeatable) as columns; a value is JSON when it parses as a JSON
    number, string, true/false or null, else the text as given (``-e user_id='"42"'`` is
    the text 42)."""
    columns: dict[str, list[Any]] = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=what)
        key, text = pair.split("=", 1)
        try:
            value = json.loads(text)
        except json.JSONDecodeError:  # not JSON: the text itself
            value = text
        except RecursionError:  # JSON nested too deep: not a single value either way
            raise click.BadParameter(f"{key}=...: VALUE is nested too deeply", param_hint=what) from None
        except ValueError:  # a JSON integer with more digits than Python converts (4,300)
            raise click.BadParameter(f"{key}=...: VALUE is a number of {len(text)} characters, too long for any "
                                     "key or field", param_hint=what) from None
        if not isinstance(value, _SCALARS):
            raise click.BadParameter(
                f"{pair!r}: VALUE must be one number, text, true/false or null, not a JSON {type(value).__name__}; "
                "give several values by repeating the option", param_hint=what,
            )
        columns.setdefault(key, []).append(value)
    return columns


def _json_option(text: str, what: str) -> Any:
    """The JSON text of an option, or of the file ``@FILE`` names; a usage error naming the
    option when it is not JSON, cannot be read, or nests deeper than Python can parse."""
    source = "JSON"
    try:
        if text.startswith("@"):
            source = f"the file {text[1:]!r}"
            data = Path(text[1:]).read_text(encoding="utf-8")
        else:
            data = text
        return json.loads(data)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {source}: {exc.strerror or exc}", param_hint=what) from None
    except RecursionError:
        raise click.BadParameter(f"{source} is nested too deeply", param_hint=what) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of too many digits
        raise click.BadParameter(f"{source} is not JSON (or @FILE of JSON): {exc}", param_hint=what) from None


def _columns_or_rows(value: Any, what: str, shape: str, *, rows_ok: bool) -> Any:
    """``value`` when it has the documented shape: an object of lists ``{key: [values]}``
    (or, when ``rows_ok``, a list of objects ``[{key: value}, ...]``) whose values are JSON
    scalars. Checked here, as the CLI's own input format, with a message in its terms."""
    if isinstance(value, dict) and all(isinstance(v, list) for v in value.values()):
        cells = [c for v in value.values() for c in v]
    elif rows_ok and isinstance(value, list) and all(isinstance(r, dict) for r in value):
        cells = [c for r in value for c in r.values()]
    else:
        raise click.BadParameter(f"must be {shape}, got a JSON {type(value).__name__}", param_hint=what)
    bad = next((c for c in cells if not isinstance(c, _SCALARS)), None)
    if bad is not None:
        raise click.BadParameter(
            f"values must be numbers, text, true/false or null, got a JSON {type(bad).__name__}", param_hint=what
        )
    return value


def _at_files(*options: str | None) -> list[str]:
    """The files ``@FILE`` options read (an output must not overwrite them)."""
    return [o[1:] for o in options if o is not None and o.startswith("@") and len(o) > 1]


def _online_table(response: Any, statuses: bool) -> list[dict[str, Any]]:
    """Rows for ``--format table``: one per entity. A value that is not PRESENT shows its
    status in brackets (``[NOT_FOUND]``, ``[OUTSIDE_MAX_AGE]``): an empty cell would not
    say whether the entity is unknown, its value too old, or stored as null. With
    ``--statuses`` every feature also gets a ``FEATURE:status`` column."""
    values: dict[str, list[Any]] = response.to_dict()
    status_of: dict[str, list[str]] = response.statuses
    count = len(next(iter(values.values()), []))
    rows = []
    for i in range(count):
        row: dict[str, Any] = {}
        for column, column_values in values.items():
            status = status_of.get(column)
            if status is None:  # a join key
                row[column] = column_values[i]
                continue
            row[column] = column_values[i] if status[i] == "PRESENT" else f"[{status[i]}]"
            if statuses:
                row[f"{column}:status"] = status[i]
        rows.append(row)
    return rows


def _with_status_columns(table: pa.Table, response: Any) -> pa.Table:
    """The values table with a ``FEATURE:status`` text column after each feature."""
    columns: dict[str, pa.Array] = {}
    for name in table.column_names:
        columns[name] = table.column(name)
        if name in response.statuses:
            columns[f"{name}:status"] = pa.array(response.statuses[name], pa.string())
    return pa.table(columns)


@main.command("get-online-features")
@_store_arg
@click.option("--feature", "-f", "features", multiple=True, required=True, help="A view:feature reference (repeatable).")
@click.option("--entity", "-e", "entity_pairs", multiple=True, help="A join key value, KEY=VALUE (repeat per entity).")
@click.option("--entities", "entities_json", help="Entities as JSON: [{key: value}, ...] or {key: [values]}; @FILE reads a file.")
@click.option("--request", "-r", "request_pairs", multiple=True, help="A request field value, FIELD=VALUE (repeat per entity).")
@click.option("--request-data", "request_json", help="Request data as JSON {field: [values]}; @FILE reads a file.")
@click.option("--now", type=MOMENT, help="Serve as of this ISO-8601 time (default: now).")
@click.option("--statuses", is_flag=True, help="Also return each value's status (a FEATURE:status column in tables).")
@click.option("--full-feature-names", is_flag=True, help="Name features view__feature.")
@_format_option(choices=FORMATS)
@_output
def get_online_features(
    store: str, features: tuple[str, ...], entity_pairs: tuple[str, ...], entities_json: str | None,
    request_pairs: tuple[str, ...], request_json: str | None, now: datetime | None, statuses: bool,
    full_feature_names: bool, fmt: str, output: str | None,
) -> None:
    """Latest feature values for some entities.

    Example: featurelite get-online-features shop.duckdb -f user_stats:spend_7d -e user_id=42

    With --format table a value that is not PRESENT shows its status, e.g. [NOT_FOUND] or
    [OUTSIDE_MAX_AGE].

    In Python: store.get_online_features(entities, features, request_data=..., now=...)."""
    if entities_json is not None and entity_pairs:
        raise click.UsageError("give entities with --entity or --entities, not both")
    if request_json is not None and request_pairs:
        raise click.UsageError("give request data with --request or --request-data, not both")
    if entities_json is not None:
        entities = _columns_or_rows(_json_option(entities_json, "'--entities'"), "'--entities'",
                                    "[{key: value}, ...] or {key: [values]}", rows_ok=True)
    else:
        entities = _parse_pairs(entity_pairs, "'--entity'")
    if not entities:
        raise click.UsageError("give at least one entity: --entity KEY=VALUE or --entities JSON")
    if request_json is not None:
        request = _columns_or_rows(_json_option(request_json, "'--request-data'"), "'--request-data'",
                                   "{field: [values]}", rows_ok=False)
    else:
        request = _parse_pairs(request_pairs, "'--request'")
    target = checked_output(output, store=store, inputs=_at_files(entities_json, request_json))
    with opened(store, read_only=True) as s, _errors():
        response = s.get_online_features(
            entities, list(features), request_data=request or None, full_feature_names=full_feature_names, now=now,
        )
        if fmt in ("csv", "parquet"):
            table = response.to_arrow()
            emit(_with_status_columns(table, response) if statuses else table, fmt, target)
            return
        if fmt == "table":
            emit(_online_table(response, statuses), fmt, target)
            return
        result: dict[str, Any] = response.to_dict()
        if statuses:
            result = {"values": result, "statuses": response.statuses}
    emit(result, fmt, target)


@main.command("get-historical-features")
@_store_arg
@click.argument("entity_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--feature", "-f", "features", multiple=True, required=True, help="A view:feature reference (repeatable).")
@click.option("--timestamp-field", help="The entity file's event time column (default: event_timestamp or the only timestamp).")
@click.option("--full-feature-names", is_flag=True, help="Name features view__feature.")
@_format_option(default="parquet", choices=FORMATS)
@_output
def get_historical_features(
    store: str, entity_file: str, features: tuple[str, ...], timestamp_field: str | None,
    full_feature_names: bool, fmt: str, output: str | None,
) -> None:
    """A point-in-time correct training set for the rows of ENTITY_FILE (Parquet or CSV).

    Example: featurelite get-historical-features shop.duckdb spine.parquet -f user_stats:spend_7d -o train.parquet

    --output is written whole or not at all, and may not be the store (or its .wal) or ENTITY_FILE.

    In Python: store.get_historical_features(entity_df, features)."""
    target = checked_output(output, store=store, inputs=[entity_file])
    with opened(store, read_only=True) as s, _errors():
        table = s.get_historical_features(
            entity_file, list(features), timestamp_field=timestamp_field, full_feature_names=full_feature_names
        )
    emit(table, fmt, target)


@main.command("list")
@_store_arg
@_format_option()
def list_(store: str, fmt: str) -> None:
    """Entities, feature views (with row counts and last event time), on-demand views and
    their featurizers, with their versions.

    In Python: store.list_entities(), store.list_feature_views(), store.list_on_demand_feature_views()."""
    with opened(store, read_only=True) as s, _errors():
        rows: list[dict[str, Any]] = []
        for ent in s.list_entities():
            rows.append({"kind": "entity", "name": ent.name, "version": ent.version, "details": ", ".join(ent.join_keys)})
        for view in s.list_feature_views():
            info = s.describe(view.name)
            rows.append({
                "kind": "feature_view", "name": view.name, "version": view.version,
                "details": f"{info['history_rows']} rows, {info['online_rows']} entities, last event {info['last_event']}",
                "history_rows": info["history_rows"], "online_rows": info["online_rows"], "last_event": info["last_event"],
                "features": view.features,
            })
            rows += _featurizer_rows(view.name, view.featurizers)
        for odfv in s.list_on_demand_feature_views():
            rows.append({"kind": "on_demand_feature_view", "name": odfv.name, "version": odfv.version,
                         "details": ", ".join(odfv.features), "features": odfv.features})
            rows += _featurizer_rows(odfv.name, odfv.featurizers)
    if fmt == "table":
        rows = [{k: r.get(k) for k in ("kind", "name", "version", "details")} for r in rows]
    emit(rows, fmt)


def _featurizer_rows(owner: str, featurizers: Any) -> list[dict[str, Any]]:
    rows = []
    for key, fz in featurizers.items():
        names = [key] if isinstance(key, str) else list(key)
        signature = ", ".join(f"{p}: {d}" for p, d in fz.inputs) + " -> " + ", ".join(fz.outputs)
        rows.append({"kind": "featurizer", "name": f"{owner}:{fz.name}", "version": fz.version,
                     "details": f"({signature}) computes {', '.join(names)}", "features": names})
    return rows


@main.command()
@_store_arg
@click.argument("name")
@_format_option()
def describe(store: str, name: str, fmt: str) -> None:
    """A feature view's definition, version, row counts and event time range, or an
    on-demand view's definition.

    In Python: store.describe(NAME)."""
    with opened(store, read_only=True) as s, _errors():
        # The Python call, for feature views and on-demand views alike (issue 10 #19: the
        # CLI once described on-demand views itself, and store.describe could not).
        info: dict[str, Any] = s.describe(name)
    emit(info if fmt == "json" else [{"field": k, "value": v} for k, v in info.items()], fmt)


@main.command("list-versions")
@_store_arg
@click.argument("name")
@_format_option()
def list_versions(store: str, name: str, fmt: str) -> None:
    """Every version of a definition ever applied, oldest first.

    In Python: store.list_versions(NAME)."""
    with opened(store, read_only=True) as s, _errors():
        versions = s.list_versions(name)
    if fmt == "table":
        versions = [{k: v for k, v in row.items() if k != "spec"} for row in versions]
    emit(versions, fmt)


@main.command("delete-feature-view")
@_store_arg
@click.argument("name")
def delete_feature_view(store: str, name: str) -> None:
    """Remove a feature view and all its data, or an on-demand view.

    In Python: store.delete_feature_view(NAME)."""
    with opened(store, read_only=False) as s, _errors():
        s.delete_feature_view(name)
    emit({"deleted": name}, "json")


@main.command()
@_store_arg
@click.argument("name", required=False)
@click.option("--examples", default=1000, show_default=True, type=click.IntRange(1, MAX_EXAMPLES),
              help="Generated rows per featurizer.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Seed of the generated inputs.")
@_format_option()
def verify(store: str, name: str | None, examples: int, seed: int, fmt: str) -> None:
    """Check every featurizer (or those of view NAME) gives the same bits in the batch and
    per-request paths. Exit code 1 when one does not.

    In Python: store.verify(NAME, examples=..., seed=...)."""
    with opened(store, read_only=True) as s, _errors():
        results = s.verify(name, examples=examples, seed=seed)
    rows = [
        {"view": r.view, "features": list(r.features), "featurizer": r.featurizer, "examples": r.examples, "ok": r.ok,
         "mismatch": None if r.ok else str(r.mismatch)}
        for r in results
    ]
    emit(rows, fmt)
    failed = [r for r in results if not r.ok]
    if failed:
        raise _Failure(f"{len(failed)} featurizer(s) differ between the batch and per-request paths: "
                       + "; ".join(str(r.mismatch) for r in failed))


@main.command()
@_store_arg
def checkpoint(store: str) -> None:
    """Fold the write-ahead log into the store file.

    In Python: store.checkpoint()."""
    with opened(store, read_only=False) as s, _errors():
        s.checkpoint()
    emit({"checkpoint": os.path.abspath(store)}, "json")


def _check_token(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A bearer token, or None for no auth. An empty token would turn auth off without a
    word (the server treats a falsy token as none), so it is refused, as is one no HTTP
    client could send (whitespace around it, control or non-ASCII characters)."""
    from_env = ctx.get_parameter_source("token") is click.core.ParameterSource.ENVIRONMENT
    if value is None and os.environ.get(TOKEN_ENV) is not None:
        # click treats an environment variable set to "" as not set at all: that is exactly
        # the silent "auth off" this check exists to refuse.
        value, from_env = os.environ[TOKEN_ENV], True
    if value is None:
        return None
    where = f"${TOKEN_ENV}" if from_env else "--token"
    fix = f"unset {TOKEN_ENV}" if from_env else "leave --token out"
    if not value.strip():
        raise click.BadParameter(f"it is empty, which would turn auth off; give a token, or {fix} to "
                                 "serve without auth", param_hint=f"'{where}'")
    if value != value.strip() or not all(" " < ch < "\x7f" for ch in value):
        raise click.BadParameter("a token must be printable ASCII without spaces (it travels in an "
                                 "HTTP Authorization header)", param_hint=f"'{where}'")
    return value


def _check_bind(host: str, port: int) -> None:
    """Fail early, with one line, when ``host:port`` cannot be listened on: a host that does
    not resolve is a usage error, an address this machine does not have (or a port in use
    or reserved) is exit 1. The probe socket is closed before the server binds."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise click.BadParameter(f"{host!r} is not an address or a host name this machine can resolve ({exc})",
                                 param_hint="'--host'") from None
    family, kind, proto, _, address = found[0]
    with socket.socket(family, kind, proto) as probe:
        # uvicorn sets SO_REUSEADDR too: a port left in TIME_WAIT is free to it, so to the probe.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            hint = " (is the port in use?)" if exc.errno == errno.EADDRINUSE else ""
            raise _Failure(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None


@main.command()
@_store_arg
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=6566, show_default=True, type=click.IntRange(1, 65535),
              help="Port to bind (1-65535).")
@click.option("--token", envvar=TOKEN_ENV, callback=_check_token,
              help="Bearer token every endpoint but /health requires (default: $FEATURELITE_TOKEN; "
              "none: no auth; an empty token is refused).")
@click.option("--max-body", default=16 * 1024 * 1024, show_default=True, type=click.IntRange(min=1),
              help="Largest request body, in bytes.")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--header-timeout", default=10.0, show_default=True, type=click.FloatRange(min=0.1, max=3600),
              help="Seconds a request's headers may take to arrive (slow clients are cut off with 408).")
@click.option("--body-timeout", default=60.0, show_default=True, type=click.FloatRange(min=0.1, max=3600),
              help="Seconds a request's body may take to arrive after its headers.")
@click.option("--max-connections", type=click.IntRange(min=1),
              help="Open connections at most (default: what the open-file limit allows, up to 4096).")
def serve(store: str, host: str, port: int, token: str | None, max_body: int, log_level: str,
          header_timeout: float, body_timeout: float, max_connections: int | None) -> None:
    """Serve the store over HTTP: online features, pushes, health and metrics.

    The server holds the store file for writing while it runs. Needs the server extra:
    pip install 'featurelite[server]'."""
    # Port 0 ("any free port") is refused by the range above: the server would listen on a
    # port nobody is told about, while its note beside the store advertises port 0.
    try:
        # import_module, not `from . import server`: that form finds a server module that
        # was imported before even when its imports fail now (or a test blocks it).
        server = importlib.import_module(".server", __package__)
    except ImportError as exc:
        raise _Failure(f"`featurelite serve` needs the server extra ({exc.name} is missing); "
                       "pip install 'featurelite[server]'") from None
    _check_bind(host, port)
    with _errors():
        try:
            server.run(store, host=host, port=port, token=token, max_body=max_body, log_level=log_level,
                       header_timeout=header_timeout, body_timeout=body_timeout, max_connections=max_connections)
        except SystemExit as exc:
            # uvicorn exits (code 3) when it cannot start, after logging why; the probe above
            # makes that rare (a race for the port). Say it in the CLI's one line.
            if exc.code in (None, 0):
                raise
            raise _Failure(f"the server could not start on {host}:{port} (uvicorn exited with {exc.code})") from None


if __name__ == "__main__":  # pragma: no cover
    main()
