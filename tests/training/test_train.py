"""train on the sample data: the model package, its quality, every architecture."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from tfpipe_jobs.metrics import roc_auc
from tfpipe_jobs.training import checkpointing
from tfpipe_jobs.training.models import ARCHITECTURES, UnknownArchitectureError
from tfpipe_jobs.training.train import early_stopping_target
from tfpipe_operators.config import TrainConfig, resolve_config
from tfpipe_operators.spec import load_spec


def test_model_package(ctr_run) -> None:
    model = ctr_run.day() / "model"
    for name in ("_SUCCESS", "metrics.csv", "curves.png", "config.json", "dataset.json", "keras_model"):
        assert (model / name).exists(), name
    rows = list(csv.DictReader((model / "metrics.csv").open()))
    result = ctr_run.results["train"]
    # train.epochs: 3 in the spec, fewer when early stopping ends the run
    assert [int(r["epoch"]) for r in rows] == list(range(result["epochs"])) and 2 <= result["epochs"] <= 3
    assert {"loss", "auc", "val_loss", "val_auc"} <= set(rows[0])
    kept = rows[result["kept_epoch"]]
    # the best epoch by the eval loss (train.early_stopping_metric's default) was kept
    assert float(kept["val_loss"]) == min(float(r["val_loss"]) for r in rows)
    assert result["final"]["val_loss"] == float(kept["val_loss"])
    assert result["final"]["val_auc"] == float(kept["val_auc"])
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])  # it learned
    config = json.loads((model / "config.json").read_text())
    assert config["config"]["train.epochs"] == 3 and config["config"]["train.learning_rate"] == 0.003
    assert config["config"]["train.early_stopping_patience"] == 1
    assert config["ds"] == "2026-11-21" and len(config["config_hash"]) == 12
    dataset = json.loads((model / "dataset.json").read_text())
    assert dataset["ds_window"] == ["2026-11-19", "2026-11-21"]
    assert dataset["vocabulary_sizes"]["device"] == 4 + 1  # 4 devices + 1 OOV bucket
    assert list((model / "logs").rglob("events.out.tfevents*"))
    assert (model / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_eval_auc_close_to_bayes_optimal(ctr_run) -> None:
    """Loose bound on 6K rows; the benchmark reports the ratio at 1M rows."""
    new_auc = ctr_run.results["evaluate_gate"]["new"]["auc"]
    keys = pq.read_table(ctr_run.day() / "data" / "eval_raw").column("event_id").to_pylist()
    with ctr_run.duckdb() as con:
        con.execute("CREATE TEMP TABLE k (event_id VARCHAR)")
        con.executemany("INSERT INTO k VALUES (?)", [[k] for k in keys])
        truth = con.execute("SELECT true_ctr, clicked FROM events JOIN k USING (event_id)").fetchnumpy()
    bayes = roc_auc(truth["clicked"], truth["true_ctr"])
    assert len(truth["clicked"]) == len(keys)
    assert new_auc > 0.6
    assert new_auc / bayes > 0.8, (new_auc, bayes)


@pytest.mark.parametrize("architecture", sorted(set(ARCHITECTURES) - {"mlp"}))
def test_every_architecture_trains(ctr_run, architecture: str, tmp_path: Path) -> None:
    # Train beside the shared run (same data), so its model stays the one the other tests read.
    root = tmp_path / "artifacts"
    shutil.copytree(ctr_run.day() / "data", root / "ctr" / "2026-11-21" / "data")
    result = ctr_run.run(
        "train", "--set", f"train.architecture={architecture}", "--set", "train.epochs=1", artifacts=str(root)
    )
    assert result["exit_code"] == 0 and result["architecture"] == architecture
    model = tf.keras.models.load_model(str(root / "ctr" / "2026-11-21" / "model" / "keras_model"), compile=False)
    assert model.name == architecture
    assert np.isfinite(result["final"]["val_loss"])


def test_unknown_architecture_lists_the_registered_ones(ctr_run) -> None:
    with pytest.raises(UnknownArchitectureError, match="unknown 'transformer'; registered: dcn, mlp, wide_deep"):
        ctr_run.run("train", "--set", "train.architecture=transformer", ds="2026-11-21")


def test_train_needs_the_extract_output(ctr_warehouse) -> None:
    with pytest.raises(FileNotFoundError, match="the 'extract_transform' step must succeed for this ds first"):
        ctr_warehouse.run("train", ds="2026-11-15")
    assert not (Path(ctr_warehouse.artifacts) / "ctr" / "2026-11-15" / "model").exists()


def test_a_corrupt_shard_stops_training_naming_the_file(ctr_run, tmp_path: Path) -> None:
    from tfpipe_jobs.training.input_pipeline import CorruptShardError

    root = tmp_path / "artifacts"
    data = root / "ctr" / "2026-11-21" / "data"
    shutil.copytree(ctr_run.day() / "data", data)
    shard = sorted((data / "eval").glob("part-*"))[0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # a copy cut short
    with pytest.raises(CorruptShardError) as raised:
        ctr_run.run("train", "--set", "train.epochs=1", artifacts=str(root))
    message = str(raised.value)
    assert message.startswith(f"{shard}: this shard of the eval split is corrupt (DataLossError: truncated record")
    assert "Rerun extract_transform for ds 2026-11-21" in message
    assert not (data.parent / "model").exists()


def test_records_short_of_the_counted_rows_stop_training_naming_the_data(ctr_run, tmp_path: Path) -> None:
    from tfpipe_jobs.training.input_pipeline import RowCountMismatchError

    root = tmp_path / "artifacts"
    data = root / "ctr" / "2026-11-21" / "data"
    shutil.copytree(ctr_run.day() / "data", data)
    stats = json.loads((data / "stats.json").read_text())
    stats["splits"]["train_rows"] += 1000  # the shards hold fewer rows than the extract counted
    (data / "stats.json").write_text(json.dumps(stats))
    with pytest.raises(RowCountMismatchError) as raised:
        ctr_run.run("train", "--set", "train.epochs=1", artifacts=str(root))
    message = str(raised.value)
    assert message.startswith(f"{data}: the TFRecords do not hold the rows stats.json counts (")
    assert "Rerun extract_transform for ds 2026-11-21" in message


# Eval epochs of a multiclass model: accuracy ties while the loss still falls.
TIED_ACCURACY = [
    {"val_loss": 0.745, "val_accuracy": 0.81},
    {"val_loss": 0.58, "val_accuracy": 0.81},
    {"val_loss": 0.435, "val_accuracy": 0.81},
]


def _stopper_after(monitor: str, mode: str, epochs: list[dict[str, float]]) -> checkpointing.ResumableEarlyStopping:
    """The training job's early-stopping callback fed these eval epochs (patience 1)."""
    import tf_keras as keras

    model = keras.Sequential([keras.layers.Dense(1, input_shape=(2,))])
    stopper = checkpointing.ResumableEarlyStopping(model, monitor, mode, patience=1)
    stopper.set_model(model)
    model.stop_training = False
    stopper.on_train_begin()
    for epoch, logs in enumerate(epochs):
        stopper.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    return stopper


