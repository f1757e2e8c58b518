from __future__ import annotations

import json

from tfpipe_jobs.evaluate_gate.gate import decide
from tfpipe_operators.config import GateConfig


def test_first_model_is_judged_against_baseline_and_thresholds(ctr_run) -> None:
    evaluation = json.loads((ctr_run.day() / "eval" / "evaluation.json").read_text())
    assert evaluation["verdict"] == "blessed"
    assert (ctr_run.day() / "eval" / "verdict").read_text().strip() == "blessed"
    assert evaluation["metrics"]["baseline"]["auc"] == 0.5  # a constant predictor
    assert evaluation["metrics"]["new"]["auc"] > 0.6
    assert evaluation["blessed_model"] is None
    assert any("no blessed model yet" in r for r in evaluation["rules"])
    assert evaluation["eval_rows"] == ctr_run.results["extract_transform"]["eval_rows"]
    assert (ctr_run.day() / "eval" / "evaluation.png").read_bytes()[:4] == b"\x89PNG"


def test_rules_higher_is_better() -> None:
    cfg = GateConfig(metric="auc", min_lift_over_baseline=0.05, max_regression=0.01, min_value=0.6)
    ok, _ = decide(cfg, {"auc": 0.70}, {"auc": 0.5}, {"auc": 0.705})
    assert ok
    ok, reasons = decide(cfg, {"auc": 0.70}, {"auc": 0.5}, {"auc": 0.72})
    assert not ok and any(r.startswith("FAIL vs blessed") for r in reasons)
    ok, reasons = decide(cfg, {"auc": 0.53}, {"auc": 0.5}, None)
    assert not ok
    assert "FAIL lift over baseline: auc 0.53000 vs 0.50000 (lift +0.03000, required >= 0.05)" in reasons
    assert "FAIL threshold: auc 0.53000 >= 0.6" in reasons


def test_rules_lower_is_better() -> None:
    cfg = GateConfig(metric="log_loss", min_lift_over_baseline=0.01, max_regression=0.005, min_value=0.5)
    ok, _ = decide(cfg, {"log_loss": 0.30}, {"log_loss": 0.35}, {"log_loss": 0.302})
    assert ok
    ok, reasons = decide(cfg, {"log_loss": 0.30}, {"log_loss": 0.35}, {"log_loss": 0.29})
    assert not ok and any(r.startswith("FAIL vs blessed") for r in reasons)
    ok, reasons = decide(cfg, {"log_loss": 0.6}, {"log_loss": 0.7}, None)
    assert not ok and "FAIL threshold: log_loss 0.60000 <= 0.5" in reasons


def test_roc_points_treat_ties_as_one_threshold() -> None:
    import numpy as np

    from tfpipe_jobs.evaluate_gate.plots import _roc

    fpr, tpr = _roc(np.array([1, 0, 1, 0]), np.array([0.5, 0.5, 0.5, 0.5]))
    assert fpr.tolist() == [0.0, 1.0] and tpr.tolist() == [0.0, 1.0]  # a constant is the diagonal
    fpr, tpr = _roc(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1]))
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0] and tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
