"""The tune DAG's result: the best trial of a day becomes the pipeline's tuned config.

`select_trial` reads every trial's model package under `<ds>/trials/`, ranks them by the
gate's metric on the eval split, and replaces `<pipeline>/tuning/best.json` in one step
(the trial table goes beside it). Daily runs read that file and train with its values,
below anything a run overrides.
"""

from __future__ import annotations

import csv
import io
import logging
from typing import Any

from tfpipe_jobs import artifacts
from tfpipe_jobs.artifacts import RunPaths
from tfpipe_jobs.context import JobContext
from tfpipe_operators.config import HIGHER_IS_BETTER

log = logging.getLogger(__name__)


def read(paths: RunPaths) -> dict[str, Any] | None:
    if not artifacts.exists(paths.tuned_file):
        return None
    return dict(artifacts.read_json(paths.tuned_file))


def _eval_metric(ctx: JobContext) -> tuple[str, bool]:
    """Keras' name for the task's eval metric, and whether higher is better."""
    metric = {"binary": "auc", "multiclass": "accuracy", "regression": "rmse"}[ctx.spec.label.task.value]
    return f"val_{metric}", metric != "rmse"


def kept_epoch(history: list[dict[str, str]], config: dict[str, Any], gate_metric: str) -> dict[str, str]:
    """The metrics.csv row of the epoch whose weights the trial's model has.

    Early stopping restores the best epoch by the metric it watched (the eval loss unless
    `train.early_stopping_metric` says otherwise; a package trained before that key existed
    watched the gate's metric); without early stopping the model is the last epoch.
    """
    if not config.get("train.early_stopping_patience", 0):
        return history[-1]
    watched = config.get("train.early_stopping_metric")
    column = f"val_{watched}" if watched else gate_metric
    higher = (watched or gate_metric.removeprefix("val_")) in HIGHER_IS_BETTER
    # The first of equal values: Keras counts only a strict improvement as a new best.
    pick = max if higher else min
    return pick(history, key=lambda row: float(row[column]))


def run(ctx: JobContext) -> dict[str, Any]:
    metric, higher = _eval_metric(ctx)
    rows = []
    for trial_dir in artifacts.glob(artifacts.join(ctx.paths.trials, "*")):
        model_dir = artifacts.published(artifacts.join(trial_dir.rstrip("/"), "model"))
        if model_dir is None:
            continue
        config = artifacts.read_json(artifacts.join(model_dir, "config.json"))
        history = list(csv.DictReader(io.StringIO(artifacts.read_text(artifacts.join(model_dir, "metrics.csv")))))
        value = float(kept_epoch(history, config["config"], metric)[metric])
        rows.append(
            {"trial": config["trial"], metric: value, "epochs": len(history), "overrides": config.get("overrides", {})}
        )
    if not rows:
        raise artifacts.MissingArtifactError(
            f"no finished trial under {ctx.paths.trials}: the train tasks must succeed"
        )
    rows.sort(key=lambda r: r[metric], reverse=higher)
    best = rows[0]
    result = {
        "pipeline": ctx.spec.pipeline,
        "ds": ctx.ds.isoformat(),
        "trial": best["trial"],
        "metric": metric,
        "value": best[metric],
        "overrides": best["overrides"],
        "trials": rows,
    }
    artifacts.atomic_write_json(ctx.paths.tuned_file, result)
    table = artifacts.join(ctx.paths.tuned_file.rsplit("/", 1)[0], f"trials-{ctx.ds.isoformat()}.csv")
    keys = sorted({k for r in rows for k in r["overrides"]})
    lines = io.StringIO()
    writer = csv.writer(lines)
    writer.writerow(["trial", *keys, metric, "epochs"])
    for r in rows:
        writer.writerow([r["trial"], *(r["overrides"].get(k) for k in keys), f"{r[metric]:.5f}", r["epochs"]])
    artifacts.write_text(table, lines.getvalue())
    for line in lines.getvalue().splitlines():
        log.info("trials: %s", line)
    log.info(
        "tuning: best is %s (%s %.5f); daily runs now train with %s",
        best["trial"],
        metric,
        best[metric],
        best["overrides"],
    )
    return result
