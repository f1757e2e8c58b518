"""The local Airflow of `make airflow` (scripts/local_airflow.py) runs ctr_daily: triggered and
backfilled through its REST API, as the UI does it.

The same `LocalAirflow` a user starts (api-server, scheduler, dag-processor, triggerer,
TensorBoard; LocalExecutor with one slot per core; the metadata in an embedded PostgreSQL),
rooted in a temporary folder on free loopback ports. The test checks the score partitions,
which model scored each day, and what the UI shows a user: every task's log, durations that
are the task's own, the TensorBoard link; then it stops every process it started.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from tfpipe_operators.steps import DAILY

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
from local_airflow import LocalAirflow  # noqa: E402  (a script, not a package)

pytestmark = pytest.mark.e2e
DS = date(2026, 11, 21)
BACKFILL = [DS - timedelta(days=3), DS - timedelta(days=2), DS - timedelta(days=1)]
RUN_TIMEOUT = 900
TASKS = ["wait_for_source", *(s.task_id for s in DAILY)]  # the daily DAG's task ids, in chain order


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAirflow]:
    state = tmp_path_factory.mktemp("local-airflow")
    warehouse = f"duckdb://{state / 'warehouse.duckdb'}"
    deployment = LocalAirflow(
        state=state,
        api_port=_free_port(),
        tensorboard_port=_free_port(),
        worker_log_port=_free_port(),
        trigger_log_port=_free_port(),
        extra_env={
            "TFPIPE_WAREHOUSE": warehouse,
            "TFPIPE_ARTIFACT_ROOT": str(state / "artifacts"),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            # No runs of the scheduler's own: once the DAG is unpaused it would create the latest
            # interval's run, whose logical date can be the one this test triggers. Triggered and
            # backfilled runs still run.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        },
    )
    jobs_cli = deployment.profile_env()["TFPIPE_JOB_CLI"]
    days = ["--end-date", DS.isoformat(), "--days", "6"]  # the backfilled days' look-back too
    sample = subprocess.run(
        [
            jobs_cli,
            "sample-data",
            "--warehouse",
            warehouse,
            *days,
            "--rows-per-day",
            "10000",
            "--candidates-per-day",
            "500",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert sample.returncode == 0, sample.stderr[-2000:]
    try:
        deployment.start(echo=lambda line: None)
        deployment.wait_for_dag("ctr_daily")
        yield deployment
    finally:
        deployment.stop(echo=lambda line: None)
    assert all(pid is None for _, pid, _ in deployment.status()), deployment.status()


def _finished(airflow: LocalAirflow, run_ids: set[str]) -> list[dict[str, Any]] | None:
    runs = [r for r in airflow.runs("ctr_daily") if r["dag_run_id"] in run_ids]
    if len(runs) == len(run_ids) and all(r["state"] in ("success", "failed") for r in runs):
        return runs
    return None


def _warehouse(airflow: LocalAirflow) -> str:
    return airflow.profile_env()["TFPIPE_WAREHOUSE"].removeprefix("duckdb://")


def _artifacts(airflow: LocalAirflow) -> Path:
    return Path(airflow.profile_env()["TFPIPE_ARTIFACT_ROOT"])


def _partition_rows(airflow: LocalAirflow, day: date) -> int:
    with duckdb.connect(_warehouse(airflow), read_only=True) as con:
        row = con.execute("SELECT count(*) FROM ctr_scores WHERE ds = $ds", {"ds": day}).fetchone()
    return int(row[0]) if row else 0


def test_the_login_is_the_generated_password(airflow: LocalAirflow) -> None:
    """What `make airflow` prints: user admin and the generated password, which the API accepts."""
    password = airflow.passwords()["admin"]
    with httpx.Client(base_url=airflow.url, timeout=30) as client:
        wrong = client.post("/auth/token", json={"username": "admin", "password": password + "x"})
        right = client.post("/auth/token", json={"username": "admin", "password": password})
    assert wrong.status_code == 401 and right.status_code == 201


def test_invalid_params_are_refused_by_the_api(airflow: LocalAirflow) -> None:
    response = airflow.client.post(
        "/api/v2/dags/ctr_daily/dagRuns", json={"logical_date": f"{DS}T00:00:00Z", "conf": {"train_epochs": 0}}
    )
    assert response.status_code == 400, response.text
    assert "train_epochs" in response.text


def test_trigger_with_params_then_backfill(airflow: LocalAirflow) -> None:
    triggered = airflow.trigger("ctr_daily", DS, {"train_epochs": 2})
    run = airflow.wait_for_run("ctr_daily", triggered, timeout=RUN_TIMEOUT)
    assert run["state"] == "success", airflow.logs()
    assert _partition_rows(airflow, DS) == 500
    config = json.loads((_artifacts(airflow) / "ctr" / DS.isoformat() / "model" / "config.json").read_text())
    assert config["config"]["train.epochs"] == 2  # the trigger param reached the training job

    # What a user's first click finds: every task ran on the scheduler, has a log, and took the
    # time it took (not the days since its logical date).
    tis = {t["task_id"]: t for t in airflow.task_instances("ctr_daily", triggered)}
    assert sorted(tis) == sorted(TASKS)
    wall = (date.fromisoformat(run["end_date"][:10]) - date.fromisoformat(run["start_date"][:10])).days
    assert wall <= 1
    for task_id, ti in tis.items():
        assert ti["state"] == "success", task_id
        assert 0 < ti["duration"] < RUN_TIMEOUT, (task_id, ti["duration"])
        assert ti["hostname"], task_id  # run by a worker, not in-process
    train_log = airflow.task_log("ctr_daily", triggered, "train")
    assert "tfpipe-job train" in train_log and "epoch" in train_log.lower(), train_log[-3000:]
    assert "failed call to cuInit" not in train_log  # CPU runs carry no CUDA error lines
    score_log = airflow.task_log("ctr_daily", triggered, "publish_scores")
    assert "ctr_scores" in score_log, score_log[-3000:]
    # The train task's TensorBoard link is an http link to the local TensorBoard, which answers.
    links = airflow.client.get(f"/api/v2/dags/ctr_daily/dagRuns/{triggered}/taskInstances/train/links").json()
    tensorboard = links["extra_links"]["TensorBoard"]
    assert tensorboard.startswith(airflow.tensorboard_url + "/"), links
    assert "ctr%2F2026-11-21%2Fmodel" in tensorboard
    assert httpx.get(tensorboard, timeout=30).status_code == 200

    response = airflow.client.post(
        "/api/v2/backfills",
        json={
            "dag_id": "ctr_daily",
            "from_date": f"{BACKFILL[0]}T00:00:00Z",
            "to_date": f"{BACKFILL[-1]}T00:00:00Z",
            "max_active_runs": 3,  # all three days at once
        },
    )
    assert response.status_code == 200, response.text
    backfill_id = response.json()["id"]
    backfill_runs = airflow.wait_for(
        "the backfill's runs to be created",
        lambda: {r["dag_run_id"] for r in airflow.runs("ctr_daily") if r["run_type"] == "backfill"} or None,
        timeout=120,
    )
    assert len(backfill_runs) == 3
    runs = airflow.wait_for("the backfill", lambda: _finished(airflow, backfill_runs), timeout=3 * RUN_TIMEOUT)
    assert sorted(r["logical_date"][:10] for r in runs) == [d.isoformat() for d in BACKFILL]
    assert {r["state"] for r in runs} == {"success"}, airflow.logs()
    assert airflow.client.get(f"/api/v2/backfills/{backfill_id}").status_code == 200
    for day in [*BACKFILL, DS]:
        assert _partition_rows(airflow, day) == 500, day
    assert {r["run_type"] for r in airflow.runs("ctr_daily")} == {"manual", "backfill"}  # nothing else ran
    # each backfilled day read only its own window: its stats name its own ds
    for day in BACKFILL:
        stats = json.loads((_artifacts(airflow) / "ctr" / day.isoformat() / "data" / "stats.json").read_text())
        assert stats["provenance"]["ds"] == day.isoformat()
        assert stats["rows"] == 3 * 10_000  # ds and its 2-day look-back, nothing after ds
    # a backfilled older day never replaces the newer blessed model
    blessed = json.loads((_artifacts(airflow) / "ctr" / "registry" / "blessed.json").read_text())
    assert blessed["ds"] == DS.isoformat()
    # each day is scored by the model blessed as of that day, however the runs interleaved
    history = blessed["history"]
    for day in [*BACKFILL, DS]:
        as_of = [e for e in history if e["ds"] <= day.isoformat()][-1]
        with duckdb.connect(_warehouse(airflow), read_only=True) as con:
            scored = con.execute("SELECT DISTINCT model_version FROM ctr_scores WHERE ds = $ds", {"ds": day}).fetchall()
        assert scored == [(as_of["model_version"],)], day
        verdict = (_artifacts(airflow) / "ctr" / day.isoformat() / "eval" / "verdict").read_text().strip()
        assert (as_of["ds"] == day.isoformat()) == (verdict == "blessed"), day  # its own model when blessed
