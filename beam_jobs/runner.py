"""Which Beam runner a job uses, chosen so that nothing is downloaded at run time.

Beam's `DirectRunner` name first tries the Prism runner, which fetches a binary; on a
machine without internet that costs a failed download before it falls back. Locally we
therefore hand Beam the FnApiRunner object itself (the engine the DirectRunner ends up
using for batch pipelines); `direct_num_workers` > 1 runs its workers as processes.
"""

from __future__ import annotations

from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

LOCAL_RUNNERS = {"DirectRunner", "FnApiRunner"}


def pipeline_args(runner: str, num_workers: int, extra: tuple[str, ...] | list[str] = ()) -> list[str]:
    if runner in LOCAL_RUNNERS:
        mode = "multi_processing" if num_workers > 1 else "in_memory"
        return [f"--direct_num_workers={num_workers}", f"--direct_running_mode={mode}", *extra]
    return [f"--runner={runner}", *extra]


def make_runner(runner: str) -> Any:
    """A runner object for beam.Pipeline: FnApiRunner locally, the named runner otherwise."""
    if runner in LOCAL_RUNNERS:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return FnApiRunner()
    return runner


def make_options(runner: str, num_workers: int, extra: tuple[str, ...] | list[str] = ()) -> PipelineOptions:
    return PipelineOptions(pipeline_args(runner, num_workers, extra))


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
