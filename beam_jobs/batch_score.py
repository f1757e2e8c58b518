"""batch_score: every row of the scoring query, scored by the blessed SavedModel.

Elements are Arrow record batches end to end: the warehouse yields them, RunInference
hands each one whole to the model's `predict_raw` signature (the model is loaded once
per worker process through Beam's shared handle), and the key columns stay in the same
batch as their predictions. Output (published as `<root>/<pipeline>/<ds>/scores/`):
Parquet files in the score table's schema and `summary.json` with the row counts that
`publish_scores` checks before replacing the table partition.

The model call runs on about one core, so the work around it runs beside it on threads:
the next batch is cast, counted (NULL and unseen values) and turned into tensors while
the current one is scored, and the Parquet encoding of scored batches happens while the
next ones are scored. Each of those threads holds at most a couple of batches, so memory
stays flat in the number of rows.
"""

from __future__ import annotations

import gc
import logging
import pickle
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filebasedsink import FileBasedSink
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.metrics.metric import Metrics
from apache_beam.ml.inference.base import ModelHandler, RunInference
from apache_beam.utils.windowed_value import WindowedValue

from tfpipe_jobs import artifacts, registry
from tfpipe_jobs.beam_jobs import arrow_batches
from tfpipe_jobs.beam_jobs.runner import fan_out, make_options, make_runner, read_shards
from tfpipe_jobs.beam_jobs.warehouse_source import COUNTERS, ReadWarehouse, counters
from tfpipe_jobs.context import JobContext
from tfpipe_jobs.inference_runtime import import_tensorflow
from tfpipe_operators.features import FeatureKind, Task, vocabulary_file_for_label
from tfpipe_operators.spec import PipelineSpec

log = logging.getLogger(__name__)


class DuplicateKeysError(ValueError):
    """The scoring query returns a key more than once; the table needs one row per key."""


# A multiclass row's probabilities by class name, as BigQuery ML's ML.PREDICT gives them:
# ARRAY<STRUCT<class_name STRING, probability FLOAT64>> in BigQuery, LIST of STRUCT in DuckDB.
CLASS_PROBABILITY = pa.struct([pa.field("class_name", pa.string()), pa.field("probability", pa.float64())])


def prediction_fields(task: Task) -> list[pa.Field]:
    if task is Task.BINARY:
        return [pa.field("probability", pa.float64())]
    if task is Task.MULTICLASS:
        return [
            pa.field("class_id", pa.int64()),
            pa.field("class_name", pa.string()),
            pa.field("class_probabilities", pa.list_(CLASS_PROBABILITY)),
            # By class id: what queries written before the names existed read.
            pa.field("probabilities", pa.list_(pa.float32())),
        ]
    return [pa.field("value", pa.float64())]


def score_schema(spec: PipelineSpec, key_schema: pa.Schema) -> pa.Schema:
    keys = [key_schema.field(k) for k in spec.scoring.keys]
    return pa.schema(
        [
            *keys,
            *prediction_fields(spec.label.task),
            pa.field("model_version", pa.string()),
            pa.field("ds", pa.date32()),
            pa.field("scored_at", pa.timestamp("us", tz="UTC")),
        ]
    )


def string_tensor(column: pa.Array | pa.ChunkedArray) -> Any:
    """A string column as a tf.string tensor, NULL as b"", without a Python object per row.

    The Arrow data buffer goes to TensorFlow as one bytes value and is cut at the Arrow
    offsets by `tf.strings.substr` in native code: about 4x faster than building a NumPy
    object array and converting that (measured on the sample scoring rows). The offsets
    are read where they are (no cast to 64-bit, no copy to fill NULLs): a NULL just gets
    length 0, whatever bytes its slot spans.
    """
    tf = import_tensorflow()

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_large_binary(column.type) or pa.types.is_large_string(column.type):
        offset_type: type[np.integer[Any]] = np.int64
    elif pa.types.is_binary(column.type) or pa.types.is_string(column.type):
        offset_type = np.int32
    else:
        column, offset_type = pc.cast(column, pa.binary()), np.int32
    _, offsets_buffer, data_buffer = column.buffers()
    rows = len(column)
    if rows == 0:
        return tf.constant([], dtype=tf.string)
    width = np.dtype(offset_type).itemsize
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type, count=rows + 1, offset=column.offset * width)
    lengths = np.diff(offsets)
    if column.null_count:
        lengths[~np.asarray(column.is_valid())] = 0
    start, end = int(offsets[0]), int(offsets[-1])
    data = data_buffer.slice(start, end - start).to_pybytes() if data_buffer is not None else b""
    return tf.strings.substr(tf.constant(data), offsets[:-1] - offset_type(start), lengths)


