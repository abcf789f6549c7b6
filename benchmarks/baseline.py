"""The limit: what hand-written DuckDB SQL does with the same data, in a plain DuckDB file.

Tables: ``history`` (the ingested rows as they are) and ``online`` (one row per key, with a
PRIMARY KEY), the same columns and types featurelite stores minus its bookkeeping.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from .config import FEATURES, KEY, TS

__all__ = ["connect_fresh", "create_tables", "ingest", "online_values", "training_set"]

_COLUMNS = [KEY, *FEATURES, TS]
_DDL = ", ".join([f"{KEY} BIGINT NOT NULL", *(f"{f} DOUBLE" for f in FEATURES), f"{TS} TIMESTAMP NOT NULL"])
_UPDATES = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c != KEY)

#: Latest row per key of the arrow table, upserted; an existing newer row is kept.
UPSERT_SQL = (
    f"INSERT INTO online SELECT * FROM arrow_table "
    f"QUALIFY row_number() OVER (PARTITION BY {KEY} ORDER BY {TS} DESC) = 1 "
    f"ON CONFLICT ({KEY}) DO UPDATE SET {_UPDATES} WHERE excluded.{TS} > online.{TS}"
)

#: Point-in-time join: per spine row, the latest history row of its key at or before its time.
ASOF_SQL = (
    f"SELECT e.*, {', '.join(f'h.{f}' for f in FEATURES)} FROM entity_df e "
    f"ASOF LEFT JOIN history h ON e.{KEY} = h.{KEY} AND e.event_timestamp >= h.{TS}"
)


def connect_fresh(path: Path) -> duckdb.DuckDBPyConnection:
    """A connection to a new, empty DuckDB file at ``path`` (removing any old one)."""
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)
    return duckdb.connect(str(path))


def create_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE TABLE history ({_DDL})")
    con.execute(f"CREATE TABLE online ({_DDL}, PRIMARY KEY ({KEY}))")


def ingest(con: duckdb.DuckDBPyConnection, table: pa.Table) -> None:
    """Append ``table`` to history and upsert its latest row per key into online, in one
    transaction (as featurelite's ingest is atomic)."""
    con.register("arrow_table", table)
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute("INSERT INTO history SELECT * FROM arrow_table")
        con.execute(UPSERT_SQL)
        con.execute("COMMIT")
    finally:
        con.unregister("arrow_table")


def training_set(con: duckdb.DuckDBPyConnection, entity_df: pa.Table) -> pa.Table:
    """The ASOF LEFT JOIN of ``entity_df`` against history, as an Arrow table."""
    con.register("entity_df", entity_df)
    try:
        return con.sql(ASOF_SQL).to_arrow_table()
    finally:
        con.unregister("entity_df")


def online_values(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """The online table (keys, features, event time) as Arrow."""
    return con.sql(f"SELECT {', '.join(_COLUMNS)} FROM online ORDER BY {KEY}").to_arrow_table()
