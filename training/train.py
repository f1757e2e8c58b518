"""train: fit the configured architecture on the day's transformed TFRecords.

Writes the model package (published atomically as `<root>/<pipeline>/<ds>/model/`):
  keras_model/      the trained tf_keras model (TF SavedModel format)
  metrics.csv       one row per epoch: train and eval loss and metrics
  logs/             TensorBoard logs
  curves.png        learning curves
  config.json       the config actually used, every level resolved
  dataset.json      rows, label balance, vocabulary sizes, the ds window
Checkpoints, the epoch history and TensorBoard logs go to `<ds>/checkpoints/<config hash>/`,
outside the staged folder, so a restarted pod (a preempted node) resumes from the last
finished epoch instead of starting over, and ends where an uninterrupted run would (same
kept epoch, weights and metrics: `checkpointing`); the folder is removed once the package
is published.
"""

from __future__ import annotations

import csv
import logging
import os
from datetime import timedelta
from typing import Any

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from tfpipe_jobs import artifacts
from tfpipe_jobs.context import JobContext
from tfpipe_jobs.preprocessing import cardinality
from tfpipe_jobs.training import checkpointing, input_pipeline, models, parsed_cache
from tfpipe_operators.config import HIGHER_IS_BETTER, TrainConfig
from tfpipe_operators.features import LABEL_KEY, SPLIT_EVAL, SPLIT_TRAIN

log = logging.getLogger(__name__)


def strategy() -> tf.distribute.Strategy:
    """All visible GPUs through MirroredStrategy; the default strategy on one device.

    `TFPIPE_CPU_REPLICAS=N` splits the CPU into N logical devices and mirrors over them:
    the multi-replica path, exercised on a machine without GPUs.
    """
    # Physical devices only: listing logical ones starts the runtime and freezes the layout.
    gpus = tf.config.list_physical_devices("GPU")
    replicas = int(os.environ.get("TFPIPE_CPU_REPLICAS", "0") or 0)
    if not gpus and replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    kind = "GPU" if gpus else "CPU"
    devices = [d.name for d in tf.config.list_logical_devices(kind)]
    if gpus:
        # float16 compute, float32 variables; the output layer stays float32 (models.head).
        keras.mixed_precision.set_global_policy("mixed_float16")
    if len(devices) > 1:
        log.info("train: MirroredStrategy over %d devices: %s", len(devices), devices)
        return tf.distribute.MirroredStrategy(devices)
    log.info("train: single device (%s)", devices[0])
    return tf.distribute.get_strategy()


def cardinalities(ctx: JobContext, tft_output: tft.TFTransformOutput) -> dict[str, int]:
    return {f.name: cardinality(f, tft_output) for f in ctx.spec.features if f.is_categorical}


def run(ctx: JobContext) -> dict[str, Any]:
    cfg = ctx.config.train
    data_dir = artifacts.require_complete(ctx.paths.data, "extract_transform")
    distribution = strategy()  # first: logical devices must be set before TensorFlow starts
    keras.utils.set_random_seed(cfg.seed)
    if not tf.config.list_physical_devices("GPU"):
        # Same seed, same data -> the same metrics on CPU (GPU kernels stay fast instead).
        tf.config.experimental.enable_op_determinism()
    tft_output = tft.TFTransformOutput(data_dir)
    feature_spec = tft_output.transformed_feature_spec()
    cards = cardinalities(ctx, tft_output)
    # Parsed epochs are cached on local disk (the pod's own, never the artifact store), in a
    # folder named for this process and removed on any exit; what a killed one left is swept.
    parsed_cache.sweep()
    cache_dir = parsed_cache.create() if cfg.cache_parsed else None
    try:
        return _train(ctx, data_dir, distribution, feature_spec, cards, cache_dir)
    finally:
        # Also on SystemExit / KeyboardInterrupt (a SIGTERM turned into an exception).
        parsed_cache.remove(cache_dir)


