"""The DuckDB connection: opening the file, and translating DuckDB's errors into
featurelite's in one place.

Every DuckDB error that leaves this module's helpers is a :class:`StoreError` (or one of
its subclasses) raised ``from`` the DuckDB exception. A ``duckdb.FatalException`` (for
example a CHECKPOINT that finds the disk full) invalidates the DuckDB database in this
process: every later statement on that connection fails. This module remembers such
connections (:func:`invalidated`) so the Store can close itself and say why.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import duckdb
import pyarrow as pa

from .errors import StoreError, StoreFormatError, StoreLockedError

try:  # POSIX: DuckDB locks the file with fcntl record locks, which lockf can probe.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "checkpoint", "claim_path", "connect", "damaged", "fetch_arrow", "fold_copy", "invalidated", "path_of", "quote",
    "release_path",
    "run", "transaction", "translating", "untold",
]

#: DuckDB writes this at byte 8 of every database file.
_DUCKDB_MAGIC = b"DUCK"
#: A DuckDB file starts with three 4 KiB header blocks; anything shorter is damaged.
_MIN_DUCKDB_FILE = 3 * 4096

#: Connections DuckDB invalidated with a fatal error, with the error's text.
_INVALIDATED: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, str] = weakref.WeakKeyDictionary()
#: The store path of every connection :func:`connect` opened (for error messages).
_PATHS: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, str] = weakref.WeakKeyDictionary()


def quote(name: str) -> str:
    """A SQL identifier, double-quoted."""
    return '"' + name.replace('"', '""') + '"'


def _is_duckdb_file(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(12)[8:12] == _DUCKDB_MAGIC


def _held_by_another_process(path: str, *, read_only: bool) -> bool | None:
    """Whether another process holds the OS lock DuckDB takes on ``path`` (exclusive for a
    writer, shared for readers), so that opening it the way asked would conflict; None
    where this cannot be probed.

    DuckDB reports a lock conflict and a damaged file with the same exception type
    (IOException), so instead of reading its message the lock itself is probed: DuckDB
    locks the whole file with fcntl record locks, and ``lockf`` takes the same kind of
    lock without waiting. Our probe lock is released before the descriptor is closed.
    (Closing any descriptor drops every fcntl lock this process holds on the file; none is
    held here, because DuckDB has just failed to open it and the Store allows one open
    per file and process.)
    """
    if fcntl is None:  # pragma: no cover - Windows
        return None
    try:
        fd = os.open(path, os.O_RDONLY if read_only else os.O_RDWR)
    except OSError:
        return None
    try:
        try:
            fcntl.lockf(fd, (fcntl.LOCK_SH if read_only else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                return True
            return None
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def damaged(path: str, exc: BaseException, *, opening: bool = False) -> StoreFormatError:
    """The error for a store file that exists but cannot be read as one (truncated, bit
    rot, rows featurelite did not write). ``opening``: DuckDB itself refused the file,
    which a file from a newer DuckDB storage format also makes it do (DuckDB's own text,
    quoted in the message, tells the two apart for the reader)."""
    newer = " (or was written by a newer DuckDB than this one)" if opening else ""
    return StoreFormatError(
        f"store file {path!r} is damaged{newer} and cannot be used ({type(exc).__name__}: {exc}); "
        "restore it from a copy or a backup",
        path=path,
    )


def connect(path: str, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Open ``path`` with DuckDB, or raise a featurelite error saying why not."""
    exists = False
    if path != ":memory:":
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:  # DuckDB would fail with a raw C++ std::bad_cast
            raise StoreError(
                f"store path {path!r} is not valid UTF-8, which DuckDB cannot open; rename the file or folder",
                path=path,
            ) from None
        if os.path.isdir(path):
            raise StoreError(f"store path {path!r} is a folder; pass a file path", path=path)
        exists = os.path.exists(path)
        if read_only and not exists:
            raise StoreError(
                f"store file {path!r} does not exist; read-only opening needs an existing store",
                path=path,
            )
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise StoreError(f"folder {folder!r} for store file {path!r} does not exist; create it first", path=path)
        if exists and os.path.getsize(path) == 0 and not read_only:
            # An empty file (from `touch` or a temp-file helper) holds nothing; DuckDB refuses
            # it, so start the store afresh in its place.
            os.remove(path)
            exists = False
        elif exists and not os.access(path, os.R_OK if read_only else os.R_OK | os.W_OK):
            raise StoreError(
                f"store file {path!r} cannot be {'read' if read_only else 'written'}; check its permissions", path=path
            )
        elif exists and not _is_duckdb_file(path):
            raise StoreFormatError(
                f"file {path!r} is not a DuckDB database, so it cannot be a featurelite store; "
                "pass a new path or a featurelite store file",
                path=path,
            )
        elif exists and os.path.getsize(path) < _MIN_DUCKDB_FILE:
            raise StoreFormatError(
                f"store file {path!r} is damaged: it is cut short ({os.path.getsize(path)} bytes, shorter than "
                "a DuckDB file's headers); restore it from a copy or a backup",
                path=path,
            )
    try:
        con = duckdb.connect(path, read_only=read_only)
    except duckdb.ConnectionException as exc:
        # DuckDB refuses a second connection to a file this process already has open
        # through DuckDB with another configuration (read-only or not).
        raise StoreLockedError(
            f"store file {path!r} is already open in this process through another DuckDB connection; close it first",
            path=path,
        ) from exc
    except duckdb.Error as exc:
        if not exists:
            raise StoreError(f"could not create store file {path!r}: {exc}", path=path) from exc
        if _held_by_another_process(path, read_only=read_only) is not False:
            raise StoreLockedError(
                f"store file {path!r} is held by another process (one process may write a store "
                "at a time); close that process and try again",
                path=path,
            ) from exc
        raise damaged(path, exc, opening=True) from exc
    # A library never draws on its caller's terminal: DuckDB prints a progress bar to stdout
    # for a query that runs over two seconds (the setting carries to the cursors).
    con.execute("SET enable_progress_bar = false")
    _PATHS[con] = path
    return con


