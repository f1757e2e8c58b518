"""A real Airflow on this machine: api-server, scheduler, dag-processor, triggerer, TensorBoard.

    .venv-airflow/bin/python scripts/local_airflow.py start | stop | status
    .venv-airflow/bin/python scripts/local_airflow.py trigger ctr_daily --ds 2026-11-21 [--conf '{...}']
    .venv-airflow/bin/python scripts/local_airflow.py wait ctr_daily <run id>

Each process runs detached (its own session) with a pid file and a log under
`.tfpipe/airflow/processes/`; the metadata lives in an embedded PostgreSQL whose data folder
is `.tfpipe/postgres` (local_postgres.py). The LocalExecutor runs the tasks, as many at once
as the machine has cores. This file starts, watches and stops the processes and holds the
command line; the REST API calls are airflow_client.py's.

The end-to-end test drives the same class (`LocalAirflow`), so what CI proves is this script.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from airflow_client import USER, AirflowClient, LocalAirflowError
from local_postgres import EmbeddedPostgres

REPO = Path(__file__).resolve().parents[1]
STATE = REPO / ".tfpipe"
BIN = Path(sys.executable).parent  # the Airflow env's bin (not resolved: a venv's python is a link)
AIRFLOW_PROCESSES = ("api-server", "scheduler", "dag-processor", "triggerer")
FINISHED = ("success", "failed")
T = TypeVar("T")


def _running(pid: int, marker: str) -> bool:
    """Whether `pid` is alive and is the process we started (its command line names `marker`)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    # Empty while a process retitles itself (setproctitle rewrites its argv): still ours.
    return not cmdline.strip() or marker in cmdline


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@dataclass
class LocalAirflow:
    """One local Airflow deployment rooted at `state` (AIRFLOW_HOME is `state/airflow`)."""

    state: Path = STATE
    api_port: int = 8080
    tensorboard_port: int = 6006
    # The log servers of the scheduler's workers and of the triggerer (the API reads running tasks' logs there).
    worker_log_port: int = 8793
    trigger_log_port: int = 8794
    extra_env: Mapping[str, str] = field(default_factory=dict)
    client_timeout: float = 30.0
    _api: AirflowClient | None = field(default=None, init=False, repr=False)

    # -- places ---------------------------------------------------------------------------
    @property
    def home(self) -> Path:
        return self.state / "airflow"

    @property
    def processes_dir(self) -> Path:
        return self.home / "processes"

    @property
    def pgdata(self) -> Path:
        return self.state / "postgres"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def tensorboard_url(self) -> str:
        return f"http://127.0.0.1:{self.tensorboard_port}"

    @property
    def password_file(self) -> Path:
        # Where Airflow 3's SimpleAuthManager writes the passwords it generates (airflow_client.py).
        return self.home / "simple_auth_manager_passwords.json.generated"

    def pid_file(self, name: str) -> Path:
        return self.processes_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.processes_dir / f"{name}.log"

    # -- environment ----------------------------------------------------------------------
    def profile_env(self) -> dict[str, str]:
        """The local profile as the Makefile exports it; the environment, then `extra_env`, win."""
        defaults = {
            "TFPIPE_PROFILE": "local",
            "TFPIPE_JOB_CLI": str(REPO / ".venv-jobs" / "bin" / "tfpipe-job"),
            "TFPIPE_WAREHOUSE": f"duckdb://{self.state / 'warehouse.duckdb'}",
            "TFPIPE_ARTIFACT_ROOT": str(self.state / "artifacts"),
        }
        return {key: self.extra_env.get(key) or os.environ.get(key) or value for key, value in defaults.items()}

    def _jwt_secret(self) -> str:
        # Every process must sign and check the API's tokens with the same secret, across restarts.
        path = self.home / "jwt_secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path.read_text().strip()

    def env(self, database_url: str) -> dict[str, str]:
        cores = str(os.cpu_count() or 1)
        return {
            **os.environ,
            **self.profile_env(),
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            # The LocalExecutor starts `parallelism` worker processes: one task per core.
            "AIRFLOW__CORE__PARALLELISM": cores,
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": cores,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__BASE_URL": self.url,
            # Tasks report to the API server: with a non-default port it must be named here.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": self._jwt_secret(),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.worker_log_port),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.trigger_log_port),
            # New or changed pipeline folders show up within half a minute.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            # The train step's TensorBoard link points at the server `start` runs.
            "TFPIPE_TENSORBOARD_URL": self.tensorboard_url,
            **self.extra_env,
        }

    # -- PostgreSQL (local_postgres.py) -----------------------------------------------------
    @property
    def postgres(self) -> EmbeddedPostgres:
        return EmbeddedPostgres(self.pgdata)

    # -- processes ------------------------------------------------------------------------
    def commands(self) -> dict[str, list[str]]:
        airflow = str(BIN / "airflow")
        tensorboard = str(REPO / ".venv-jobs" / "bin" / "tensorboard")
        artifacts = self.profile_env()["TFPIPE_ARTIFACT_ROOT"]
        return {
            "api-server": [airflow, "api-server", "--host", "127.0.0.1", "--port", str(self.api_port)],
            "scheduler": [airflow, "scheduler"],
            "dag-processor": [airflow, "dag-processor"],
            "triggerer": [airflow, "triggerer"],
            # --reload_interval: a newly trained day's logs appear within a minute.
            "tensorboard": [
                tensorboard,
                "--logdir",
                artifacts,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.tensorboard_port),
                "--reload_interval",
                "30",
            ],
        }

    def pid(self, name: str) -> int | None:
        """The pid of process `name` if it is running (a stale pid file counts as not running)."""
        try:
            pid = int(self.pid_file(name).read_text().strip())
        except (OSError, ValueError):
            return None
        # Airflow retitles its processes (setproctitle): the command line still names "airflow".
        return pid if _running(pid, "tensorboard" if name == "tensorboard" else "airflow") else None

    def running(self) -> dict[str, int | None]:
        return {name: self.pid(name) for name in self.commands()}

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.processes_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file(name).open("ab") as log:
            log.write(f"\n=== {datetime.now().isoformat(timespec='seconds')} {' '.join(command)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                command,
                env=env,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: `stop` ends it and its children
            )
        self.pid_file(name).write_text(f"{proc.pid}\n")

    def start(self, *, timeout: float = 300.0, echo: Callable[[str], None] = print) -> None:
        """Start whatever is not running, wait until the API answers and the user can log in."""
        running = self.running()
        if all(running.values()) and self.postgres.pid() is not None:
            echo(f"local Airflow is already running at {self.url}")
            return
        if not Path(self.commands()["tensorboard"][0]).exists():
            raise LocalAirflowError("the jobs environment has no tensorboard (.venv-jobs); run `make envs` first")
        self.processes_dir.mkdir(parents=True, exist_ok=True)
        echo(f"metadata database: PostgreSQL in {self.pgdata}")
        env = self.env(self.postgres.start())
        if not running["api-server"]:
            echo("migrating the metadata database (airflow db migrate)")
            with self.log_file("db-migrate").open("wb") as log:
                done = subprocess.run(
                    [str(BIN / "airflow"), "db", "migrate"], env=env, stdout=log, stderr=subprocess.STDOUT
                )
            if done.returncode != 0:
                raise LocalAirflowError(f"airflow db migrate failed:\n{self.tail('db-migrate')}")
        for name, command in self.commands().items():
            if running[name]:
                echo(f"{name} already running (pid {running[name]})")
                continue
            self._spawn(name, command, env)
            echo(f"started {name} (pid {self.pid_file(name).read_text().strip()}, log {self.log_file(name)})")
        self.wait_for("the API server", self._healthy, timeout=timeout)
        self.wait_for("the generated password", lambda: USER in self.passwords(), timeout=60)
        self.wait_for("TensorBoard", self._tensorboard_up, timeout=120)

    def _healthy(self) -> bool:
        response = httpx.get(f"{self.url}/api/v2/monitor/health", timeout=5)
        return response.status_code == 200

    def _tensorboard_up(self) -> bool:
        return httpx.get(self.tensorboard_url, timeout=5).status_code == 200

    def stop(self, *, grace: float = 30.0, echo: Callable[[str], None] = print) -> None:
        """SIGTERM every process group we started, SIGKILL what is left after `grace`; then PostgreSQL."""
        alive = {name: pid for name, pid in self.running().items() if pid}
        for pid in alive.values():
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + grace
        for name, pid in alive.items():
            while self.pid(name) and time.monotonic() < deadline:
                time.sleep(0.5)
            if self.pid(name):
                os.killpg(pid, signal.SIGKILL)
                echo(f"{name} (pid {pid}) did not stop in {grace:.0f}s: killed")
            else:
                echo(f"stopped {name} (pid {pid})")
        for name in self.commands():
            self.pid_file(name).unlink(missing_ok=True)
        if self.postgres.pid() is not None:
            self.postgres.stop()
            echo("stopped PostgreSQL")
        if self._api is not None:
            self._api.close()

    def status(self) -> list[tuple[str, int | None, Path]]:
        """(name, pid or None, log) of each process, PostgreSQL first."""
        rows: list[tuple[str, int | None, Path]] = [("postgres", self.postgres.pid(), self.pgdata / "log")]
        rows += [(name, pid, self.log_file(name)) for name, pid in self.running().items()]
        return rows

    def tail(self, name: str, chars: int = 3000) -> str:
        try:
            return self.log_file(name).read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def logs(self) -> str:
        """The end of every process log (for a failure message)."""
        return "\n".join(f"--- {name}\n{self.tail(name)}" for name in (*self.commands(), "db-migrate"))

    def wait_for(self, what: str, check: Callable[[], T | None], timeout: float = 180, interval: float = 2) -> T:
        """Poll `check` until it returns something truthy; fail early if a process died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [name for name, pid in self.running().items() if pid is None]
            if dead:
                raise LocalAirflowError(f"{', '.join(dead)} exited while waiting for {what}\n{self.logs()}")
            try:
                value = check()
            except (httpx.HTTPError, OSError):
                value = None
            if value:
                return value
            time.sleep(interval)
        raise LocalAirflowError(f"timed out after {timeout:.0f}s waiting for {what}\n{self.logs()}")

    # -- REST API (airflow_client.py) -------------------------------------------------------
    @property
    def api(self) -> AirflowClient:
        if self._api is None:
            self._api = AirflowClient(self.url, self.password_file, timeout=self.client_timeout)
        return self._api

    # What the end-to-end test and the daily-run benchmark call on the deployment.
    def passwords(self) -> dict[str, str]:
        return self.api.passwords()

    @property
    def client(self) -> httpx.Client:
        return self.api.client

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.api.runs(dag_id)

    def trigger(self, dag_id: str, ds: date, conf: Mapping[str, Any] | None = None) -> str:
        return self.api.trigger(dag_id, ds, conf)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.api.task_instances(dag_id, run_id)

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        return self.api.task_log(dag_id, run_id, task_id, try_number)

    def require_running(self) -> None:
        stopped = [name for name, pid, _ in self.status() if pid is None]
        if stopped:
            raise LocalAirflowError(f"local Airflow is not running ({', '.join(stopped)} stopped): run `make airflow`")

    def wait_for_dag(self, dag_id: str, timeout: float = 300) -> None:
        self.wait_for(f"{dag_id} to be parsed", lambda: self.api.dag_parsed(dag_id), timeout)

    def wait_for_run(
        self, dag_id: str, run_id: str, *, timeout: float = 3600, echo: Callable[[str], None] | None = None
    ) -> dict[str, Any]:
        """Wait until the run has ended; echo each task's state as it changes."""
        seen: dict[str, str] = {}

        def ended() -> dict[str, Any] | None:
            if echo is not None:
                for ti in self.task_instances(dag_id, run_id):
                    state = ti["state"] or "none"
                    if seen.get(ti["task_id"]) != state:
                        seen[ti["task_id"]] = state
                        echo(f"  {ti['task_id']}: {state}")
            run = self.api.run(dag_id, run_id)
            return run if run["state"] in FINISHED else None

        return self.wait_for(f"the run {run_id}", ended, timeout=timeout, interval=5)


