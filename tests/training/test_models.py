"""The architectures and the task heads: what the export, the gate and scoring rely on."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfpipe_jobs.training import models
from tfpipe_operators.config import TrainConfig
from tfpipe_operators.features import OUTPUT_KEYS, Feature, FeatureKind, Task

FEATURES = [
    Feature(name="country", kind=FeatureKind.VOCABULARY, embedding_dim=3),
    Feature(name="hour", kind=FeatureKind.BUCKETIZED, buckets=6),
    Feature(name="price", kind=FeatureKind.NUMERIC),
]
CARDINALITIES = {"country": 11, "hour": 6}


def _batch(rows: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "country_xf": rng.integers(0, 11, rows),
        "hour_xf": rng.integers(0, 6, rows),
        "price_xf": rng.normal(size=rows).astype(np.float32),
    }


@pytest.mark.parametrize("architecture", sorted(models.ARCHITECTURES))
@pytest.mark.parametrize(
    ("task", "classes", "width"), [(Task.BINARY, None, 1), (Task.MULTICLASS, 4, 4), (Task.REGRESSION, None, 1)]
)
def test_every_architecture_gives_the_output_the_serving_contract_names(
    architecture: str, task: Task, classes: int | None, width: int
) -> None:
    cfg = TrainConfig(architecture=architecture, hidden_units=[8, 4], dropout=0.1)
    model = models.build(FEATURES, CARDINALITIES, task, classes, cfg, label_mean=0.3)
    assert model.output_names == [OUTPUT_KEYS[task.value]]  # what the export's signatures return
    assert sorted(model.input_names) == ["country_xf", "hour_xf", "price_xf"]
    out = model.predict(_batch(), verbose=0)
    assert out.shape == (5, width)
    if task is Task.BINARY:
        assert ((out > 0) & (out < 1)).all()
    if task is Task.MULTICLASS:
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_embedding_tables_are_sized_by_the_vocabularies_and_dims_by_feature_or_config() -> None:
    model = models.build(FEATURES, CARDINALITIES, Task.BINARY, None, TrainConfig(embedding_dim=5))
    assert model.get_layer("country_embedding").get_weights()[0].shape == (11, 3)  # the feature's own dim
    assert model.get_layer("hour_embedding").get_weights()[0].shape == (6, 5)  # train.embedding_dim


@pytest.mark.parametrize(
    ("task", "mean", "bias"), [(Task.BINARY, 0.2, math.log(0.2 / 0.8)), (Task.REGRESSION, 7.5, 7.5)]
)
def test_the_head_starts_at_the_label_mean(task: Task, mean: float, bias: float) -> None:
    model = models.build(FEATURES, CARDINALITIES, task, None, TrainConfig(), label_mean=mean)
    layer = model.get_layer(OUTPUT_KEYS[task.value])
    assert layer.get_weights()[1] == pytest.approx([bias], rel=1e-6)


def test_a_binary_label_mean_of_zero_or_one_leaves_the_bias_at_zero() -> None:
    for mean in (0.0, 1.0):
        model = models.build(FEATURES, CARDINALITIES, Task.BINARY, None, TrainConfig(), label_mean=mean)
        assert model.get_layer("probability").get_weights()[1] == pytest.approx([0.0])


def test_a_cross_layer_computes_x0_times_wx_plus_b_plus_x() -> None:
    layer = models.CrossLayer()
    x0 = tf.constant([[1.0, 2.0], [3.0, -1.0]])
    x = tf.constant([[0.5, 0.0], [1.0, 1.0]])
    layer(x0, x)  # builds the weights
    w = np.array([[1.0, 2.0], [0.0, -1.0]], dtype=np.float32)
    b = np.array([0.1, 0.2], dtype=np.float32)
    layer.dense.set_weights([w, b])
    expected = x0.numpy() * (x.numpy() @ w + b) + x.numpy()
    np.testing.assert_allclose(layer(x0, x).numpy(), expected, rtol=1e-6)


def test_an_unknown_architecture_is_named_with_the_registered_ones() -> None:
    with pytest.raises(models.UnknownArchitectureError, match=r"train.architecture: unknown 'resnet'; registered: "):
        models.build(FEATURES, CARDINALITIES, Task.BINARY, None, TrainConfig(architecture="resnet"))


def test_losses_and_metrics_follow_the_task() -> None:
    for task, loss, names in (
        (Task.BINARY, keras.losses.BinaryCrossentropy, ["auc", "accuracy"]),
        (Task.MULTICLASS, keras.losses.SparseCategoricalCrossentropy, ["accuracy"]),
        (Task.REGRESSION, keras.losses.MeanSquaredError, ["rmse", "mae"]),
    ):
        got_loss, metrics = models.loss_and_metrics(task)
        assert isinstance(got_loss, loss) and [m.name for m in metrics] == names
