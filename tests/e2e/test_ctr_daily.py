"""End to end: `ctr_daily` for one day through Airflow on the local profile.

Airflow (its own environment) runs the real DAG file; every step runs the real job
command of the jobs environment. Then the score table is checked row by row against
the scoring query's keys.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import date
from pathlib import Path

import duckdb
import pytest

DS = "2026-11-21"
pytestmark = pytest.mark.e2e


def _jobs_cli(repo: Path) -> str:
    cli = os.environ.get("TFPIPE_JOB_CLI") or str(repo / ".venv-jobs" / "bin" / "tfpipe-job")
    if not Path(cli).exists():
        pytest.fail(f"the jobs environment's CLI is missing ({cli}); run `make envs` first")
    return cli


def _airflow(env: dict[str, str], *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    airflow = str(Path(os.sys.executable).parent / "airflow")
    return subprocess.run([airflow, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _json(stdout: str) -> list[dict]:
    """The CLI's JSON output (Airflow may print warnings on stdout before it)."""
    return json.loads(next(line for line in reversed(stdout.splitlines()) if line.startswith("[")))


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    repo = Path(__file__).resolve().parents[2]
    root = tmp_path_factory.mktemp("e2e")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(root / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(repo / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "TFPIPE_PROFILE": "local",
        "TFPIPE_JOB_CLI": _jobs_cli(repo),
        "TFPIPE_WAREHOUSE": f"duckdb://{root / 'warehouse.duckdb'}",
        "TFPIPE_ARTIFACT_ROOT": str(root / "artifacts"),
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
            "500",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert gen.returncode == 0, gen.stderr[-2000:]
    migrate = _airflow(env, "db", "migrate")
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    test = _airflow(env, "dags", "test", "ctr_daily", DS)
    (root / "dags-test.log").write_text(test.stdout + test.stderr)
    runs = _airflow(env, "dags", "list-runs", "ctr_daily", "-o", "json")
    assert runs.returncode == 0, runs.stderr[-2000:]
    run = _json(runs.stdout)[0]
    states = _airflow(env, "tasks", "states-for-dag-run", "ctr_daily", run["run_id"], "-o", "json")
    return {
        "env": env,
        "root": root,
        "run": run,
        "log": test.stdout + test.stderr,
        "states": {t["task_id"]: t["state"] for t in _json(states.stdout)},
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
