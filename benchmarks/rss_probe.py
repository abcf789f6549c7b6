"""RSS growth over the first online read, in a fresh process (``python -m
benchmarks.rss_probe WARM_STORE STORE``): a first read of ``WARM_STORE`` imports and warms
everything, then the resident set size is read before and after the first read of
``STORE``, together with the memory DuckDB's buffer manager reports. Prints JSON.

A fresh process keeps memory freed by earlier workloads (and not returned to the OS) out
of the number."""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import featurelite as fl

from .config import FEATURE_REFS, KEY
from .machine import rss_bytes
from .measure import stopwatch

__all__ = ["duckdb_memory", "first_read", "main"]


def first_read(store: fl.Store) -> fl.OnlineResponse:
    """The read that builds a view's online index."""
    return store.get_online_features([{KEY: 0}], list(FEATURE_REFS))


def duckdb_memory(store: fl.Store) -> int:
    """Bytes DuckDB's buffer manager holds for this store (cached table blocks and the like)."""
    ((used,),) = store.con.execute("SELECT sum(memory_usage_bytes)::BIGINT FROM duckdb_memory()").fetchall()
    return int(used or 0)


def main(argv: list[str]) -> int:
    warm, path = (Path(p) for p in argv)
    with fl.open(warm, read_only=True) as store:
        first_read(store)
    with fl.open(path, read_only=True) as store:
        gc.collect()
        duckdb_before, before, watch = duckdb_memory(store), rss_bytes(), stopwatch()
        first_read(store)
        seconds, after, duckdb_after = watch(), rss_bytes(), duckdb_memory(store)
    print(
        json.dumps(
            {
                "rss_before": before,
                "rss_after": after,
                "duckdb_before": duckdb_before,
                "duckdb_after": duckdb_after,
                "first_read_s": seconds,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
