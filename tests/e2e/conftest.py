"""What every end-to-end test needs: a local deployment's environment, sample data, the CLIs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


class LocalDeployment:
    """A temporary AIRFLOW_HOME, warehouse and artifact root wired to this repo's DAGs."""

    def __init__(self, root: Path, **extra_env: str) -> None:
        self.root = root
        jobs_cli = os.environ.get("TFPIPE_JOB_CLI") or str(REPO / ".venv-jobs" / "bin" / "tfpipe-job")
        if not Path(jobs_cli).exists():
            pytest.fail(f"the jobs environment's CLI is missing ({jobs_cli}); run `make envs` first")
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(root / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "TFPIPE_PROFILE": "local",
            "TFPIPE_JOB_CLI": jobs_cli,
            "TFPIPE_WAREHOUSE": f"duckdb://{root / 'warehouse.duckdb'}",
            "TFPIPE_ARTIFACT_ROOT": str(root / "artifacts"),
            **extra_env,
        }

    @property
    def warehouse_path(self) -> str:
        return self.env["TFPIPE_WAREHOUSE"].removeprefix("duckdb://")

    @property
    def artifacts(self) -> Path:
        return Path(self.env["TFPIPE_ARTIFACT_ROOT"])

    # 10K events a day: a 3-day window holds ~6K eval rows, enough for the gate's AUC to be
    # measured to about +-0.01 and for one more epoch of training to show in it.
    def sample_data(self, end_date: str, days: int, candidates: int, rows: int = 10_000) -> None:
        out = subprocess.run(
            [
                self.env["TFPIPE_JOB_CLI"],
                "sample-data",
                "--warehouse",
                self.env["TFPIPE_WAREHOUSE"],
                "--end-date",
                end_date,
                "--days",
                str(days),
                "--rows-per-day",
                str(rows),
                "--candidates-per-day",
                str(candidates),
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-2000:]

    def airflow(self, *args: str, timeout: int = 1200) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def migrate(self) -> None:
        out = self.airflow("db", "migrate")
        assert out.returncode == 0, out.stderr[-3000:]

    def last_run(self, dag_id: str) -> dict:
        out = self.airflow("dags", "list-runs", dag_id, "-o", "json")
        assert out.returncode == 0, out.stderr[-2000:]
        return cli_json(out.stdout)[0]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, list[str]]:
        """Task id -> states (one per mapped index)."""
        out = self.airflow("tasks", "states-for-dag-run", dag_id, run_id, "-o", "json")
        states: dict[str, list[str]] = {}
        for t in cli_json(out.stdout):
            states.setdefault(t["task_id"], []).append(t["state"])
        return states


def cli_json(stdout: str) -> list[dict]:
    """The CLI's JSON output (Airflow may print warnings on stdout before it)."""
    return list(json.loads(next(line for line in reversed(stdout.splitlines()) if line.startswith("["))))


@pytest.fixture(scope="module")
def deployment_factory(tmp_path_factory: pytest.TempPathFactory):
    def make(name: str, **extra_env: str) -> LocalDeployment:
        return LocalDeployment(tmp_path_factory.mktemp(name), **extra_env)

    return make
