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

from tfpipe_jobs import artifacts, metrics, registry
from tfpipe_jobs.context import JobContext
from tfpipe_jobs.eval_rows import exported_predictions, read_eval_raw
from tfpipe_jobs.evaluate_gate import plots
from tfpipe_operators.config import LOWER_IS_BETTER, GateConfig
from tfpipe_operators.features import LABEL_KEY, Task, vocabulary_file_for_label

log = logging.getLogger(__name__)
BLESSED = "blessed"
REFUSED = "refused"


def baseline_predictions(
    task: Task, train_labels_mean: float, labels: np.ndarray, num_classes: int | None
) -> np.ndarray:
    """Label mean (binary, regression) or class frequencies (multiclass), for every row."""
    n = labels.shape[0]
    if task is Task.MULTICLASS:
        # The eval rows' own class frequencies: the best constant there is, a strict baseline.
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


def label_vocabulary(saved_model_dir: str) -> list[str]:
    """Class names in class-id order, from the model's own copy of the label vocabulary.

    tf.Transform's label vocabulary travels inside the exported SavedModel as an asset, so
    a blessed model from another day is read with the classes it was trained on, whatever
    has happened to that day's data folder since.
    """
    path = artifacts.join(saved_model_dir, "assets", vocabulary_file_for_label())
    if not artifacts.exists(path):
        raise artifacts.MissingArtifactError(
            f"{path} does not exist: the SavedModel carries no label vocabulary, so its class ids cannot be "
            "named (was it exported from a multiclass pipeline by export_serving_model?)"
        )
    return artifacts.read_text(path).splitlines()


def class_ids(raw_labels: np.ndarray, names: list[str]) -> np.ndarray:
    """Raw label strings -> class ids in `names` order; -1 for a label outside the vocabulary."""
    index = {name: i for i, name in enumerate(names)}
    decoded = (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in raw_labels)
    return np.fromiter((index.get(v, -1) for v in decoded), dtype=np.int64, count=len(raw_labels))


