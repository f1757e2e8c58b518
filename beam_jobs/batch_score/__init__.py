"""The batch_score step: every scoring row, scored by the blessed SavedModel in Beam.

`pipeline` is the Beam pipeline and the step's `run`; `inputs` turns record batches into
the signature's tensors and counts NULL and unseen values; `model_handler` loads the model
once per worker and calls it; `sink` writes the Parquet the score table is loaded from.
"""

from tfpipe_jobs.beam_jobs.batch_score.pipeline import run

__all__ = ["run"]
