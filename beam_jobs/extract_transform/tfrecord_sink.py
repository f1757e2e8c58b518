"""Gzipped TFRecord files written a batch of serialized examples at a time.

Beam's `WriteToTFRecord` takes one element per record: at a million rows the per-element
overhead of the runner and the per-record framing and compression calls cost more than
the transform itself. Here an element is a whole batch (the rows it holds and its list of
serialized examples, each of which may pack several rows); it is framed in one pass and
compressed with one call. The files are still written by
Beam's file sink, so a failed or retried bundle never leaves a file in the output.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import apache_beam as beam
import google_crc32c
from apache_beam.io import filebasedsink
from apache_beam.io.filesystem import CompressionTypes

_LENGTH = struct.Struct("<Q")


def _masked_crc(data: bytes) -> bytes:
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def frame(records: list[bytes]) -> bytes:
    """Records in the TFRecord framing: length, its masked CRC32C, data, the data's masked CRC32C."""
    parts: list[bytes] = []
    for record in records:
        length = _LENGTH.pack(len(record))
        parts += (length, _masked_crc(length), record, _masked_crc(record))
    return b"".join(parts)


class _GzipStream:
    """Gzip at a chosen level in front of the file Beam opened (its own gzip is level 6 only)."""

    def __init__(self, raw: Any, level: int) -> None:
        self._raw = raw
        self._zip = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)

    def write(self, data: bytes) -> None:
        self._raw.write(self._zip.compress(data))

    def close(self) -> None:
        self._raw.write(self._zip.flush())
        self._raw.close()


class _BatchWriter(filebasedsink.FileBasedSinkWriter):  # type: ignore[misc]
    """Counts rows, not batches, against the sink's per-file cap."""

    def write(self, value: tuple[int, list[bytes]]) -> None:
        self.num_records_written += value[0]
        self.sink.write_record(self.temp_handle, value[1])


class TFRecordBatchSink(filebasedsink.FileBasedSink):  # type: ignore[misc]
    def __init__(self, file_path_prefix: str, rows_per_file: int, gzip_level: int) -> None:
        super().__init__(
            file_path_prefix,
            coder=None,
            file_name_suffix=".tfrecord.gz",
            compression_type=CompressionTypes.UNCOMPRESSED,  # compressed by _GzipStream
            max_records_per_shard=rows_per_file,
        )
        self._gzip_level = gzip_level

    def open(self, temp_path: str) -> _GzipStream:
        return _GzipStream(super().open(temp_path), self._gzip_level)

    def open_writer(self, init_result: Any, uid: str) -> _BatchWriter:
        writer = super().open_writer(init_result, uid)
        # Same state (temporary file opened by the base class); only `write` counts differently.
        writer.__class__ = _BatchWriter
        return writer

    def write_record(self, file_handle: Any, records: list[bytes]) -> None:
        file_handle.write(frame(records))


def write_tfrecord_batches(file_path_prefix: str, rows_per_file: int, gzip_level: int = 1) -> beam.PTransform:
    """`<prefix>-SSSSS-of-NNNNN.tfrecord.gz` files of at most about `rows_per_file` rows.

    Elements are `(rows, serialized records)`. A file is closed once it holds
    `rows_per_file` rows or more (a batch is never split), and each worker bundle writes
    its own files, so no step groups all the rows.
    Gzip level 1 by default: on serialized examples it costs about a fifth of the CPU of
    level 6 for files about a third larger, and readers do not care which level wrote them.
    """
    return beam.io.Write(TFRecordBatchSink(file_path_prefix, rows_per_file, gzip_level))