def float_tensor(column: pa.Array | pa.ChunkedArray) -> Any:
    """A numeric column as float32, NULL as NaN (the signature's missing value)."""
    tf = import_tensorflow()

    values = pc.cast(column, pa.float32()).fill_null(np.nan)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return tf.constant(values.to_numpy(zero_copy_only=False))


def typed_columns(spec: PipelineSpec, batch: pa.RecordBatch) -> dict[str, pa.Array]:
    """Every feature of a warehouse batch cast to its raw type, once per batch."""
    return {f.name: arrow_batches.typed_column(batch, f) for f in spec.raw_features}


def model_tensors(spec: PipelineSpec, typed: dict[str, pa.Array]) -> dict[str, Any]:
    """The `predict_raw` inputs of a batch's typed columns (same values as arrow_batches.model_inputs)."""
    return {
        f.name: float_tensor(typed[f.name]) if f.raw_type == "float" else string_tensor(typed[f.name])
        for f in spec.raw_features
    }


def constant_column(value: Any, rows: int, dtype: pa.DataType) -> pa.Array:
    """One value repeated, filled in native code (not a Python list of `rows` items)."""
    return pa.repeat(pa.scalar(value, dtype), rows)


def read_vocabulary(path: str) -> pa.Array:
    """A tf.Transform vocabulary file (one token per line) as a binary array."""
    lines = artifacts.read_bytes(path).split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return pa.array(lines, pa.binary())


def read_class_names(saved_model_dir: str) -> pa.Array:
    """The class names in class-id order: the label vocabulary the model itself carries.

    tf.Transform writes the label vocabulary by frequency and the model's class ids are
    positions in it; the SavedModel keeps its own copy as an asset, so a day scored by an
    older blessed model is named with that model's classes, not with the day's data.
    """
    path = artifacts.join(saved_model_dir, "assets", vocabulary_file_for_label())
    if not artifacts.exists(path):
        raise artifacts.MissingArtifactError(
            f"{path} does not exist: the SavedModel carries no label vocabulary, so its class ids cannot be "
            "named (was it exported from a multiclass pipeline by export_serving_model?)"
        )
    return pc.cast(read_vocabulary(path), pa.string())


def read_vocabularies(saved_model_dir: str, spec: PipelineSpec) -> dict[str, pa.Array]:
    """The vocabularies the model was built on (its assets), by feature."""
    return {
        f.name: read_vocabulary(artifacts.join(saved_model_dir, "assets", f.vocabulary_file))
        for f in spec.features
        if f.kind is FeatureKind.VOCABULARY
    }


ROWS_MISSING_OR_UNSEEN = "rows_missing_or_unseen"


def missing_and_unseen(typed: dict[str, pa.Array], vocabularies: dict[str, pa.Array]) -> dict[str, int]:
    """How many values of a batch are NULL (`missing_<feature>`) or outside the vocabulary
    (`unseen_<feature>`), and how many rows have at least one such value
    (`rows_missing_or_unseen`: what the prediction gate limits). Those rows still get a
    score (the model's missing-value fill and OOV buckets); the counts go to the job's
    counters, the log and summary.json."""
    counts: dict[str, int] = {}
    flagged: pa.Array | None = None  # rows with a NULL or unseen value so far
    for name, column in typed.items():
        bad = None
        if column.null_count:
            counts[f"missing_{name}"] = column.null_count
            bad = column.is_null()
        vocabulary = vocabularies.get(name)
        if vocabulary is not None:
            known = pc.is_in(column, value_set=vocabulary)  # False for NULL too
            unseen = len(column) - column.null_count - int(pc.sum(known).as_py() or 0)
            if unseen:
                counts[f"unseen_{name}"] = unseen
                bad = pc.invert(known)
        if bad is not None:
            flagged = bad if flagged is None else pc.or_(flagged, bad)
    if flagged is not None:
        counts[ROWS_MISSING_OR_UNSEEN] = int(pc.sum(flagged).as_py() or 0)
    return counts