def align_classes(probs: np.ndarray, model_names: list[str], names: list[str], where: str) -> np.ndarray:
    """A model's probability columns reordered into `names` order.

    Class ids are frequency ranks of each day's own label vocabulary, so the blessed model's
    column k may be another class than the new model's column k. A class the model never saw
    gets probability 0.
    """
    if len(model_names) > probs.shape[1]:
        raise ValueError(
            f"{where}: the label vocabulary has {len(model_names)} classes but the model outputs "
            f"{probs.shape[1]} probabilities; raise label.num_classes in the spec to at least {len(model_names)}"
        )
    column = {name: i for i, name in enumerate(model_names)}
    out = np.zeros((probs.shape[0], len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        if name in column:
            out[:, j] = probs[:, column[name]]
    return out


def class_report(
    names: list[str], labels: np.ndarray, predictions: dict[str, np.ndarray], unknown_rows: int
) -> dict[str, Any]:
    """Per-class counts, recall and confusion matrices by class name, for evaluation.json."""
    report: dict[str, Any] = {
        "names": names,
        "eval_rows_per_class": dict(zip(names, np.bincount(labels, minlength=len(names)).tolist(), strict=True)),
        "eval_rows_with_unknown_label": unknown_rows,
        "confusion_matrix": {"axes": "true class -> predicted class -> rows"},
        "recall": {},
        "predicted_rows_per_class": {},
    }
    for model, probs in predictions.items():
        matrix = metrics.confusion_matrix(labels, probs)
        report["confusion_matrix"][model] = {
            true: dict(zip(names, row.tolist(), strict=True)) for true, row in zip(names, matrix, strict=True)
        }
        support = matrix.sum(axis=1)
        report["recall"][model] = {
            name: (round(float(matrix[i, i] / support[i]), 5) if support[i] else None) for i, name in enumerate(names)
        }
        report["predicted_rows_per_class"][model] = dict(zip(names, matrix.sum(axis=0).tolist(), strict=True))
    return report


def run(ctx: JobContext) -> dict[str, Any]:
    spec = ctx.spec
    data_dir = artifacts.require_complete(ctx.paths.data, "extract_transform")
    serving_dir = artifacts.require_complete(ctx.paths.serving, "export_serving_model")
    table = read_eval_raw(data_dir)
    if table.num_rows == 0:
        raise ValueError(f"{spec.pipeline} {ctx.ds}: no eval rows; the gate cannot judge the model")
    labels = table.column(LABEL_KEY).to_numpy(zero_copy_only=False)
    task = spec.label.task.value
    multiclass = spec.label.task is Task.MULTICLASS
    names: list[str] = []
    known = np.ones(labels.shape[0], dtype=bool)
    if multiclass:
        names = label_vocabulary(artifacts.join(serving_dir, artifacts.SAVED_MODEL_DIR))
        labels = class_ids(labels, names)
        known = labels >= 0
        if not known.any():
            raise ValueError(
                f"{spec.pipeline} {ctx.ds}: none of the {labels.size} eval labels is in the label vocabulary "
                f"of {data_dir} ({len(names)} classes); the gate cannot judge the model"
            )
        labels = labels[known]

    def predict(serving: str) -> np.ndarray:
        saved_model = artifacts.join(serving, artifacts.SAVED_MODEL_DIR)
        pred = exported_predictions(tf.saved_model.load(saved_model), spec, table)
        if not multiclass:
            return pred
        return align_classes(pred[known], label_vocabulary(saved_model), names, where=f"model {saved_model}")

    # The candidate is named by its files' digest, taken before and after it is judged: a
    # concurrent rerun of the export that replaced it meanwhile is refused, not judged.
    digest = registry.saved_model_digest(serving_dir)
    new_pred = predict(serving_dir)
    if registry.saved_model_digest(serving_dir) != digest:
        raise registry.ModelIntegrityError(
            f"{serving_dir} changed while evaluate_gate judged it (a rerun of export_serving_model?): rerun the gate"
        )
    candidate = {
        "serving": serving_dir,
        "model_version": registry.model_version(ctx.ds.isoformat(), digest),
        "digest": digest,
        "data_fingerprint": registry.file_digest(artifacts.join(data_dir, "stats.json")),
    }
    stats = artifacts.read_json(artifacts.join(data_dir, "stats.json"))
    label_mean = float(stats["columns"]["__label"].get("mean") or 0.0) if not multiclass else 0.0
    baseline = baseline_predictions(spec.label.task, label_mean, labels, len(names) if multiclass else None)
    results: dict[str, Any] = {
        "new": metrics.task_metrics(task, labels, new_pred),
        "baseline": metrics.task_metrics(task, labels, baseline),
    }
    predictions = {"new": new_pred, "baseline": baseline}
    current = registry.blessed_as_of(ctx.paths, ctx.ds.isoformat())
    blessed_metrics = None
    same = current is not None and current["model_version"] == candidate["model_version"]
    if current is not None and not same:
        predictions["blessed"] = predict(registry.verified_model_dir(ctx.paths, current))
        blessed_metrics = metrics.task_metrics(task, labels, predictions["blessed"])
        results["blessed"] = blessed_metrics
    ok, reasons = decide(ctx.config.gate, results["new"], results["baseline"], blessed_metrics)
    if same:
        # A model is never compared with itself: a rerun that exported the same files again.
        reasons[-1] = (
            f"SAME the candidate is the blessed model {candidate['model_version']} (identical files): "
            "judged against baseline and thresholds only"
        )
    if multiclass and not known.all():
        reasons.append(
            f"NOTE {int((~known).sum())} of {known.size} eval rows have a label outside the label vocabulary "
            "(unseen in training) and are left out of every metric"
        )
    verdict = BLESSED if ok else REFUSED
    evaluation = {
        **ctx.provenance(),
        "verdict": verdict,
        "rules": reasons,
        "gate": ctx.config.gate.model_dump(),
        "eval_rows": table.num_rows,
        "metrics": results,
        "blessed_model": current,
        "candidate": candidate,
    }
    if multiclass:
        evaluation["classes"] = class_report(
            names, labels, {k: v for k, v in predictions.items() if k != "baseline"}, int((~known).sum())
        )
    with artifacts.staged_output(ctx.paths.eval) as out:
        artifacts.write_json(artifacts.join(out, "evaluation.json"), evaluation)
        artifacts.write_text(artifacts.join(out, "verdict"), verdict + "\n")
        plots.plot(task, labels, predictions, artifacts.join(out, "evaluation.png"), class_names=names)
    for line in reasons:
        log.info("gate: %s", line)
    log.info("gate: verdict %s for %s %s", verdict.upper(), spec.pipeline, ctx.ds)
    return {
        "verdict": verdict,
        "blessed": ok,
        "model_version": candidate["model_version"],
        "compared_with": current["model_version"] if current and not same else None,
        "metric": ctx.config.gate.metric,
        "new": results["new"],
        "rules": reasons,
    }
