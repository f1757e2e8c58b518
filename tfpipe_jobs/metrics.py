"""Evaluation metrics in NumPy, shared by the gate, training reports and benchmarks.

Kept free of TensorFlow so the same numbers come out whichever model produced the
scores, and so tests can check them against hand-computed values.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-7


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve with ties counted half (Mann-Whitney U)."""
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs both classes; got {n_pos} positives and {n_neg} negatives")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size, dtype=np.float64)
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean cross-entropy; `probs` is P(class 1) for binary or a [n, k] matrix for multiclass."""
    probs = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    labels = np.asarray(labels).astype(np.int64).ravel()
    if probs.ndim == 1:
        return float(-np.mean(labels * np.log(probs) + (1 - labels) * np.log(1 - probs)))
    return float(-np.mean(np.log(probs[np.arange(labels.size), labels])))


def accuracy(labels: np.ndarray, probs: np.ndarray) -> float:
    labels = np.asarray(labels).astype(np.int64).ravel()
    probs = np.asarray(probs, dtype=np.float64)
    predicted = (probs >= 0.5).astype(np.int64) if probs.ndim == 1 else probs.argmax(axis=1)
    return float(np.mean(predicted == labels))


def rmse(labels: np.ndarray, values: np.ndarray) -> float:
    diff = np.asarray(values, dtype=np.float64).ravel() - np.asarray(labels, dtype=np.float64).ravel()
    return float(np.sqrt(np.mean(diff**2)))


def mae(labels: np.ndarray, values: np.ndarray) -> float:
    diff = np.asarray(values, dtype=np.float64).ravel() - np.asarray(labels, dtype=np.float64).ravel()
    return float(np.mean(np.abs(diff)))


def calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-width probability bins."""
    labels = np.asarray(labels, dtype=np.float64).ravel()
    probs = np.asarray(probs, dtype=np.float64).ravel()
    idx = np.minimum((probs * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            total += mask.sum() * abs(labels[mask].mean() - probs[mask].mean())
    return float(total / max(labels.size, 1))


def macro_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean one-vs-rest AUC over the classes present in `labels` (a class never seen has no AUC)."""
    labels = np.asarray(labels).astype(np.int64).ravel()
    probs = np.asarray(probs, dtype=np.float64)
    present = [k for k in range(probs.shape[1]) if 0 < np.count_nonzero(labels == k) < labels.size]
    if not present:
        raise ValueError(f"macro AUC needs at least two classes in the labels; got {np.unique(labels).tolist()}")
    return float(np.mean([roc_auc(labels == k, probs[:, k]) for k in present]))


def top_k_accuracy(labels: np.ndarray, probs: np.ndarray, k: int) -> float:
    """Share of rows whose true class is among the `k` most probable ones."""
    labels = np.asarray(labels).astype(np.int64).ravel()
    top = np.argsort(-np.asarray(probs, dtype=np.float64), axis=1, kind="stable")[:, :k]
    return float(np.mean((top == labels[:, None]).any(axis=1)))


def confusion_matrix(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """[true class, predicted class] counts of the argmax predictions."""
    labels = np.asarray(labels).astype(np.int64).ravel()
    k = probs.shape[1]
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (labels, np.asarray(probs).argmax(axis=1)), 1)
    return matrix


def task_metrics(task: str, labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """All metrics the gate reports for a task."""
    if task == "binary":
        return {
            "auc": roc_auc(labels, predictions),
            "log_loss": log_loss(labels, predictions),
            "accuracy": accuracy(labels, predictions),
            "calibration_error": calibration_error(labels, predictions),
        }
    if task == "multiclass":
        return {
            "accuracy": accuracy(labels, predictions),
            "top_2_accuracy": top_k_accuracy(labels, predictions, 2),
            "log_loss": log_loss(labels, predictions),
            "macro_auc": macro_auc(labels, predictions),
        }
    if task == "regression":
        return {"rmse": rmse(labels, predictions), "mae": mae(labels, predictions)}
    raise ValueError(f"unknown task '{task}'")
