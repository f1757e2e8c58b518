"""The evaluation picture: one PNG per task, comparing the new, blessed and baseline models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from tfpipe_jobs.evaluate_gate import plots

DPI = 90  # what the gate's picture is saved at


def _png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return image.imread(str(path))


def _binary(rows: int = 400) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    labels = (rng.random(rows) < 0.3).astype(np.int64)
    new = np.clip(0.3 + 0.4 * (labels - 0.3) + rng.normal(0, 0.15, rows), 0.01, 0.99)
    return labels, {
        "new": new,
        "blessed": np.clip(new + rng.normal(0, 0.1, rows), 0.01, 0.99),
        "baseline": np.full(rows, 0.3),
    }


def test_binary_roc_and_calibration_side_by_side(tmp_path: Path) -> None:
    """A constant baseline among them (its calibration has no curve) is drawn too."""
    labels, predictions = _binary()
    path = tmp_path / "evaluation.png"
    plots.plot("binary", labels, predictions, str(path))
    height, width, _ = _png(path).shape
    assert (width, height) == (10 * DPI, round(4.2 * DPI))


def test_regression_predicted_vs_actual(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    labels = rng.normal(50, 10, 300)
    path = tmp_path / "evaluation.png"
    plots.plot("regression", labels, {"new": labels + rng.normal(0, 2, 300), "baseline": np.full(300, 50.0)}, str(path))
    height, width, _ = _png(path).shape
    assert (width, height) == (10 * DPI, round(4.2 * DPI))


@pytest.mark.parametrize("models", [("new", "blessed"), ("new",)])
def test_multiclass_confusion_matrices_one_per_model_compared(tmp_path: Path, models: tuple[str, ...]) -> None:
    """A first model has nothing blessed to compare with: one matrix, not two."""
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 200)
    probs = rng.dirichlet(np.ones(3), 200)
    predictions = {name: probs for name in models} | {"baseline": np.full((200, 3), 1 / 3)}
    path = tmp_path / "evaluation.png"
    plots.plot("multiclass", labels, predictions, str(path), class_names=["cheap", "mid", "dear"])
    height, width, _ = _png(path).shape
    side = (2.2 + 0.45 * 3) * DPI
    assert abs(height - side) <= 1 and abs(width - side * len(models)) <= 1


def test_roc_draws_one_point_per_threshold_from_corner_to_corner() -> None:
    labels = np.array([1, 0, 1, 0, 0])
    fpr, tpr = plots._roc(labels, np.array([0.9, 0.8, 0.7, 0.2, 0.1]))
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1, 1])
    # a constant score is one threshold: a straight line from (0, 0) to (1, 1)
    fpr, tpr = plots._roc(labels, np.full(5, 0.3))
    np.testing.assert_allclose(fpr, [0, 1])
    np.testing.assert_allclose(tpr, [0, 1])


def test_calibration_compares_the_mean_prediction_with_the_observed_rate_per_bin() -> None:
    probs = np.repeat([0.1, 0.5, 0.9], 100)
    labels = np.concatenate([np.arange(100) < 10, np.arange(100) < 50, np.arange(100) < 90]).astype(float)
    mean_p, mean_y = plots._calibration(labels, probs, bins=3)
    np.testing.assert_allclose(mean_p, mean_y, atol=1e-9)  # perfectly calibrated
