"""The picture evaluate_gate leaves beside its verdict: new vs blessed vs baseline at a glance.

Binary: ROC curves and a calibration (reliability) plot. Regression: predicted vs actual
and the residual distribution. Multiclass: confusion matrices of the new and blessed models
side by side, by class name, shaded by the share of each true class (so rare classes show too).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfpipe_jobs import metrics


def _roc(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-scores, kind="mergesort")
    hits = labels[order].astype(np.float64)
    # One point per distinct threshold, so tied scores (a constant baseline) draw a straight line.
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores[order])), hits.size - 1]
    tpr = np.concatenate([[0.0], np.cumsum(hits)[last_of_tie] / max(hits.sum(), 1.0)])
    fpr = np.concatenate([[0.0], np.cumsum(1.0 - hits)[last_of_tie] / max((1.0 - hits).sum(), 1.0)])
    return fpr, tpr


def _calibration(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    edges = np.quantile(probs, np.linspace(0, 1, bins + 1))
    idx = np.clip(np.searchsorted(edges, probs, side="right") - 1, 0, bins - 1)
    mean_p = np.array([probs[idx == b].mean() for b in range(bins) if (idx == b).any()])
    mean_y = np.array([labels[idx == b].mean() for b in range(bins) if (idx == b).any()])
    return mean_p, mean_y


def plot(
    task: str,
    labels: np.ndarray,
    predictions: dict[str, np.ndarray],
    path: str,
    class_names: list[str] | None = None,
) -> None:
    """Write a PNG comparing each named model's predictions on the same eval rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tensorflow as tf

    fig: Any
    if task == "binary":
        fig, (roc_ax, cal_ax) = plt.subplots(1, 2, figsize=(10, 4.2))
        for name, probs in predictions.items():
            fpr, tpr = _roc(labels, probs)
            roc_ax.plot(fpr, tpr, label=f"{name} (AUC {metrics.roc_auc(labels, probs):.3f})")
            if np.ptp(probs) > 0:
                mean_p, mean_y = _calibration(labels, probs)
                cal_ax.plot(mean_p, mean_y, marker="o", label=name)
        roc_ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
        roc_ax.set(title="ROC", xlabel="false positive rate", ylabel="true positive rate")
        top = max(float(np.max(p)) for p in predictions.values())
        cal_ax.plot([0, top], [0, top], color="grey", linestyle=":")
        cal_ax.set(title="calibration (deciles)", xlabel="mean predicted", ylabel="observed rate")
        roc_ax.legend(loc="lower right")
        cal_ax.legend(loc="upper left")
    elif task == "regression":
        fig, (scatter_ax, resid_ax) = plt.subplots(1, 2, figsize=(10, 4.2))
        for name, values in predictions.items():
            scatter_ax.scatter(labels, values, s=4, alpha=0.4, label=name)
            resid_ax.hist(
                values - labels, bins=50, alpha=0.5, label=f"{name} (RMSE {metrics.rmse(labels, values):.3g})"
            )
        scatter_ax.set(title="predicted vs actual", xlabel="actual", ylabel="predicted")
        resid_ax.set(title="residuals", xlabel="predicted - actual")
        scatter_ax.legend()
        resid_ax.legend()
    else:
        models = [m for m in ("new", "blessed") if m in predictions]
        k = predictions["new"].shape[1]
        names = list(class_names or []) or [str(i) for i in range(k)]
        side = 2.2 + 0.45 * k
        fig, axes = plt.subplots(1, len(models), figsize=(side * len(models), side), squeeze=False)
        for ax, name in zip(axes[0], models, strict=True):
            matrix = metrics.confusion_matrix(labels, predictions[name])
            share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
            ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
            if k <= 20:  # beyond that the numbers are unreadable; the colours still are
                for (i, j), count in np.ndenumerate(matrix):
                    colour = "white" if share[i, j] > 0.6 else "black"
                    ax.text(j, i, str(count), ha="center", va="center", fontsize=8, color=colour)
            ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
            ax.set_yticks(range(k), names, fontsize=8)
            accuracy = metrics.accuracy(labels, predictions[name])
            ax.set(title=f"{name} model (accuracy {accuracy:.3f})", xlabel="predicted class", ylabel="true class")
    fig.tight_layout()
    with tf.io.gfile.GFile(path, "wb") as f:
        fig.savefig(f, format="png", dpi=90)
    plt.close(fig)
