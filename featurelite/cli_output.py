"""What a command shows: its result on stdout or in an ``--output`` file, in a format, and
a failure as one ``Error:`` line on stderr (exit code 1).

Results are JSON by default (strict: see :mod:`featurelite.wire`), ``table`` for people,
``csv`` / ``parquet`` where rows come back. An output file is checked before any work is
done (never the store's own files or the command's inputs) and written whole or not at
all.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any, BinaryIO

import click
import pyarrow as pa

from . import wire
from .reports import ConsistencyReport, FreshnessReport
from .results import OnlineResponse

__all__ = ["CHECK_FAILED", "CommandFailure", "checked_output", "consistency_text", "duration_text", "emit",
           "emit_text", "freshness_rows", "one_line", "online_rows", "table_text", "to_json", "with_status_columns",
           "write_atomically"]

#: The exit code of a check that ran and failed (``freshness``: a view breaks its SLO;
#: ``consistency``: a feature below ``--min-consistency``), apart from 1 (an error) and 2
#: (a usage error).
CHECK_FAILED = 3


def one_line(message: str) -> str:
    """A message as one line: the CLI's contract is one ``Error:`` line per failure, and a
    message may quote text with line breaks (a value, a DuckDB error)."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip()) or message.strip()


class CommandFailure(click.ClickException):
    """A featurelite error as one line on stderr, exit code 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {one_line(self.message)}", err=True)



def to_json(value: Any) -> str:
    """Strict JSON text of a command's result: every value as :func:`featurelite.wire.plain`
    gives it (columns of an entity file come back in a training set whatever their type).
    Non-ASCII text stays readable unless the text holds a lone surrogate (see
    :func:`featurelite.wire.encode`)."""
    return wire.dumps(wire.plain(value))


def table_text(rows: list[dict[str, Any]]) -> str:
    """Rows (dicts with the same keys) as a plain-text table with a header line."""
    if not rows:
        return "(no rows)"
    header = list(rows[0])
    cells = [[_cell(r.get(h)) for h in header] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (datetime, date)):
        return str(wire.plain(value))
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
        text = table_text([r if isinstance(r, dict) else {"value": r} for r in rows])
    else:
        text = to_json(result)
    _write_text(text, output)


def emit_text(text: str, output: str | None = None) -> None:
    """Write text a command composed itself (several tables, say), as :func:`emit` would."""
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
            raise CommandFailure(f"CSV cannot hold the column(s) {', '.join(flat)}; use --format parquet or json")
        try:
            if output is None:
                _to_stdout(lambda stream: pcsv.write_csv(table, stream))
            else:
                write_atomically(output, lambda file: pcsv.write_csv(table, file))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise CommandFailure(f"the result cannot be written as CSV ({exc}); use --format parquet or json") from None
        return
    rows = table.to_pylist()
    _write_text(table_text(rows) if fmt == "table" else to_json(rows), output)


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
        raise CommandFailure(f"cannot write to standard output: {exc.strerror or exc}") from None


def online_rows(response: OnlineResponse, statuses: bool) -> list[dict[str, Any]]:
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


def duration_text(seconds: float) -> str:
    """A duration for people: ``850ms``, ``42s``, ``12m 5s``, ``3h 20m``, ``2d 4h``."""
    if seconds < 0:
        return "-" + duration_text(-seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    whole = int(seconds)
    for unit, size, smaller, smaller_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if whole >= size:
            rest = (whole % size) // smaller_size
            return f"{whole // size}{unit}" + (f" {rest}{smaller}" if rest else "")
    return f"{whole}s"  # pragma: no cover - under a minute is handled above


def _seconds(value: float | None) -> str | None:
    return None if value is None else duration_text(value)


def freshness_rows(report: FreshnessReport) -> list[dict[str, Any]]:
    """Rows for ``featurelite freshness --format table``: one per view."""
    return [
        {"view": v.view, "slo": _seconds(None if v.slo is None else v.slo.total_seconds()),
         "last_event": v.last_event,
         "newest_age": _seconds(None if v.newest_age is None else v.newest_age.total_seconds()),
         "breached": "BREACHED" if v.breached else ("ok" if v.slo is not None else ""),
         "served": v.served_ages.count, "served_p50": _seconds(v.served_ages.p50),
         "served_p99": _seconds(v.served_ages.p99), "served_stale": v.served_stale,
         "push_to_visible_p50": _seconds(v.push_to_visible.p50)}
        for v in report.views
    ]


def consistency_text(report: ConsistencyReport) -> str:
    """``featurelite consistency --format table``: a line for the replay, a table of the
    features, and one of the differences shown."""
    head = (f"{report.kind.replace('_', ' ')} {report.target}: {report.requests} request(s), {report.rows} row(s) "
            f"replayed; consistency {report.consistency:.4%}")
    features = [
        {"feature": f.feature, "compared": f.compared, "equal": f.equal, "different": f.different,
         "consistency": f"{f.consistency:.4%}", "reasons": ", ".join(f"{k}: {n}" for k, n in f.reasons.items())}
        for f in report.features
    ]
    text = head + "\n\n" + table_text(features)
    differences = [
        {"feature": f.feature, "request_time": d.request_time, "keys": dict(d.keys), "served": d.served,
         "training": d.training, "reason": d.reason, "detail": d.detail}
        for f in report.features for d in f.differences
    ]
    if differences:
        text += "\n\nfirst differences:\n" + table_text(differences)
    return text


def with_status_columns(table: pa.Table, response: OnlineResponse) -> pa.Table:
    """The values table with a ``FEATURE:status`` text column after each feature."""
    columns: dict[str, pa.Array] = {}
    for name in table.column_names:
        columns[name] = table.column(name)
        if name in response.statuses:
            columns[f"{name}:status"] = pa.array(response.statuses[name], pa.string())
    return pa.table(columns)


# -- output files --------------------------------------------------------------------


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


def checked_output(output: str | None, *, store: str | None, inputs: Sequence[str] = ()) -> str | None:
    """The file a command will write its result to, checked before any work is done.

    Refused (usage error, exit 2): the store file, its ``.wal`` or server note, through any
    spelling (relative, ``..``, a symbolic or hard link), and the command's own input files
    (overwriting the entity file a training set was built from loses the labels; it is
    always a slip). A folder that does not exist or cannot be written is exit 1. Returns
    the path with links resolved, so that replacing it replaces the file a link points to,
    not the link. ``store`` is None for a command working on a server (its files are not
    this machine's to protect)."""
    if output is None:
        return None
    if output == "":
        raise click.BadParameter("is empty; give a file name", param_hint="'--output'")
    for owned in _store_files(store) if store is not None else ():
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
        raise CommandFailure(f"cannot write {output!r}: the folder {os.path.dirname(output) or '.'!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CommandFailure(
            f"cannot write {output!r}: no permission to create files in {os.path.dirname(output) or '.'!r}"
        )
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
        raise CommandFailure(f"cannot write {target!r}: {exc.strerror or exc}") from None
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
        raise CommandFailure(f"cannot write {target!r}: {exc.strerror or exc}; nothing was written") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
