"""The warehouse source: prefetching, the Arrow coder, counters from a real pipeline."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.util import assert_that, equal_to

from tfpipe_jobs.beam_jobs.runner import make_options, make_runner
from tfpipe_jobs.beam_jobs.warehouse_source import ArrowCoder, ReadWarehouse, counters, prefetched

DS = date(2026, 11, 21)


def _batches(n: int) -> Iterator[pa.RecordBatch]:
    for i in range(n):
        yield pa.RecordBatch.from_pydict({"i": [i, i + 1]})


def test_prefetched_keeps_order_and_every_batch() -> None:
    got = [b.column("i")[0].as_py() for b in prefetched(_batches(20), depth=2)]
    assert got == list(range(20))


def test_prefetched_raises_the_readers_error_in_the_caller() -> None:
    def failing() -> Iterator[pa.RecordBatch]:
        yield from _batches(2)
        raise ValueError("query failed on DuckDB: no such table")

    with pytest.raises(ValueError, match="no such table"):
        list(prefetched(failing(), depth=2))


def test_prefetched_stops_its_thread_when_the_consumer_stops() -> None:
    before = threading.active_count()
    reader = prefetched(_batches(1000), depth=1)
    next(reader)
    reader.close()  # e.g. an error downstream
    assert threading.active_count() == before


def test_arrow_coder_round_trips_batches_and_tables() -> None:
    coder = ArrowCoder()
    batch = pa.RecordBatch.from_pydict({"k": ["a", None], "v": [1.5, 2.0]})
    table = pa.table({"k": ["x"], "v": [3.0]})
    decoded = coder.decode(coder.encode(batch))
    assert isinstance(decoded, pa.RecordBatch) and decoded.equals(batch)
    decoded_table = coder.decode(coder.encode(table))
    assert isinstance(decoded_table, pa.Table) and decoded_table.equals(table)
    empty = batch.slice(0, 0)
    assert coder.decode(coder.encode(empty)).num_rows == 0
    assert coder.estimate_size(batch) == batch.nbytes


def test_read_warehouse_counts_rows_in_a_real_pipeline(ctr_warehouse) -> None:
    sql = "SELECT user_id, item_id FROM candidates WHERE event_date = @ds"
    pipeline = beam.Pipeline(runner=make_runner("DirectRunner"), options=make_options("DirectRunner", 1))
    rows = (
        pipeline
        | beam.Create([None])
        | beam.ParDo(ReadWarehouse(ctr_warehouse.warehouse, sql, {"ds": DS}, batch_rows=128, prefetch=2))
        | beam.Map(lambda b: b.num_rows)
        | beam.CombineGlobally(sum)
    )
    assert_that(rows, equal_to([500]))
    result = pipeline.run()
    result.wait_until_finish()
    assert counters(result)["rows_read"] == 500


def test_sharded_reads_cover_every_row_once(ctr_warehouse) -> None:
    """Three hash ranges of the keys: disjoint, and together exactly the query's rows."""
    sql = "SELECT event_id, clicked FROM events WHERE event_date = @ds"
    read = ReadWarehouse(ctr_warehouse.warehouse, sql, {"ds": DS}, batch_rows=256, keys=["event_id"], counter=None)
    parts = [{r for b in read.process((i, 3)) for r in b.column("event_id").to_pylist()} for i in range(3)]
    whole = {r for b in read.process(None) for r in b.column("event_id").to_pylist()}
    assert len(whole) == 2000 and set().union(*parts) == whole
    assert sum(len(p) for p in parts) == len(whole) and all(400 < len(p) < 900 for p in parts)


def test_sharded_read_needs_keys(ctr_warehouse) -> None:
    read = ReadWarehouse(ctr_warehouse.warehouse, "SELECT 1 AS a", {}, batch_rows=16)
    with pytest.raises(ValueError, match="needs the key columns"):
        list(read.process((0, 2)))