def fold_copy(path: str) -> None:
    """Fold the write-ahead log beside a copied store file into it (open, CHECKPOINT,
    close): the file alone then holds everything. OSError if DuckDB cannot."""
    try:
        con = duckdb.connect(path)
        try:
            con.execute("CHECKPOINT").fetchall()
        finally:
            con.close()
    except duckdb.Error as exc:
        raise OSError(f"could not fold the write-ahead log into the copy: {exc}") from exc


def path_of(con: duckdb.DuckDBPyConnection) -> str:
    """The store path ``con`` was opened on (":memory:" when not opened by :func:`connect`)."""
    return _PATHS.get(con, ":memory:")


def invalidated(con: duckdb.DuckDBPyConnection) -> str | None:
    """The fatal DuckDB error that made ``con`` unusable, or None while it is usable."""
    return _INVALIDATED.get(con) if _INVALIDATED else None


def _fatal(
    con: duckdb.DuckDBPyConnection, exc: duckdb.FatalException, what: str, *, committed: bool | None
) -> StoreError:
    """Remember that DuckDB invalidated ``con`` and return the error to raise."""
    _INVALIDATED[con] = str(exc)
    path = path_of(con)
    outcome = {True: "the change was committed; ", False: "nothing was written; ", None: ""}[committed]
    return StoreError(
        f"{what} failed with a fatal DuckDB error ({exc}); {outcome}DuckDB cannot use store file {path!r} "
        "any more in this process, so the store is closed: free disk space if it is full and open it again",
        path=path,
        committed=committed,
    )


#: Attribute set on the StoreError :func:`run` / :func:`fetch_arrow` raise for a DuckDB
#: error, so that :func:`translating` around them can say what was being done instead.
_UNTOLD = "_featurelite_untold"
#: Attribute :func:`transaction` sets on an error that made it roll back, so that
#: :func:`translating` can say ``committed=False`` without every caller passing it.
_ROLLED_BACK = "_featurelite_rolled_back"


