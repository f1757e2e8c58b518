"""The publish_model step: bless the model evaluate_gate accepted, or skip.

A refused model is never published: the step exits with the skip code, Airflow marks the
task skipped (and alerts), and batch_score keeps scoring with the model blessed before.
How a blessing is stored and recorded is the registry's (`tfpipe_jobs.registry`).
"""

from __future__ import annotations

from typing import Any

from tfpipe_jobs import artifacts, registry
from tfpipe_jobs.context import JobContext, SkipStep


def run(ctx: JobContext) -> dict[str, Any]:
    paths = ctx.paths
    eval_dir = artifacts.require_complete(paths.eval, "evaluate_gate")
    verdict = artifacts.read_text(artifacts.join(eval_dir, "verdict")).strip()
    evaluation = artifacts.read_json(artifacts.join(eval_dir, "evaluation.json"))
    if verdict != "blessed":
        raise SkipStep(f"the gate refused the model of {ctx.ds}: " + "; ".join(evaluation["rules"]))
    return registry.bless_candidate(paths, ctx.ds.isoformat(), eval_dir, evaluation, {"kind": registry.NIGHTLY})
