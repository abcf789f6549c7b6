"""How a registered feature view is laid out in the file: its tables and columns.

Shared by the offline (history) and online (latest value) code, which never import each
other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from .conform import ColumnSpec
from .db import quote
from .definitions import Entity, FeatureView
from .featurizer import Featurizer
from .registry import derived_bindings
from .types import arrow_type, duckdb_type, storage_arrow_type

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
    #: Write-time featurizers: (featurizer, output feature names, {input: raw column}).
    derived: tuple[tuple[Featurizer, tuple[str, ...], dict[str, str]], ...] = field(default=(), compare=False)

    @classmethod
    def resolve(cls, view: FeatureView, entities: dict[str, Entity]) -> ViewLayout:
        """The view with its join keys (and write-time featurizer inputs) resolved.
        Raises DefinitionError when a featurizer input matches no raw column."""
        keys: list[tuple[str, str]] = []
        for name in view.entities:
            keys.extend(entities[name].key_schema.items())
        derived = []
        if view.featurizers:
            bindings = derived_bindings(view, dict(keys))
            for key, fz in view.featurizers.items():
                names = (key,) if isinstance(key, str) else key
                derived.append((fz, names, {param: b[2] for param, b in bindings[names[0]].items()}))
        return cls(view, tuple(keys), tuple(derived))

    def with_derived(self, arrays: list[pa.Array]) -> list[pa.Array]:
        """Conformed input columns (:meth:`input_columns` order) -> stored columns
        (:meth:`stored_columns` order, without the sequence), write-time features computed
        by their featurizers' batch kernels."""
        if not self.derived:
            return arrays
        by_name = dict(zip((name for name, _, _ in self.input_columns()), arrays))
        for fz, names, inputs in self.derived:
            outputs = fz.run_batch({param: by_name[column] for param, column in inputs.items()})
            for name, values in zip(names, outputs):
                by_name[name] = values.cast(storage_arrow_type(self.view.schema[name]))
        return [by_name[name] for name in self.stored_columns()[:-1]]

    @property
    def name(self) -> str:
        return self.view.name

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