@dataclass(frozen=True)
class PreparedBatch:
    """A warehouse batch ready for the model: its key columns, the signature's input
    tensors, and its NULL / unseen counts."""

    keys: dict[str, pa.Array]
    inputs: dict[str, Any]
    rows: int
    nbytes: int
    quality: dict[str, int]


class PreparedBatchCoder(beam.coders.Coder):  # type: ignore[misc]
    """Pickles a prepared batch (tensors as arrays) when a runner has to, but sizes it by its
    Arrow bytes: Beam samples element sizes for its counters, and the fallback coder would
    pickle the tensors to measure them (measured: a fifth more CPU time for the whole step)."""

    def encode(self, value: PreparedBatch) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> PreparedBatch:
        value: PreparedBatch = pickle.loads(encoded)
        return value

    def estimate_size(self, value: PreparedBatch) -> int:
        return value.nbytes

    def is_deterministic(self) -> bool:
        return False

    def to_type_hint(self) -> Any:
        return PreparedBatch


beam.coders.registry.register_coder(PreparedBatch, PreparedBatchCoder)


def prepare(spec: PipelineSpec, vocabularies: dict[str, pa.Array], batch: pa.RecordBatch) -> PreparedBatch:
    typed = typed_columns(spec, batch)
    return PreparedBatch(
        keys={k: batch.column(k) for k in spec.scoring.keys},
        inputs=model_tensors(spec, typed),
        rows=batch.num_rows,
        nbytes=int(batch.nbytes),
        quality=missing_and_unseen(typed, vocabularies),
    )


