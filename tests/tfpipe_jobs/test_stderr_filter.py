"""A CPU run's stderr without TensorFlow's CUDA probe; every other line kept, in order."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tfpipe_jobs import stderr_filter

CUINIT = (
    b"E0000 00:00:1796219487.228272    7180 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
    b"Failed call to cuInit: UNKNOWN ERROR (303)\n"
)
NO_DRIVER = (
    b"I0000 00:00:1796219455.157184    6937 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
    b"GPU will not be used.\n"
)


def test_only_the_known_cuda_lines_are_dropped() -> None:
    kept = [
        b"2026-12-02 13:00:00,000 INFO tfpipe_jobs: scoring 500 rows\n",
        b"E0000 00:00:1796219487.228272    7180 cuda_platform.cc:52] some other CUDA failure\n",
        b"W0000 00:00:1796219487.228272    7180 cuda_platform.cc:52] failed call to cuInit (a warning)\n",
        b"Traceback (most recent call last):\n",
    ]
    source = io.BytesIO(b"".join([kept[0], CUINIT, kept[1], NO_DRIVER, kept[2], kept[3]]))
    target = io.BytesIO()
    assert stderr_filter.relay(source, target) == 2
    assert target.getvalue() == b"".join(kept)


def _score(ctr_run, tmp_path: Path, command: list[str]) -> str:
    root = tmp_path / "artifacts"
    shutil.copytree(ctr_run.artifacts, root)
    argv = [*command, *ctr_run.args("batch_score", artifacts=str(root))]
    # cwd: outside the source tree, so `tfpipe_jobs` is the installed package (beam_jobs mapped in)
    run = subprocess.run(argv, capture_output=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    assert run.stdout.decode().splitlines()[-1].startswith("TFPIPE_RESULT ")
    return run.stderr.decode()


UNFILTERED = [sys.executable, "-c", "import sys; from tfpipe_jobs import cli; sys.exit(cli.main(sys.argv[1:]))"]
CUDA_SOURCES = {"cuda_platform.cc:52", "cudart_stub.cc:31"}


def _native_sources(stderr: str) -> set[str]:
    """Where TensorFlow's own C++ log lines came from (`cpu_feature_guard.cc:227`, …): the
    lines differ by machine (CPU features, oneDNN), their sources are comparable between runs."""
    return set(re.findall(r"^[IWEF]\d{4} [\d:.]+\s+\d+ ([\w./]+\.cc:\d+)\]", stderr, flags=re.MULTILINE))


def test_a_real_job_run_has_no_cuda_noise_in_its_stderr(ctr_run, tmp_path: Path) -> None:
    assert not stderr_filter.has_gpu()
    stderr = _score(ctr_run, tmp_path / "filtered", [str(Path(sys.executable).parent / "tfpipe-job")])
    assert "cuInit" not in stderr and "Could not find cuda drivers" not in stderr
    # TensorFlow's other start-up lines pass (those the same step prints unfiltered on this
    # machine), and the job's own log is whole.
    unfiltered = _native_sources(_score(ctr_run, tmp_path / "unfiltered", UNFILTERED))
    assert unfiltered >= CUDA_SOURCES
    assert _native_sources(stderr) == unfiltered - CUDA_SOURCES
    assert "INFO tfpipe_jobs" in stderr


def test_the_same_run_without_the_filter_prints_the_line(ctr_run, tmp_path: Path) -> None:
    """The control: the step called as a function (no filter) on this machine gets the probe's error."""
    stderr = _score(ctr_run, tmp_path, UNFILTERED)
    assert "failed call to cuInit" in stderr


def test_a_failing_jobs_traceback_still_reaches_stderr(ctr_warehouse, tmp_path: Path) -> None:
    """Python prints an uncaught error as the process ends: the filter passes it before it exits."""
    job = str(Path(sys.executable).parent / "tfpipe-job")
    argv = [job, *ctr_warehouse.args("batch_score", artifacts=str(tmp_path / "empty"))]
    run = subprocess.run(argv, capture_output=True, timeout=600, cwd=tmp_path)
    stderr = run.stderr.decode()
    assert run.returncode == 1
    assert stderr.splitlines()[-1].startswith("tfpipe_jobs.registry.NoBlessedModelError: no model of pipeline 'ctr'")
    assert "Traceback (most recent call last):" in stderr
