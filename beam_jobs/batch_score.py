"""batch_score: every row of the scoring query, scored by the blessed SavedModel.

Elements are Arrow record batches end to end: the warehouse yields them, RunInference
hands each one whole to the model's `predict_raw` signature (the model is loaded once
per worker process through Beam's shared handle), and the key columns stay in the same
batch as their predictions. Output (published as `<root>/<pipeline>/<ds>/scores/`):
Parquet files in the score table's schema and `summary.json` with the row counts that
`publish_scores` checks before replacing the table partition.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics.metric import Metrics
from apache_beam.ml.inference.base import ModelHandler, RunInference

from tfpipe_jobs import artifacts, registry
from tfpipe_jobs.beam_jobs import arrow_batches
from tfpipe_jobs.beam_jobs.extract_transform import COUNTERS, ReadWarehouse, _counters
from tfpipe_jobs.beam_jobs.runner import fan_out, make_options, make_runner
from tfpipe_jobs.context import JobContext
from tfpipe_operators.features import Task
from tfpipe_operators.spec import PipelineSpec

log = logging.getLogger(__name__)


class DuplicateKeysError(ValueError):
    """The scoring query returns a key more than once; the table needs one row per key."""


def prediction_fields(task: Task) -> list[pa.Field]:
    if task is Task.BINARY:
        return [pa.field("probability", pa.float64())]
    if task is Task.MULTICLASS:
        return [pa.field("class_id", pa.int64()), pa.field("probabilities", pa.list_(pa.float32()))]
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


class SavedModelHandler(ModelHandler[pa.RecordBatch, pa.Table, Any]):  # type: ignore[misc]
    """Runs our SavedModel's `predict_raw` signature on whole record batches."""

    def __init__(
        self, saved_model_dir: str, spec: PipelineSpec, schema: pa.Schema, model_version: str, ds: Any
    ) -> None:
        super().__init__()
        self._dir = saved_model_dir
        self._spec = spec
        self._schema = schema
        self._version = model_version
        self._ds = ds

    def load_model(self) -> Any:
        import tensorflow as tf

        return tf.saved_model.load(self._dir)

    def batch_elements_kwargs(self) -> dict[str, int]:
        # Each element is already a large record batch: hand them over one at a time.
        return {"min_batch_size": 1, "max_batch_size": 1}

    def run_inference(
        self, batch: Sequence[pa.RecordBatch], model: Any, inference_args: dict[str, Any] | None = None
    ) -> Iterable[pa.Table]:
        import tensorflow as tf

        fn = model.signatures["predict_raw"]
        scored_at = datetime.now(UTC)
        for rb in batch:
            inputs = {k: tf.constant(v) for k, v in arrow_batches.model_inputs(self._spec, rb).items()}
            out = fn(**inputs)
            columns: dict[str, Any] = {k: rb.column(k) for k in self._spec.scoring.keys}
            task = self._spec.label.task
            if task is Task.BINARY:
                columns["probability"] = out["probability"].numpy().astype(np.float64)
            elif task is Task.MULTICLASS:
                columns["class_id"] = out["class_id"].numpy()
                columns["probabilities"] = list(out["probabilities"].numpy())
            else:
                columns["value"] = out["value"].numpy().astype(np.float64)
            n = rb.num_rows
            columns["model_version"] = pa.array([self._version] * n, pa.string())
            columns["ds"] = pa.array([self._ds] * n, pa.date32())
            columns["scored_at"] = pa.array([scored_at] * n, pa.timestamp("us", tz="UTC"))
            yield pa.Table.from_pydict(columns, schema=self._schema)


class CountRows(beam.DoFn):  # type: ignore[misc]
    def process(self, table: pa.Table) -> Iterator[pa.Table]:
        Metrics.counter(COUNTERS, "rows_scored").inc(table.num_rows)
        yield table


def duplicate_keys_sql(spec: PipelineSpec) -> str:
    keys = ", ".join(f"`{k}`" for k in spec.scoring.keys)
    body = spec.scoring_sql.strip().rstrip(";")
    return (
        f"SELECT {keys}, COUNT(*) AS n FROM (\n{body}\n) AS scoring_rows "
        f"GROUP BY {keys} HAVING COUNT(*) > 1 ORDER BY n DESC LIMIT 10"
    )


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
    blessed = registry.require_blessed(ctx.paths)
    version = registry.model_version(blessed)
    check_unique_keys(ctx)
    schema = score_schema(spec, ctx.warehouse.result_schema(spec.scoring_sql, ctx.query_params))
    handler = SavedModelHandler(artifacts.join(blessed["serving"], "saved_model"), spec, schema, version, ctx.ds)

    with artifacts.staged_output(ctx.paths.scores) as out:
        pipeline = beam.Pipeline(
            runner=make_runner(ctx.runner),
            options=make_options(ctx.runner, cfg.extract.direct_num_workers, ctx.beam_args),
        )
        _ = (
            pipeline
            | "Start" >> beam.Create([None])
            | "ReadWarehouse"
            >> beam.ParDo(ReadWarehouse(ctx.warehouse.url, spec.scoring_sql, ctx.query_params, cfg.score.batch_rows))
            | "FanOut" >> fan_out(ctx.runner)
            | "Score" >> RunInference(handler)
            | "Count" >> beam.ParDo(CountRows())
            | "Write"
            >> beam.io.WriteToParquetBatched(artifacts.join(out, "part"), schema=schema, file_name_suffix=".parquet")
        )
        result = pipeline.run()
        result.wait_until_finish()
        counts = _counters(result)
        read, scored = counts.get("rows_read", 0), counts.get("rows_scored", 0)
        if read != scored:
            raise RuntimeError(f"scored {scored} rows but read {read}; not publishing {ctx.paths.scores}")
        summary = {"rows": scored, "model_version": version, "table": spec.scoring.table, **ctx.provenance()}
        artifacts.write_json(artifacts.join(out, "summary.json"), summary)
    log.info("batch_score: %d rows scored with model %s -> %s", scored, version, ctx.paths.scores)
    return {"scores": ctx.paths.scores, "rows": scored, "model_version": version}
