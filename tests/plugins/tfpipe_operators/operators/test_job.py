"""TfpipeJobOperator against a real subprocess that speaks the job CLI's contract."""

from __future__ import annotations

import stat
import sys
import threading
import time
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from tfpipe_operators.operators.job import TfpipeJobOperator

SCRIPT = """#!{python}
import json, sys, time
mode = sys.argv[1]
print("working on", " ".join(sys.argv[1:]), flush=True)
print("a warning on stderr", file=sys.stderr, flush=True)
if mode == "ok":
    print("TFPIPE_RESULT " + json.dumps({{"rows": 12}}), flush=True)
    print("a late log line after the result", file=sys.stderr)
elif mode == "skip":
    print("TFPIPE_RESULT " + json.dumps({{"skipped": "gate refused the model"}}), flush=True)
    sys.exit(99)
elif mode == "sleep":
    time.sleep(60)
else:
    print("Traceback: ValueError: column 'x' is NULL in every row", file=sys.stderr)
    sys.exit(3)
"""


@pytest.fixture
def fake_cli(tmp_path: Path) -> str:
    path = tmp_path / "tfpipe-job"
    path.write_text(SCRIPT.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_success_returns_the_result_line(fake_cli: str) -> None:
    op = TfpipeJobOperator(task_id="t", job_cli=fake_cli, arguments=["ok", "--ds", "2026-11-21"])
    assert op.execute(context={}) == {"rows": 12}


def test_exit_99_skips_with_the_jobs_reason(fake_cli: str) -> None:
    op = TfpipeJobOperator(task_id="t", job_cli=fake_cli, arguments=["skip"])
    with pytest.raises(AirflowSkipException, match="gate refused the model"):
        op.execute(context={})


def test_failure_shows_the_last_lines(fake_cli: str) -> None:
    op = TfpipeJobOperator(task_id="t", job_cli=fake_cli, arguments=["fail"])
    with pytest.raises(AirflowException, match=r"exit code 3(.|\n)*column 'x' is NULL in every row"):
        op.execute(context={})


def test_missing_cli_says_what_to_set(tmp_path: Path) -> None:
    op = TfpipeJobOperator(task_id="t", job_cli=str(tmp_path / "nope"), arguments=["ok"])
    with pytest.raises(FileNotFoundError, match="set TFPIPE_JOB_CLI"):
        op.execute(context={})


def test_on_kill_stops_the_job(fake_cli: str) -> None:
    op = TfpipeJobOperator(task_id="t", job_cli=fake_cli, arguments=["sleep"])
    errors: list[BaseException] = []

    def run() -> None:
        try:
            op.execute(context={})
        except BaseException as exc:  # the killed job fails the task
            errors.append(exc)

    thread = threading.Thread(target=run)
    started = time.monotonic()
    thread.start()
    while op._hook is None or op._hook._process is None:
        time.sleep(0.05)
    time.sleep(0.3)
    op.on_kill()
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert time.monotonic() - started < 20
    assert errors and "exit code -15" in str(errors[0])
