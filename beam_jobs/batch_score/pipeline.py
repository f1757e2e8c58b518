"""batch_score: every row of the scoring query, scored by the blessed SavedModel.

Elements are Arrow record batches end to end: the warehouse yields them, they are turned
into the signature's tensors and counted (`inputs`), RunInference hands each one
whole to the model's `predict_raw` signature (`model_handler`: the model is loaded once per
worker process through Beam's shared handle), and the key columns stay in the same batch
as their predictions. Output (published as `<root>/<pipeline>/<ds>/scores/`): Parquet
files in the score table's schema (`sink`) and `summary.json` with the row counts
that `publish_scores` checks before replacing the table partition.

The model call runs on about one core, so the work around it runs beside it on threads:
the next batch is cast, counted (NULL and unseen values) and turned into tensors while
the current one is scored, and the Parquet encoding of scored batches happens while the
next ones are scored. Each of those threads holds at most a couple of batches, so memory
stays flat in the number of rows. The scoring query's keys are checked unique by one
query in the warehouse meanwhile.
"""

from __future__ import annotations

import gc
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.ml.inference.base import RunInference

from tfpipe_jobs import artifacts, registry
from tfpipe_jobs.beam_jobs.batch_score.inputs import ROWS_MISSING_OR_UNSEEN, PreparedBatch
from tfpipe_jobs.beam_jobs.batch_score.model_handler import (
    CountRows,
    PrepareInputs,
    SavedModelHandler,
    prediction_fields,
    read_class_names,
    score_schema,
)
from tfpipe_jobs.beam_jobs.batch_score.sink import ParquetScoreSink
from tfpipe_jobs.beam_jobs.runner import fan_out, make_options, make_runner, read_shards
from tfpipe_jobs.beam_jobs.warehouse_source import ReadWarehouse, counters
from tfpipe_jobs.context import JobContext
from tfpipe_operators.features import Task
from tfpipe_operators.spec import PipelineSpec

log = logging.getLogger(__name__)


class DuplicateKeysError(ValueError):
    """The scoring query returns a key more than once; the table needs one row per key."""


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
