"""Tuning through real DAG runs: ctr_tune tries 3 configs, then ctr_daily trains with the best."""

from __future__ import annotations

import csv
import json

import pytest

pytestmark = pytest.mark.e2e
DS = "2026-11-21"


def test_tune_then_daily_uses_the_best_trial(deployment_factory) -> None:
    deployment = deployment_factory("tuning")
    deployment.sample_data(DS, days=3, candidates=300)
    deployment.migrate()

    tune = deployment.airflow("dags", "test", "ctr_tune", DS, "--conf", json.dumps({"trials": 3, "seed": 5}))
    states = deployment.task_states("ctr_tune", deployment.last_run("ctr_tune")["run_id"])
    assert states == {
        "extract_transform": ["success"],
        "sample_trials": ["success"],
        "train": ["success"] * 3,
        "select_trial": ["success"],
    }, tune.stdout[-4000:] + tune.stderr[-4000:]

    tuning = deployment.artifacts / "ctr" / "tuning"
    best = json.loads((tuning / "best.json").read_text())
    assert len(best["trials"]) == 3 and best["metric"] == "val_auc"
    assert best["value"] == max(t["val_auc"] for t in best["trials"])
    assert set(best["overrides"]) == {"train.learning_rate", "train.embedding_dim", "train.hidden_units"}
    table = list(csv.DictReader((tuning / f"trials-{DS}.csv").open()))
    assert [r["trial"] for r in table] == [t["trial"] for t in best["trials"]]  # best first
    assert len({r["train.learning_rate"] for r in table}) == 3  # three different configurations

    daily = deployment.airflow("dags", "test", "ctr_daily", DS)
    run = deployment.last_run("ctr_daily")
    assert deployment.task_states("ctr_daily", run["run_id"])["train"] == ["success"], daily.stdout[-4000:]
    config = json.loads((deployment.artifacts / "ctr" / DS / "model" / "config.json").read_text())
    assert config["tuned_from"] == {"ds": DS, "trial": best["trial"]}
    for key, value in best["overrides"].items():
        assert config["config"][key] == value, key
