"""The Beam runner choice, the Dataflow options rendered from the gcp profile, and job tracking."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, WorkerOptions
from apache_beam.runners.runner import PipelineState

from tfpipe_jobs.beam_jobs import runner
from tfpipe_operators.profiles import load_profile


@pytest.fixture
def dataflow_env(gcp_env: dict[str, str]) -> dict[str, str]:
    """A gcp deployment that also sizes and identifies its Dataflow workers."""
    return {
        **gcp_env,
        "TFPIPE_DATAFLOW_MACHINE_TYPE": "n2-highmem-8",
        "TFPIPE_DATAFLOW_MAX_WORKERS": "40",
        "TFPIPE_DATAFLOW_SERVICE_ACCOUNT": "dataflow-worker@acme-ml.iam.gserviceaccount.com",
    }


def test_local_runner_never_names_the_direct_runner() -> None:
    args = runner.pipeline_args("DirectRunner", 2)
    assert not any(a.startswith("--runner") for a in args)
    assert "--direct_running_mode=multi_processing" in args
    assert type(runner.make_runner("DirectRunner")).__name__ == "FnApiRunner"


def test_gcp_profile_renders_every_dataflow_option_beam_understands(dataflow_env: dict[str, str]) -> None:
    """The args the Airflow side renders, parsed by Beam itself: a misspelt flag would stay unset."""
    extra = load_profile(dataflow_env).dataflow_args("tfpipe-ctr-daily-extract-transform-20261121-t01")
    options = runner.make_options("DataflowRunner", 1, extra)
    gcp = options.view_as(GoogleCloudOptions)
    workers = options.view_as(WorkerOptions)
    assert (gcp.project, gcp.region) == ("acme-ml", "europe-west4")
    assert gcp.job_name == "tfpipe-ctr-daily-extract-transform-20261121-t01"
    assert gcp.temp_location == "gs://acme-ml-tfpipe/artifacts/_dataflow/tmp"
    assert gcp.staging_location == "gs://acme-ml-tfpipe/artifacts/_dataflow/staging"
    assert gcp.service_account_email == "dataflow-worker@acme-ml.iam.gserviceaccount.com"
    assert workers.sdk_container_image == dataflow_env["TFPIPE_DATAFLOW_IMAGE"]
    assert workers.machine_type == "n2-highmem-8"
    assert workers.max_num_workers == 40
    assert gcp.labels == ["app=tfpipe"]
    unknown = set(options.get_all_options(retain_unknown_options=True)) - set(options.get_all_options())
    assert not unknown, f"flags Beam does not know: {unknown}"


def test_dataflow_without_its_settings_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"--staging_location=\.\.\., --sdk_container_image=\.\.\..*TFPIPE_"):
        runner.pipeline_args("DataflowRunner", 1, ["--project=p", "--region=r", "--temp_location=gs://b/t"])


class _DataflowService:
    """The Dataflow API as DataflowPipelineResult talks to it (the network boundary)."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.requests: list[tuple[str, str]] = []

    def get_job(self, job_id: str) -> Any:
        from google.cloud import dataflow

        return dataflow.Job(id=job_id, current_state=self.state)

    def modify_job_state(self, job_id: str, new_state: str) -> bool:
        self.requests.append((job_id, new_state))
        return True


def test_a_running_dataflow_job_is_reported_and_cancelled(
    monkeypatch: pytest.MonkeyPatch, dataflow_env: dict[str, str]
) -> None:
    from apache_beam.runners.dataflow.dataflow_runner import DataflowPipelineResult
    from google.cloud import dataflow

    monkeypatch.setattr(runner, "_TRACKED", [])
    service = _DataflowService(dataflow.JobState.JOB_STATE_RUNNING)
    launcher = type("Launcher", (), {"dataflow_client": service})()
    options = PipelineOptions(load_profile(dataflow_env).dataflow_args("tfpipe-ctr-daily-batch-score-20261121-t01"))
    job = dataflow.Job(id="2026-11-22_01_02_03-42", current_state=dataflow.JobState.JOB_STATE_RUNNING)
    runner.track(DataflowPipelineResult(job, launcher, options), options)

    assert runner.launched_jobs() == {
        "dataflow_job_id": "2026-11-22_01_02_03-42",
        "dataflow_project": "acme-ml",
        "dataflow_region": "europe-west4",
    }
    assert runner.cancel_running() == ["2026-11-22_01_02_03-42"]
    assert service.requests == [("2026-11-22_01_02_03-42", "JOB_STATE_CANCELLED")]

    service.state = dataflow.JobState.JOB_STATE_DONE  # a finished job is left alone
    service.requests.clear()
    assert runner.cancel_running() == []
    assert service.requests == []


CHILD = """
import sys, time
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from tfpipe_jobs.beam_jobs import runner

def slow(x):
    time.sleep(0.5)
    return x

options = PipelineOptions([])
pipeline = beam.Pipeline(runner=BundleBasedDirectRunner(), options=options)
# 40 roots, each its own bundle of 2.5 s: a cancel takes effect between bundles.
for i in range(40):
    pipeline | f"Create{i}" >> beam.Create(list(range(5))) | f"Slow{i}" >> beam.Map(slow)
result = runner.track(pipeline.run(), options)
print("running", flush=True)
try:
    result.wait_until_finish()
finally:
    print("state", result.state, flush=True)
"""


def test_sigterm_cancels_a_real_running_pipeline(tmp_path: Path) -> None:
    """A real (asynchronous) local pipeline in its own process: SIGTERM cancels it and exits 143."""
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    child = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "running", child.stderr.read() if child.stderr else ""
        time.sleep(1.0)
        started = time.monotonic()
        os.kill(child.pid, signal.SIGTERM)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == runner.EXIT_TERMINATED, err[-2000:]
    assert out.splitlines()[-1].startswith("state ")  # the interrupted wait ended, not the pipeline
    assert f"Pipeline DirectPipelineResult is now {PipelineState.CANCELLED}" in err
    assert time.monotonic() - started < 30  # far less than the 100 s the 40 slow bundles need


def test_local_worker_processes_do_not_import_from_the_working_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTHONSAFEPATH", raising=False)
    runner.make_options("DirectRunner", 1)
    assert "PYTHONSAFEPATH" not in os.environ
    runner.make_options("DirectRunner", 2)
    assert os.environ["PYTHONSAFEPATH"] == "1"


def test_reads_split_per_local_worker() -> None:
    assert runner.read_shards("DirectRunner", 3, 8) == 3 and runner.read_shards("DataflowRunner", 3, 8) == 8
