"""Shared set-up for the benchmarks: a sample warehouse and a blessed model, built for real.

Benchmarks run on demand (`make bench`), print their figures and never assert timings.
They call the same `tfpipe-job` commands the DAG runs, in subprocesses, so a step's peak
memory is that process's own maximum resident set size.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
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
    peak_mb: float  # the largest single process (GNU time)
    result: dict
    peak_tree_mb: float = 0.0  # all its processes together (local Beam workers included), sampled


_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def tree_rss_mb(root: int) -> float:
    """Resident memory of a process and all its descendants now (Linux /proc).

    Separate worker processes each count their own copy of shared libraries, so this is
    an upper bound of what the machine needs, which is what sizing a worker asks.
    """
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat_file:
                ppid = int(stat_file.read().rpartition(")")[2].split()[1])
            with open(f"/proc/{entry}/statm") as statm_file:
                rss[int(entry)] = int(statm_file.read().split()[1]) * _PAGE_KB
        except (OSError, ValueError, IndexError):
            continue  # the process ended while we looked
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total / 1024


@dataclass
class Workspace:
    root: Path

    @property
    def warehouse_file(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def warehouse(self) -> str:
        return f"duckdb://{self.warehouse_file}"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    def step(self, step: str, ds: str, *sets: str, code: Path | None = None) -> StepRun:
        """Run one job command; wall time and peak RSS (GNU time) of its process.

        `code`: a folder holding another version's installed packages (`baseline_code`), run
        in place of this checkout's."""
        cli = [JOB_CLI] if code is None else [sys.executable, "-c", "from tfpipe_jobs.cli import main; main()"]
        args = [
            *cli,
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
        return run_measured(args, env=None if code is None else {**os.environ, "PYTHONPATH": str(code)})


def baseline_code(ref: str, folder: Path) -> Path:
    """The packages of git commit `ref` as installed (setup.py's layout), built into `folder/lib`.

    Put first on PYTHONPATH, they shadow this checkout's editable install, so one benchmark
    run measures both versions side by side."""
    tree, lib = folder / "tree", folder / "lib"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), ref], check=True)
    try:
        subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(lib)], cwd=tree, check=True)
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=True)
    return lib


def run_measured(args: list[str], env: dict[str, str] | None = None) -> StepRun:
    started = time.monotonic()
    proc = subprocess.Popen(
        [TIME, "-f", "TFPIPE_MAXRSS_KB %M", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    peak_tree = [0.0]

    def sample() -> None:
        while proc.poll() is None:
            peak_tree[0] = max(peak_tree[0], tree_rss_mb(proc.pid))
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    seconds = time.monotonic() - started
    sampler.join()
    out = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    if out.returncode != 0:
        sys.stderr.write(out.stdout[-3000:] + out.stderr[-6000:])
        raise SystemExit(f"{args[1]} failed with exit code {out.returncode}")
    rss = next(int(line.split()[1]) for line in out.stderr.splitlines() if line.startswith("TFPIPE_MAXRSS_KB"))
    line = next(x for x in reversed(out.stdout.splitlines()) if x.startswith("TFPIPE_RESULT "))
    result = json.loads(line[len("TFPIPE_RESULT ") :])
    return StepRun(seconds=seconds, peak_mb=rss / 1024, result=result, peak_tree_mb=peak_tree[0])


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
    for step in ("extract_transform", "train", "export_serving_model", "evaluate_gate", "publish_model"):
        ws.step(step, ds, *sets)
