"""featurelite dtype names and their Arrow and DuckDB counterparts, and datetime
conversions. Pure: no I/O.

Timestamps are stored as DuckDB ``TIMESTAMP`` (microseconds, no zone) holding UTC wall
time, and returned to users as Arrow ``timestamp[us, tz=UTC]``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa

__all__ = [
    "DTYPES", "EPOCH", "KEY_DTYPES", "MAX_US", "MIN_US", "arrow_type", "as_utc", "duckdb_type", "family", "from_micros", "micros",
    "storable_micros", "utc_naive",
]

#: Every dtype a feature may have.
DTYPES: tuple[str, ...] = ("bool", "int32", "int64", "float32", "float64", "string", "timestamp")

#: Dtypes a join key may have (floats and timestamps make poor identities).
KEY_DTYPES: tuple[str, ...] = ("bool", "int32", "int64", "string")

_ARROW: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "string": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}

_DUCKDB: dict[str, str] = {
    "bool": "BOOLEAN",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "float32": "FLOAT",
    "float64": "DOUBLE",
    "string": "VARCHAR",
    "timestamp": "TIMESTAMP",
}

#: Storage family of each dtype, used by the online index to pack values in matrices.
_FAMILY: dict[str, str] = {
    "bool": "bool",
    "int32": "int",
    "int64": "int",
    "float32": "float",
    "float64": "float",
    "string": "object",
    "timestamp": "timestamp",
}

#: Arrow type used inside the engine for a timestamp (UTC wall time, no zone).
STORAGE_TIMESTAMP = pa.timestamp("us")


def arrow_type(dtype: str) -> pa.DataType:
    """The Arrow type a value of ``dtype`` is returned as."""
    return _ARROW[dtype]


def storage_arrow_type(dtype: str) -> pa.DataType:
    """The Arrow type handed to DuckDB for ``dtype`` (timestamps without zone)."""
    return STORAGE_TIMESTAMP if dtype == "timestamp" else _ARROW[dtype]


def duckdb_type(dtype: str) -> str:
    """The DuckDB column type for ``dtype``."""
    return _DUCKDB[dtype]


def family(dtype: str) -> str:
    """The storage family (``float``, ``int``, ``bool``, ``timestamp``, ``object``)."""
    return _FAMILY[dtype]


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
