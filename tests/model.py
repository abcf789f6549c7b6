"""A plain-Python model of featurelite's rules, used as the oracle in property tests.

Deliberately naive: it keeps every ingested row in a list and scans them.
Timestamps are integers (microseconds since the epoch, UTC).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

import featurelite as fl

MIN_TS = float("-inf")


@dataclass
class ViewModel:
    name: str
    keys: list[str]
    features: list[str]
    ttl_us: int | None
    created: str | None
    rows: list[dict[str, Any]] = field(default_factory=list)


class StoreModel:
    """Ingest appends with a global sequence number; reads scan."""

    def __init__(self) -> None:
        self.views: dict[str, ViewModel] = {}
        self.seq = 0

    def add_view(self, view: fl.FeatureView, keys: list[str]) -> None:
        ttl_us = None if view.ttl is None else view.ttl // view.ttl.resolution
        self.views[view.name] = ViewModel(view.name, keys, list(view.schema), ttl_us, view.created_timestamp_field)

    def ingest(self, view: str, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.views[view].rows.append({**row, "_seq": self.seq})
            self.seq += 1

    @staticmethod
    def _order(view: ViewModel, row: dict[str, Any]) -> tuple:
        created = row.get("created") if view.created else None
        return (row["ts"], MIN_TS if created is None else created, row["_seq"])

    def winner(self, view: str, key: tuple, at_us: int | None) -> dict[str, Any] | None:
        """The row a point-in-time lookup at ``at_us`` returns, ignoring ttl (None: no row)."""
        v = self.views[view]
        if at_us is None:
            return None
        best = None
        for row in v.rows:
            if tuple(row[k] for k in v.keys) != key or row["ts"] > at_us:
                continue
            if best is None or self._order(v, row) > self._order(v, best):
                best = row
        return best

    def lookup(self, view: str, key: tuple, at_us: int | None) -> tuple[dict[str, Any] | None, str]:
        """(row or None, status) with the ttl applied."""
        best = self.winner(view, key, at_us)
        if best is None:
            return None, fl.Status.NOT_FOUND
        ttl = self.views[view].ttl_us
        if ttl is not None and best["ts"] < at_us - ttl:
            return None, fl.Status.OUTSIDE_MAX_AGE
        return best, fl.Status.PRESENT


def ts_array(values: list[int | None]) -> pa.Array:
    return pa.array(values, pa.int64()).cast(pa.timestamp("us"))


def same(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to NaN and tells -0.0 from 0.0."""
    if isinstance(a, float) and isinstance(b, float):
        import struct

        return struct.pack("<d", a) == struct.pack("<d", b)
    return a == b and type(a) is type(b)
