"""Runs a `tfpipe-job` command as a local subprocess and reads its result line.

The job prints `TFPIPE_RESULT <json>` as its last stdout line; everything else it
writes is streamed to the task log as it comes, so a long step shows progress.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow.sdk.bases.hook import BaseHook

RESULT_PREFIX = "TFPIPE_RESULT "


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
        full_env = {**os.environ, **(env or {})}
        try:
            self._process = subprocess.Popen(
                list(argv),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=full_env,
                start_new_session=True,  # its own process group, so on_kill stops Beam workers too
            )
        except FileNotFoundError:
            raise FileNotFoundError(
                f"job command '{argv[0]}' not found: set TFPIPE_JOB_CLI to the tfpipe-job of the jobs environment"
            ) from None
        result: dict[str, Any] = {}
        tail: deque[str] = deque(maxlen=tail_lines)
        assert self._process.stdout is not None
        for raw in self._process.stdout:
            line = raw.rstrip("\n")
            if line.startswith(RESULT_PREFIX):
                result = json.loads(line[len(RESULT_PREFIX) :])
                continue
            tail.append(line)
            self.log.info("%s", line)
        code = self._process.wait()
        self.log.info("Job command exited with code %s", code)
        return JobRun(exit_code=code, result=result, tail=list(tail))

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self.log.info("Stopping job command (process group %s)", self._process.pid)
            os.killpg(self._process.pid, signal.SIGTERM)
