"""How a registered feature view is laid out in the file: its tables and columns.

Shared by the offline (history) and online (latest value) code, which never import each
other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

from .conform import ColumnSpec
from .db import quote
from .rules import SEQ, Ttl, WinnerOrder
from .types import arrow_type, dtype, duckdb_type

if TYPE_CHECKING:
    from .definitions import FeatureView

__all__ = ["LOST", "SEQ", "BatchKernel", "ViewLayout"]


class BatchKernel(Protocol):
    """What a layout needs of a write-time featurizer: its name and its batch loop (the
    layout only describes; :mod:`featurelite.writes` runs it)."""

    @property
    def name(self) -> str: ...

    def run_batch(self, columns: Mapping[str, Any]) -> list[pa.Array]: ...

#: Hidden history column: true for a row that lost a tie on key and event time.
LOST = "_fl_lost"


@dataclass(frozen=True)
class ViewLayout:
    """A feature view with its join keys resolved from its entities."""

    view: FeatureView
    keys: tuple[tuple[str, str], ...]
    #: Write-time featurizers: (featurizer, output feature names, {input: raw column}).
    derived: tuple[tuple[BatchKernel, tuple[str, ...], dict[str, str]], ...] = field(default=(), compare=False)

    @property
    def name(self) -> str:
        return self.view.name

    def storage_type(self, feature: str) -> pa.DataType:
        """The Arrow type a feature's values are handed to DuckDB as."""
        return dtype(self.view.schema[feature]).storage

    def keys_arrow_types(self) -> dict[str, pa.DataType]:
        """Join key name to the Arrow type it is returned as."""
        return {k: arrow_type(d) for k, d in self.keys}

    @property
    def key_names(self) -> list[str]:
        return [k for k, _ in self.keys]

    @property
    def features(self) -> list[tuple[str, str]]:
        return list(self.view.schema.items())

    @property
    def ttl_us(self) -> int | None:
        """The view's ttl in microseconds (None: values never expire)."""
        return Ttl.of(self.view.ttl).micros

    @property
    def ts(self) -> str:
        return self.view.timestamp_field

    @property
    def created(self) -> str | None:
        return self.view.created_timestamp_field

    @property
    def history_table(self) -> str:
        return quote(f"fl_history__{self.name}")

    @property
    def online_table(self) -> str:
        return quote(f"fl_online__{self.name}")

    def input_columns(self) -> list[ColumnSpec]:
        """Columns ingested data must have, in storage order, with nullability (derived
        features are not among them: ingest computes them)."""
        return self._columns(self.view.raw_schema)

    def _columns(self, features: dict[str, str]) -> list[ColumnSpec]:
        cols: list[ColumnSpec] = [(k, d, False) for k, d in self.keys]
        cols += [(f, d, True) for f, d in features.items()]
        cols.append((self.ts, "timestamp", False))
        if self.created:
            cols.append((self.created, "timestamp", True))
        return cols

    def stored_columns(self) -> list[str]:
        """Column names of the history and online tables, in order."""
        return [name for name, _, _ in self._columns(dict(self.view.schema))] + [SEQ]

    def column_ddl(self) -> str:
        parts = [f"{quote(name)} {duckdb_type(dtype)}" for name, dtype, _ in self._columns(dict(self.view.schema))]
        parts.append(f"{SEQ} BIGINT NOT NULL")
        return ", ".join(parts)

    @property
    def order(self) -> WinnerOrder:
        """Which of two rows of one entity wins (see :class:`featurelite.rules.WinnerOrder`)."""
        return WinnerOrder(self.ts, self.created)

    def order_key(self, alias: str = "") -> str:
        """The winner order's SQL key (greatest wins) over table ``alias``."""
        return self.order.sql_key(alias)

    def key_match(self, left: str, right: str) -> str:
        return " AND ".join(f"{left}.{quote(k)} = {right}.{quote(k)}" for k in self.key_names)