def task_table(tis: list[dict[str, Any]]) -> str:
    """Each task's state and duration, as the UI's grid reports them."""
    width = max((len(t["task_id"]) for t in tis), default=4)
    lines = [f"  {'task':<{width}}  {'state':<16} duration"]
    for t in tis:
        lines.append(f"  {t['task_id']:<{width}}  {t['state'] or 'none':<16} {_duration(t['duration'])}")
    return "\n".join(lines)


def _deployment(args: argparse.Namespace) -> LocalAirflow:
    return LocalAirflow(api_port=args.port, tensorboard_port=args.tensorboard_port)


def _print_access(airflow: LocalAirflow) -> None:
    password = airflow.passwords().get(USER, f"(not generated yet: see {airflow.password_file})")
    print(f"Airflow UI:   {airflow.url}  (user {USER}, password {password})")
    print(f"              the password is kept in {airflow.password_file}")
    print(f"TensorBoard:  {airflow.tensorboard_url}")
    print(f"logs:         {airflow.processes_dir}/*.log; task logs in {airflow.home / 'logs'}")
    print("stop with:    make airflow-stop")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=int(os.environ.get("TFPIPE_AIRFLOW_PORT", "8080")))
    parser.add_argument("--tensorboard-port", type=int, default=int(os.environ.get("TFPIPE_TENSORBOARD_PORT", "6006")))
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("start", help="start every process (those already running are left alone)")
    sub.add_parser("stop", help="stop every process and the PostgreSQL server")
    sub.add_parser("status", help="each process, its pid and log, and the URLs")
    trigger = sub.add_parser("trigger", help="trigger a run for a day; prints its run id")
    trigger.add_argument("dag_id")
    trigger.add_argument("--ds", type=date.fromisoformat, required=True, help="the day (logical date)")
    trigger.add_argument("--conf", type=json.loads, default={}, help="the run's params as JSON")
    wait = sub.add_parser("wait", help="wait until a run ends; prints its tasks; fails unless it succeeded")
    wait.add_argument("dag_id")
    wait.add_argument("run_id")
    wait.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args(argv)
    airflow = _deployment(args)
    try:
        if args.command == "start":
            airflow.start()
            _print_access(airflow)
        elif args.command == "stop":
            airflow.stop()
        elif args.command == "status":
            for name, pid, log in airflow.status():
                print(f"  {name:<14} {'running, pid ' + str(pid) if pid else 'stopped':<20} {log}")
            up = all(pid for _, pid, _ in airflow.status())
            if up:
                _print_access(airflow)
            return 0 if up else 3
        elif args.command == "trigger":
            airflow.require_running()
            airflow.wait_for_dag(args.dag_id)
            print(airflow.trigger(args.dag_id, args.ds, args.conf))
        elif args.command == "wait":
            airflow.require_running()
            run = airflow.wait_for_run(args.dag_id, args.run_id, timeout=args.timeout, echo=print)
            print(f"run {args.run_id}: {run['state']}")
            print(task_table(airflow.task_instances(args.dag_id, args.run_id)))
            return 0 if run["state"] == "success" else 1
    except LocalAirflowError as err:
        print(f"local_airflow {args.command}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
