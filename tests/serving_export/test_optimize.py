"""The Grappler driver: a frozen, rewritten serving function that gives the same values."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from tfpipe_jobs.serving_export import optimize


def test_an_empty_batch_and_all_missing_rows_score(stand_in) -> None:
    reference = tf.function(stand_in.fn, input_signature=stand_in.signature)
    fn, _ = optimize.optimized(stand_in.fn, stand_in.signature, "test")
    for inputs in (
        {"price": tf.constant([], tf.float32), "city": tf.constant([], tf.string)},
        {"price": tf.constant([math.nan, math.nan]), "city": tf.constant([b"", b""])},
    ):
        expected, got = reference(inputs), fn(inputs)
        for key in expected:
            np.testing.assert_array_equal(got[key].numpy(), expected[key].numpy(), err_msg=key)