class PrepareInputs(beam.DoFn):  # type: ignore[misc]
    """Record batches -> PreparedBatch, each prepared on a thread while the model scores the previous one.

    Arrow kernels and TensorFlow ops release the GIL, so the preparation really runs beside
    the model call. `ahead` batches at most wait prepared; the counters are incremented
    here, in the bundle's thread, where Beam collects them.
    """

    def __init__(self, spec: PipelineSpec, saved_model_dir: str, ahead: int = 1) -> None:
        self._spec = spec
        self._dir = saved_model_dir
        self._ahead = ahead

    def setup(self) -> None:
        self._vocabularies = read_vocabularies(self._dir, self._spec)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="score-prepare")

    def start_bundle(self) -> None:
        self._pending: deque[tuple[Future[PreparedBatch], WindowedValue]] = deque()

    def process(
        self,
        batch: pa.RecordBatch,
        window: Any = beam.DoFn.WindowParam,
        timestamp: Any = beam.DoFn.TimestampParam,
    ) -> Iterator[WindowedValue]:
        future = self._pool.submit(prepare, self._spec, self._vocabularies, batch)
        self._pending.append((future, WindowedValue(None, timestamp, (window,))))
        while len(self._pending) > self._ahead:
            yield self._next_ready()

    def finish_bundle(self) -> Iterator[WindowedValue]:
        while self._pending:
            yield self._next_ready()

    def teardown(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _next_ready(self) -> WindowedValue:
        future, where = self._pending.popleft()
        prepared = future.result()  # a preparation error (e.g. a column of the wrong type) is raised here
        for name, count in prepared.quality.items():
            Metrics.counter(COUNTERS, name).inc(count)
        return where.with_value(prepared)


class LoadedModel:
    """What a worker loads once: the SavedModel and its serving signature.

    Importing TensorFlow and loading the model create millions of objects that live as
    long as the worker. The cycle collector is paused meanwhile (it would traverse them
    again and again as they pile up) and they are then frozen out of its reach, so the
    collections triggered while scoring only look at what the batches create.
    """

    def __init__(self, saved_model_dir: str) -> None:
        collecting = gc.isenabled()
        gc.disable()
        try:
            tf = import_tensorflow()
            self.saved_model = tf.saved_model.load(saved_model_dir)
            self.predict = self.saved_model.signatures["predict_raw"]
        finally:
            if collecting:
                gc.enable()
        gc.freeze()


class SavedModelHandler(ModelHandler[PreparedBatch, pa.Table, LoadedModel]):  # type: ignore[misc]
    """Runs our SavedModel's `predict_raw` signature on whole prepared batches."""

    def __init__(
        self,
        saved_model_dir: str,
        spec: PipelineSpec,
        schema: pa.Schema,
        model_version: str,
        ds: Any,
        scored_at: datetime,
        class_names: pa.Array | None = None,
    ) -> None:
        super().__init__()
        self._class_names = class_names
        self._dir = saved_model_dir
        self._spec = spec
        self._schema = schema
        self._version = model_version
        self._ds = ds
        self._scored_at = scored_at
        self._constants: dict[int, dict[str, pa.Array]] = {}

    def constant_columns(self, rows: int) -> dict[str, pa.Array]:
        """model_version, ds and scored_at for a batch of `rows`: built once per batch size
        (the batches nearly all have one or two sizes) and shared, as Arrow arrays are immutable."""
        columns = self._constants.get(rows)
        if columns is None:
            columns = {
                "model_version": constant_column(self._version, rows, pa.string()),
                "ds": constant_column(self._ds, rows, pa.date32()),
                "scored_at": constant_column(self._scored_at, rows, pa.timestamp("us", tz="UTC")),
            }
            if len(self._constants) < 8:
                self._constants[rows] = columns
        return columns

    def load_model(self) -> LoadedModel:
        return LoadedModel(self._dir)

    def get_num_bytes(self, batch: Sequence[PreparedBatch]) -> int:
        # The default pickles every element to measure it.
        return sum(p.nbytes for p in batch)

    def batch_elements_kwargs(self) -> dict[str, int]:
        # Each element is already a large batch: hand them over one at a time.
        return {"min_batch_size": 1, "max_batch_size": 1}

    def run_inference(
        self, batch: Sequence[PreparedBatch], model: LoadedModel, inference_args: dict[str, Any] | None = None
    ) -> Iterable[pa.Table]:
        for prepared in batch:
            out = model.predict(**prepared.inputs)
            columns: dict[str, Any] = dict(prepared.keys)
            columns.update(prediction_columns(self._spec.label.task, out, self._class_names))
            columns.update(self.constant_columns(prepared.rows))
            yield pa.Table.from_pydict(columns, schema=self._schema)


def prediction_columns(task: Task, outputs: dict[str, Any], class_names: pa.Array | None = None) -> dict[str, pa.Array]:
    if task is Task.BINARY:
        return {"probability": pa.array(outputs["probability"].numpy().astype(np.float64))}
    if task is Task.MULTICLASS:
        assert class_names is not None
        probabilities = outputs["probabilities"].numpy().astype(np.float32)
        classes = probabilities.shape[1]
        class_id = outputs["class_id"].numpy().astype(np.int64)
        named = len(class_names)
        if named > classes:
            raise ValueError(
                f"the model's label vocabulary has {named} classes but it outputs {classes} probabilities; "
                f"raise label.num_classes in the spec to at least {named} and retrain"
            )
        nested = pa.FixedSizeListArray.from_arrays(pa.array(probabilities.reshape(-1)), classes)
        return {
            "class_id": pa.array(class_id),
            # A class id past the vocabulary (label.num_classes above the classes the data
            # had: an output no training row ever had) has no name: NULL.
            "class_name": class_names.take(pa.array(class_id, mask=class_id >= named)),
            "class_probabilities": class_probability_lists(probabilities[:, :named], class_names),
            "probabilities": nested.cast(pa.list_(pa.float32())),
        }
    return {"value": pa.array(outputs["value"].numpy().astype(np.float64))}


def class_probability_lists(probabilities: np.ndarray, class_names: pa.Array) -> pa.Array:
    """Each row's [(class_name, probability), ...] in class-id order, built as whole arrays."""
    rows, named = probabilities.shape
    names = class_names.take(pa.array(np.tile(np.arange(named, dtype=np.int32), rows)))
    values = pa.array(probabilities.astype(np.float64).reshape(-1))
    entries = pa.StructArray.from_arrays([names, values], fields=list(CLASS_PROBABILITY))
    offsets = pa.array(np.arange(0, rows * named + 1, named, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, entries, type=pa.list_(CLASS_PROBABILITY))


class CountRows(beam.DoFn):  # type: ignore[misc]
    def process(self, table: pa.Table) -> Iterator[pa.Table]:
        Metrics.counter(COUNTERS, "rows_scored").inc(table.num_rows)
        yield table


# Columns with one value per partition: a one-entry dictionary stores them in a few bytes.
# The keys and predictions are (nearly) distinct per row, where dictionary encoding only
# costs hashing: it took half the Parquet encoding time for a file 6% smaller.
CONSTANT_COLUMNS = ["model_version", "ds", "scored_at"]


class BackgroundParquetWriter:
    """A Parquet file written on a thread of its own, at most `depth` tables behind.

    pyarrow encodes and compresses without the GIL, so the encoding runs beside the model
    call. A failed write is raised by the next `write` or by `close`.
    """

    def __init__(self, handle: Any, schema: pa.Schema, depth: int = 2) -> None:
        self._handle = handle
        self._writer = pq.ParquetWriter(handle, schema, compression="snappy", use_dictionary=CONSTANT_COLUMNS)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="score-parquet")
        self._pending: deque[Future[None]] = deque()
        self._depth = depth

    def write(self, table: pa.Table) -> None:
        while len(self._pending) >= self._depth:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._writer.write_table, table))

    def close(self) -> None:
        failed: BaseException | None = None
        try:
            while self._pending:
                self._pending.popleft().result()
        except BaseException as exc:  # raised below, once the file is closed
            failed = exc
        self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            self._writer.close()
        except Exception:
            if failed is None:
                raise
        finally:
            self._handle.close()
        if failed is not None:
            raise failed


