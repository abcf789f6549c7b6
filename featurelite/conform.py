"""Check and cast incoming Arrow data to a feature view's declared columns.

Everything here is vectorised Arrow compute; a Python loop only runs on the error path,
to find the first offending row by bisection.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from .errors import SchemaError
from .types import DTYPE_OF, MAX_US, MIN_US, STORAGE_TIMESTAMP

__all__ = ["ColumnSpec", "check_columns", "conform_column", "conform_table", "normalize_timestamps"]

#: (column name, featurelite dtype, nullable)
ColumnSpec = tuple[str, str, bool]


#: A time of day followed by a zone designator ("...12:00Z", "...12:00:00.5+02:00").
_ZONE_SUFFIX = r"\d{2}:\d{2}(:\d{2}(\.\d*)?)?\s*(Z|[+-]\d{2}(:?\d{2})?)$"


def _accepts(dtype: str, source: pa.DataType) -> bool:
    """Whether values of Arrow type ``source`` may be cast to featurelite ``dtype``."""
    if pa.types.is_null(source):
        return True
    if pa.types.is_dictionary(source):
        source = source.value_type
    text = pa.types.is_string(source) or pa.types.is_large_string(source) or pa.types.is_string_view(source)
    numeric = pa.types.is_integer(source) or pa.types.is_floating(source)
    kind = DTYPE_OF.get(dtype)
    family = None if kind is None else kind.family
    if family in ("int", "float"):
        return bool(numeric or text)
    if family == "bool":
        return bool(pa.types.is_boolean(source) or text)
    if family == "object":
        return bool(text)
    if family == "timestamp":
        return bool(pa.types.is_timestamp(source) or pa.types.is_date(source) or text)
    return False


def _cast_timestamps(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Any timestamp, date or ISO-8601 text -> naive UTC microseconds.

    Zone-aware values are converted to UTC; naive values are taken as UTC already.
    Precision finer than a microsecond is truncated.
    """
    kind = values.type
    if pa.types.is_dictionary(kind):
        values = values.cast(kind.value_type)
        kind = values.type
    if pa.types.is_timestamp(kind):
        # The stored integers of a zone-aware Arrow timestamp are already UTC.
        naive = values.cast(pa.timestamp(kind.unit))
        return pc.cast(naive, options=pc.CastOptions(STORAGE_TIMESTAMP, allow_time_truncate=True))
    if pa.types.is_date(kind) or pa.types.is_null(kind):
        return values.cast(STORAGE_TIMESTAMP)
    # ISO-8601 text: values with a zone suffix are parsed as instants, the rest as UTC.
    values = values.cast(pa.string())
    zoned = pc.match_substring_regex(values, _ZONE_SUFFIX)
    with_zone = pc.if_else(zoned, values, None).cast(pa.timestamp("us", tz="UTC")).cast(STORAGE_TIMESTAMP)
    without_zone = pc.if_else(zoned, None, values).cast(STORAGE_TIMESTAMP)
    return pc.if_else(zoned, with_zone, without_zone)


