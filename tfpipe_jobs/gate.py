"""evaluate_gate: new model vs blessed model vs trivial baseline, on the same eval rows.

All three are scored on the day's raw eval rows through the exported SavedModels'
`predict_raw` signature, so each model uses its own transform graph (a blessed model
from an older day keeps its own vocabularies). Writes `eval/evaluation.json` with every
number and the rule that decided, and `eval/verdict` ("blessed" or "refused").
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import tensorflow as tf

from tfpipe_jobs import artifacts, evaluation_plots, metrics, registry
from tfpipe_jobs.context import JobContext
from tfpipe_jobs.serving_export.export import SAVED_MODEL_DIR, exported_predictions, read_eval_raw
from tfpipe_operators.features import LABEL_KEY, Task
from tfpipe_operators.spec import LOWER_IS_BETTER, GateConfig

log = logging.getLogger(__name__)
BLESSED = "blessed"
REFUSED = "refused"


def baseline_predictions(
    task: Task, train_labels_mean: float, labels: np.ndarray, num_classes: int | None
) -> np.ndarray:
    """Label mean (binary, regression) or class frequencies (multiclass), for every row."""
    n = labels.shape[0]
    if task is Task.MULTICLASS:
        assert num_classes is not None
        freq = np.bincount(labels.astype(np.int64), minlength=num_classes) / max(n, 1)
        return np.tile(freq, (n, 1))
    return np.full(n, train_labels_mean, dtype=np.float64)


def decide(
    cfg: GateConfig, new: dict[str, float], baseline: dict[str, float], blessed: dict[str, float] | None
) -> tuple[bool, list[str]]:
    """Apply the gate's rules; return the verdict and one line per rule with its numbers."""
    m = cfg.metric
    sign = -1.0 if m in LOWER_IS_BETTER else 1.0
    reasons: list[str] = []
    ok = True
    lift = sign * (new[m] - baseline[m])
    passed = lift >= cfg.min_lift_over_baseline
    ok &= passed
    reasons.append(
        f"{'PASS' if passed else 'FAIL'} lift over baseline: {m} {new[m]:.5f} vs {baseline[m]:.5f} "
        f"(lift {lift:+.5f}, required >= {cfg.min_lift_over_baseline})"
    )
    if cfg.min_value is not None:
        passed = sign * new[m] >= sign * cfg.min_value
        ok &= passed
        bound = ">=" if sign > 0 else "<="
        reasons.append(f"{'PASS' if passed else 'FAIL'} threshold: {m} {new[m]:.5f} {bound} {cfg.min_value}")
    if blessed is None:
        reasons.append("no blessed model yet: judged against baseline and thresholds only")
    else:
        change = sign * (new[m] - blessed[m])
        passed = change >= -cfg.max_regression
        ok &= passed
        reasons.append(
            f"{'PASS' if passed else 'FAIL'} vs blessed: {m} {new[m]:.5f} vs {blessed[m]:.5f} "
            f"(change {change:+.5f}, allowed regression {cfg.max_regression})"
        )
    return ok, reasons


def run(ctx: JobContext) -> dict[str, Any]:
    spec = ctx.spec
    data_dir = artifacts.require_complete(ctx.paths.data, "extract_transform")
    serving_dir = artifacts.require_complete(ctx.paths.serving, "export_serving_model")
    table = read_eval_raw(data_dir)
    if table.num_rows == 0:
        raise ValueError(f"{spec.pipeline} {ctx.ds}: no eval rows; the gate cannot judge the model")
    labels = table.column(LABEL_KEY).to_numpy()
    task = spec.label.task.value
    if spec.label.task is Task.MULTICLASS:
        raise NotImplementedError("the gate does not evaluate multiclass models yet (labels need the label vocabulary)")

    new_pred = exported_predictions(tf.saved_model.load(artifacts.join(serving_dir, SAVED_MODEL_DIR)), spec, table)
    stats = artifacts.read_json(artifacts.join(data_dir, "stats.json"))
    label_mean = float(stats["columns"]["__label"].get("mean") or 0.0)
    baseline = baseline_predictions(spec.label.task, label_mean, labels, spec.label.num_classes)
    results: dict[str, Any] = {
        "new": metrics.task_metrics(task, labels, new_pred),
        "baseline": metrics.task_metrics(task, labels, baseline),
    }
    predictions = {"new": new_pred, "baseline": baseline}
    current = registry.read_blessed(ctx.paths)
    blessed_metrics = None
    if current is not None:
        blessed_model = tf.saved_model.load(artifacts.join(current["serving"], SAVED_MODEL_DIR))
        predictions["blessed"] = exported_predictions(blessed_model, spec, table)
        blessed_metrics = metrics.task_metrics(task, labels, predictions["blessed"])
        results["blessed"] = blessed_metrics
    ok, reasons = decide(ctx.config.gate, results["new"], results["baseline"], blessed_metrics)
    verdict = BLESSED if ok else REFUSED
    evaluation = {
        **ctx.provenance(),
        "verdict": verdict,
        "rules": reasons,
        "gate": ctx.config.gate.model_dump(),
        "eval_rows": table.num_rows,
        "metrics": results,
        "blessed_model": current,
        "candidate": {"serving": ctx.paths.serving},
    }
    with artifacts.staged_output(ctx.paths.eval) as out:
        artifacts.write_json(artifacts.join(out, "evaluation.json"), evaluation)
        artifacts.write_text(artifacts.join(out, "verdict"), verdict + "\n")
        evaluation_plots.plot(task, labels, predictions, artifacts.join(out, "evaluation.png"))
    for line in reasons:
        log.info("gate: %s", line)
    log.info("gate: verdict %s for %s %s", verdict.upper(), spec.pipeline, ctx.ds)
    return {
        "verdict": verdict,
        "blessed": ok,
        "metric": ctx.config.gate.metric,
        "new": results["new"],
        "rules": reasons,
    }
