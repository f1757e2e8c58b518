"""A better model is published, through two real `ctr_daily` runs on the local profile.

Day 1 trains a deliberately weak model (fewer epochs, set through the run's trigger params)
that still beats the baseline, so it is the first blessed model. Day 2 trains with the
spec's config; the gate scores both models on day 2's eval rows, blesses the new one, and
the registry and the day-2 score partition move to it. (A worse model being refused and
scoring keeping the old model is tests/tfpipe_jobs/evaluate_gate/test_gate_refusal.py; the skip of
publish_model as a task state is tests/plugins/.../operators/test_job.py.)
"""

from __future__ import annotations

import json
from datetime import date

import duckdb
import pytest

pytestmark = pytest.mark.e2e
DAY1, DAY2 = "2026-11-20", "2026-11-21"
WEAK = {"train_epochs": 1}  # the spec trains up to 3 epochs and keeps the best one


def _run_for(deployment, ds: str) -> dict:
    """The ctr_daily run of `ds` (list-runs has both days; its order is not part of the contract)."""
    out = deployment.airflow("dags", "list-runs", "ctr_daily", "-o", "json")
    listing = next(line for line in reversed(out.stdout.splitlines()) if line.startswith("["))
    runs = [r for r in json.loads(listing) if r["logical_date"].startswith(ds)]
    assert len(runs) == 1, out.stdout[-2000:]
    return runs[0]


@pytest.fixture(scope="module")
def two_days(deployment_factory) -> dict:
    deployment = deployment_factory("better_model")
    deployment.sample_data(DAY2, days=4, candidates=300)  # both days read a full 3-day window
    deployment.migrate()
    logs, states = {}, {}
    for ds, conf in ((DAY1, WEAK), (DAY2, {})):
        test = deployment.airflow("dags", "test", "ctr_daily", ds, "--conf", json.dumps(conf))
        logs[ds] = test.stdout[-4000:] + test.stderr[-4000:]
        run = _run_for(deployment, ds)
        assert run["state"] == "success", logs[ds]
        states[ds] = {t: s[0] for t, s in deployment.task_states("ctr_daily", run["run_id"]).items()}
    return {"deployment": deployment, "states": states, "logs": logs}


def _read(deployment, *parts: str) -> dict:
    return dict(json.loads(deployment.artifacts.joinpath("ctr", *parts).read_text()))


def test_both_days_publish_their_model(two_days: dict) -> None:
    for ds in (DAY1, DAY2):
        assert set(two_days["states"][ds].values()) == {"success"}, (ds, two_days["states"][ds])


def test_the_weak_config_came_from_the_run_params(two_days: dict) -> None:
    deployment = two_days["deployment"]
    assert _read(deployment, DAY1, "model", "config.json")["config"]["train.epochs"] == 1
    assert _read(deployment, DAY2, "model", "config.json")["config"]["train.epochs"] == 3
    first = _read(deployment, DAY1, "eval", "evaluation.json")
    assert first["verdict"] == "blessed" and first["blessed_model"] is None


def test_the_better_model_replaces_the_blessed_one(two_days: dict) -> None:
    deployment = two_days["deployment"]
    evaluation = _read(deployment, DAY2, "eval", "evaluation.json")
    assert evaluation["verdict"] == "blessed", evaluation["rules"]
    assert evaluation["blessed_model"]["ds"] == DAY1  # compared with day 1's model ...
    new, blessed = evaluation["metrics"]["new"], evaluation["metrics"]["blessed"]
    assert new["auc"] > blessed["auc"]  # ... on the same rows, and better
    assert new["log_loss"] < evaluation["metrics"]["baseline"]["log_loss"]
    assert any(r.startswith("PASS vs blessed: auc") for r in evaluation["rules"])

    registry = _read(deployment, "registry", "blessed.json")
    assert registry["ds"] == DAY2 and registry["model_version"] == evaluation["candidate"]["model_version"]
    assert registry["serving"] == str(deployment.artifacts / "ctr" / "models" / registry["model_version"])
    assert registry["metrics"] == new
    assert registry["config_hash"] == _read(deployment, DAY2, "model", "config.json")["config_hash"]
    day1_version = evaluation["blessed_model"]["model_version"]
    assert [e["model_version"] for e in registry["history"]] == [day1_version, registry["model_version"]]
    assert registry["model_version"] != day1_version

    with duckdb.connect(deployment.warehouse_path, read_only=True) as con:
        versions = con.execute(
            "SELECT ds, MIN(model_version), COUNT(DISTINCT model_version), COUNT(*) FROM ctr_scores GROUP BY ds"
        ).fetchall()
    assert sorted(versions) == [
        (date.fromisoformat(DAY1), day1_version, 1, 300),
        (date.fromisoformat(DAY2), registry["model_version"], 1, 300),
    ]
