"""The model registry: `registry/blessed.json` names the model version scoring uses.

Publishing is one atomic replace of that file. A model from an older `ds` (a backfill)
never replaces one blessed from a newer `ds`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from tfpipe_jobs import artifacts
from tfpipe_jobs.artifacts import RunPaths
from tfpipe_jobs.context import JobContext, SkipStep

log = logging.getLogger(__name__)


class NoBlessedModelError(LookupError):
    """Scoring was asked for but no model of this pipeline has ever been blessed."""


def read_blessed(paths: RunPaths) -> dict[str, Any] | None:
    if not artifacts.exists(paths.blessed_file):
        return None
    return dict(artifacts.read_json(paths.blessed_file))


def require_blessed(paths: RunPaths) -> dict[str, Any]:
    current = read_blessed(paths)
    if current is None:
        raise NoBlessedModelError(
            f"no blessed model for pipeline '{paths.pipeline}' ({paths.blessed_file} does not exist): "
            "the first model must pass evaluate_gate before anything can be scored"
        )
    return current


def model_version(entry: dict[str, Any]) -> str:
    return f"{entry['ds']}-{entry['config_hash']}"


def publish(ctx: JobContext) -> dict[str, Any]:
    eval_dir = artifacts.require_complete(ctx.paths.eval, "evaluate_gate")
    verdict = artifacts.read_text(artifacts.join(eval_dir, "verdict")).strip()
    evaluation = artifacts.read_json(artifacts.join(eval_dir, "evaluation.json"))
    if verdict != "blessed":
        raise SkipStep(f"the gate refused the model of {ctx.ds}: " + "; ".join(evaluation["rules"]))
    current = read_blessed(ctx.paths)
    if current is not None and current["ds"] > ctx.ds.isoformat():
        raise SkipStep(f"a model from a newer ds ({current['ds']}) is blessed; the {ctx.ds} model is not published")
    entry = {
        "pipeline": ctx.spec.pipeline,
        "ds": ctx.ds.isoformat(),
        "serving": ctx.paths.serving,
        "metrics": evaluation["metrics"]["new"],
        "config_hash": evaluation["config_hash"],
        "blessed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    entry["model_version"] = model_version(entry)
    artifacts.atomic_write_json(ctx.paths.blessed_file, entry)
    log.info(
        "registry: %s is now the blessed model of %s (was %s)",
        entry["model_version"],
        ctx.spec.pipeline,
        model_version(current) if current else "none",
    )
    return entry
