"""One daily run of the sample DAG, through a real local Airflow, measured whole and per task.

What a user waits for: from the trigger to the run's end. Split into
- each task's own duration (what its operator did: for a job step, the job process, its
  imports and its work),
- the time each task waited between its upstream ending and its own start (the scheduler
  and the executor: Airflow's overhead), summed along the chain,
- the jobs environment's start-up (a `tfpipe-job` process that imports its step and exits),
  which every job step pays once.

The warehouse holds `--rows` training rows over the days the training query reads (the day
and its `extract.lookback_days`) and `--candidates` rows to score; the deployment lives in
a state folder of its own and is stopped at the end.

Run in the Airflow environment: `make bench-daily-run` (`daily_run.py --rows 1000000`).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from local_airflow import LocalAirflow, task_table  # noqa: E402

JOB_CLI = REPO / ".venv-jobs" / "bin" / "tfpipe-job"
TARGET_SECONDS = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def job_startup_seconds() -> float:
    """A job process that imports the heaviest step's modules and exits (median of three)."""
    code = "import tfpipe_jobs.cli, tfpipe_jobs.beam_jobs.extract_transform.pipeline"
    python = JOB_CLI.parent / "python"
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([str(python), "-c", code], check=True, capture_output=True)
        runs.append(time.perf_counter() - start)
    return sorted(runs)[1]


def report(tis: list[dict[str, Any]], run: dict[str, Any], triggered_at: datetime) -> None:
    print(task_table(tis))
    start, end = _time(run["start_date"]), _time(run["end_date"])
    assert start and end
    ended: dict[str, datetime] = {}
    waits = 0.0
    work = 0.0
    for ti in sorted(tis, key=lambda t: t["start_date"] or "9"):
        began, finished = _time(ti["start_date"]), _time(ti["end_date"])
        if not (began and finished):
            continue
        ready = max(ended.values(), default=start)  # the chain is linear: its upstream ended last
        waits += max(0.0, (began - ready).total_seconds())
        work += float(ti["duration"] or 0)
        ended[ti["task_id"]] = finished
    whole = (end - triggered_at).total_seconds()
    print(f"\nthe run, trigger to end: {whole:.0f} s (target {TARGET_SECONDS} s)")
    print(f"  trigger to the run's start: {(start - triggered_at).total_seconds():.1f} s")
    print(f"  tasks' own durations, summed: {work:.0f} s")
    print(f"  between one task's end and the next one's start, summed (Airflow): {waits:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="training rows the day's query reads")
    parser.add_argument("--candidates", type=int, default=1_000_000, help="rows the day's scoring query reads")
    parser.add_argument("--ds", type=date.fromisoformat, default=date.today() - timedelta(days=1))
    parser.add_argument("--keep", action="store_true", help="leave the state folder (and print where)")
    args = parser.parse_args()
    days = 3  # the sample spec's extract.lookback_days (2) and the day itself
    state = Path(tempfile.mkdtemp(prefix="tfpipe-daily-run-"))
    warehouse = state / "warehouse.duckdb"
    print(f"sample data: {args.rows:,} training rows over {days} days, {args.candidates:,} candidates for {args.ds}")
    subprocess.run(
        [
            str(JOB_CLI),
            "sample-data",
            "--warehouse",
            f"duckdb://{warehouse}",
            "--end-date",
            args.ds.isoformat(),
            "--days",
            str(days),
            "--rows-per-day",
            str(args.rows // days),
            "--candidates-per-day",
            str(args.candidates),
        ],
        check=True,
        capture_output=True,
    )
    airflow = LocalAirflow(
        state=state,
        api_port=free_port(),
        tensorboard_port=free_port(),
        worker_log_port=free_port(),
        trigger_log_port=free_port(),
        extra_env={
            "TFPIPE_WAREHOUSE": f"duckdb://{warehouse}",
            "TFPIPE_ARTIFACT_ROOT": str(state / "artifacts"),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        },
    )
    try:
        airflow.start(echo=lambda line: None)
        airflow.wait_for_dag("ctr_daily")
        startup = job_startup_seconds()
        triggered_at = datetime.now().astimezone()
        run_id = airflow.trigger("ctr_daily", args.ds)
        run = airflow.wait_for_run("ctr_daily", run_id, timeout=3600)
        tis = airflow.task_instances("ctr_daily", run_id)
        if run["state"] != "success":
            print(task_table(tis))
            raise SystemExit(f"the run ended {run['state']}; logs in {airflow.home / 'logs'}")
        report(tis, run, triggered_at)
        steps = sum(1 for t in tis if t["operator"] == "TfpipeJobOperator")
        print(f"  a job process's start-up (imports, no work): {startup:.1f} s, paid by each of {steps} job steps")
    finally:
        airflow.stop(echo=lambda line: None)
        if args.keep:
            print(f"state kept in {state}")
        else:
            subprocess.run(["rm", "-rf", str(state)], check=False)


if __name__ == "__main__":
    main()
