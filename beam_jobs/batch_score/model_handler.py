"""batch_score's model step: prepared batches scored by the SavedModel into score-table rows.

`PrepareInputs` prepares the next batch on a thread while the model scores the current
one (the model call runs on about one core); `SavedModelHandler` is what RunInference
calls: the model loaded once per worker process, each prepared batch handed to
`predict_raw` whole, its key columns kept beside their predictions in the score table's
schema (`score_schema`).
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics.metric import Metrics
from apache_beam.ml.inference.base import ModelHandler
from apache_beam.utils.windowed_value import WindowedValue

from tfpipe_jobs import artifacts
from tfpipe_jobs.beam_jobs.batch_score.inputs import PreparedBatch, prepare, read_vocabularies, read_vocabulary
from tfpipe_jobs.beam_jobs.warehouse_source import COUNTERS
from tfpipe_jobs.tensorflow_import import import_tensorflow
from tfpipe_operators.features import Task, vocabulary_file_for_label
from tfpipe_operators.spec import PipelineSpec

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


def constant_column(value: Any, rows: int, dtype: pa.DataType) -> pa.Array:
    """One value repeated, filled in native code (not a Python list of `rows` items)."""
    return pa.repeat(pa.scalar(value, dtype), rows)


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
