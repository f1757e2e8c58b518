"""The evaluate_gate step: the new model against the blessed one and a baseline.

`gate` scores the three on the day's eval rows and applies the spec's rules (the step's
`run`); `plots` draws `evaluation.png`. The metric formulas are `tfpipe_jobs.metrics`.
"""

from tfpipe_jobs.evaluate_gate.gate import run

__all__ = ["run"]
