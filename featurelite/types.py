"""featurelite dtype names and their Arrow and DuckDB counterparts, and datetime
conversions. Pure: no I/O.

Timestamps are stored as DuckDB ``TIMESTAMP`` (microseconds, no zone) holding UTC wall
time, and returned to users as Arrow ``timestamp[us, tz=UTC]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, NewType

import numpy as np
import pyarrow as pa

__all__ = [
    "DTYPES", "DTYPE_OF", "EPOCH", "FEATURIZER_DTYPES", "KEY_DTYPES", "MAX_US", "MIN_US", "DType", "Timestamp",
    "arrow_type", "as_utc", "dtype", "dtype_of_hint", "duckdb_type", "family", "from_micros", "micros",
    "storable_micros", "storage_arrow_type", "utc_naive",
]

#: Type hint of a featurizer's timestamp input or output: microseconds since 1970-01-01
#: UTC, as an int (exported as ``featurelite.Timestamp``).
Timestamp = NewType("Timestamp", int)


@dataclass(frozen=True)
class DType:
    """One featurelite dtype and everything the engine needs to know about it: the one
    home of the Arrow, storage, DuckDB, NumPy and Numba types, the online index's storage
    family, the value a null is filled with and how a featurizer takes it. Look one up
    with :func:`dtype`."""

    name: str
    #: The Arrow type values are returned to users as.
    arrow: pa.DataType
    #: The Arrow type handed to DuckDB (timestamps: UTC wall time without a zone).
    storage: pa.DataType
    #: The DuckDB column type.
    duckdb: str
    #: The Spark SQL type (``featurelite.spark``; timestamps as Spark's UTC-adjusted
    #: TimestampType, named so that no session setting reads it as TIMESTAMP_NTZ).
    spark: str
    #: The online index's storage family (one NumPy matrix per family): ``float``, ``int``,
    #: ``bool``, ``timestamp`` (int64 microseconds) or ``object`` (strings).
    family: str
    #: The NumPy type of the online index's matrix for this dtype (``object`` for strings),
    #: and of a featurizer kernel's column of it.
    numpy: Any
    #: What a null becomes where an array cannot hold one (the online index's matrices,
    #: a featurizer kernel's inputs); the validity mask says which values are real.
    filler: Any
    #: The featurizer dtype a stored column of this dtype feeds, widened exactly
    #: (``float32`` feeds a ``float64`` input), or None if no featurizer input takes it.
    feeds: str | None
    #: Whether a featurizer may declare an input or output of this dtype.
    featurizer: bool
    #: The Python type a join key of this dtype is looked up as, or None if a join key may
    #: not have it (floats and timestamps make poor identities).
    key: type | None
    #: The Arrow type a featurizer's compiled batch loop reads (timestamps as int64
    #: microseconds, strings as large_string).
    kernel_arrow: pa.DataType
    #: Name of the attribute of ``numba.types`` that types a kernel value of this dtype;
    #: see :meth:`numba_type`.
    numba_name: str
    #: The Python type hint a featurizer declares this dtype with, or None.
    hint: Any = None
    #: Name of the :mod:`featurelite._kernel_support` helper casting a featurizer's result
    #: to this dtype inside the kernel, or None.
    cast: str | None = None
    #: Names of the ``numba.types`` classes a featurizer's result may have and still be
    #: cast exactly to this dtype (an int to a float is fine, a float to an int is not);
    #: see :meth:`numba_castable`.
    casts_from: tuple[str, ...] = ()

    def numba_type(self) -> Any:
        """The Numba type of this dtype inside a featurizer kernel (imports Numba)."""
        import numba

        return getattr(numba.types, self.numba_name)

    def numba_castable(self) -> tuple[type, ...]:
        """The Numba type classes of results cast exactly to this dtype (imports Numba)."""
        import numba

        return tuple(getattr(numba.types, name) for name in self.casts_from)

    def __str__(self) -> str:
        return self.name


_US = pa.timestamp("us")
_UTC_US = pa.timestamp("us", tz="UTC")

_ALL: tuple[DType, ...] = (
    DType("bool", arrow=pa.bool_(), storage=pa.bool_(), duckdb="BOOLEAN", family="bool", numpy=np.bool_,
          spark="boolean", filler=False, feeds="bool", featurizer=True,
          key=bool, kernel_arrow=pa.bool_(), numba_name="boolean",
          hint=bool, cast="as_bool", casts_from=("Integer",)),
    DType("int32", arrow=pa.int32(), storage=pa.int32(), duckdb="INTEGER", family="int", numpy=np.int64,
          spark="int", filler=0, feeds="int64", featurizer=False, key=int, kernel_arrow=pa.int64(), numba_name="int64"),
    DType("int64", arrow=pa.int64(), storage=pa.int64(), duckdb="BIGINT", family="int", numpy=np.int64,
          spark="bigint", filler=0, feeds="int64", featurizer=True,
          key=int, kernel_arrow=pa.int64(), numba_name="int64",
          hint=int, cast="as_int64", casts_from=("Integer", "Boolean")),
    DType("float32", arrow=pa.float32(), storage=pa.float32(), duckdb="FLOAT", family="float", numpy=np.float64,
          spark="float", filler=0.0, feeds="float64", featurizer=False,
          key=None, kernel_arrow=pa.float64(), numba_name="float64"),
    DType("float64", arrow=pa.float64(), storage=pa.float64(), duckdb="DOUBLE", family="float", numpy=np.float64,
          spark="double", filler=0.0, feeds="float64", featurizer=True,
          key=None, kernel_arrow=pa.float64(), numba_name="float64",
          hint=float, cast="as_float64", casts_from=("Integer", "Float", "Boolean")),
    DType("string", arrow=pa.string(), storage=pa.string(), duckdb="VARCHAR", family="object", numpy=object,
          spark="string", filler="", feeds="string", featurizer=True, key=str, kernel_arrow=pa.large_string(),
          numba_name="unicode_type", hint=str, cast="as_str"),
    # Microseconds since EPOCH (UTC) inside the engine: stored as TIMESTAMP (UTC wall
    # time), an int64 in the online index and in featurizer kernels.
    DType("timestamp", arrow=_UTC_US, storage=_US, duckdb="TIMESTAMP", family="timestamp", numpy=np.int64,
          spark="timestamp_ltz", filler=0, feeds="timestamp", featurizer=True,
          key=None, kernel_arrow=pa.int64(), numba_name="int64",
          hint=Timestamp, cast="as_int64", casts_from=("Integer", "Boolean")),
)

#: Every dtype by name.
DTYPE_OF: dict[str, DType] = {d.name: d for d in _ALL}

#: Every dtype a feature may have.
DTYPES: tuple[str, ...] = tuple(DTYPE_OF)

#: Dtypes a join key may have (floats and timestamps make poor identities).
KEY_DTYPES: tuple[str, ...] = tuple(d.name for d in _ALL if d.key is not None)

#: Dtypes a featurizer input or output may have.
FEATURIZER_DTYPES: tuple[str, ...] = tuple(d.name for d in _ALL if d.featurizer)

#: Arrow type used inside the engine for a timestamp (UTC wall time, no zone).
STORAGE_TIMESTAMP = _US


#: Featurizer type hint -> the dtype it declares.
_OF_HINT: dict[Any, DType] = {d.hint: d for d in _ALL if d.hint is not None}


def dtype_of_hint(hint: Any) -> DType | None:
    """The dtype a featurizer type hint declares (``float`` -> float64), or None."""
    try:
        return _OF_HINT.get(hint)
    except TypeError:  # an unhashable hint declares nothing
        return None


def dtype(name: str) -> DType:
    """The :class:`DType` called ``name`` (one of :data:`DTYPES`)."""
    return DTYPE_OF[name]


def arrow_type(name: str) -> pa.DataType:
    """The Arrow type a value of dtype ``name`` is returned as."""
    return DTYPE_OF[name].arrow


def storage_arrow_type(name: str) -> pa.DataType:
    """The Arrow type handed to DuckDB for dtype ``name`` (timestamps without zone)."""
    return DTYPE_OF[name].storage


def duckdb_type(name: str) -> str:
    """The DuckDB column type for dtype ``name``."""
    return DTYPE_OF[name].duckdb


def family(name: str) -> str:
    """The online index's storage family of dtype ``name``."""
    return DTYPE_OF[name].family


