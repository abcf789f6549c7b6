"""The DuckDB connection: opening the file, and translating DuckDB's errors into
featurelite's in one place."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import duckdb
import pyarrow as pa

from .errors import FeatureliteError, StoreError, StoreFormatError, StoreLockedError

__all__ = ["claim_path", "connect", "fetch_arrow", "quote", "release_path", "run", "transaction", "translating"]

#: DuckDB writes this at byte 8 of every database file.
_DUCKDB_MAGIC = b"DUCK"
#: A DuckDB file starts with three 4 KiB header blocks; anything shorter is damaged.
_MIN_DUCKDB_FILE = 3 * 4096


def quote(name: str) -> str:
    """A SQL identifier, double-quoted."""
    return '"' + name.replace('"', '""') + '"'


def _is_duckdb_file(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(12)[8:12] == _DUCKDB_MAGIC


def connect(path: str, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Open ``path`` with DuckDB, or raise a featurelite error saying why not."""
    if path != ":memory:":
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
        elif exists and not os.access(path, os.R_OK if read_only else os.R_OK | os.W_OK):
            raise StoreError(f"store file {path!r} cannot be {'read' if read_only else 'written'}; check its permissions", path=path)
        elif exists and (not _is_duckdb_file(path) or os.path.getsize(path) < _MIN_DUCKDB_FILE):
            raise StoreFormatError(
                f"file {path!r} is not a DuckDB database, so it cannot be a featurelite store; "
                "pass a new path or a featurelite store file",
                path=path,
            )
    try:
        return duckdb.connect(path, read_only=read_only)
    except duckdb.IOException as exc:
        if path != ":memory:" and os.path.exists(path) and os.path.getsize(path) >= _MIN_DUCKDB_FILE:
            # A readable DuckDB file that DuckDB cannot open: the OS file lock DuckDB takes
            # (exclusive for a writer, shared for readers) is held by another process.
            raise StoreLockedError(
                f"store file {path!r} is held by another process (one process may write a store "
                "at a time); close that process and try again",
                path=path,
            ) from exc
        raise StoreError(f"could not open store file {path!r}: {exc}", path=path) from exc
    except duckdb.Error as exc:
        raise StoreError(f"could not open store file {path!r}: {exc}", path=path) from exc


def run(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    """Run one statement to completion and return its rows.

    DuckDB refuses new work on a connection while a result is partly read, so every
    statement is drained here rather than left open.
    """
    cursor = con.execute(sql) if params is None else con.execute(sql, params)
    return cursor.fetchall()


def fetch_arrow(con: duckdb.DuckDBPyConnection, sql: str, *, over: pa.Table | None = None, name: str = "") -> pa.Table:
    """Run a query to an Arrow table; with ``over``, the query sees that Arrow table as
    ``name`` (a relation, not con.register(), which pins the table until the
    transaction ends)."""
    relation = con.sql(sql) if over is None else con.from_arrow(over).query(name, sql)
    if relation is None:
        raise AssertionError(f"statement returned no relation: {sql[:80]}")
    return relation.to_arrow_table()


@contextmanager
def translating(what: str, **details: Any) -> Iterator[None]:
    """Turn a DuckDB error raised inside into a FeatureliteError saying what failed.

    Inside a transaction DuckDB 2 re-raises a failed statement as "transaction is
    aborted"; the message names the first error in the chain that is not that.
    """
    try:
        yield
    except duckdb.Error as exc:
        cause: BaseException = exc
        while isinstance(cause, duckdb.TransactionException) and (cause.__cause__ or cause.__context__):
            cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
        raise FeatureliteError(f"{what} failed: {cause}", **details) from exc


class Outcome:
    """How a :func:`transaction` ended: ``committed`` is None while it runs."""

    committed: bool | None = None


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[Outcome]:
    """BEGIN ... COMMIT, rolling back on any exception so the store is left unchanged."""
    outcome = Outcome()
    run(con, "BEGIN TRANSACTION")
    try:
        yield outcome
    except BaseException:
        run(con, "ROLLBACK")
        outcome.committed = False
        raise
    try:
        run(con, "COMMIT")
    except duckdb.Error as exc:
        try:
            run(con, "ROLLBACK")
        except duckdb.Error:
            pass
        outcome.committed = False
        raise FeatureliteError(f"commit failed, nothing was written: {exc}") from exc
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
