"""extract_transform: the day's rows -> Beam + tf.Transform -> TFRecords and vocabularies.

Output (published atomically as `<root>/<pipeline>/<ds>/data/`):
  train/part-*.tfrecord.gz, eval/part-*.tfrecord.gz   transformed tf.Examples, each packing
                                                       `extract.rows_per_record` rows
                                                       (see tfpipe_jobs.packed_examples)
  transform_fn/, transformed_metadata/, metadata/      the tf.Transform output (vocabularies
                                                       are assets of transform_fn)
  eval_raw/part-*.parquet                              raw eval rows, for the gate and for
                                                       proving the export equal
  stats.json                                           statistics the day was validated on
  drift.json, drift.png                                the schema check, each feature's drift vs the
                                                       previous day, the day's profile
                                                       (tfpipe_jobs.monitoring.extract_checks)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import tensorflow_transform.beam as tft_beam
from apache_beam.metrics.metric import Metrics
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder
from tfx_bsl.tfxio import tensor_adapter

from tfpipe_jobs import arrow_batches, artifacts, packed_examples, preprocessing
from tfpipe_jobs.beam_jobs.extract_transform import data_stats, warehouse_analyzers
from tfpipe_jobs.beam_jobs.extract_transform.tfrecord_sink import write_tfrecord_batches
from tfpipe_jobs.beam_jobs.runner import fan_out, make_options, make_runner, read_shards
from tfpipe_jobs.beam_jobs.warehouse_source import COUNTERS, ReadWarehouse, counters
from tfpipe_jobs.context import JobContext
from tfpipe_jobs.monitoring import extract_checks
from tfpipe_operators.features import LABEL_KEY, SPLIT_EVAL, SPLIT_TRAIN
from tfpipe_operators.spec import PipelineSpec

log = logging.getLogger(__name__)


class SplitBatch(beam.DoFn):  # type: ignore[misc]
    """Types, samples and splits one warehouse batch; emits TFXIO batches per split.

    The split and the sample are digits of the batch's split-hash column, computed by the
    warehouse (`warehouse_analyzers.split_hash_sql`), as the analyzers' queries chose the
    training rows.
    """

    def __init__(self, spec: PipelineSpec, eval_percent: int, sample_fraction: float) -> None:
        self._spec = spec
        self._eval_percent = eval_percent
        self._fraction = sample_fraction

    def process(self, batch: pa.RecordBatch) -> Iterator[Any]:
        spec = self._spec
        hashes = batch.column(warehouse_analyzers.SPLIT_HASH).to_numpy().astype(np.uint64)
        columns = arrow_batches.raw_columns(spec, batch, with_label=True)
        keep = arrow_batches.sample_mask(hashes, self._fraction) & np.asarray(columns[LABEL_KEY].is_valid())
        dropped = int((~np.asarray(columns[LABEL_KEY].is_valid())).sum())
        if dropped:
            Metrics.counter(COUNTERS, "rows_without_label").inc(dropped)
        is_eval = arrow_batches.eval_mask(hashes, self._eval_percent)
        for split, mask in ((SPLIT_TRAIN, keep & ~is_eval), (SPLIT_EVAL, keep & is_eval)):
            if not mask.any():
                continue
            selected = pa.array(mask)
            typed = {k: v.filter(selected) for k, v in columns.items()}
            Metrics.counter(COUNTERS, f"{split}_rows").inc(int(mask.sum()))
            yield beam.pvalue.TaggedOutput(split, arrow_batches.to_tfxio(typed))
            if split == SPLIT_EVAL:
                keys = {k: batch.column(k).filter(selected).cast(pa.string()) for k in spec.keys if k not in typed}
                yield beam.pvalue.TaggedOutput("eval_raw", pa.Table.from_pydict({**keys, **typed}))


class EncodeExamples(beam.DoFn):  # type: ignore[misc]
    """Transformed record batch -> (its rows, its serialized packed tf.Examples encoded in C++)."""

    def __init__(self, rows_per_record: int) -> None:
        self._rows_per_record = rows_per_record

    def setup(self) -> None:
        self._encoder = RecordBatchToExamplesEncoder()

    def process(self, element: tuple[pa.RecordBatch, Any]) -> Iterator[tuple[int, list[bytes]]]:
        batch = element[0]
        yield batch.num_rows, self._encoder.encode(packed_examples.pack(batch, self._rows_per_record))


def read_splits(pipeline: beam.Pipeline, ctx: JobContext) -> Any:
    """The day's rows, typed and split, from one or several parallel reads of the warehouse."""
    spec, cfg = ctx.spec, ctx.config.extract
    shards = read_shards(ctx.runner, cfg.direct_num_workers, cfg.distributed_read_shards)
    return (
        pipeline
        | "Shards" >> beam.Create([(i, shards) for i in range(shards)])
        | "ReadWarehouse"
        >> beam.ParDo(
            ReadWarehouse(
                ctx.warehouse.url,
                warehouse_analyzers.split_hash_sql(spec, ctx.warehouse),
                ctx.query_params,
                cfg.batch_rows,
                keys=spec.keys,
            )
        )
        | "FanOut" >> fan_out(ctx.runner)
        | "SplitBatch"
        >> beam.ParDo(SplitBatch(spec, cfg.eval_percent, cfg.sample_fraction)).with_outputs(
            SPLIT_TRAIN, SPLIT_EVAL, "eval_raw"
        )
    )


