"""How much an Arrow IPC message decodes to, read from its FlatBuffers header alone.

A compressed Arrow stream can decode to far more than it weighs. :func:`decoded_size`
reads a record or dictionary batch message's header (its length, field nodes and
buffers) and, for compressed buffers, the uncompressed length each one starts with, so a
reader can refuse a stream before decompressing any of it. Every read is bounds checked:
a damaged header is a ValueError.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = ["decoded_size"]

# Field indexes in Arrow's Message.fbs schema.
_MESSAGE_HEADER = 2
_DICTIONARY_BATCH_DATA = 1
_RECORD_BATCH_LENGTH, _RECORD_BATCH_NODES, _RECORD_BATCH_BUFFERS, _RECORD_BATCH_COMPRESSION = 0, 1, 2, 3
#: A Buffer struct: offset and length, two little-endian int64.
_BUFFER_SIZE = 16


class _Flat:
    """Just enough of a FlatBuffers reader for an Arrow IPC message's header."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def _int(self, pos: int, size: int, signed: bool = False) -> int:
        if pos < 0 or pos + size > len(self.data):
            raise ValueError("the IPC message header is damaged")
        return int.from_bytes(self.data[pos:pos + size], "little", signed=signed)

    def root(self) -> int:
        return self._int(0, 4)

    def field(self, table: int, index: int) -> int | None:
        """The position of field ``index`` of the table at ``table``, or None if absent."""
        vtable = table - self._int(table, 4, signed=True)
        size = self._int(vtable, 2)
        slot = 4 + 2 * index
        if slot + 2 > size:
            return None
        offset = self._int(vtable + slot, 2)
        return None if offset == 0 else table + offset

    def ref(self, pos: int) -> int:
        return pos + self._int(pos, 4)

    def long(self, pos: int | None) -> int:
        return 0 if pos is None else self._int(pos, 8, signed=True)

    def vector(self, pos: int | None) -> tuple[int, int]:
        """(first element's position, count) of the vector referenced at ``pos``."""
        if pos is None:
            return 0, 0
        start = self.ref(pos)
        return start + 4, self._int(start, 4)


def _record_batch(flat: _Flat, message_type: str) -> int | None:
    """The position of the message's RecordBatch table (a dictionary batch's data), or None."""
    header = flat.field(flat.root(), _MESSAGE_HEADER)
    if header is None:
        return None
    batch = flat.ref(header)
    if message_type == "dictionary":
        data = flat.field(batch, _DICTIONARY_BATCH_DATA)
        return None if data is None else flat.ref(data)
    return batch


def _buffers_size(flat: _Flat, batch: int, body: pa.Buffer | None) -> int:
    """Bytes the batch's buffers decode to: their lengths, or for compressed buffers the
    uncompressed length each one starts with (-1: stored uncompressed)."""
    first, count = flat.vector(flat.field(batch, _RECORD_BATCH_BUFFERS))
    compressed = flat.field(batch, _RECORD_BATCH_COMPRESSION) is not None
    size = body.size if body is not None else 0
    total = 0
    for b in range(count):
        offset, length = flat.long(first + _BUFFER_SIZE * b), flat.long(first + _BUFFER_SIZE * b + 8)
        if offset < 0 or length < 0 or offset + length > size:
            raise ValueError("an IPC buffer lies outside its message body")
        if compressed and length >= 8 and body is not None:
            declared = int.from_bytes(body[offset:offset + 8].to_pybytes(), "little", signed=True)
            total += length - 8 if declared == -1 else declared
        else:
            total += length
    return total


def decoded_size(message: pa.ipc.Message) -> tuple[int, int]:
    """(cells, bytes) a record or dictionary batch message decodes to; nothing is
    decompressed. Cells are rows x field nodes (at least one)."""
    flat = _Flat(message.metadata.to_pybytes())
    batch = _record_batch(flat, message.type)
    if batch is None:
        return 0, 0
    rows = flat.long(flat.field(batch, _RECORD_BATCH_LENGTH))
    _, nodes = flat.vector(flat.field(batch, _RECORD_BATCH_NODES))
    return max(rows, 0) * max(nodes, 1), _buffers_size(flat, batch, message.body)
