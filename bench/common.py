"""Shared set-up for the benchmarks: a sample warehouse and a blessed model, built for real.

Benchmarks run on demand (`make bench`), print their figures and never assert timings.
They call the same `tfpipe-job` commands the DAG runs, in subprocesses, so a step's peak
memory is that process's own maximum resident set size.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "dags" / "pipelines" / "ctr" / "pipeline.yaml"
JOB_CLI = str(Path(sys.executable).parent / "tfpipe-job")
TIME = "/usr/bin/time"


@dataclass
class StepRun:
    seconds: float
    peak_mb: float
    result: dict


@dataclass
class Workspace:
    root: Path

    @property
    def warehouse(self) -> str:
        return f"duckdb://{self.root / 'warehouse.duckdb'}"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    def step(self, step: str, ds: str, *sets: str) -> StepRun:
        """Run one job command; wall time and peak RSS (GNU time) of its process."""
        args = [
            JOB_CLI,
            step,
            "--spec",
            str(SPEC),
            "--ds",
            ds,
            "--artifact-root",
            str(self.artifacts),
            "--warehouse",
            self.warehouse,
        ]
        for s in sets:
            args += ["--set", s]
        return run_measured(args)


def run_measured(args: list[str]) -> StepRun:
    started = time.monotonic()
    out = subprocess.run([TIME, "-f", "TFPIPE_MAXRSS_KB %M", *args], capture_output=True, text=True)
    seconds = time.monotonic() - started
    if out.returncode != 0:
        sys.stderr.write(out.stdout[-3000:] + out.stderr[-6000:])
        raise SystemExit(f"{args[1]} failed with exit code {out.returncode}")
    rss = next(int(line.split()[1]) for line in out.stderr.splitlines() if line.startswith("TFPIPE_MAXRSS_KB"))
    line = next(x for x in reversed(out.stdout.splitlines()) if x.startswith("TFPIPE_RESULT "))
    return StepRun(seconds=seconds, peak_mb=rss / 1024, result=json.loads(line[len("TFPIPE_RESULT ") :]))


def fresh_workspace(name: str) -> Workspace:
    root = REPO / ".tfpipe" / "bench" / name
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    return Workspace(root)


def bless_small_model(ws: Workspace, ds: str) -> None:
    """A real model trained on the day's events, exported and blessed (gate relaxed: the
    benchmark is about speed; the population is sized for the scoring volume)."""
    sets = ("extract.lookback_days=0", "train.epochs=1", "gate.min_lift_over_baseline=0", "gate.min_value=null")
    for step in ("extract", "train", "export", "evaluate", "publish-model"):
        ws.step(step, ds, *sets)