def _train(
    ctx: JobContext,
    data_dir: str,
    distribution: tf.distribute.Strategy,
    feature_spec: dict[str, Any],
    cards: dict[str, int],
    cache_dir: str | None,
) -> dict[str, Any]:
    """Fit (or resume) and publish the model package; the parsed cache, if any, in `cache_dir`."""
    cfg = ctx.config.train
    rows_per_record = input_pipeline.rows_per_record(data_dir)
    # The epoch about to start, which seeds its shuffle; saved with each epoch's checkpoint.
    next_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="next_epoch")
    train_ds = input_pipeline.dataset(
        input_pipeline.files(data_dir, SPLIT_TRAIN),
        feature_spec,
        cfg.batch_size,
        shuffle=True,
        seed=cfg.seed,
        shuffle_buffer=cfg.shuffle_buffer,
        cache_file=os.path.join(cache_dir, SPLIT_TRAIN) if cache_dir else None,
        rows_per_record=rows_per_record,
        epoch=next_epoch,
        rows=input_pipeline.split_rows(data_dir, SPLIT_TRAIN),
    )
    # Eval batches only feed metrics (loss and AUC are weighted by rows, not by batch), so
    # they take the parse block's size: validation costs a fraction of a training epoch.
    eval_ds = input_pipeline.dataset(
        input_pipeline.files(data_dir, SPLIT_EVAL),
        feature_spec,
        max(cfg.batch_size, input_pipeline.PARSE_BLOCK),
        shuffle=False,
        seed=cfg.seed,
        cache_file=os.path.join(cache_dir, SPLIT_EVAL) if cache_dir else None,
        rows_per_record=rows_per_record,
        rows=input_pipeline.split_rows(data_dir, SPLIT_EVAL),
    )
    # Everything a restarted attempt needs lives outside the staged folder, keyed by config.
    work_dir = artifacts.join(ctx.paths.day, "checkpoints", ctx.config.digest())
    history_csv = artifacts.join(work_dir, "history.csv")

    with artifacts.staged_output(ctx.paths.model) as out:
        with distribution.scope():
            model = models.build(
                ctx.spec.features, cards, ctx.spec.label.task, ctx.spec.label.num_classes, cfg, label_mean(ctx)
            )
        stopper = None
        if cfg.early_stopping_patience:
            monitor, mode = early_stopping_target(cfg)
            # The saved model is the best epoch's, not the last one's.
            stopper = checkpointing.ResumableEarlyStopping(model, monitor, mode, cfg.early_stopping_patience)
        checkpoint = checkpointing.EpochCheckpoint(artifacts.join(work_dir, "state"), model, next_epoch, stopper)
        with distribution.scope():
            first_epoch = checkpoint.restore()
        callbacks = [
            # Before the checkpoint: a kill between the two repeats an epoch row (deduplicated
            # below) instead of losing one.
            keras.callbacks.CSVLogger(history_csv, append=True),
            # Early stopping's state of an epoch goes into that epoch's checkpoint.
            *([stopper] if stopper else []),
            checkpoint,
            keras.callbacks.TensorBoard(artifacts.join(work_dir, "logs"), profile_batch=0),
        ]
        epochs_this_attempt = 0
        if (stopper is not None and stopper.has_stopped) or first_epoch >= cfg.epochs:
            # The killed attempt had finished training (it was saving the model): train no further.
            log.info("train: the previous attempt finished training at epoch %d; not training again", first_epoch)
            if stopper is not None:
                stopper.load_state()
                if stopper.best_weights is not None:
                    model.set_weights(stopper.best_weights)
        else:
            try:
                history = model.fit(
                    train_ds,
                    validation_data=eval_ds,
                    epochs=cfg.epochs,
                    initial_epoch=first_epoch,
                    callbacks=callbacks,
                    verbose=2,
                )
            except (tf.errors.DataLossError, tf.errors.InvalidArgumentError):
                # Name the shard if one is corrupt; any other error goes on as it was.
                input_pipeline.check_shards(data_dir, [SPLIT_TRAIN, SPLIT_EVAL], feature_spec, ctx.ds.isoformat())
                raise
            except tf.errors.FailedPreconditionError as exc:
                if "expected to contain" not in str(exc):
                    raise
                raise input_pipeline.RowCountMismatchError(
                    f"{data_dir}: the TFRecords do not hold the rows stats.json counts "
                    f"({str(exc).split('}} ', 1)[-1].split(' [Op:', 1)[0].strip()}). "
                    f"Rerun extract_transform for ds {ctx.ds.isoformat()} to rewrite the data, then train again."
                ) from exc
            epochs_this_attempt = len(history.epoch)
        parsed_cache.remove(cache_dir)  # done with it: free the disk before the package is written
        model.save(artifacts.join(out, "keras_model"), include_optimizer=False)
        rows = write_metrics(history_csv, artifacts.join(out, "metrics.csv"))
        artifacts.copy_tree(artifacts.join(work_dir, "logs"), artifacts.join(out, "logs"))
        artifacts.write_json(
            artifacts.join(out, "config.json"),
            {**ctx.provenance(), "config": ctx.config.flat(), "overrides": ctx.overrides or {}, "cardinalities": cards},
        )
        artifacts.write_json(artifacts.join(out, "dataset.json"), dataset_metadata(ctx, cards))
        plot_curves(artifacts.join(out, "metrics.csv"), artifacts.join(out, "curves.png"))
    tf.io.gfile.rmtree(work_dir)
    # The epoch whose weights were saved: under early stopping the best one (over all attempts).
    kept = int(rows[-1]["epoch"])
    if stopper is not None and stopper.best_weights is not None:
        kept = stopper.best_epoch
    final = next({k: float(v) for k, v in r.items() if k != "epoch"} for r in rows if int(r["epoch"]) == kept)
    log.info(
        "train: %d epochs of %s (this attempt ran %d), kept epoch %d: %s -> %s",
        len(rows),
        cfg.architecture,
        epochs_this_attempt,
        kept,
        final,
        ctx.paths.model,
    )
    return {
        "model": ctx.paths.model,
        "architecture": cfg.architecture,
        "epochs": len(rows),
        "epochs_this_attempt": epochs_this_attempt,
        "kept_epoch": kept,
        "final": final,
    }


