"""One epoch's checkpoint, restored in a new model: weights, optimizer, the next epoch,
early stopping's state and the dropout generators (test_resume.py kills real runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfpipe_jobs.training import checkpointing


def _model() -> Any:
    inputs = keras.Input(shape=(3,))
    hidden = keras.layers.Dense(4, activation="relu")(inputs)
    hidden = keras.layers.Dropout(0.5, rng_type="stateful")(hidden)
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    return model


def _callbacks(model: Any, directory: Path) -> tuple[Any, Any]:
    stopper = checkpointing.ResumableEarlyStopping(model, monitor="val_loss", mode="min", patience=1)
    saver = checkpointing.EpochCheckpoint(str(directory), model, tf.Variable(0, dtype=tf.int64), stopper)
    return stopper, saver


def test_a_restored_checkpoint_carries_everything_the_next_epoch_needs(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(64, 3)).astype("float32"), rng.normal(size=(64, 1)).astype("float32")
    tf.keras.utils.set_random_seed(3)
    model = _model()
    stopper, saver = _callbacks(model, tmp_path / "ckpt")
    assert saver.restore() == 0  # nothing saved yet: start at epoch 0
    model.fit(x, y, validation_data=(x, y), epochs=2, verbose=0, callbacks=[stopper, saver])
    generators = checkpointing.random_generators(model)
    assert len(generators) == 1  # the stateful dropout's, which the model's own objects miss

    again = _model()
    again_stopper, again_saver = _callbacks(again, tmp_path / "ckpt")
    assert again_saver.restore() == 2  # the epoch after the last finished one
    for restored, saved in zip(again.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(restored, saved)
    assert int(again.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy()) > 0
    np.testing.assert_array_equal(checkpointing.random_generators(again)[0].state.numpy(), generators[0].state.numpy())
    again_stopper.load_state()
    assert again_stopper.best == stopper.best and again_stopper.best_epoch == stopper.best_epoch
    assert again_stopper.wait == stopper.wait and not again_stopper.has_stopped


def test_early_stopping_state_survives_a_restart_once_it_stopped(tmp_path: Path) -> None:
    """A run that had stopped says so after the restart, so it does not train again."""
    model = _model()
    model.optimizer.build(model.trainable_variables)  # as in training: the slots exist when saved
    stopper, saver = _callbacks(model, tmp_path / "ckpt")
    stopper.set_model(model)
    stopper.on_train_begin()
    for epoch, loss in enumerate([1.0, 0.5, 0.9, 0.95]):  # the best is epoch 1; patience 1 stops at 3
        stopper.on_epoch_end(epoch, {"val_loss": loss})
        saver.set_model(model)
        saver.on_epoch_end(epoch)
        if model.stop_training:
            break
    assert stopper.has_stopped and stopper.best_epoch == 1

    again = _model()
    again_stopper, again_saver = _callbacks(again, tmp_path / "ckpt")
    assert again_saver.restore() == 3
    again_stopper.load_state()
    assert again_stopper.has_stopped and again_stopper.best == 0.5 and again_stopper.best_epoch == 1
    assert again_stopper.best_weights is not None  # the best epoch's weights come back at the end
