"""Op rewrites Grappler lacks: each gives the same values with cheaper ops."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from tfpipe_jobs.serving_export import optimize


def _ops(fn: object) -> set[str]:
    graph_def = fn.get_concrete_function().graph.as_graph_def()  # type: ignore[attr-defined]
    return {n.op for n in graph_def.node} | {n.op for f in graph_def.library.function for n in f.node_def}


def test_a_table_size_is_folded_only_for_a_table_nobody_writes() -> None:
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(["a", "b", "c"], [0, 1, 2], tf.string, tf.int64), -1
    )
    signature = [tf.TensorSpec([None], tf.string)]

    def lookup(keys: tf.Tensor) -> dict[str, tf.Tensor]:
        ids = table.lookup(keys)
        return {"id": tf.where(ids >= 0, ids, table.size() + tf.strings.to_hash_bucket_fast(keys, 5))}

    fn, report = optimize.optimized(lookup, signature, "lookup")
    keys = tf.constant(["b", "zz", "c"])
    np.testing.assert_array_equal(fn(keys)["id"].numpy(), tf.function(lookup)(keys)["id"].numpy())
    assert report["folded_table_sizes"] == 1


def test_dense_layers_run_on_eigen_with_the_same_values_unless_turned_off() -> None:
    rng = np.random.default_rng(3)
    w1, w2 = rng.normal(size=(6, 8)).astype(np.float32), rng.normal(size=(3, 8)).astype(np.float32)
    signature = [tf.TensorSpec([None, 6], tf.float32)]

    def dense(x: tf.Tensor) -> dict[str, tf.Tensor]:
        hidden = tf.nn.relu(tf.matmul(x, tf.constant(w1)) + 0.5)
        return {"score": tf.matmul(hidden, tf.constant(w2), transpose_b=True)}

    x = tf.constant(rng.normal(size=(5, 6)).astype(np.float32))
    expected = tf.function(dense, input_signature=signature)(x)["score"].numpy()
    eigen, report = optimize.optimized(dense, signature, "dense")
    np.testing.assert_allclose(eigen(x)["score"].numpy(), expected, rtol=1e-6, atol=1e-6)
    assert report["eigen_matmuls"] == 2
    assert "SparseMatMul" in _ops(eigen) and "MatMul" not in _ops(eigen)
    assert eigen(tf.zeros([0, 6]))["score"].shape == (0, 3)

    onednn, report = optimize.optimized(dense, signature, "dense", eigen_matmul=False)
    np.testing.assert_allclose(onednn(x)["score"].numpy(), expected, rtol=1e-6, atol=1e-6)
    assert report["eigen_matmuls"] == 0 and "MatMul" in _ops(onednn)


def test_tf_transform_buckets_become_one_bucketize_with_the_same_buckets() -> None:
    import tensorflow_transform as tft

    signature = [tf.TensorSpec([None], tf.float32)]

    def buckets(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"bucket": tft.apply_buckets(x, tf.constant([[-1.0, 0.0, 0.0, 2.5, 7.0]]))}

    fn, report = optimize.optimized(buckets, signature, "buckets")
    assert "Bucketize" in _ops(fn) and "UpperBound" not in _ops(fn)
    reference = tf.function(buckets, input_signature=signature)
    edges = [-math.inf, -1.0, -0.5, 0.0, 1e-7, 2.5, 6.999, 7.0, 8.0, math.inf, math.nan]
    for values in (edges, [], [3.0]):
        x = tf.constant(values, tf.float32)
        got, expected = fn(x)["bucket"], reference(x)["bucket"]
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got.numpy(), expected.numpy(), err_msg=str(values))
    assert report["nodes_after"] < report["nodes_before"]
