"""train: fit the configured architecture on the day's transformed TFRecords.

Writes the model package (published atomically as `<root>/<pipeline>/<ds>/model/`):
  keras_model/      the trained tf_keras model (TF SavedModel format)
  metrics.csv       one row per epoch: train and eval loss and metrics
  logs/             TensorBoard logs
  curves.png        learning curves
  config.json       the config actually used, every level resolved
  dataset.json      rows, label balance, vocabulary sizes, the ds window
Checkpoints go to `<ds>/checkpoints/`, outside the staged folder, so a restarted
pod resumes from the last finished epoch instead of starting over.
"""

from __future__ import annotations

import csv
import logging
from datetime import timedelta
from typing import Any

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from tfpipe_jobs import artifacts
from tfpipe_jobs.beam_jobs.preprocessing import cardinality
from tfpipe_jobs.context import JobContext
from tfpipe_jobs.training import input_pipeline, models
from tfpipe_operators.features import SPLIT_EVAL, SPLIT_TRAIN

log = logging.getLogger(__name__)


def strategy() -> tf.distribute.Strategy:
    """All visible GPUs through MirroredStrategy; the default strategy on CPU."""
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([g.name for g in gpus])
    return tf.distribute.get_strategy()


def cardinalities(ctx: JobContext, tft_output: tft.TFTransformOutput) -> dict[str, int]:
    return {f.name: cardinality(f, tft_output) for f in ctx.spec.features if f.is_categorical}


def run(ctx: JobContext) -> dict[str, Any]:
    cfg = ctx.config.train
    data_dir = artifacts.require_complete(ctx.paths.data, "extract_transform")
    keras.utils.set_random_seed(cfg.seed)
    tft_output = tft.TFTransformOutput(data_dir)
    feature_spec = tft_output.transformed_feature_spec()
    cards = cardinalities(ctx, tft_output)
    train_ds = input_pipeline.dataset(
        input_pipeline.files(data_dir, SPLIT_TRAIN),
        feature_spec,
        cfg.batch_size,
        shuffle=True,
        seed=cfg.seed,
        shuffle_buffer=cfg.shuffle_buffer,
    )
    eval_ds = input_pipeline.dataset(
        input_pipeline.files(data_dir, SPLIT_EVAL), feature_spec, cfg.batch_size, shuffle=False, seed=cfg.seed
    )
    checkpoint_dir = artifacts.join(ctx.paths.day, "checkpoints", ctx.config.digest())

    with artifacts.staged_output(ctx.paths.model) as out:
        with strategy().scope():
            model = models.build(ctx.spec.features, cards, ctx.spec.label.task, ctx.spec.label.num_classes, cfg)
        metrics_csv = artifacts.join(out, "metrics.csv")
        callbacks = [
            keras.callbacks.BackupAndRestore(checkpoint_dir),
            keras.callbacks.CSVLogger(metrics_csv),
            keras.callbacks.TensorBoard(artifacts.join(out, "logs"), profile_batch=0),
        ]
        history = model.fit(train_ds, validation_data=eval_ds, epochs=cfg.epochs, callbacks=callbacks, verbose=2)
        model.save(artifacts.join(out, "keras_model"), include_optimizer=False)
        artifacts.write_json(
            artifacts.join(out, "config.json"),
            {
                **ctx.provenance(),
                "config": ctx.config.flat(),
                "cardinalities": cards,
            },
        )
        artifacts.write_json(artifacts.join(out, "dataset.json"), dataset_metadata(ctx, cards))
        plot_curves(metrics_csv, artifacts.join(out, "curves.png"))
    if tf.io.gfile.exists(checkpoint_dir):
        tf.io.gfile.rmtree(checkpoint_dir)
    final = {k: float(v[-1]) for k, v in history.history.items()}
    log.info("train: %s epochs of %s, final %s -> %s", cfg.epochs, cfg.architecture, final, ctx.paths.model)
    return {"model": ctx.paths.model, "architecture": cfg.architecture, "final": final}


def dataset_metadata(ctx: JobContext, cards: dict[str, int]) -> dict[str, Any]:
    stats = artifacts.read_json(artifacts.join(ctx.paths.data, "stats.json"))
    first = ctx.ds - timedelta(days=ctx.config.extract.lookback_days)
    return {
        "rows": stats["splits"],
        "label": stats["columns"].get("__label", {}),
        "vocabulary_sizes": cards,
        "ds_window": [first.isoformat(), ctx.ds.isoformat()],
    }


def plot_curves(metrics_csv: str, png_path: str) -> None:
    """Loss and the first metric per epoch, train vs eval, in one picture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with tf.io.gfile.GFile(metrics_csv) as f:
        rows = list(csv.DictReader(f))
    epochs = [int(r["epoch"]) + 1 for r in rows]
    names = [k for k in rows[0] if k != "epoch" and not k.startswith("val_")]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        ax.plot(epochs, [float(r[name]) for r in rows], marker="o", label="train")
        if f"val_{name}" in rows[0]:
            ax.plot(epochs, [float(r[f"val_{name}"]) for r in rows], marker="o", label="eval")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    with tf.io.gfile.GFile(png_path, "wb") as f:
        fig.savefig(f, format="png", dpi=90)
    plt.close(fig)
