"""The publish_scores step: the day's scores checked, then one partition of the score table replaced.

`score_table` holds the step's `run` and the table rules; `prediction_gate` compares the
scores with the previous partition. The feature skew check is `tfpipe_jobs.monitoring.skew`.
"""

from tfpipe_jobs.publish_scores.score_table import run

__all__ = ["run"]
