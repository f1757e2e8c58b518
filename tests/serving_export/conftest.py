"""A small stand-in for a tf.Transform graph, shared by the serving graph rewrites' tests."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import tensorflow as tf

from tfpipe_jobs.serving_export.densify import sparse_view

SIGNATURE = [{"price": tf.TensorSpec([None], tf.float32), "city": tf.TensorSpec([None], tf.string)}]


def _dense(sparse: tf.SparseTensor, default: object) -> tf.Tensor:
    """Densify a [N, 1] sparse column the way a preprocessing_fn does."""
    shape = tf.stack([sparse.dense_shape[0], tf.constant(1, tf.int64)])
    return tf.squeeze(tf.sparse.to_dense(tf.SparseTensor(sparse.indices, sparse.values, shape), default), axis=1)


def _transform(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Mean fill with a presence mask, a string default, a sparse value read directly, and a
    reshape to [N, 1]."""
    price = sparse_view(features["price"], math.nan)
    city = sparse_view(features["city"], b"")
    ones = tf.SparseTensor(price.indices, tf.ones_like(price.values, dtype=tf.int64), price.dense_shape)
    present = _dense(ones, tf.constant(0, tf.int64)) > 0
    filled = tf.where(present, _dense(price, 0.0), 3.5)
    scaled = (filled - 3.5) / 2.0
    column = tf.reshape(scaled, tf.stack([tf.shape(scaled)[0], 1]))
    return {
        "price": column,
        "city_hash": tf.strings.to_hash_bucket_fast(_dense(city, b""), 100),
        "present_sum": tf.reduce_sum(price.values),  # a use of the sparse values themselves
    }


@dataclass(frozen=True)
class TransformStandIn:
    fn: Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]]
    signature: list[Any]

    def inputs(self) -> dict[str, tf.Tensor]:
        return {
            "price": tf.constant([1.0, math.nan, 7.25, 0.0, math.nan]),
            "city": tf.constant([b"paris", b"", b"oslo", b"", b"rome"]),
        }


@pytest.fixture
def stand_in() -> TransformStandIn:
    return TransformStandIn(_transform, SIGNATURE)
