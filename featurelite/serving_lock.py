"""The note a running ``featurelite serve`` leaves beside its store file, so other
commands can say the store is held by a server, and where to reach it.

The note is ``<store>.serve.json`` with the server's pid and URL. It is advisory: DuckDB's
own file lock is what keeps a second writer out; the note only makes the error useful.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["holding", "server_holding"]


def _note(store: str | os.PathLike[str]) -> Path:
    return Path(f"{os.fspath(store)}.serve.json")


def server_holding(store: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``{"pid": ..., "url": ...}`` of the live server holding ``store``, or None."""
    try:
        info: dict[str, Any] = json.loads(_note(store).read_text())
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)  # signal 0: is the process alive?
    except ProcessLookupError:
        return None  # a server that died without cleaning up
    except PermissionError:
        pass  # alive, owned by someone else
    return info


@contextlib.contextmanager
def holding(store: str | os.PathLike[str], url: str) -> Iterator[None]:
    """Leave the note while the body runs (the server's lifetime)."""
    note = _note(store)
    note.write_text(json.dumps({"pid": os.getpid(), "url": url}))
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            note.unlink()