def _in_datetime_range(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Raise ArrowInvalid if a timestamp lies outside years 1-9999."""
    micros = values.cast(pa.int64())
    bounds = pc.min_max(micros).as_py()
    if bounds["min"] is not None and (bounds["min"] < MIN_US or bounds["max"] > MAX_US):
        raise pa.ArrowInvalid("timestamp outside years 1-9999")
    return values


def _cast(values: pa.Array | pa.ChunkedArray, dtype: str) -> pa.Array | pa.ChunkedArray:
    kind = DTYPE_OF[dtype]
    if kind.family == "timestamp":
        return _in_datetime_range(_cast_timestamps(values))
    target = kind.storage
    if values.type == target:
        if kind.family == "object":
            # Arrow built elsewhere (an IPC stream, a C stream) may hold bytes that are not
            # UTF-8; DuckDB would refuse them deep inside the write. One SIMD pass.
            values.validate(full=True)
        return values
    result = values.cast(target)
    if pa.types.is_float32(target) and pa.types.is_floating(values.type):
        # Arrow turns a finite float64 too large for float32 into inf without complaint.
        overflow = pc.and_(pc.is_inf(result), pc.invert(pc.is_inf(values)))
        if pc.any(overflow).as_py():
            raise pa.ArrowInvalid("value out of float32 range")
    return result


def _first_bad_row(values: pa.Array | pa.ChunkedArray, dtype: str) -> int:
    """Bisect for the first row whose cast fails (error path only)."""
    lo, hi = 0, len(values)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            _cast(values.slice(lo, mid - lo), dtype)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            hi = mid
        else:
            lo = mid
    return lo


def _value(value: pa.Scalar) -> object:
    """A scalar as a Python value; a date or timestamp Python's datetime cannot hold stays
    the integer Arrow stores (days, or units since the epoch)."""
    try:
        return value.as_py()
    except (ValueError, OverflowError, pa.ArrowException):
        if pa.types.is_string(value.type) or pa.types.is_large_string(value.type):
            return value.cast(pa.binary()).as_py()  # bytes that are not UTF-8: shown as bytes
        # The physical integer, by the width of the type (date32 is 32 bits, the rest 64).
        return value.cast(pa.int32() if value.type.bit_width == 32 else pa.int64()).as_py()


def _show(value: pa.Scalar) -> str:
    """A value for an error message."""
    shown = _value(value)
    temporal = pa.types.is_timestamp(value.type) or pa.types.is_date(value.type)
    return f"{shown!r} ({value.type})" if isinstance(shown, int) and temporal else repr(shown)


def check_columns(view: str, schema: pa.Schema, expected: list[ColumnSpec]) -> None:
    """Raise SchemaError if ``schema`` lacks a column, has an extra one, or one of a kind
    that cannot hold the declared dtype."""
    present = list(schema.names)
    wanted = [name for name, _, _ in expected]
    missing = [name for name in wanted if name not in present]
    if missing:
        raise SchemaError(
            f"view {view!r}: input has no column {missing[0]!r} (missing: {', '.join(missing)}; "
            f"input columns: {', '.join(present) or 'none'}); add it to the data",
            view=view,
            column=missing[0],
            missing=missing,
        )
    extra = [name for name in present if name not in wanted]
    if extra:
        raise SchemaError(
            f"view {view!r}: input has column {extra[0]!r}, which the view does not declare "
            f"(extra: {', '.join(extra)}); drop it or add it to the view's schema",
            view=view,
            column=extra[0],
            extra=extra,
        )
    duplicated = sorted({name for name in present if present.count(name) > 1})
    if duplicated:
        raise SchemaError(f"view {view!r}: input has column {duplicated[0]!r} more than once", view=view)
    for name, dtype, _ in expected:
        source = schema.field(name).type
        if not _accepts(dtype, source):
            raise SchemaError(
                f"view {view!r}: column {name!r} has Arrow type {source}, which cannot hold "
                f"declared dtype {dtype!r}; convert the column or change the view's schema",
                view=view,
                column=name,
                arrow_type=str(source),
                dtype=dtype,
            )


def conform_column(
    view: str, name: str, dtype: str, nullable: bool, values: pa.ChunkedArray | pa.Array, row_offset: int
) -> pa.Array | pa.ChunkedArray:
    """Cast one column to its storage type, or raise SchemaError naming the first bad row.

    Works chunk-preserving: a column that already has its storage type is passed through
    without a copy.
    """
    try:
        result = _cast(values, dtype)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        row = _first_bad_row(values, dtype)
        raise SchemaError(
            f"view {view!r}: column {name!r} row {row_offset + row} has value "
            f"{_show(values[row])}, which does not fit dtype {dtype!r}; fix or drop that row",
            view=view,
            column=name,
            row=row_offset + row,
            value=_value(values[row]),
            dtype=dtype,
        ) from exc
    if not nullable and result.null_count:
        row = int(pc.index(result.is_null(), True).as_py())
        what = "null" if not values[row].is_valid else f"{values[row].as_py()!r}, which parses to null"
        raise SchemaError(
            f"view {view!r}: column {name!r} row {row_offset + row} is {what}; "
            f"{name!r} may not be null, so fill or drop that row",
            view=view,
            column=name,
            row=row_offset + row,
        )
    return result


def normalize_timestamps(values: pa.ChunkedArray | pa.Array, what: str) -> pa.Array:
    """Cast a user timestamp column (entity dataframe) to naive UTC microseconds."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not _accepts("timestamp", values.type):
        raise SchemaError(f"{what} has Arrow type {values.type}; it must hold timestamps", arrow_type=str(values.type))
    try:
        return _cast(values, "timestamp")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        row = _first_bad_row(values, "timestamp")
        raise SchemaError(
            f"{what} row {row} has value {_show(values[row])}, which is not a timestamp in years 1-9999",
            row=row,
        ) from exc


def conform_table(
    view: str, table: pa.Table, expected: list[ColumnSpec], row_offset: int
) -> list[pa.Array | pa.ChunkedArray]:
    """All columns of ``table`` cast to storage types, in ``expected`` order."""
    return [
        conform_column(view, name, dtype, nullable, table.column(name), row_offset)
        for name, dtype, nullable in expected
    ]

