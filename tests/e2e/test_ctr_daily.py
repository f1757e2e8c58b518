"""End to end: `ctr_daily` for one day through Airflow on the local profile.

Airflow (its own environment) runs the real DAG file; every step runs the real job
command of the jobs environment. Then the score table is checked row by row against
the scoring query's keys.
"""

from __future__ import annotations

import json
from datetime import date

import duckdb
import pytest

DS = "2026-11-21"
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def local_run(deployment_factory) -> dict:
    deployment = deployment_factory("e2e")
    deployment.sample_data(DS, days=3, candidates=500)
    deployment.migrate()
    test = deployment.airflow("dags", "test", "ctr_daily", DS)
    (deployment.root / "dags-test.log").write_text(test.stdout + test.stderr)
    run = deployment.last_run("ctr_daily")
    states = deployment.task_states("ctr_daily", run["run_id"])
    return {
        "env": deployment.env,
        "root": deployment.root,
        "run": run,
        "log": test.stdout + test.stderr,
        "states": {task: s[0] for task, s in states.items()},
    }


def test_the_run_succeeds_with_every_task(local_run: dict) -> None:
    assert local_run["run"]["state"] == "success", local_run["log"][-5000:]
    assert local_run["states"] == {
        "wait_for_source": "success",
        "extract_transform": "success",
        "train": "success",
        "export_serving_model": "success",
        "evaluate_gate": "success",
        "publish_model": "success",
        "batch_score": "success",
        "publish_scores": "success",
    }
    assert local_run["run"]["logical_date"].startswith(DS)


def test_score_table_matches_the_scoring_query(local_run: dict) -> None:
    path = local_run["env"]["TFPIPE_WAREHOUSE"].removeprefix("duckdb://")
    day = date.fromisoformat(DS)
    with duckdb.connect(path, read_only=True) as con:
        expected = con.execute(
            "SELECT user_id, item_id FROM candidates WHERE event_date = $ds ORDER BY ALL", {"ds": day}
        ).fetchall()
        scored = con.execute(
            "SELECT user_id, item_id FROM ctr_scores WHERE ds = $ds ORDER BY ALL", {"ds": day}
        ).fetchall()
        probs = [r[0] for r in con.execute("SELECT probability FROM ctr_scores WHERE ds = $ds", {"ds": day}).fetchall()]
        versions = con.execute("SELECT DISTINCT model_version FROM ctr_scores_latest").fetchall()
    assert len(expected) == 500
    assert scored == expected  # exactly one row per scored key, nothing else
    assert all(0.0 < p < 1.0 for p in probs)
    blessed = json.loads((local_run["root"] / "artifacts" / "ctr" / "registry" / "blessed.json").read_text())
    assert versions == [(blessed["model_version"],)]
    assert blessed["ds"] == DS


def test_every_step_left_its_published_output(local_run: dict) -> None:
    day = local_run["root"] / "artifacts" / "ctr" / DS
    for folder in ("data", "model", "serving", "eval", "scores"):
        assert (day / folder / "_SUCCESS").exists(), folder
    assert not [p.name for p in day.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
