"""The life of a store's DuckDB connection: opening the file (one Store per file per
process), read-only checks, closing, and closing itself after a fatal DuckDB error."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import duckdb

from .db import claim_path, connect, damaged, invalidated, release_path, untold
from .errors import FeatureliteError, ReadOnlyError, StoreClosedError, StoreError

__all__ = ["StoreConnection"]


class StoreConnection:
    """One store file's connection, and why it closed if it did.

    ``owner`` (the Store) is registered as the file's one user in this process; it must
    have a ``closed`` property. ``on_shut`` runs when the connection goes (to drop what was
    read from it).
    """

    def __init__(self, path: str, owner: object, *, read_only: bool, on_shut: Callable[[], None]) -> None:
        self.path = path
        self.read_only = read_only
        self.lock = threading.RLock()
        self._owner = owner
        self._on_shut = on_shut
        #: Why the connection closed itself (a fatal DuckDB error), or None.
        self._closed_reason: str | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._file_key = claim_path(path, owner)
        try:
            self._con = connect(path, read_only=read_only)
        except BaseException:
            release_path(self._file_key, owner)
            raise
        #: The store file, open for reading as long as the connection is: copies read
        #: through it. (Closing any descriptor of a file drops every POSIX lock this process
        #: holds on it, DuckDB's among them: the file must never be opened and closed again
        #: while DuckDB holds it.)
        self._file: int | None = None
        if path != ":memory:":
            try:
                self._file = os.open(path, os.O_RDONLY)
            except OSError:
                self._file = None  # copies say so when asked for

    @property
    def closed(self) -> bool:
        return self._con is None

    def get(self) -> duckdb.DuckDBPyConnection:
        """The open connection; StoreClosedError once closed."""
        con = self._con
        if con is not None and invalidated(con) is not None:  # a fatal DuckDB error in another call
            self.shut_if_invalidated()
            con = self._con
        if con is None:
            why = f" after a fatal DuckDB error ({self._closed_reason})" if self._closed_reason else ""
            raise StoreClosedError(
                f"store {self.path!r} was closed{why}; open it again with featurelite.open", path=self.path
            )
        return con

    def writable(self) -> duckdb.DuckDBPyConnection:
        """The open connection, if the store may be written; ReadOnlyError if not."""
        con = self.get()
        if self.read_only:
            raise ReadOnlyError(
                f"store {self.path!r} is open read-only; open it with read_only=False to write", path=self.path
            )
        return con

    def shut(self, reason: str | None) -> None:
        """Close the connection and release the file, whatever state DuckDB is in;
        ``reason`` (a fatal DuckDB error) is kept to say why the store is closed."""
        con, self._con = self._con, None
        self._on_shut()
        if reason is not None:
            self._closed_reason = reason
        try:
            if con is not None:
                con.close()
        except duckdb.Error:
            pass  # an invalidated database may fail to close; its handles are released all the same
        finally:
            if self._file is not None:  # after DuckDB let go of the file: no lock left to lose
                with contextlib.suppress(OSError):
                    os.close(self._file)
                self._file = None
            release_path(self._file_key, self._owner)

    def copy_file(self, target: str) -> None:
        """Copy the store file, as it is on disk now, to ``target`` (created; OSError if it
        cannot be), through the descriptor held open since the store was opened."""
        if self._file is None:
            raise OSError(f"the store file {self.path!r} is not open for copying")
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            offset, chunk = 0, 8 * 1024 * 1024
            while True:
                data = os.pread(self._file, chunk, offset)
                if not data:
                    break
                view = memoryview(data)
                while view:
                    view = view[os.write(out, view):]
                offset += len(data)
            os.fsync(out)
        finally:
            os.close(out)

    def shut_if_invalidated(self) -> None:
        """Close if a fatal DuckDB error invalidated the connection (after which every
        statement fails): later calls then raise StoreClosedError, and the file is
        released so it can be opened again."""
        con = self._con
        if con is not None:
            reason = invalidated(con)
            if reason is not None:
                self.shut(reason)

    @contextmanager
    def opening(self) -> Iterator[None]:
        """Around reading the store's tables at open: on any error, close and release the
        file; a DuckDB error there means the file is damaged, and says so."""
        try:
            yield
        except BaseException as exc:
            self.shut(None)
            cause = untold(exc)
            if cause is not None:
                # The file opened, but its tables cannot be read as a store's: the header
                # was fine and the blocks behind it are truncated, fail their checksums, or
                # are missing (a table dropped outside featurelite).
                raise damaged(self.path, cause) from cause
            raise

    def close(self, last_write: Callable[[duckdb.DuckDBPyConnection], None]) -> None:
        """Run ``last_write`` (unless read-only or DuckDB invalidated the connection) and
        close. Never raises a featurelite error: a failed last write is given up, and the
        file is released regardless."""
        with self.lock:
            con = self._con
            if con is None:
                return
            try:
                if not self.read_only and invalidated(con) is None:
                    # A failed last write is given up: what it would have written stays to be
                    # done on the next open.
                    with contextlib.suppress(FeatureliteError):
                        last_write(con)
            finally:
                self.shut(invalidated(con))

    @contextmanager
    def closing_if_fatal(self) -> Iterator[None]:
        """Around a write: if it failed because DuckDB invalidated the connection, close
        (see :meth:`shut_if_invalidated`) before the error propagates."""
        try:
            yield
        except StoreError:
            self.shut_if_invalidated()
            raise
