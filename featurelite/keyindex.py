"""Maps from entity key to row number for the online index.

Integer keys (the common case) use :class:`IntKeyIndex`, an open-addressing hash table
held in two NumPy arrays: about 24 bytes per key instead of the ~100 a Python dict with
boxed ints costs, built and probed with vectorised NumPy. Other keys (strings, bools,
composite keys) use :class:`DictKeyIndex`, a plain dict.
"""

from __future__ import annotations

import operator
from itertools import compress, repeat
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from .arrays import to_numpy
from .types import DTYPE_OF

__all__ = ["DictKeyIndex", "IntKeyIndex", "KeyIndex", "key_index_for"]

_MULT = 0x9E3779B97F4A7C15  # 2**64 / golden ratio: Fibonacci hashing
_MASK64 = (1 << 64) - 1


class KeyIndex(Protocol):
    """Key -> row number (rows are dense, 0..len-1)."""

    def get(self, key: Any) -> int | None: ...

    def get_many(self, keys: list[Any]) -> np.ndarray: ...

    def add_missing(
        self, keys: list[Any] | np.ndarray, first_row: int, rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, int]: ...

    def __len__(self) -> int: ...

    def nbytes(self) -> int: ...


class IntKeyIndex:
    """Open addressing with linear probing over int64 keys; load factor kept <= 1/2."""

    def __init__(self, capacity: int = 16) -> None:
        bits = max(4, int(capacity - 1).bit_length() + 1)
        self._alloc(bits)
        self.size = 0

    def _alloc(self, bits: int) -> None:
        self.bits = bits
        self.shift = 64 - bits
        self.slot_mask = (1 << bits) - 1
        self.keys = np.zeros(1 << bits, dtype=np.int64)
        self.rows = np.full(1 << bits, -1, dtype=np.int64)

    def __len__(self) -> int:
        return self.size

    def nbytes(self) -> int:
        return self.keys.nbytes + self.rows.nbytes

    def _slots(self, keys: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            slots: np.ndarray = ((keys.view(np.uint64) * np.uint64(_MULT)) >> np.uint64(self.shift)).astype(np.int64)
        return slots

    def get(self, key: Any) -> int | None:
        """Row of one key, or None. Plain Python: cheaper than a NumPy call for one key."""
        if type(key) is not int:
            if isinstance(key, bool):  # True is not the key 1
                return None
            try:
                key = operator.index(key)
            except TypeError:
                return None
        slot = (((key & _MASK64) * _MULT) & _MASK64) >> self.shift
        rows, keys, mask = self.rows, self.keys, self.slot_mask
        while True:
            row = int(rows[slot])
            if row < 0:
                return None
            if keys[slot] == key:
                return row
            slot = (slot + 1) & mask

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Rows of an int64 array of keys (-1 where missing), vectorised."""
        result = np.full(len(keys), -1, dtype=np.int64)
        pending = np.arange(len(keys))
        slots = self._slots(keys)
        while pending.size:
            s = slots[pending]
            rows = self.rows[s]
            filled = rows >= 0
            hit = filled & (self.keys[s] == keys[pending])
            result[pending[hit]] = rows[hit]
            pending = pending[filled & ~hit]
            slots[pending] = (slots[pending] + 1) & self.slot_mask
        return result

    def get_many(self, keys: list[Any]) -> np.ndarray:
        """Rows of several keys (-1 where missing)."""
        if all(type(k) is int for k in keys):
            try:
                return self.lookup(np.array(keys, dtype=np.int64))
            except OverflowError:
                pass
        # Mixed or non-int keys (numpy ints, strings): one at a time, never coerced.
        get = self.get
        return np.fromiter((-1 if (r := get(k)) is None else r for k in keys), np.int64, len(keys))

    def _insert(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Place keys known to be absent (and distinct)."""
        pending = np.arange(len(keys))
        slots = self._slots(keys)
        while pending.size:
            s = slots[pending]
            free = self.rows[s] < 0
            candidates = pending[free]
            taken, first = np.unique(s[free], return_index=True)
            winners = candidates[first]
            self.keys[taken] = keys[winners]
            self.rows[taken] = rows[winners]
            placed = np.zeros(len(keys), dtype=bool)
            placed[winners] = True
            pending = pending[~placed[pending]]
            occupied = self.rows[slots[pending]] >= 0
            moving = pending[occupied]
            slots[moving] = (slots[moving] + 1) & self.slot_mask

    def add_missing(
        self, keys: list[Any] | np.ndarray, first_row: int, rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, int]:
        """Rows for ``keys`` (distinct), adding the absent ones as rows first_row, first_row+1, ...
        ``rows``: the keys' current rows (-1 if absent), when the caller looked them up already.

        Returns (row per key, number added).
        """
        array = np.asarray(keys, dtype=np.int64)
        rows = self.lookup(array) if rows is None else rows.copy()
        missing = rows < 0
        added = int(missing.sum())
        if added:
            new_rows = np.arange(first_row, first_row + added, dtype=np.int64)
            rows[missing] = new_rows
            if (self.size + added) * 2 > len(self.keys):
                self._rehash(self.size + added)
            self._insert(array[missing], new_rows)
            self.size += added
        return rows, added

    def reserve(self, count: int) -> None:
        """Make room for ``count`` keys in all, so loading them rehashes at most once."""
        if count * 2 > len(self.keys):
            self._rehash(count)

    def _rehash(self, needed: int) -> None:
        used = self.rows >= 0
        keys, rows = self.keys[used], self.rows[used]
        self._alloc(max(self.bits + 1, int(needed * 2 - 1).bit_length()))
        self._insert(keys, rows)


class DictKeyIndex:
    """A dict from key (a scalar, or a tuple for composite keys) to row."""

    def __init__(self) -> None:
        self.rows: dict[Any, int] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def nbytes(self) -> int:
        return 0  # not tracked: Python objects

    def get(self, key: Any) -> int | None:
        try:
            return self.rows.get(key)
        except TypeError:  # unhashable key: cannot be stored, so not found
            return None

    def get_many(self, keys: list[Any]) -> np.ndarray:
        get = self.get
        return np.fromiter((-1 if (r := get(k)) is None else r for k in keys), np.int64, len(keys))

    def add_missing(
        self, keys: list[Any] | np.ndarray, first_row: int, rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, int]:
        keys = list(keys)
        if rows is None:
            rows = np.fromiter(map(self.rows.get, keys, repeat(-1)), dtype=np.int64, count=len(keys))
        else:
            rows = rows.copy()
        missing = rows < 0
        added = int(missing.sum())
        if added:
            new_rows = np.arange(first_row, first_row + added, dtype=np.int64)
            rows[missing] = new_rows
            self.rows.update(zip(compress(keys, missing), new_rows.tolist(), strict=True))
        return rows, added


def key_index_for(key_dtypes: list[str]) -> KeyIndex:
    """The key index suited to a view's join keys."""
    if len(key_dtypes) == 1 and DTYPE_OF[key_dtypes[0]].key is int:
        return IntKeyIndex()
    return DictKeyIndex()


def arrow_keys(table: pa.Table, names: list[str], int_keys: bool) -> list[Any] | np.ndarray:
    """Keys of ``table`` in the form the key index takes."""
    if int_keys:
        return to_numpy(table.column(names[0])).astype(np.int64, copy=False)
    if len(names) == 1:
        values: list[Any] = table.column(names[0]).to_pylist()
        return values
    return list(zip(*(table.column(k).to_pylist() for k in names), strict=True))