class ParquetScoreSink(FileBasedSink):  # type: ignore[misc]
    """Score tables into Parquet files through Beam's file sink (temporary files, renamed
    once the bundle succeeded, on any Beam file system), encoded in the background."""

    def __init__(self, file_path_prefix: str, schema: pa.Schema) -> None:
        super().__init__(
            file_path_prefix,
            coder=None,
            file_name_suffix=".parquet",
            mime_type="application/x-parquet",
            compression_type=CompressionTypes.UNCOMPRESSED,  # Parquet compresses its own pages
        )
        self._schema = schema

    def open(self, temp_path: str) -> BackgroundParquetWriter:
        return BackgroundParquetWriter(super().open(temp_path), self._schema)

    def write_record(self, file_handle: BackgroundParquetWriter, value: pa.Table) -> None:
        file_handle.write(value)

    def close(self, file_handle: BackgroundParquetWriter) -> None:
        file_handle.close()


def duplicate_keys_sql(spec: PipelineSpec) -> str:
    keys = ", ".join(f"`{k}`" for k in spec.scoring.keys)
    body = spec.scoring_sql.strip().rstrip(";")
    return (
        f"SELECT {keys}, COUNT(*) AS n FROM (\n{body}\n) AS scoring_rows "
        f"GROUP BY {keys} HAVING COUNT(*) > 1 ORDER BY n DESC LIMIT 10"
    )


class EmptyScoringError(RuntimeError):
    """The scoring query returned no rows: an empty day is never scored silently."""


def check_unique_keys(ctx: JobContext) -> None:
    dupes = ctx.warehouse.table(duplicate_keys_sql(ctx.spec), ctx.query_params).to_pylist()
    if dupes:
        shown = "; ".join(
            ", ".join(f"{k}={row[k]!r}" for k in ctx.spec.scoring.keys) + f" ({row['n']} rows)" for row in dupes
        )
        raise DuplicateKeysError(
            f"{ctx.spec.path}: scoring query returns duplicate keys ({', '.join(ctx.spec.scoring.keys)}) for ds "
            f"{ctx.ds}: {shown}; the score table needs exactly one row per key"
        )


