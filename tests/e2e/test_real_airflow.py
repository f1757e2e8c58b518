"""Integration: a real Airflow 3.3 on loopback runs ctr_daily, triggered and backfilled via REST.

Starts the API server, scheduler, DAG processor and triggerer (LocalExecutor, a temporary
AIRFLOW_HOME, the metadata in a PostgreSQL server of its own) as separate processes,
exactly as a deployment would, drives them only through the public REST API (what the UI
uses), checks the score partitions, and stops every process it started.

PostgreSQL, not SQLite: with four processes writing, SQLite's lock makes the API refuse a
backfill now and then (503), and the partial backfill Airflow then deletes can crash a
scheduler that had already picked up its runs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import duckdb
import httpx
import pytest

pytestmark = pytest.mark.e2e
DS = date(2026, 11, 21)
BACKFILL = [DS - timedelta(days=3), DS - timedelta(days=2), DS - timedelta(days=1)]
RUN_TIMEOUT = 900


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Airflow:
    """The processes of one Airflow deployment and a REST client for its API server."""

    def __init__(self, root: Path, env: dict[str, str], port: int) -> None:
        self.root = root
        self.env = env
        self.base = f"http://127.0.0.1:{port}"
        self.port = port
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.client = httpx.Client(base_url=self.base, timeout=30)

    def start(self, name: str, *args: str) -> None:
        log = (self.root / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            [str(Path(sys.executable).parent / "airflow"), *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.client.close()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.root.glob("*.log"))

    def wait_for(self, what: str, check, timeout: float = 180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.processes.items():
                assert proc.poll() is None, f"airflow {name} exited while waiting for {what}\n{self.logs()}"
            try:
                value = check()
            except httpx.HTTPError:
                value = None
            if value:
                return value
            time.sleep(2)
        raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")

    def login(self) -> None:
        token = self.client.get("/auth/token").json()["access_token"]
        self.client.headers["Authorization"] = f"Bearer {token}"

    def runs(self) -> list[dict]:
        response = self.client.get("/api/v2/dags/ctr_daily/dagRuns", params={"limit": 100})
        response.raise_for_status()
        return list(response.json()["dag_runs"])


@pytest.fixture(scope="module")
def metadata_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """SQLAlchemy URL of an empty database on a PostgreSQL server started for this module."""
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("postgres"), cleanup_mode="stop")
    try:
        server.psql("CREATE DATABASE airflow;")
        yield server.get_uri("airflow").replace("postgresql://", "postgresql+psycopg2://", 1)
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def airflow(deployment_factory, metadata_database: str) -> Iterator[Airflow]:
    port = _free_port()
    local = deployment_factory(
        "real-airflow",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=metadata_database,
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__PARALLELISM="4",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        # Tasks report to the API server: with a non-default port it must be named here.
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{port}",
        AIRFLOW__API_AUTH__JWT_SECRET="tfpipe-integration-test-secret",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL="5",
        # No runs of the scheduler's own: once the DAG is unpaused it would create the latest
        # interval's run, whose logical date can be the one this test triggers (on the day
        # after DS the two inserts collide and the scheduler exits). Triggered and backfilled
        # runs still run.
        AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",
    )
    local.sample_data(DS.isoformat(), days=6, candidates=500)  # the backfilled days' look-back too
    local.migrate()
    deployment = Airflow(local.root, local.env, port)
    try:
        deployment.start("api-server", "api-server", "--port", str(port))
        deployment.start("scheduler", "scheduler")
        deployment.start("dag-processor", "dag-processor")
        deployment.start("triggerer", "triggerer")
        deployment.wait_for(
            "the API server", lambda: deployment.client.get("/api/v2/monitor/health").status_code == 200
        )
        deployment.login()
        deployment.wait_for(
            "ctr_daily to be parsed", lambda: deployment.client.get("/api/v2/dags/ctr_daily").status_code == 200
        )
        response = deployment.client.patch("/api/v2/dags/ctr_daily", json={"is_paused": False})
        assert response.status_code == 200, response.text
        yield deployment
    finally:
        deployment.stop()
    assert all(p.poll() is not None for p in deployment.processes.values())


def _finished(airflow: Airflow, run_ids: set[str]) -> list[dict] | None:
    runs = [r for r in airflow.runs() if r["dag_run_id"] in run_ids]
    if len(runs) == len(run_ids) and all(r["state"] in ("success", "failed") for r in runs):
        return runs
    return None


def _partition_rows(airflow: Airflow, day: date) -> int:
    with duckdb.connect(airflow.env["TFPIPE_WAREHOUSE"].removeprefix("duckdb://"), read_only=True) as con:
        row = con.execute("SELECT count(*) FROM ctr_scores WHERE ds = $ds", {"ds": day}).fetchone()
    return int(row[0]) if row else 0


def test_invalid_params_are_refused_by_the_api(airflow: Airflow) -> None:
    response = airflow.client.post(
        "/api/v2/dags/ctr_daily/dagRuns", json={"logical_date": f"{DS}T00:00:00Z", "conf": {"train_epochs": 0}}
    )
    assert response.status_code == 400, response.text
    assert "train_epochs" in response.text


def test_trigger_with_params_then_backfill(airflow: Airflow) -> None:
    response = airflow.client.post(
        "/api/v2/dags/ctr_daily/dagRuns", json={"logical_date": f"{DS}T00:00:00Z", "conf": {"train_epochs": 2}}
    )
    assert response.status_code == 200, response.text
    triggered = response.json()["dag_run_id"]
    runs = airflow.wait_for("the triggered run", lambda: _finished(airflow, {triggered}), timeout=RUN_TIMEOUT)
    assert runs[0]["state"] == "success", airflow.logs()
    assert _partition_rows(airflow, DS) == 500
    config = json.loads((airflow.root / "artifacts" / "ctr" / DS.isoformat() / "model" / "config.json").read_text())
    assert config["config"]["train.epochs"] == 2  # the trigger param reached the training job

    response = airflow.client.post(
        "/api/v2/backfills",
        json={
            "dag_id": "ctr_daily",
            "from_date": f"{BACKFILL[0]}T00:00:00Z",
            "to_date": f"{BACKFILL[-1]}T00:00:00Z",
            "max_active_runs": 2,
        },
    )
    assert response.status_code == 200, response.text
    backfill_id = response.json()["id"]
    backfill_runs = airflow.wait_for(
        "the backfill's runs to be created",
        lambda: {r["dag_run_id"] for r in airflow.runs() if r["run_type"] == "backfill"} or None,
        timeout=120,
    )
    assert len(backfill_runs) == 3
    runs = airflow.wait_for("the backfill", lambda: _finished(airflow, backfill_runs), timeout=3 * RUN_TIMEOUT)
    assert sorted(r["logical_date"][:10] for r in runs) == [d.isoformat() for d in BACKFILL]
    assert {r["state"] for r in runs} == {"success"}, airflow.logs()
    assert airflow.client.get(f"/api/v2/backfills/{backfill_id}").status_code == 200
    for day in [*BACKFILL, DS]:
        assert _partition_rows(airflow, day) == 500, day
    assert {r["run_type"] for r in airflow.runs()} == {"manual", "backfill"}  # nothing else ran
    # each backfilled day read only its own window: its stats name its own ds
    for day in BACKFILL:
        stats = json.loads((airflow.root / "artifacts" / "ctr" / day.isoformat() / "data" / "stats.json").read_text())
        assert stats["provenance"]["ds"] == day.isoformat()
        assert stats["rows"] == 3 * 10_000  # ds and its 2-day look-back, nothing after ds
    # a backfilled older day never replaces the newer blessed model
    blessed = json.loads((airflow.root / "artifacts" / "ctr" / "registry" / "blessed.json").read_text())
    assert blessed["ds"] == DS.isoformat()
    # each day is scored by the model blessed as of that day, however the runs interleaved
    history = blessed["history"]
    for day in [*BACKFILL, DS]:
        as_of = [e for e in history if e["ds"] <= day.isoformat()][-1]
        with duckdb.connect(airflow.env["TFPIPE_WAREHOUSE"].removeprefix("duckdb://"), read_only=True) as con:
            scored = con.execute("SELECT DISTINCT model_version FROM ctr_scores WHERE ds = $ds", {"ds": day}).fetchall()
        assert scored == [(as_of["model_version"],)], day
        verdict = (airflow.root / "artifacts" / "ctr" / day.isoformat() / "eval" / "verdict").read_text().strip()
        assert (as_of["ds"] == day.isoformat()) == (verdict == "blessed"), day  # its own model when blessed
