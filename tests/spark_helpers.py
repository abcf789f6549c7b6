"""What the Spark test modules share (their session is conftest's ``spark`` fixture):
DataFrames to and from Arrow without pyspark's pandas warnings, and the bit-for-bit
comparison of a Spark table with the store's."""

from __future__ import annotations

import struct
import warnings
from typing import Any

import pyarrow as pa


def frame(spark: Any, table: pa.Table) -> Any:
    """An Arrow table as a Spark DataFrame."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return spark.createDataFrame(table)


def collect(df: Any) -> pa.Table:
    """A Spark DataFrame collected as Arrow."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return df.toArrow()


def bits(value: Any, kind: pa.DataType) -> Any:
    """A value as what must be equal: a float's bit pattern (NaN payloads, -0.0), else the value."""
    if value is None:
        return None
    if pa.types.is_float64(kind):
        return struct.pack("<d", value)
    if pa.types.is_float32(kind):
        return struct.pack("<f", value)
    return value


def assert_same_bits(got: pa.Table, expected: pa.Table) -> None:
    """The same columns, types and rows in the same order, every value's bits equal."""
    expected = expected.replace_schema_metadata(None)
    assert got.column_names == expected.column_names
    assert got.schema.equals(expected.schema), (got.schema, expected.schema)
    for name in expected.column_names:
        kind = expected.schema.field(name).type
        mine = [bits(v, kind) for v in got.column(name).to_pylist()]
        theirs = [bits(v, kind) for v in expected.column(name).to_pylist()]
        assert mine == theirs, (name, mine, theirs)