def test_early_stopping_watches_the_eval_loss_by_default(ctr_spec_path: Path) -> None:
    spec = load_spec(ctr_spec_path)
    cfg = resolve_config(spec, environ={}).train
    assert early_stopping_target(cfg) == ("val_loss", "min")
    chosen = resolve_config(spec, overrides={"train.early_stopping_metric": "auc"}, environ={}).train
    assert early_stopping_target(chosen) == ("val_auc", "max")
    stopper = _stopper_after(*early_stopping_target(cfg), TIED_ACCURACY)
    assert not stopper.model.stop_training and stopper.best_epoch == 2 and stopper.best == 0.435
    # what watching the gate's accuracy did: stopped at the first tie, keeping epoch 0
    by_accuracy = _stopper_after(*early_stopping_target(TrainConfig(early_stopping_metric="accuracy")), TIED_ACCURACY)
    assert by_accuracy.model.stop_training and by_accuracy.best_epoch == 0


@pytest.mark.parametrize(
    ("metric", "target"),
    [
        ("auc", ("val_auc", "max")),
        ("accuracy", ("val_accuracy", "max")),
        ("rmse", ("val_rmse", "min")),
        ("mae", ("val_mae", "min")),
        ("loss", ("val_loss", "min")),
    ],
)
def test_the_chosen_metric_is_monitored(metric: str, target: tuple[str, str]) -> None:
    stopper = _stopper_after(*early_stopping_target(TrainConfig(early_stopping_metric=metric)), [])
    assert (stopper.monitor, "max" if stopper.monitor_op == np.greater else "min") == target
