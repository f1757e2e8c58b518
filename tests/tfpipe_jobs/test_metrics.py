from __future__ import annotations

import numpy as np
import pytest

from tfpipe_jobs import metrics


def test_auc_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300), 1)  # many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairwise = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (
        pos.size * neg.size
    )
    assert metrics.roc_auc(labels, scores) == pytest.approx(pairwise)


def test_auc_extremes_and_one_class() -> None:
    assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert metrics.roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert metrics.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    with pytest.raises(ValueError, match="needs both classes; got 2 positives and 0 negatives"):
        metrics.roc_auc([1, 1], [0.2, 0.3])


def test_log_loss_accuracy_regression() -> None:
    assert metrics.log_loss([1, 0], [0.5, 0.5]) == pytest.approx(np.log(2))
    assert metrics.accuracy([1, 0, 1], [0.9, 0.4, 0.2]) == pytest.approx(2 / 3)
    assert metrics.accuracy([2, 0], np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])) == 1.0
    assert metrics.rmse([0, 0], [3, 4]) == pytest.approx(np.sqrt(12.5))
    assert metrics.mae([1, 2], [2, 0]) == pytest.approx(1.5)
    assert metrics.calibration_error([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.0)
