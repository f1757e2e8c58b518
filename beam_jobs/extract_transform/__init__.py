"""The extract_transform step: the day's warehouse rows -> tf.Transform -> TFRecords.

`pipeline` is the Beam pipeline and the step's `run`; `data_stats` validates the day's
statistics before anything is written; `tfrecord_sink` writes the packed tf.Examples.
The checks it shares with publish_scores (schema, drift) are in `tfpipe_jobs.monitoring`,
the transform graph every later step loads in `tfpipe_jobs.preprocessing`.
"""

from tfpipe_jobs.beam_jobs.extract_transform.pipeline import run

__all__ = ["run"]
