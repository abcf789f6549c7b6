"""Build a featurelite store from a Parquet history in a fresh process and report its
footprint: ``python -m benchmarks.footprint STORE HISTORY.parquet [--arrow]``.

Reports the ingest's seconds (after a warm-up on the first 1% of the rows, in a scratch
store in memory), the process's peak resident set (``VmHWM``: imports, the ingest and the
close that checkpoints the file) and the bytes on disk once the store is closed, as JSON.
The process does nothing else, so its peak is the ingest's. By default the ingest streams
from the Parquet file; with ``--arrow`` the file is first read into an Arrow table
(untimed) and the table is ingested: the issue's "rows/s from Arrow" (its peak then
includes the table)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["main", "store_bytes"]


def store_bytes(path: Path) -> int:
    """Bytes of a store on disk: the file plus its write-ahead log, if any."""
    wal = path.with_name(path.name + ".wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def main(argv: list[str]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    import featurelite as fl

    from .config import VIEW
    from .machine import peak_rss_bytes
    from .measure import stopwatch
    from .workloads import _definitions

    path, history, from_arrow = Path(argv[0]), argv[1], "--arrow" in argv[2:]
    # Warm-up, as Feast's materialize gets one: the first 1% of the rows into a scratch
    # store in memory (first-use costs: DuckDB's first statements, pyarrow's lazy imports).
    source = pq.ParquetFile(history)
    first = next(source.iter_batches(batch_size=max(1, source.metadata.num_rows // 100)))
    with fl.open() as scratch:
        scratch.apply(_definitions())
        scratch.ingest(VIEW, pa.Table.from_batches([first]))
    with fl.open(path) as store:
        store.apply(_definitions())
        source_data: str | pa.Table = pq.read_table(history) if from_arrow else history
        watch = stopwatch()
        result = store.ingest(VIEW, source_data)
        seconds = watch()
    print(json.dumps({
        "ingest_s": seconds, "rows": result.rows, "rows_per_s": result.rows / seconds,
        "maxrss_bytes": peak_rss_bytes(), "from": "arrow" if from_arrow else "parquet",
        "file_bytes": store_bytes(path),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