def _describe(exc: duckdb.Error, what: str, details: dict[str, Any]) -> StoreError:
    """The StoreError for DuckDB error ``exc`` raised while doing ``what``.

    Inside a transaction DuckDB 2 re-raises a failed statement as "transaction is
    aborted"; the message names the first error in the chain that is not that.
    """
    cause: BaseException = exc
    while isinstance(cause, duckdb.TransactionException) and (cause.__cause__ or cause.__context__):
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    if isinstance(exc, duckdb.IOException):
        return StoreError(
            f"{what} failed: the store file could not be read or written ({cause}); the disk may be "
            "full or the file damaged",
            **details,
        )
    return StoreError(f"{what} failed: {cause}", **details)


def _statement_error(con: duckdb.DuckDBPyConnection, exc: duckdb.Error, what: str) -> StoreError:
    """A failed statement's error: fatal ones invalidate ``con``; others are marked so
    that :func:`translating` (when the caller used it) can say what was being done."""
    if isinstance(exc, duckdb.FatalException):
        return _fatal(con, exc, what, committed=None)
    error = _describe(exc, what, {"path": path_of(con)})
    setattr(error, _UNTOLD, True)
    return error


def untold(exc: BaseException) -> duckdb.Error | None:
    """The DuckDB error behind ``exc`` when ``exc`` is a DuckDB error, or the StoreError
    :func:`run` / :func:`fetch_arrow` made of one (that no caller has described yet)."""
    if isinstance(exc, duckdb.Error):
        return exc
    if getattr(exc, _UNTOLD, False) and isinstance(exc.__cause__, duckdb.Error):
        return exc.__cause__
    return None


def run(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None
) -> list[tuple[Any, ...]]:
    """Run one statement to completion and return its rows.

    DuckDB refuses new work on a connection while a result is partly read, so every
    statement is drained here rather than left open. A DuckDB error becomes a StoreError
    here, so none escapes raw even where no caller translates it; :func:`translating`
    around the call replaces it by one that says what was being done. A fatal error
    also marks the connection invalidated (see :func:`invalidated`).
    """
    try:
        cursor = con.execute(sql) if params is None else con.execute(sql, params)
        return cursor.fetchall()
    except duckdb.Error as exc:
        raise _statement_error(con, exc, "a statement on the store file") from exc


def fetch_arrow(
    con: duckdb.DuckDBPyConnection, sql: str, *, over: pa.Table | None = None, name: str = "",
    params: Mapping[str, Any] | None = None,
) -> pa.Table:
    """Run a query to an Arrow table, with ``params`` bound; or, with ``over``, a query
    that sees that Arrow table as ``name`` (a relation, not con.register(), which pins the
    table until the transaction ends; DuckDB's relation API binds no parameters)."""
    try:
        relation: duckdb.DuckDBPyRelation | None
        if over is None:
            relation = con.sql(sql) if params is None else con.sql(sql, params=dict(params))
        elif params is None:
            relation = con.from_arrow(over).query(name, sql)
        else:
            raise AssertionError("fetch_arrow binds parameters only without `over`")
        if relation is None:
            raise AssertionError(f"statement returned no relation: {sql[:80]}")
        return relation.to_arrow_table()
    except duckdb.Error as exc:
        raise _statement_error(con, exc, "a query of the store file") from exc


