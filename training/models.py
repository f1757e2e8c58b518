"""Model architectures, chosen by name in config (`train.architecture`).

Every builder receives the same `ModelInputs` (built from the features module and the
tf.Transform output, so vocabulary sizes set the embedding tables) and returns the
body's last hidden tensor; the task head is added in one place. Adding an architecture
is one function plus `@register("name")`.

The model is tf_keras (Keras 2): tf.Transform's `transform_features_layer()` is a
tf_keras layer, and the serving export composes the two in one graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tensorflow as tf
import tf_keras as keras

from tfpipe_operators.config import TrainConfig
from tfpipe_operators.features import Feature, Task

Builder = Callable[["ModelInputs", TrainConfig], Any]
ARCHITECTURES: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    def wrap(fn: Builder) -> Builder:
        ARCHITECTURES[name] = fn
        return fn

    return wrap


class UnknownArchitectureError(ValueError):
    pass


@dataclass
class ModelInputs:
    """Keras inputs per transformed feature, plus their embedded / numeric forms."""

    inputs: dict[str, Any]
    embeddings: list[Any]  # one [batch, dim] tensor per categorical feature
    numeric: list[Any]  # one [batch, 1] tensor per numeric feature

    def concatenated(self) -> Any:
        parts = self.embeddings + self.numeric
        return parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="all_features")(parts)


def make_inputs(features: list[Feature], cardinalities: dict[str, int], embedding_dim: int) -> ModelInputs:
    inputs: dict[str, Any] = {}
    embeddings: list[Any] = []
    numeric: list[Any] = []
    for f in features:
        name = f.transformed_name
        if f.is_categorical:
            inp = keras.Input(shape=(), dtype=tf.int64, name=name)
            dim = f.embedding_dim or embedding_dim
            emb = keras.layers.Embedding(cardinalities[f.name], dim, name=f"{f.name}_embedding")(inp)
            embeddings.append(emb)
        else:
            inp = keras.Input(shape=(), dtype=tf.float32, name=name)
            numeric.append(keras.layers.Reshape((1,), name=f"{f.name}_column")(inp))
        inputs[name] = inp
    return ModelInputs(inputs, embeddings, numeric)


def _tower(x: Any, cfg: TrainConfig, prefix: str) -> Any:
    for i, units in enumerate(cfg.hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"{prefix}_dense_{i}")(x)
        if cfg.dropout:
            # A tf.random.Generator per layer: its state is a variable, saved with the epoch's
            # checkpoint, so a resumed run draws the masks an uninterrupted one would (the
            # default stateful ops restart their sequence in a new process).
            x = keras.layers.Dropout(cfg.dropout, name=f"{prefix}_dropout_{i}", rng_type="stateful")(x)
    return x


@register("mlp")
def mlp(inputs: ModelInputs, cfg: TrainConfig) -> Any:
    """Deep MLP over the concatenated embeddings and numeric features."""
    return _tower(inputs.concatenated(), cfg, "mlp")


@register("wide_deep")
def wide_deep(inputs: ModelInputs, cfg: TrainConfig) -> Any:
    """A linear (wide) part over all inputs beside the deep tower, joined before the head."""
    x = inputs.concatenated()
    wide = keras.layers.Dense(1, name="wide_linear")(x)
    return keras.layers.Concatenate(name="wide_and_deep")([wide, _tower(x, cfg, "deep")])


class CrossLayer(keras.layers.Layer):  # type: ignore[misc]
    """One DCN cross layer: x0 * (W x + b) + x, explicit feature crosses of growing degree."""

    def build(self, input_shape: Any) -> None:
        dim = int(input_shape[-1])
        self.dense = keras.layers.Dense(dim)
        super().build(input_shape)

    def call(self, x0: Any, x: Any) -> Any:
        return x0 * self.dense(x) + x


@register("dcn")
def deep_cross(inputs: ModelInputs, cfg: TrainConfig) -> Any:
    """Deep & Cross Network: two cross layers in parallel with the deep tower."""
    x0 = inputs.concatenated()
    cross = x0
    for i in range(2):
        layer = CrossLayer(name=f"cross_{i}")
        cross = layer(x0, cross)
    return keras.layers.Concatenate(name="cross_and_deep")([cross, _tower(x0, cfg, "deep")])


def head(task: Task, num_classes: int | None, x: Any, label_mean: float | None = None) -> Any:
    """The task's output layer. Its bias starts at the label's mean (binary: the mean's
    log-odds) when known, so the first steps learn the features instead of the base rate;
    on small data that is most of what a few epochs would otherwise spend."""
    if task is Task.BINARY:
        bias = "zeros"
        if label_mean is not None and 0.0 < label_mean < 1.0:
            bias = keras.initializers.Constant(math.log(label_mean / (1.0 - label_mean)))
        return keras.layers.Dense(1, activation="sigmoid", name="probability", dtype="float32", bias_initializer=bias)(
            x
        )
    if task is Task.MULTICLASS:
        assert num_classes is not None
        return keras.layers.Dense(num_classes, activation="softmax", name="probabilities", dtype="float32")(x)
    bias = "zeros" if label_mean is None else keras.initializers.Constant(label_mean)
    return keras.layers.Dense(1, name="value", dtype="float32", bias_initializer=bias)(x)


def loss_and_metrics(task: Task) -> tuple[Any, list[Any]]:
    if task is Task.BINARY:
        return keras.losses.BinaryCrossentropy(), [
            keras.metrics.AUC(name="auc"),
            keras.metrics.BinaryAccuracy(name="accuracy"),
        ]
    if task is Task.MULTICLASS:
        return keras.losses.SparseCategoricalCrossentropy(), [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    return keras.losses.MeanSquaredError(), [
        keras.metrics.RootMeanSquaredError(name="rmse"),
        keras.metrics.MeanAbsoluteError(name="mae"),
    ]


def build(
    features: list[Feature],
    cardinalities: dict[str, int],
    task: Task,
    num_classes: int | None,
    cfg: TrainConfig,
    label_mean: float | None = None,
) -> Any:
    if cfg.architecture not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        raise UnknownArchitectureError(f"train.architecture: unknown '{cfg.architecture}'; registered: {known}")
    inputs = make_inputs(features, cardinalities, cfg.embedding_dim)
    body = ARCHITECTURES[cfg.architecture](inputs, cfg)
    output = head(task, num_classes, body, label_mean)
    model = keras.Model(inputs=inputs.inputs, outputs=output, name=cfg.architecture)
    loss, metrics = loss_and_metrics(task)
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss=loss, metrics=metrics)
    return model
