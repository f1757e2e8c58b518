"""Robust training runs: a killed attempt resumes from its last epoch; a seed reproduces a run."""

from __future__ import annotations

import csv
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DS = "2026-11-21"
EPOCHS = 40


def _copy_data(ctr_run, root: Path) -> Path:
    day = root / "ctr" / DS
    shutil.copytree(ctr_run.day() / "data", day / "data")
    return day


def _epochs(metrics_csv: Path) -> list[int]:
    return [int(r["epoch"]) for r in csv.DictReader(metrics_csv.open())]


def test_killed_attempt_resumes_from_its_checkpoint(ctr_run, tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    day = _copy_data(ctr_run, root)
    sets = ["--set", f"train.epochs={EPOCHS}", "--set", "train.early_stopping_patience=0"]
    cli = str(Path(sys.executable).parent / "tfpipe-job")
    first = subprocess.Popen(
        [cli, *ctr_run.args("train", DS, None, *sets, artifacts=str(root))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    history: list[Path] = []
    while time.monotonic() < deadline and first.poll() is None:
        history = list((day / "checkpoints").glob("*/history.csv"))
        if history and len(history[0].read_text().splitlines()) >= 4:  # header + 3 finished epochs
            break
        time.sleep(0.05)
    assert first.poll() is None, "the first attempt finished before it could be interrupted"
    first.send_signal(signal.SIGKILL)  # a preempted node: no chance to clean up
    first.wait()
    assert not (day / "model").exists()

    result = ctr_run.run("train", *sets, artifacts=str(root))
    assert result["exit_code"] == 0
    assert result["epochs"] == EPOCHS
    # 3 epoch rows were logged, so the backups of at least 2 finished epochs exist: resume after them.
    assert 0 < result["epochs_this_attempt"] <= EPOCHS - 2
    assert _epochs(day / "model" / "metrics.csv") == list(range(EPOCHS))
    assert not (day / "checkpoints").exists() or not list((day / "checkpoints").iterdir())


def test_same_seed_same_metrics_on_cpu(ctr_run, tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        root = tmp_path / name
        day = _copy_data(ctr_run, root)
        assert ctr_run.run("train", "--set", "train.epochs=2", artifacts=str(root))["exit_code"] == 0
        runs.append((day / "model" / "metrics.csv").read_text())
    assert runs[0] == runs[1]
    root = tmp_path / "c"
    day = _copy_data(ctr_run, root)
    ctr_run.run("train", "--set", "train.epochs=2", "--set", "train.seed=7", artifacts=str(root))
    assert (day / "model" / "metrics.csv").read_text() != runs[0]


def test_early_stopping_stops_on_the_eval_metric(ctr_run, tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    day = _copy_data(ctr_run, root)
    result = ctr_run.run(
        "train",
        "--set",
        "train.epochs=60",
        "--set",
        "train.early_stopping_patience=1",
        "--set",
        "train.learning_rate=0.05",
        artifacts=str(root),
    )
    assert result["exit_code"] == 0
    assert result["epochs"] < 60
    assert len(_epochs(day / "model" / "metrics.csv")) == result["epochs"]


@pytest.mark.parametrize("replicas", [2])
def test_two_logical_cpus_train_with_mirrored_strategy(ctr_run, tmp_path: Path, replicas: int) -> None:
    root = tmp_path / "artifacts"
    _copy_data(ctr_run, root)
    cli = str(Path(sys.executable).parent / "tfpipe-job")
    out = subprocess.run(
        [cli, *ctr_run.args("train", DS, None, "--set", "train.epochs=1", artifacts=str(root))],
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "TFPIPE_CPU_REPLICAS": str(replicas)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"MirroredStrategy over {replicas} devices" in out.stderr
