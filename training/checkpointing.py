"""Resumable training: one checkpoint per finished epoch holds all the next epoch depends on.

A killed attempt (a preempted node, a SIGKILL) restarts from its last finished epoch and
must end where an uninterrupted run would: the same kept epoch, weights and metrics. Keras'
BackupAndRestore saves only the weights, the optimizer and the epoch, and EarlyStopping
starts afresh on resume (a resumed run kept a later, worse epoch than the uninterrupted
one). So the checkpoint here holds, in one atomic save:

- the model: weights, optimizer (step and slots) and the dropout layers' random generators;
- the next epoch's number, which also seeds that epoch's shuffle (`input_pipeline.dataset`);
- early stopping's state: best value and epoch, wait counter, whether it stopped, and the
  best epoch's weights.

`tf.train.CheckpointManager` writes the checkpoint's files before the index that names it,
so a kill during a save leaves the previous epoch's checkpoint as the one to resume from.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

log = logging.getLogger(__name__)


class _StoppingState(tf.Module):
    """Early stopping's state as variables, so a checkpoint carries it (on the host: it is
    only copied to and from the model once per epoch)."""

    def __init__(self, weights: list[np.ndarray], initial_best: float) -> None:
        super().__init__(name="early_stopping")
        with tf.device("CPU:0"):
            self.best = tf.Variable(initial_best, dtype=tf.float64, trainable=False)
            self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.wait = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.stopped_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.stopped = tf.Variable(False, trainable=False)
            self.has_best_weights = tf.Variable(False, trainable=False)
            self.best_weights = [tf.Variable(np.zeros_like(w), trainable=False) for w in weights]


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):  # type: ignore[misc]
    """EarlyStopping (best epoch's weights restored at the end) whose state survives a restart.

    Keras' EarlyStopping keeps its state in Python attributes reset by `on_train_begin`;
    here they are copied to variables after every epoch (before the checkpoint of that
    epoch is saved: list this callback before `EpochCheckpoint`) and back when training
    resumes.
    """

    def __init__(self, model: Any, monitor: str, mode: str, patience: int) -> None:
        super().__init__(monitor=monitor, mode=mode, patience=patience, restore_best_weights=True)
        initial_best = np.inf if self.monitor_op == np.less else -np.inf
        self.state = _StoppingState(model.get_weights(), initial_best)
        self._saved_best_epoch = -1

    @property
    def has_stopped(self) -> bool:
        return bool(self.state.stopped.numpy())

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        self.load_state()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        s = self.state
        s.best.assign(float(self.best))
        s.best_epoch.assign(self.best_epoch)
        s.wait.assign(self.wait)
        s.stopped_epoch.assign(self.stopped_epoch)
        s.stopped.assign(bool(self.model.stop_training))
        if self.best_weights is not None and self.best_epoch != self._saved_best_epoch:
            for variable, value in zip(s.best_weights, self.best_weights, strict=True):
                variable.assign(value)
            s.has_best_weights.assign(True)
            self._saved_best_epoch = self.best_epoch

    def load_state(self) -> None:
        """The Python attributes from the variables (as restored from a checkpoint, or fresh)."""
        s = self.state
        self.best = float(s.best.numpy())
        self.best_epoch = int(s.best_epoch.numpy())
        self.wait = int(s.wait.numpy())
        self.stopped_epoch = int(s.stopped_epoch.numpy())
        if bool(s.has_best_weights.numpy()):
            self.best_weights = [v.numpy() for v in s.best_weights]
            self._saved_best_epoch = self.best_epoch


def random_generators(model: Any) -> list[tf.random.Generator]:
    """The `tf.random.Generator`s of the model's random layers (dropout with rng_type "stateful")."""
    layers = [model, *model.submodules]
    found = [getattr(getattr(layer, "_random_generator", None), "_generator", None) for layer in layers]
    return list({id(g): g for g in found if isinstance(g, tf.random.Generator)}.values())


class EpochCheckpoint(keras.callbacks.Callback):  # type: ignore[misc]
    """Saves the model, the next epoch's number and early stopping's state after each epoch."""

    def __init__(
        self, directory: str, model: Any, next_epoch: tf.Variable, stopper: ResumableEarlyStopping | None
    ) -> None:
        super().__init__()
        self._model = model
        self.next_epoch = next_epoch
        # The layers' generators are not among the model's checkpointed objects: list them.
        objects: dict[str, Any] = {"model": model, "next_epoch": next_epoch, "random": random_generators(model)}
        if stopper is not None:
            objects["early_stopping"] = stopper.state
        self._checkpoint = tf.train.Checkpoint(**objects)
        self._manager = tf.train.CheckpointManager(self._checkpoint, directory, max_to_keep=1)

    def restore(self) -> int:
        """Restore the last finished epoch's checkpoint, if any; returns the epoch to train next.

        Call it in the distribution strategy's scope: the optimizer's slots are created
        here, so that they are restored rather than started at zero.
        """
        latest = self._manager.latest_checkpoint
        if latest is None:
            return 0
        optimizer = self._model.optimizer
        if not getattr(optimizer, "_built", False) and callable(getattr(optimizer, "build", None)):
            optimizer.build(self._model.trainable_variables)
        self._checkpoint.restore(latest).assert_existing_objects_matched()
        log.info("train: resuming from %s (next epoch %d)", latest, int(self.next_epoch.numpy()))
        return int(self.next_epoch.numpy())

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.next_epoch.assign(epoch + 1)
        self._manager.save(checkpoint_number=epoch)