def label_mean(ctx: JobContext) -> float | None:
    """The label's mean over the extracted rows (binary: the click rate), for the output bias."""
    if ctx.spec.label.task.value == "multiclass":
        return None
    stats = _data_stats(ctx)
    mean = stats["columns"].get(LABEL_KEY, {}).get("mean")
    return None if mean is None else float(mean)


def early_stopping_target(cfg: TrainConfig) -> tuple[str, str]:
    """The Keras eval metric training stops on (`train.early_stopping_metric`) and its direction.

    The default is the eval loss, not the gate's metric: accuracy moves in steps and can tie
    between epochs while the loss still falls, which stopped multiclass models that were
    still improving.
    """
    metric = cfg.early_stopping_metric
    return f"val_{metric}", "max" if metric in HIGHER_IS_BETTER else "min"


def write_metrics(history_csv: str, metrics_csv: str) -> list[dict[str, str]]:
    """One row per epoch across attempts (a resumed run appends; the last row of an epoch wins)."""
    with tf.io.gfile.GFile(history_csv) as f:
        rows = list(csv.DictReader(f))
    by_epoch = {int(r["epoch"]): r for r in rows}
    ordered = [by_epoch[e] for e in sorted(by_epoch)]
    with tf.io.gfile.GFile(metrics_csv, "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(ordered[0]))
        writer.writeheader()
        writer.writerows(ordered)
    return ordered


def _data_stats(ctx: JobContext) -> dict[str, Any]:
    data_dir = artifacts.require_complete(ctx.paths.data, "extract_transform")
    return dict(artifacts.read_json(artifacts.join(data_dir, "stats.json")))


def dataset_metadata(ctx: JobContext, cards: dict[str, int]) -> dict[str, Any]:
    stats = _data_stats(ctx)
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
