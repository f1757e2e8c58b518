"""Tuning through real DAG runs: ctr_tune tries 3 configs, then ctr_daily trains with the best."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
DS = "2026-11-21"


def _airflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), *args], env=env, capture_output=True, text=True, timeout=1200
    )


def _json(stdout: str) -> list[dict]:
    return json.loads(next(line for line in reversed(stdout.splitlines()) if line.startswith("[")))


def _states(env: dict[str, str], dag_id: str) -> dict[str, list[str]]:
    run = _json(_airflow(env, "dags", "list-runs", dag_id, "-o", "json").stdout)[0]
    tasks = _json(_airflow(env, "tasks", "states-for-dag-run", dag_id, run["run_id"], "-o", "json").stdout)
    states: dict[str, list[str]] = {}
    for t in tasks:
        states.setdefault(t["task_id"], []).append(t["state"])
    return states


def test_tune_then_daily_uses_the_best_trial(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(repo / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "TFPIPE_JOB_CLI": os.environ.get("TFPIPE_JOB_CLI") or str(repo / ".venv-jobs" / "bin" / "tfpipe-job"),
        "TFPIPE_WAREHOUSE": f"duckdb://{tmp_path / 'warehouse.duckdb'}",
        "TFPIPE_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
    }
    gen = subprocess.run(
        [
            env["TFPIPE_JOB_CLI"],
            "sample-data",
            "--warehouse",
            env["TFPIPE_WAREHOUSE"],
            "--end-date",
            DS,
            "--days",
            "3",
            "--rows-per-day",
            "2000",
            "--candidates-per-day",
            "300",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert gen.returncode == 0, gen.stderr[-2000:]
    assert _airflow(env, "db", "migrate").returncode == 0

    tune = _airflow(env, "dags", "test", "ctr_tune", DS, "--conf", json.dumps({"trials": 3, "seed": 5}))
    states = _states(env, "ctr_tune")
    assert states == {
        "extract_transform": ["success"],
        "sample_trials": ["success"],
        "train": ["success"] * 3,
        "select_trial": ["success"],
    }, tune.stdout[-4000:] + tune.stderr[-4000:]

    tuning = tmp_path / "artifacts" / "ctr" / "tuning"
    best = json.loads((tuning / "best.json").read_text())
    assert len(best["trials"]) == 3 and best["metric"] == "val_auc"
    assert best["value"] == max(t["val_auc"] for t in best["trials"])
    assert set(best["overrides"]) == {"train.learning_rate", "train.embedding_dim", "train.hidden_units"}
    table = list(csv.DictReader((tuning / f"trials-{DS}.csv").open()))
    assert [r["trial"] for r in table] == [t["trial"] for t in best["trials"]]  # best first
    assert len({r["train.learning_rate"] for r in table}) == 3  # three different configurations

    daily = _airflow(env, "dags", "test", "ctr_daily", DS)
    assert set(_states(env, "ctr_daily")["train"]) == {"success"}, daily.stdout[-4000:]
    config = json.loads((tmp_path / "artifacts" / "ctr" / DS / "model" / "config.json").read_text())
    assert config["tuned_from"] == {"ds": DS, "trial": best["trial"]}
    for key, value in best["overrides"].items():
        assert config["config"][key] == value, key
