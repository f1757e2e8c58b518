"""The warehouse as a Beam source: a query's rows as Arrow record batches, and the counters.

Shared by extraction and scoring. It imports neither TensorFlow nor tf.Transform, so the
scoring job does not pay tf.Transform's import time for it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics.metric import Metrics, MetricsFilter

from tfpipe_operators.warehouse import open_warehouse

COUNTERS = "tfpipe"
_DONE = object()
SHARD_PARAM, SHARDS_PARAM = "tfpipe_read_shard", "tfpipe_read_shards"


class ArrowCoder(beam.coders.Coder):  # type: ignore[misc]
    """Record batches and tables between workers as Arrow IPC streams.

    Beam's fallback for unknown types pickles every element, and it also pickles a sample
    of elements just to estimate their size for its counters; on large batches that cost
    as much as a tenth of the scoring time. Arrow knows a batch's size without encoding it.
    """

    def encode(self, value: pa.RecordBatch | pa.Table) -> bytes:
        sink = pa.BufferOutputStream()
        sink.write(b"B" if isinstance(value, pa.RecordBatch) else b"T")
        with pa.ipc.new_stream(sink, value.schema) as writer:
            writer.write(value)
        return bytes(sink.getvalue())

    def decode(self, encoded: bytes) -> pa.RecordBatch | pa.Table:
        table = pa.ipc.open_stream(memoryview(encoded)[1:]).read_all()
        if encoded[:1] == b"B":
            return (
                table.combine_chunks().to_batches()[0]
                if table.num_rows
                else pa.RecordBatch.from_pylist([], table.schema)
            )
        return table

    def estimate_size(self, value: pa.RecordBatch | pa.Table) -> int:
        return int(value.nbytes)

    def is_deterministic(self) -> bool:
        return False

    def to_type_hint(self) -> Any:
        return pa.Table


beam.coders.registry.register_coder(pa.RecordBatch, ArrowCoder)
beam.coders.registry.register_coder(pa.Table, ArrowCoder)


def prefetched(batches: Iterator[pa.RecordBatch], depth: int) -> Iterator[pa.RecordBatch]:
    """Fetch the next batches on a thread while the caller works on the current one.

    The warehouse client spends its time in native code without the GIL (DuckDB's scan,
    BigQuery's Arrow stream), so reading overlaps with the downstream work. At most
    `depth` batches wait, which bounds the memory; an error in the reader is re-raised
    here, in the caller's thread.
    """
    if depth <= 0:
        yield from batches
        return
    pending: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def fill() -> None:
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        pending.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            pending.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            pending.put(exc)

    reader = threading.Thread(target=fill, name="warehouse-prefetch", daemon=True)
    reader.start()
    try:
        while True:
            item = pending.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        # The consumer stopped early (error downstream): let the reader thread finish.
        stop.set()
        reader.join(timeout=5)


@beam.typehints.with_output_types(pa.RecordBatch)
class ReadWarehouse(beam.DoFn):  # type: ignore[misc]
    """Runs a query on the worker and emits its rows as record batches.

    The input element is None (the whole query) or a `(shard, shards)` pair: that hash
    range of the key columns (the warehouse's `hash_shard_sql`). `counter` names the counter of rows read
    (None: count nothing).
    """

    def __init__(
        self,
        warehouse_url: str,
        sql: str,
        params: dict[str, Any],
        batch_rows: int,
        prefetch: int = 0,
        keys: list[str] | None = None,
        counter: str | None = "rows_read",
    ) -> None:
        self._url = warehouse_url
        self._sql = sql
        self._params = params
        self._batch_rows = batch_rows
        self._prefetch = prefetch
        self._keys = keys or []
        self._counter = counter

    def process(self, shard: tuple[int, int] | None) -> Iterator[pa.RecordBatch]:
        warehouse = open_warehouse(self._url)
        sql, params = self._sql, self._params
        if shard is not None and shard[1] > 1:
            if not self._keys:
                raise ValueError("a sharded warehouse read needs the key columns to hash")
            sql = warehouse.hash_shard_sql(sql, self._keys, SHARD_PARAM, SHARDS_PARAM)
            params = {**params, SHARD_PARAM: shard[0], SHARDS_PARAM: shard[1]}
        batches = warehouse.batches(sql, params, self._batch_rows)
        for batch in prefetched(batches, self._prefetch):
            if self._counter:
                Metrics.counter(COUNTERS, self._counter).inc(batch.num_rows)
            yield batch


def counters(result: Any) -> dict[str, int]:
    """The job's counters (rows read, written, …) summed over workers, from a finished run."""
    found = result.metrics().query(MetricsFilter().with_namespace(COUNTERS))["counters"]
    out: dict[str, int] = {}
    for counter in found:
        out[counter.key.metric.name] = out.get(counter.key.metric.name, 0) + int(counter.committed or 0)
    return out
