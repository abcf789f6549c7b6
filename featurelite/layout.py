"""How a registered feature view is laid out in the file: its tables and columns.

Shared by the offline (history) and online (latest value) code, which never import each
other.
"""

from __future__ import annotations

from dataclasses import dataclass

from .conform import ColumnSpec
from .db import quote
from .definitions import Entity, FeatureView
from .types import duckdb_type

__all__ = ["LOST", "SEQ", "ViewLayout"]

#: 2**64 as a SQL literal (a multiplication, not a shift: DuckDB refuses to shift the
#: negative microsecond counts of pre-1970 times).
_TWO_64 = "18446744073709551616::HUGEINT"

#: Hidden column: a store-wide ingest sequence number, the last tie-break ("ingested last").
SEQ = "_fl_seq"
#: Hidden history column: true for a row that lost a tie on key and event time.
LOST = "_fl_lost"


@dataclass(frozen=True)
class ViewLayout:
    """A feature view with its join keys resolved from its entities."""

    view: FeatureView
    keys: tuple[tuple[str, str], ...]

    @classmethod
    def resolve(cls, view: FeatureView, entities: dict[str, Entity]) -> ViewLayout:
        keys: list[tuple[str, str]] = []
        for name in view.entities:
            keys.extend(entities[name].key_schema.items())
        return cls(view, tuple(keys))

    @property
    def name(self) -> str:
        return self.view.name

    @property
    def key_names(self) -> list[str]:
        return [k for k, _ in self.keys]

    @property
    def features(self) -> list[tuple[str, str]]:
        return list(self.view.schema.items())

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
        """Columns ingested data must have, in storage order, with nullability."""
        cols: list[ColumnSpec] = [(k, d, False) for k, d in self.keys]
        cols += [(f, d, True) for f, d in self.features]
        cols.append((self.ts, "timestamp", False))
        if self.created:
            cols.append((self.created, "timestamp", True))
        return cols

    def stored_columns(self) -> list[str]:
        """Column names of the history and online tables, in order."""
        return [name for name, _, _ in self.input_columns()] + [SEQ]

    def column_ddl(self) -> str:
        parts = [f"{quote(name)} {duckdb_type(dtype)}" for name, dtype, _ in self.input_columns()]
        parts.append(f"{SEQ} BIGINT NOT NULL")
        return ", ".join(parts)

    def order_key(self, alias: str = "") -> str:
        """SQL expression ordering rows as the tie-break rules say: event time, then
        created time (null sorts first), then ingest order. The greatest key wins.

        Without a created time the key is one HUGEINT, ``event_us * 2**64 + seq``: exact
        (seq < 2**63) and cheaper to sort and compare than a struct. With one it is a
        struct of the three.
        """
        prefix = f"{alias}." if alias else ""
        ts = f"{prefix}{quote(self.ts)}"
        if not self.created:
            return f"(epoch_us({ts})::HUGEINT * {_TWO_64} + {prefix}{SEQ})"
        created = f"coalesce({prefix}{quote(self.created)}, '-infinity'::TIMESTAMP)"
        return f"{{'t': {ts}, 'c': {created}, 's': {prefix}{SEQ}}}"

    def key_match(self, left: str, right: str) -> str:
        return " AND ".join(f"{left}.{quote(k)} = {right}.{quote(k)}" for k in self.key_names)
