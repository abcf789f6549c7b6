"""Turn what users hand us (Arrow, pandas, polars, Parquet / CSV paths) into a stream of
Arrow record batches, so that inputs of any size flow through with bounded memory."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .errors import SourceError

__all__ = ["DataSource", "read_batches", "rebatch", "to_reader", "to_table"]

DataSource = Any  # pa.Table | pa.RecordBatch | pa.RecordBatchReader | Arrow C stream | str | Path

#: Rows per batch read from files; large enough for DuckDB to scan efficiently.
FILE_BATCH_ROWS = 1 << 20


def _file_reader(path: Path, text_columns: Sequence[str]) -> pa.RecordBatchReader:
    if not path.exists():
        raise SourceError(f"file {str(path)!r} does not exist; check the path", path=str(path))
    if path.is_dir():
        raise SourceError(f"{str(path)!r} is a folder; pass a Parquet or CSV file", path=str(path))
    suffix = path.suffix.lower()
    with open(path, "rb") as handle:
        magic = handle.read(4)
    try:
        if magic == b"PAR1" or suffix == ".parquet":
            parquet = pq.ParquetFile(path)
            return pa.RecordBatchReader.from_batches(
                parquet.schema_arrow, parquet.iter_batches(batch_size=FILE_BATCH_ROWS)
            )
        if suffix in (".csv", ".tsv", ".txt"):
            parse = pacsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",")
            # Declared columns are read as text and cast by featurelite, so that a bad value
            # is reported with its row, a late block cannot contradict types guessed from
            # the first one, and "01234" stays a string. Only an empty field is null.
            convert = pacsv.ConvertOptions(
                column_types={name: pa.string() for name in text_columns},
                null_values=[""],
                strings_can_be_null=True,
            )
            return pacsv.open_csv(
                path, parse_options=parse, convert_options=convert, read_options=pacsv.ReadOptions(block_size=1 << 24)
            )
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceError(
            f"file {str(path)!r} could not be read as {'Parquet' if suffix == '.parquet' else 'CSV'}: {exc}",
            path=str(path),
        ) from exc
    raise SourceError(
        f"file {str(path)!r} is neither Parquet nor CSV; pass a .parquet or .csv file",
        path=str(path),
    )


def _checked(reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """``reader``, once its column names are known to be text (an Arrow IPC stream can
    carry names that are not valid UTF-8, which Python cannot even show)."""
    try:
        _ = reader.schema.names  # evaluated only to raise UnicodeDecodeError for a name that is not UTF-8
    except UnicodeDecodeError:
        raise SourceError("a column name of the input is not valid UTF-8; rename the column") from None
    return reader


def to_reader(data: DataSource, *, text_columns: Sequence[str] = ()) -> pa.RecordBatchReader:
    """A RecordBatchReader over ``data``, whose column names are valid text (see
    :func:`_read`)."""
    return _checked(_read(data, text_columns))


def _read(data: DataSource, text_columns: Sequence[str]) -> pa.RecordBatchReader:
    """A RecordBatchReader over ``data``.

    Accepts a pyarrow Table, RecordBatch or RecordBatchReader; anything with the Arrow C
    stream interface (polars, DuckDB relations); a pandas DataFrame (its index is
    dropped); or the path of a Parquet or CSV file (``str`` or ``os.PathLike``).
    ``text_columns`` of a CSV file are read as text, for the caller to cast.
    """
    if isinstance(data, pa.RecordBatchReader):
        return data
    if isinstance(data, pa.Table):
        return pa.RecordBatchReader.from_batches(data.schema, data.to_batches())
    if isinstance(data, pa.RecordBatch):
        return pa.RecordBatchReader.from_batches(data.schema, [data])
    if isinstance(data, (str, os.PathLike)):
        return _file_reader(Path(data), text_columns)
    if type(data).__module__.startswith("pandas"):
        if type(data).__name__ != "DataFrame":  # a Series, an Index: no named columns to ingest
            raise SourceError(
                f"cannot read a pandas {type(data).__name__}; pass a DataFrame with one column per "
                "join key, feature and timestamp (for a Series: series.to_frame())"
            )
        # pandas' own Arrow stream carries a non-default index as an extra column.
        try:
            table = pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError) as exc:
            raise SourceError(f"could not convert the pandas DataFrame to Arrow: {exc}") from exc
        return pa.RecordBatchReader.from_batches(table.schema, table.to_batches())
    if hasattr(data, "__arrow_c_stream__"):
        try:
            return pa.RecordBatchReader.from_stream(data)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise SourceError(f"could not read {type(data).__name__} as Arrow: {exc}") from exc
    raise SourceError(
        f"cannot read data of type {type(data).__name__}; pass a pyarrow Table, a pandas or "
        "polars DataFrame, or the path of a Parquet or CSV file"
    )


def to_table(data: DataSource) -> pa.Table:
    """Read all of ``data`` into one Arrow table."""
    if isinstance(data, pa.Table):
        _checked(pa.RecordBatchReader.from_batches(data.schema, []))
        return data
    return to_reader(data).read_all()


def rebatch(reader: pa.RecordBatchReader, rows: int) -> Iterator[pa.Table]:
    """Group a stream of (possibly tiny) batches into tables of about ``rows`` rows.

    Batches are not copied; a table is a list of the batches it groups.
    """
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in reader:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield pa.Table.from_batches(pending, reader.schema)
            pending, count = [], 0
    if pending:
        yield pa.Table.from_batches(pending, reader.schema)


def read_batches(view: str, reader: pa.RecordBatchReader, rows: int) -> Iterable[pa.Table]:
    """Batches of the input; a failure while reading (a CSV that does not parse) becomes
    a SourceError."""
    batches = rebatch(reader, rows)
    while True:
        try:
            table = next(batches)
        except StopIteration:
            return
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
            raise SourceError(f"view {view!r}: reading the input failed: {exc}", view=view) from exc
        yield table
