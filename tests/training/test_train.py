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
from tfpipe_jobs.training.models import ARCHITECTURES, UnknownArchitectureError


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
    assert float(kept["val_auc"]) == max(float(r["val_auc"]) for r in rows)  # the best epoch was kept
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
    new_auc = ctr_run.results["evaluate"]["new"]["auc"]
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
