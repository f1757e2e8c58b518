"""Runs a `tfpipe-job` command as a local subprocess and reads its result.

The job writes its result JSON to the file `TFPIPE_RESULT_FILE` names and prints it as
`TFPIPE_RESULT <json>`; the file is what counts, since stdout and stderr share one pipe and
a log line can land inside the printed one (the line is the fallback for a command that
only prints). Everything else it writes is streamed to the task log as it comes, so a long
step shows progress. Each line
goes in at the level it says it has (TensorFlow's `E`/`W`/`I`/`F` prefix, Python
logging's level name), so the task log's error filter finds the job's errors.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import signal
import subprocess
import tempfile
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow.sdk.bases.hook import BaseHook

from tfpipe_operators.contract import RESULT_FILE_ENV, RESULT_PREFIX

# TensorFlow/absl native logging: `E1202 13:00:00.123456   42 file.cc:52] ...`.
_NATIVE = re.compile(r"^([FEWI])\d{4} \d\d:\d\d:\d\d")
_NATIVE_LEVELS = {"F": logging.CRITICAL, "E": logging.ERROR, "W": logging.WARNING, "I": logging.INFO}
# Python logging: the job's format (`<asctime> LEVEL name: ...`) and logging's default (`LEVEL:name:...`).
_PYTHON = re.compile(
    r"^(?:\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d[,.]\d+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"|(DEBUG|INFO|WARNING|ERROR|CRITICAL):)"
)


def line_level(line: str, previous: int = logging.INFO) -> int:
    """The level a job's output line says it has; a line that says none continues the one
    before it (a traceback under its error, a multi-line message), and a bare traceback is
    an error."""
    native = _NATIVE.match(line)
    if native:
        return _NATIVE_LEVELS[native.group(1)]
    python = _PYTHON.match(line)
    if python:
        return int(logging.getLevelName(python.group(1) or python.group(2)))
    if line.startswith("Traceback (most recent call last):"):
        return logging.ERROR
    return previous


@dataclass
class JobRun:
    exit_code: int
    result: dict[str, Any] = field(default_factory=dict)
    tail: list[str] = field(default_factory=list)


class JobCommandHook(BaseHook):  # type: ignore[misc]
    """Start, stream, and (on kill) stop one job command and its children."""

    def __init__(self) -> None:
        super().__init__()
        self._process: subprocess.Popen[str] | None = None

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None, tail_lines: int = 30) -> JobRun:
        self.log.info("Running: %s", shlex.join(argv))
        with tempfile.TemporaryDirectory(prefix="tfpipe-result-") as folder:
            result_file = os.path.join(folder, "result.json")
            run = self._stream(argv, {**os.environ, **(env or {}), RESULT_FILE_ENV: result_file}, tail_lines)
            if os.path.exists(result_file):
                with open(result_file) as handle:
                    run.result = json.load(handle)
        return run

    def _stream(self, argv: Sequence[str], env: Mapping[str, str], tail_lines: int) -> JobRun:
        try:
            self._process = subprocess.Popen(
                list(argv),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=dict(env),
                start_new_session=True,  # its own process group, so on_kill stops Beam workers too
            )
        except FileNotFoundError:
            raise FileNotFoundError(
                f"job command '{argv[0]}' not found: set TFPIPE_JOB_CLI to the tfpipe-job of the jobs environment"
            ) from None
        result: dict[str, Any] = {}
        tail: deque[str] = deque(maxlen=tail_lines)
        assert self._process.stdout is not None
        level = logging.INFO
        for raw in self._process.stdout:
            line = raw.rstrip("\n")
            if line.startswith(RESULT_PREFIX):
                printed, line = _split_result(line)
                result = printed if printed is not None else result
                if not line:
                    continue
            tail.append(line)
            level = line_level(line, level)
            self.log.log(level, "%s", line)
        code = self._process.wait()
        self.log.info("Job command exited with code %s", code)
        return JobRun(exit_code=code, result=result, tail=list(tail))

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self.log.info("Stopping job command (process group %s)", self._process.pid)
            os.killpg(self._process.pid, signal.SIGTERM)


def _split_result(line: str) -> tuple[dict[str, Any] | None, str]:
    """The printed result and whatever else came on its line (another stream's output that
    landed inside it), or None and the whole line if it holds no readable result."""
    try:
        printed, end = json.JSONDecoder().raw_decode(line, len(RESULT_PREFIX))
    except json.JSONDecodeError:
        return None, line
    return (printed, line[end:].strip()) if isinstance(printed, dict) else (None, line)
