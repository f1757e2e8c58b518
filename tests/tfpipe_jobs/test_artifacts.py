"""Staged outputs under kills: SIGTERM cleans up on the way out, a SIGKILL's litter is swept later."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tfpipe_jobs import artifacts


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_sweep_removes_what_dead_owners_left_and_keeps_the_living(tmp_path: Path) -> None:
    final = tmp_path / "data"
    host = artifacts.owner_token().split("-")[0]
    dead = tmp_path / f"data.tmp-{host}-{_dead_pid()}-aaaaaaaa"
    old_dead = tmp_path / f"data.old-{host}-{_dead_pid()}-bbbbbbbb"
    alive = tmp_path / f"data.tmp-{host}-{os.getppid()}-cccccccc"
    foreign_recent = tmp_path / "data.tmp-otherhost-12-dddddddd"
    foreign_stale = tmp_path / "data.tmp-otherhost-13-eeeeeeee"
    for folder in (dead, old_dead, alive, foreign_recent, foreign_stale):
        folder.mkdir()
        (folder / "part-00000").write_text("x")
    day_ago = time.time() - artifacts.STALE_AFTER_SECONDS - 60
    os.utime(foreign_stale, (day_ago, day_ago))
    removed = artifacts.sweep_stale(str(final))
    assert sorted(removed) == sorted(str(p) for p in (dead, old_dead, foreign_stale))
    assert alive.exists() and foreign_recent.exists()


# Where the signal lands: in the step's own code (the warehouse's queries, right after the
# output is staged), or inside the Beam pipeline, whose runner re-raises what stopped a
# transform as an error of its own; both must end as a SIGTERM exit.
MOMENTS = {
    "while_querying": lambda staged: True,
    "inside_beam": lambda staged: any(staged.glob("transform_tmp/*/saved_model.pb")),
}


@pytest.mark.parametrize("moment", sorted(MOMENTS))
def test_a_step_stopped_by_sigterm_removes_its_staged_output(ctr_warehouse, tmp_path: Path, moment: str) -> None:
    root = tmp_path / "artifacts"
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "tfpipe-job"),
            *ctr_warehouse.args("extract_transform", artifacts=str(root)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    day = root / "ctr" / "2026-11-21"
    reached = MOMENTS[moment]
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        staged = list(day.glob("data.tmp-*"))
        if staged and reached(staged[0]):
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the step ended before the signal could land {moment}"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "stopped by SIGTERM" in err
    assert sorted(p.name for p in day.iterdir()) == []  # no staged folder, nothing published