def checkpoint(con: duckdb.DuckDBPyConnection, what: str, *, committed: bool | None) -> None:
    """Fold DuckDB's write-ahead log into the file (CHECKPOINT) after ``what``, whose
    change is ``committed`` (True) or that had none of its own (None).

    A CHECKPOINT that cannot write (a full disk) is fatal to DuckDB: the connection is
    invalidated and the error says so. Every committed write stays in the write-ahead log
    and is replayed when the store is opened again.
    """
    try:
        con.execute("CHECKPOINT").fetchall()
    except duckdb.FatalException as exc:
        raise _fatal(con, exc, f"{what}: writing the checkpoint", committed=committed) from exc
    except duckdb.Error as exc:
        raise StoreError(
            f"{what}: writing the checkpoint failed ({exc}); the committed change stays in the "
            "write-ahead log and is folded in by a later checkpoint",
            path=path_of(con),
            committed=committed,
        ) from exc


@contextmanager
def translating(what: str, **details: Any) -> Iterator[None]:
    """Turn a DuckDB error raised inside into a StoreError saying what failed.

    Inside a transaction DuckDB 2 re-raises a failed statement as "transaction is
    aborted"; the message names the first error in the chain that is not that.
    Errors :func:`run` and :func:`fetch_arrow` made of a DuckDB error are described
    again with ``what``; other featurelite errors (including fatal ones, and those
    :func:`transaction` raises at COMMIT) pass through unchanged.
    """
    try:
        yield
    except (duckdb.Error, StoreError) as exc:
        cause = untold(exc)
        if cause is None:
            raise
        if getattr(exc, _ROLLED_BACK, False):
            details.setdefault("committed", False)
        raise _describe(cause, what, details) from cause


class Outcome:
    """How a :func:`transaction` ended: ``committed`` is None while it runs (and stays
    None when a fatal error at COMMIT leaves it unknown)."""

    committed: bool | None = None


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[Outcome]:
    """BEGIN ... COMMIT, rolling back on any exception so the store is left unchanged.

    A COMMIT that fails raises StoreError: ``committed=False`` when DuckDB rolled it
    back, ``committed=None`` when the failure was fatal (DuckDB may have written the
    change to its write-ahead log before it failed; reopening shows which).
    """
    outcome = Outcome()
    run(con, "BEGIN TRANSACTION")
    try:
        yield outcome
    except BaseException as exc:
        outcome.committed = False
        if untold(exc) is not None:
            # Tell translating() (around this) that the change was not committed.
            setattr(exc, _ROLLED_BACK, True)
        # A connection DuckDB invalidated cannot roll back; it never committed either.
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK").fetchall()
        raise
    try:
        con.execute("COMMIT").fetchall()
    except duckdb.FatalException as exc:
        raise _fatal(con, exc, "committing the transaction", committed=None) from exc
    except duckdb.Error as exc:
        # DuckDB has usually rolled back already; the COMMIT's error is the one to report.
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK").fetchall()
        outcome.committed = False
        raise StoreError(
            f"commit failed, nothing was written: {exc}", path=path_of(con), committed=False
        ) from exc
    outcome.committed = True


#: Files open in this process. Each Store keeps its own in-memory online index, so two
#: Stores on one file would serve each other stale values; the second open is refused.
_OPEN_FILES: dict[str, weakref.ref[object]] = {}
_OPEN_FILES_LOCK = threading.Lock()


def claim_path(path: str, owner: object) -> str | None:
    """Register ``owner`` (an object with a ``closed`` property) as the one user of
    ``path`` in this process; raise StoreLockedError if an open one holds it already."""
    if path == ":memory:":
        return None
    key = os.path.realpath(path)
    with _OPEN_FILES_LOCK:
        holder = _OPEN_FILES.get(key)
        other = holder() if holder is not None else None
        if other is not None and not getattr(other, "closed", True):
            raise StoreLockedError(
                f"store file {path!r} is already open in this process; use that Store "
                "object (or close it first)",
                path=path,
            )
        _OPEN_FILES[key] = weakref.ref(owner)
    return key


def release_path(key: str | None, owner: object) -> None:
    """Undo :func:`claim_path`."""
    if key is None:
        return
    with _OPEN_FILES_LOCK:
        holder = _OPEN_FILES.get(key)
        if holder is not None and holder() in (owner, None):
            del _OPEN_FILES[key]