def run(ctx: JobContext) -> dict[str, Any]:
    spec, cfg = ctx.spec, ctx.config
    # The model blessed as of this day (a backfilled day keeps its own day's model), loaded
    # from its immutable folder once its files are proven to be that version.
    blessed = registry.require_blessed_as_of(ctx.paths, ctx.ds.isoformat())
    version = blessed["model_version"]
    schema = score_schema(spec, ctx.warehouse.result_schema(spec.scoring_sql, ctx.query_params))
    saved_model_dir = artifacts.join(registry.verified_model_dir(ctx.paths, blessed), artifacts.SAVED_MODEL_DIR)
    class_names = read_class_names(saved_model_dir) if spec.label.task is Task.MULTICLASS else None
    handler = SavedModelHandler(saved_model_dir, spec, schema, version, ctx.ds, datetime.now(UTC), class_names)

    # The duplicate-key check is one GROUP BY in the warehouse (seconds at 10M rows, no GIL):
    # it runs while this process imports TensorFlow and scores, and nothing is published
    # unless it passed.
    with ThreadPoolExecutor(max_workers=1) as pool, artifacts.staged_output(ctx.paths.scores) as out:
        unique_keys = pool.submit(check_unique_keys, ctx)
        pipeline = beam.Pipeline(
            runner=make_runner(ctx.runner),
            options=make_options(ctx.runner, cfg.score.direct_num_workers, ctx.beam_args),
        )
        shards = read_shards(ctx.runner, cfg.score.direct_num_workers, cfg.score.distributed_read_shards)
        _ = (
            pipeline
            | "Shards" >> beam.Create([(i, shards) for i in range(shards)])
            | "ReadWarehouse"
            >> beam.ParDo(
                ReadWarehouse(
                    ctx.warehouse.url,
                    spec.scoring_sql,
                    ctx.query_params,
                    cfg.score.batch_rows,
                    prefetch=2,
                    keys=spec.scoring.keys,
                )
            )
            | "FanOut" >> fan_out(ctx.runner).with_output_types(pa.RecordBatch)
            | "Prepare" >> beam.ParDo(PrepareInputs(spec, saved_model_dir)).with_output_types(PreparedBatch)
            | "Score" >> RunInference(handler).with_output_types(pa.Table)
            | "Count" >> beam.ParDo(CountRows()).with_output_types(pa.Table)
            | "Write" >> beam.io.Write(ParquetScoreSink(artifacts.join(out, "part"), schema))
        )
        result = pipeline.run()
        result.wait_until_finish()
        unique_keys.result()
        counts = counters(result)
        read, scored = counts.get("rows_read", 0), counts.get("rows_scored", 0)
        if read != scored:
            raise RuntimeError(f"scored {scored} rows but read {read}; not publishing {ctx.paths.scores}")
        if scored == 0 and not cfg.score.allow_fewer_rows:
            raise EmptyScoringError(
                f"{spec.directory / spec.scoring.sql}: the scoring query returned no rows for ds {ctx.ds}, so "
                f"nothing was scored and the {spec.scoring.table} partition is left as it is. Check that the "
                "day's data has arrived; if the day really is empty, rerun with score.allow_fewer_rows=true"
            )
        quality = {k: v for k, v in counts.items() if k.startswith(("missing_", "unseen_"))}
        summary = {
            "rows": scored,
            # read by the prediction gate in publish_scores
            ROWS_MISSING_OR_UNSEEN: counts.get(ROWS_MISSING_OR_UNSEEN, 0),
            "missing_or_unseen": quality,
            "model_version": version,
            "table": spec.scoring.table,
            # what publish_scores ranks by when the spec keeps only the top k per group
            "score_column": prediction_fields(spec.label.task)[0].name,
            **ctx.provenance(),
        }
        artifacts.write_json(artifacts.join(out, "summary.json"), summary)
    for name in sorted(counts):
        kind, _, feature = name.partition("_")
        if kind in ("missing", "unseen"):
            what = "NULL" if kind == "missing" else "outside the vocabulary (OOV bucket)"
            log.info("batch_score: %d rows with %s %s, scored anyway", counts[name], feature, what)
    log.info("batch_score: %d rows scored with model %s -> %s", scored, version, ctx.paths.scores)
    # The step is the last thing its process does; without this, the interpreter's exit
    # runs one more full collection over everything TensorFlow and Beam built (measured
    # about 4 s on this machine, a tenth of a 10M-row run).
    gc.freeze()
    return {
        "scores": ctx.paths.scores,
        "rows": scored,
        "model_version": version,
        ROWS_MISSING_OR_UNSEEN: summary[ROWS_MISSING_OR_UNSEEN],
        **quality,
    }