#: The Unix epoch in UTC: the one origin of every microsecond count featurelite converts
#: (stored timestamps, featurizer inputs and outputs, online values, verification).
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: Python's datetime range (years 1-9999) in microseconds since the epoch: the timestamps a
#: store holds (beyond it, DuckDB hands back text, or infinity).
MIN_US = -62_135_596_800_000_000
MAX_US = 253_402_300_799_999_999


def utc_naive(moment: datetime) -> datetime:
    """A datetime as naive UTC (naive input is taken as UTC already). Raises OverflowError
    for an aware time whose UTC wall time lies outside years 1-9999: check the range with
    :func:`micros` first."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def as_utc(moment: datetime | None) -> datetime | None:
    """A stored (naive UTC) timestamp as a zone-aware UTC datetime."""
    return None if moment is None else moment.replace(tzinfo=timezone.utc)


def micros(moment: datetime) -> int:
    """Microseconds since the epoch of a datetime (naive taken as UTC). Never overflows:
    ``datetime(1, 1, 1, tzinfo=+01:00)`` gives a count below :data:`MIN_US`, which callers
    refuse as out of range."""
    if not isinstance(moment, datetime):
        raise TypeError(f"expected a datetime.datetime, got {type(moment).__name__}: {moment!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - EPOCH) // _MICROSECOND


def storable_micros(moment: datetime) -> int | None:
    """:func:`micros` of a time a store can hold, or None for one outside years 1-9999 in
    UTC (``datetime(1, 1, 1, tzinfo=+01:00)`` is in year 0 in UTC). The one home of that
    bound for points in time callers pass (``now=``, ``end_date=``, ``--now``)."""
    us = micros(moment)
    return us if MIN_US <= us <= MAX_US else None


def from_micros(us: int) -> datetime:
    """Microseconds since the epoch as the zone-aware UTC datetime every read returns."""
    return EPOCH + timedelta(microseconds=us)


_MICROSECOND = timedelta(microseconds=1)
