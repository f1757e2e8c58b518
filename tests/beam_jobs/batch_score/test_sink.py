"""Score tables into Parquet, encoded on a thread of its own."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tfpipe_jobs.beam_jobs.batch_score.sink import BackgroundParquetWriter


def test_background_parquet_writer_keeps_every_row_in_order(tmp_path: Path) -> None:
    schema = pa.schema([("user_id", pa.string()), ("probability", pa.float64()), ("model_version", pa.string())])
    tables = [
        pa.table({"user_id": [f"u{i}", f"v{i}"], "probability": [i / 10, i / 20], "model_version": ["m", "m"]}, schema)
        for i in range(5)
    ]
    path = tmp_path / "part.parquet"
    writer = BackgroundParquetWriter(path.open("wb"), schema, depth=2)
    for table in tables:
        writer.write(table)
    writer.close()
    assert pq.read_table(path).equals(pa.concat_tables(tables))


def test_background_parquet_writer_raises_a_failed_write(tmp_path: Path) -> None:
    schema = pa.schema([("user_id", pa.string())])
    handle = (tmp_path / "part.parquet").open("wb")
    writer = BackgroundParquetWriter(handle, schema, depth=1)
    writer.write(pa.table({"user_id": ["u1"]}))
    writer.write(pa.table({"item_id": ["i1"]}))  # not the file's schema
    with pytest.raises(ValueError, match="schema"):
        writer.close()
    assert handle.closed
