"""Result objects returned by Store methods."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from .errors import InputError

__all__ = ["IngestResult", "MaterializeResult", "OnlineResponse", "VerifyResult"]


@dataclass(frozen=True)
class IngestResult:
    """What one ``Store.ingest`` wrote."""

    view: str
    rows: int  #: rows appended to history (online values were updated with them)


@dataclass(frozen=True)
class MaterializeResult:
    """What one ``Store.materialize`` rebuilt."""

    view: str
    online_rows: int


@dataclass(frozen=True)
class VerifyResult:
    """The equivalence check of one featurizer of a view (see ``Store.verify``)."""

    view: str
    features: tuple[str, ...]  #: the features the featurizer computes in this view
    featurizer: str
    examples: int
    mismatch: Any = None  #: a featurelite.verification.Mismatch, or None

    @property
    def ok(self) -> bool:
        """True when the batch and per-request paths agreed bit for bit on every example."""
        return self.mismatch is None


class OnlineResponse:
    """Feature values for a list of entities, as served online.

    ``to_dict()`` gives ``{column: [value per entity]}`` (join keys first, then features),
    ``statuses`` gives ``{feature: [status per entity]}`` with the values of
    :class:`featurelite.Status`; a value is ``None`` unless its status is ``PRESENT``.
    """

    __slots__ = ("_keys", "_statuses", "_types", "_values")

    def __init__(
        self,
        keys: dict[str, list[Any]],
        values: dict[str, list[Any]],
        statuses: dict[str, list[str]],
        types: dict[str, pa.DataType],  # Arrow type of every key and feature column
    ) -> None:
        self._keys = keys
        self._values = values
        self._statuses = statuses
        self._types = types

    def to_dict(self) -> dict[str, list[Any]]:
        """``{join key or feature: [value per entity]}``."""
        return {**self._keys, **self._values}

    @property
    def keys(self) -> dict[str, list[Any]]:
        """``{join key: [value per entity]}``, as the keys were looked up."""
        return self._keys

    @property
    def values(self) -> dict[str, list[Any]]:
        """``{feature: [value per entity]}`` (features only; see :meth:`to_dict`)."""
        return self._values

    @property
    def types(self) -> dict[str, pa.DataType]:
        """The Arrow type of every key and feature column."""
        return self._types

    @property
    def statuses(self) -> dict[str, list[str]]:
        """``{feature: [status per entity]}``."""
        return self._statuses

    def to_arrow(self) -> pa.Table:
        """The values as a pyarrow Table (features typed as declared)."""
        columns = {}
        for name, vals in self._keys.items():
            try:
                columns[name] = pa.array(vals, type=self._types.get(name))
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                raise InputError(
                    f"join key {name!r} was given values that are not {self._types.get(name)}: {exc}", column=name
                ) from exc
        for name, vals in self._values.items():
            columns[name] = pa.array(vals, type=self._types[name])
        return pa.table(columns)

    def to_pandas(self) -> Any:
        """The values as a pandas DataFrame (needs pandas)."""
        return self.to_arrow().to_pandas()

    def __len__(self) -> int:
        # (A response of request-fed on-demand features only has no key columns.)
        first = next(iter(self._keys.values()), None)
        if first is None:
            first = next(iter(self._values.values()), [])
        return len(first)

    def __repr__(self) -> str:
        return f"OnlineResponse({self.to_dict()!r})"