def run(ctx: JobContext) -> dict[str, Any]:
    spec, cfg = ctx.spec, ctx.config.extract
    stats = data_stats.compute(ctx)
    data_stats.validate(spec, stats, cfg, data_stats.previous_stats(ctx))
    monitoring = extract_checks.run(ctx, stats)  # the schema and drift; raises before Beam reads a row

    with artifacts.staged_output(ctx.paths.data) as out:
        analyzed = warehouse_analyzers.compute(ctx)
        analyzed.write(artifacts.join(out, "tmp", "analyzers"))  # copied into transform_fn/assets
        raw_names = [f.name for f in arrow_batches.tfxio_schema(spec)]
        adapter_config = tensor_adapter.TensorAdapterConfig(
            arrow_batches.tfxio_schema(spec), preprocessing.tensor_representations(raw_names)
        )
        pipeline = beam.Pipeline(
            runner=make_runner(ctx.runner),
            options=make_options(ctx.runner, cfg.direct_num_workers, ctx.beam_args),
        )
        with tft_beam.Context(temp_dir=artifacts.join(out, "tmp"), force_tf_compat_v1=False):
            splits = read_splits(pipeline, ctx)
            # The graph has no analyzers left (the warehouse computed them): tf.Transform
            # traces and saves it reading no rows, so the rows stream through in one pass.
            no_rows = pipeline | "NoRows" >> beam.Create([], reshuffle=False).with_output_types(pa.RecordBatch)
            transform_fn = (no_rows, adapter_config) | "Analyze" >> tft_beam.AnalyzeDataset(
                preprocessing.make_preprocessing_fn(spec, analyzed)
            )
            _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(out)
            for name in (SPLIT_TRAIN, SPLIT_EVAL):
                transformed, _ = ((splits[name], adapter_config), transform_fn) | f"Transform{name}" >> (
                    tft_beam.TransformDataset(output_record_batches=True)
                )
                _ = (
                    transformed
                    | f"Encode{name}" >> beam.ParDo(EncodeExamples(cfg.rows_per_record))
                    | f"Write{name}" >> write_tfrecord_batches(artifacts.join(out, name, "part"), cfg.rows_per_shard)
                )
            _ = splits["eval_raw"] | "WriteEvalRaw" >> beam.io.WriteToParquetBatched(
                artifacts.join(out, "eval_raw", "part"),
                schema=arrow_batches.eval_raw_schema(spec),
                file_name_suffix=".parquet",
            )
            result = pipeline.run()
            result.wait_until_finish()

        counts = counters(result)
        metadata_io.write_metadata(
            dataset_metadata.DatasetMetadata.from_feature_spec(preprocessing.raw_feature_spec(spec)),
            artifacts.join(out, "metadata"),
        )
        artifacts.remove_tree(artifacts.join(out, "tmp"))
        if counts.get(f"{SPLIT_TRAIN}_rows", 0) == 0:
            raise data_stats.DataValidationError(f"{spec.pipeline} {ctx.ds}: no training rows after the split/sample")
        stats["splits"] = counts
        stats[packed_examples.STATS_KEY] = cfg.rows_per_record
        stats["provenance"] = ctx.provenance()
        artifacts.write_json(artifacts.join(out, "stats.json"), stats)
        extract_checks.write(out, ctx, monitoring)
    log.info(
        "extract_transform: %s rows read, %s train, %s eval -> %s",
        counts.get("rows_read"),
        counts.get("train_rows"),
        counts.get("eval_rows"),
        ctx.paths.data,
    )
    return {"data": ctx.paths.data, **counts, **extract_checks.summary(ctx, monitoring)}
