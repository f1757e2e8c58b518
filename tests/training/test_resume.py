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


# val AUC on the sample data peaks at an early epoch and then falls: with patience 2 an
# uninterrupted run stops two epochs after its best one and keeps the best.
# On the eval AUC, as this scenario was measured (it needs a best epoch, then 2 worse ones).
STOPPING = [
    "--set",
    "train.epochs=12",
    "--set",
    "train.early_stopping_patience=2",
    "--set",
    "train.early_stopping_metric=auc",
]


def _train_cli(ctr_run, root: Path, *sets: str) -> subprocess.Popen[bytes]:
    cli = str(Path(sys.executable).parent / "tfpipe-job")
    return subprocess.Popen(
        [cli, *ctr_run.args("train", DS, None, *sets, artifacts=str(root))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _kill_when(proc: subprocess.Popen[bytes], ready, what: str) -> None:
    """SIGKILL `proc` (a preempted node: no cleanup) as soon as `ready()` holds."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not ready():
        time.sleep(0.01)
    assert proc.poll() is None, f"the first attempt finished before {what}"
    assert ready(), f"timed out waiting for {what}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _history_rows(day: Path) -> int:
    history = list((day / "checkpoints").glob("*/history.csv"))
    return len(history[0].read_text().splitlines()) - 1 if history else 0


@pytest.fixture(scope="module")
def uninterrupted(ctr_run, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    root = tmp_path_factory.mktemp("uninterrupted")
    day = _copy_data(ctr_run, root)
    result = ctr_run.run("train", *STOPPING, artifacts=str(root))
    assert result["exit_code"] == 0
    # The scenario needs a best epoch before the kill and a stop after it.
    assert result["kept_epoch"] >= 1 and result["epochs"] == result["kept_epoch"] + 3 < 12, result
    return result, (day / "model" / "metrics.csv").read_text()


def test_resumed_run_keeps_the_uninterrupted_runs_epoch(ctr_run, uninterrupted, tmp_path: Path) -> None:
    """Killed after the best epoch's checkpoint: early stopping resumes with its best value,
    wait counter and best weights, and the epochs after the kill train as they would have."""
    expected, expected_metrics = uninterrupted
    root = tmp_path / "artifacts"
    day = _copy_data(ctr_run, root)
    first = _train_cli(ctr_run, root, *STOPPING)
    # A row is logged before its epoch's checkpoint: rows up to kept_epoch + 1 mean the
    # checkpoint of the best epoch exists, and the stop is still an epoch away.
    _kill_when(first, lambda: _history_rows(day) >= expected["kept_epoch"] + 2, "the epoch after the best one")
    assert not (day / "model").exists()

    result = ctr_run.run("train", *STOPPING, artifacts=str(root))
    assert result["exit_code"] == 0
    assert 0 < result["epochs_this_attempt"] < result["epochs"]  # it resumed, it did not start over
    assert result["kept_epoch"] == expected["kept_epoch"]
    assert result["final"] == expected["final"]
    assert result["epochs"] == expected["epochs"]
    # Every epoch, before and after the kill, has the uninterrupted run's metrics.
    assert (day / "model" / "metrics.csv").read_text() == expected_metrics


def test_resumed_run_that_had_stopped_does_not_train_again(ctr_run, uninterrupted, tmp_path: Path) -> None:
    """Killed while saving the model, after early stopping ended training: the rerun
    publishes the kept epoch without training another epoch."""
    expected, expected_metrics = uninterrupted
    root = tmp_path / "artifacts"
    day = _copy_data(ctr_run, root)
    first = _train_cli(ctr_run, root, *STOPPING)
    _kill_when(first, lambda: any(day.glob("model.tmp-*/keras_model")), "the model was being saved")
    assert not (day / "model").exists()

    result = ctr_run.run("train", *STOPPING, artifacts=str(root))
    assert result["exit_code"] == 0
    assert result["epochs_this_attempt"] == 0
    assert result["kept_epoch"] == expected["kept_epoch"] and result["final"] == expected["final"]
    assert (day / "model" / "metrics.csv").read_text() == expected_metrics
