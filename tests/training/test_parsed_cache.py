"""The parsed-data cache never litters: removed on any exit train sees, named for its owner,
and swept at the next run when its owner is provably gone (real folders, real processes)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tfpipe_jobs.training import parsed_cache
from tfpipe_jobs.training.parsed_cache import PREFIX

DS = "2026-11-21"
DAY = 24 * 3600


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid names no process now
    return proc.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    proc = subprocess.Popen(["sleep", "600"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _cache(root: Path, name: str, age: float = 0.0) -> Path:
    path = root / name
    (path / "train.data-00000-of-00001").parent.mkdir(parents=True)
    (path / "train.data-00000-of-00001").write_bytes(b"x" * 1000)
    if age:
        stamp = time.time() - age
        for p in (path / "train.data-00000-of-00001", path):
            os.utime(p, (stamp, stamp))
    return path


def test_the_cache_folder_names_its_host_and_pid(tmp_path: Path) -> None:
    path = Path(parsed_cache.create(str(tmp_path)))
    assert path.is_dir() and path.parent == tmp_path
    assert path.name.startswith(f"{PREFIX}{parsed_cache.host()}-{os.getpid()}-")
    parsed_cache.remove(str(path))
    assert not path.exists()
    parsed_cache.remove(str(path))  # twice is fine


def test_dead_reaped_and_zombie_processes_are_not_alive(live_pid: int) -> None:
    assert parsed_cache.pid_alive(live_pid)
    assert not parsed_cache.pid_alive(_dead_pid())
    zombie = subprocess.Popen(["sleep", "600"])
    zombie.kill()  # killed, not yet reaped: a zombie holds the pid
    try:
        deadline = time.monotonic() + 10
        while parsed_cache.pid_alive(zombie.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not parsed_cache.pid_alive(zombie.pid)
        assert os.path.exists(f"/proc/{zombie.pid}")
    finally:
        zombie.wait()


def test_sweep_removes_only_caches_without_a_live_owner(
    tmp_path: Path, live_pid: int, caplog: pytest.LogCaptureFixture
) -> None:
    me = parsed_cache.host()
    dead = _dead_pid()
    stale = {
        "dead pid": _cache(tmp_path, f"{PREFIX}{me}-{dead}-a1b2c3d4"),
        "dead pid, old": _cache(tmp_path, f"{PREFIX}{me}-{dead}-e5f6g7h8", age=2 * DAY),
        "my pid, a previous container's": _cache(tmp_path, f"{PREFIX}{me}-{os.getpid()}-i9j0k1l2"),
        "other host, old": _cache(tmp_path, f"{PREFIX}gke-pool-1-abc-{live_pid}-m3n4o5p6", age=DAY + 600),
        "unnamed owner, old": _cache(tmp_path, f"{PREFIX}q7r8s9t0", age=3 * DAY),
    }
    kept = {
        "live pid": _cache(tmp_path, f"{PREFIX}{me}-{live_pid}-u1v2w3x4"),
        "live pid, old": _cache(tmp_path, f"{PREFIX}{me}-{live_pid}-y5z6a7b8", age=3 * DAY),
        "other host, fresh": _cache(tmp_path, f"{PREFIX}gke-pool-1-abc-{dead}-c9d0e1f2", age=DAY - 600),
        "unnamed owner, fresh": _cache(tmp_path, f"{PREFIX}g3h4i5j6"),
        "not a cache": _cache(tmp_path, "tfpipe-other-k7l8m9n0", age=3 * DAY),
    }
    (tmp_path / f"{PREFIX}{me}-{dead}-file").write_text("a file, not a cache folder")

    with caplog.at_level(logging.INFO, logger=parsed_cache.__name__):
        swept = parsed_cache.sweep(str(tmp_path))

    assert sorted(swept) == sorted(str(p) for p in stale.values())
    for what, path in stale.items():
        assert not path.exists(), what
    for what, path in kept.items():
        assert path.exists(), what
    assert (tmp_path / f"{PREFIX}{me}-{dead}-file").exists()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    gone = f"its process {dead} on this host is gone"
    assert f"swept the stale parsed-data cache {stale['dead pid']} (0.0 MB): {gone}" in logged
    assert f"{stale['other host, old']} (0.0 MB): it is 24 h old (host gke-pool-1-abc)" in logged


# --- train itself: interrupted by a signal it turns into an exception --------------------

# SIGTERM -> SystemExit in the main thread (as the job CLI does), SIGINT -> KeyboardInterrupt
# (Python's default).
_WITH_SIGTERM_EXIT = (
    "import signal, sys\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))\n"
    "from tfpipe_jobs import cli\n"
    "sys.exit(cli.main(sys.argv[1:]))\n"
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm-systemexit", "sigint-keyboardinterrupt"])
def test_an_interrupted_train_removes_its_cache_and_sweeps_a_dead_ones(
    ctr_run, tmp_path: Path, sig: signal.Signals
) -> None:
    root = tmp_path / "artifacts"
    day = root / "ctr" / DS
    shutil.copytree(ctr_run.day() / "data", day / "data")
    temp = tmp_path / "tmp"
    temp.mkdir()
    leftover = _cache(temp, f"{PREFIX}{parsed_cache.host()}-{_dead_pid()}-z9y8x7w6")
    sets = ["--set", "train.epochs=200", "--set", "train.early_stopping_patience=0"]
    proc = subprocess.Popen(
        [sys.executable, "-c", _WITH_SIGTERM_EXIT, *ctr_run.args("train", DS, None, *sets, artifacts=str(root))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(temp)},
        cwd=tmp_path,  # not the repository: there `tfpipe_jobs` is the source folder, not the installed package
    )
    try:
        deadline = time.monotonic() + 300
        # An epoch row is logged once the first epoch (which fills the cache) is over.
        while time.monotonic() < deadline and proc.poll() is None:
            history = list((day / "checkpoints").glob("*/history.csv"))
            if history and len(history[0].read_text().splitlines()) >= 2:
                break
            time.sleep(0.05)
        if proc.poll() is not None:
            raise AssertionError(f"training ended before it was interrupted: {proc.communicate()[1].decode()[-3000:]}")
        caches = [p for p in temp.glob(f"{PREFIX}*") if p != leftover]
        assert len(caches) == 1 and caches[0].name.startswith(f"{PREFIX}{parsed_cache.host()}-{proc.pid}-")
        assert any(caches[0].iterdir()), "the first epoch was cached"
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert not list(temp.glob(f"{PREFIX}*")), list(temp.iterdir())
    assert f"swept the stale parsed-data cache {leftover}" in stderr.decode()
    assert not (day / "model").exists()
