"""The day's raw eval rows and a serving model's predictions on them.

export_serving_model proves the exported model equal to the trained one on these rows, and
evaluate_gate compares the new, the blessed and the baseline model on them: both feed the
`predict_raw` signature the same way, from here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf

from tfpipe_jobs import artifacts
from tfpipe_jobs.arrow_batches import model_inputs
from tfpipe_operators.features import OUTPUT_KEYS
from tfpipe_operators.spec import PipelineSpec


def read_eval_raw(data_dir: str, max_rows: int | None = None) -> Any:
    """The day's raw eval rows (features, keys and label) as one Arrow table."""
    files = artifacts.glob(artifacts.join(data_dir, "eval_raw", "*.parquet"))
    if not files:
        raise artifacts.MissingArtifactError(f"no raw eval rows under {data_dir}/eval_raw")
    if "://" in data_dir:
        # pyarrow reads only local paths here; on gs:// each (small) file is read through tf.io.
        table = pa.concat_tables(pq.read_table(pa.BufferReader(artifacts.read_bytes(f))) for f in files)
    else:
        table = pq.ParquetDataset(files).read()
    return table.slice(0, max_rows) if max_rows else table


def exported_predictions(saved_model: Any, spec: PipelineSpec, table: Any) -> np.ndarray:
    fn = saved_model.signatures["predict_raw"]
    out = []
    for batch in table.to_batches(max_chunksize=4096):
        inputs = {k: tf.constant(v) for k, v in model_inputs(spec, batch).items()}
        result = fn(**inputs)
        out.append(result[OUTPUT_KEYS[spec.label.task.value]].numpy())
    return np.concatenate(out)
