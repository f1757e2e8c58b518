"""Which Beam runner a job uses, and what happens to a remote job when the step is stopped.

Beam's `DirectRunner` name first tries the Prism runner, which fetches a binary; on a
machine without internet that costs a failed download before it falls back. Locally we
therefore hand Beam the FnApiRunner object itself (the engine the DirectRunner ends up
using for batch pipelines); `direct_num_workers` > 1 runs its workers as processes.

On Dataflow the job outlives the process that launched it. So every pipeline run through
`make_runner` is tracked: its job id goes into the step's result (XCom, the UI link) and a
SIGTERM (Kubernetes deleting the pod, Airflow killing the task) cancels the job before the
process exits, instead of leaving it running and billing.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass
from types import FrameType
from typing import Any

from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions
from apache_beam.runners.runner import PipelineResult, PipelineState

log = logging.getLogger(__name__)

LOCAL_RUNNERS = {"DirectRunner", "FnApiRunner"}
# What a Dataflow job cannot start without; the Airflow side renders them from the profile.
DATAFLOW_REQUIRED = ("project", "region", "temp_location", "staging_location", "sdk_container_image")
EXIT_TERMINATED = 128 + signal.SIGTERM


def pipeline_args(runner: str, num_workers: int, extra: tuple[str, ...] | list[str] = ()) -> list[str]:
    if runner in LOCAL_RUNNERS:
        mode = "multi_processing" if num_workers > 1 else "in_memory"
        return [f"--direct_num_workers={num_workers}", f"--direct_running_mode={mode}", *extra]
    args = [f"--runner={runner}", *extra]
    if runner == "DataflowRunner":
        given = {a.removeprefix("--").partition("=")[0] for a in args if a.startswith("--")}
        missing = [name for name in DATAFLOW_REQUIRED if name not in given]
        if missing:
            raise ValueError(
                "DataflowRunner needs --beam-arg " + ", ".join(f"--{m}=..." for m in missing) + " (the gcp profile "
                "renders them from TFPIPE_GCP_PROJECT, TFPIPE_GCP_REGION, TFPIPE_TEMP_LOCATION, "
                "TFPIPE_STAGING_LOCATION and TFPIPE_DATAFLOW_IMAGE)"
            )
    return args


def make_runner(runner: str) -> Any:
    """A runner object for beam.Pipeline: FnApiRunner locally, a tracked Dataflow runner in gcp."""
    if runner in LOCAL_RUNNERS:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return FnApiRunner()
    if runner == "DataflowRunner":
        return _tracked_dataflow_runner()
    return runner


def make_options(runner: str, num_workers: int, extra: tuple[str, ...] | list[str] = ()) -> PipelineOptions:
    if runner in LOCAL_RUNNERS and num_workers > 1:
        _isolate_worker_imports()
    return PipelineOptions(pipeline_args(runner, num_workers, extra))


def _isolate_worker_imports() -> None:
    """Local worker processes start with `python -m`, which puts the working directory first
    on their import path; started from a source checkout, its folders would hide the
    installed packages (e.g. `tfpipe_jobs` without its mapped `beam_jobs`). The workers
    inherit this process's environment, so tell their Python not to add it."""
    os.environ["PYTHONSAFEPATH"] = "1"


def fan_out(runner: str) -> Any:
    """Spread read batches over workers on a distributed runner; locally, keep them streaming.

    A Reshuffle materialises its whole input before the next stage. On the local runner
    that would hold every row in memory; without it the read, the work and the write fuse
    into one stage and batches flow through one at a time.
    """
    import apache_beam as beam

    if runner in LOCAL_RUNNERS:
        return beam.Map(lambda batch: batch)
    return beam.Reshuffle()


def read_shards(runner: str, num_workers: int, distributed: int) -> int:
    """How many parallel reads split the source: locally one per worker process, on a
    distributed runner `distributed` (the stage's `distributed_read_shards`).

    A single read is one bundle, and the FnApiRunner fuses everything after it into the
    worker that runs that bundle; several reads (each a hash range of the keys) give each
    worker its own part. On Dataflow a single read would be one worker streaming the whole
    day however many workers the job has; each hash range is a read of its own that the
    service hands to any worker, and the Reshuffle after the reads spreads the batches.
    """
    return num_workers if runner in LOCAL_RUNNERS else distributed


# --- job tracking -----------------------------------------------------------------------


@dataclass
class TrackedJob:
    result: PipelineResult
    job_id: str
    project: str
    region: str


_TRACKED: list[TrackedJob] = []


def track(result: PipelineResult, options: PipelineOptions) -> PipelineResult:
    """Remember a launched pipeline; cancel it if this process is asked to terminate."""
    get_id = getattr(result, "job_id", None)  # only remote results (Dataflow) have an id
    job_id = str(get_id()) if callable(get_id) else ""
    gcp = options.view_as(GoogleCloudOptions)
    job = TrackedJob(result=result, job_id=job_id, project=gcp.project or "", region=gcp.region or "")
    _TRACKED.append(job)
    if job_id:
        log.info(
            "Dataflow job %s launched: https://console.cloud.google.com/dataflow/jobs/%s/%s?project=%s",
            job_id,
            job.region,
            job_id,
            job.project,
        )
    _install_sigterm_handler()
    return result


def launched_jobs() -> dict[str, Any]:
    """What the step's result reports about the remote job it ran (nothing for local runs)."""
    remote = [job for job in _TRACKED if job.job_id]
    if not remote:
        return {}
    last = remote[-1]
    return {"dataflow_job_id": last.job_id, "dataflow_project": last.project, "dataflow_region": last.region}


def cancel_running() -> list[str]:
    """Cancel every tracked pipeline that has not finished; the ids (or runner names) cancelled."""
    cancelled = []
    for job in _TRACKED:
        try:
            if PipelineState.is_terminal(job.result.state):
                continue
            name = job.job_id or type(job.result).__name__
            log.warning("Cancelling pipeline %s (state %s)", name, job.result.state)
            job.result.cancel()
            log.warning("Pipeline %s is now %s", name, job.result.state)
            cancelled.append(name)
        except Exception:
            # Keep going: the other jobs must still be cancelled, and the process must still exit.
            log.exception("Could not cancel pipeline %s; cancel it in the console", job.job_id)
    return cancelled


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    cancel_running()
    raise SystemExit(EXIT_TERMINATED)


def _install_sigterm_handler() -> None:
    # Signal handlers can only be set from the main thread (the job CLI always is).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def _tracked_dataflow_runner() -> Any:
    # Imported here: the Dataflow runner pulls in the Google clients, which local runs never need.
    from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner

    class TrackedDataflowRunner(DataflowRunner):  # type: ignore[misc]
        """DataflowRunner whose launched job is tracked (id reported, cancelled on SIGTERM)."""

        def run_pipeline(self, pipeline: Any, options: PipelineOptions, pipeline_proto: Any = None) -> Any:
            result = super().run_pipeline(pipeline, options, pipeline_proto)
            if getattr(result, "has_job", False):
                track(result, options)
            return result

    return TrackedDataflowRunner()
