"""The serving graph rewrites: same values as the graph they replace, fewer nodes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from tfpipe_jobs.serving_export import optimize

SIGNATURE = [{"price": tf.TensorSpec([None], tf.float32), "city": tf.TensorSpec([None], tf.string)}]


def _dense(sparse: tf.SparseTensor, default: object) -> tf.Tensor:
    """Densify a [N, 1] sparse column the way a preprocessing_fn does."""
    shape = tf.stack([sparse.dense_shape[0], tf.constant(1, tf.int64)])
    return tf.squeeze(tf.sparse.to_dense(tf.SparseTensor(sparse.indices, sparse.values, shape), default), axis=1)


def _transform(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """A small stand-in for a tf.Transform graph: mean fill with a presence mask, a
    string default, a sparse value read directly, and a reshape to [N, 1]."""
    price = optimize.sparse_view(features["price"], math.nan)
    city = optimize.sparse_view(features["city"], b"")
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


def _inputs() -> dict[str, tf.Tensor]:
    return {
        "price": tf.constant([1.0, math.nan, 7.25, 0.0, math.nan]),
        "city": tf.constant([b"paris", b"", b"oslo", b"", b"rome"]),
    }


def test_rewrites_keep_every_value_and_remove_the_sparse_round_trip() -> None:
    reference = tf.function(_transform, input_signature=SIGNATURE)(_inputs())
    fn, report = optimize.optimized(_transform, SIGNATURE, "test")
    out = fn(_inputs())
    assert set(out) == set(reference)
    for key in reference:
        assert out[key].shape == reference[key].shape, key
        np.testing.assert_array_equal(out[key].numpy(), reference[key].numpy(), err_msg=key)
    assert report["densified_columns"] == 3  # price twice (values, presence), city once
    assert report["nodes_after"] < report["nodes_before"]
    ops = {n.op for n in fn.get_concrete_function().graph.as_graph_def().node}
    ops |= {n.op for f in fn.get_concrete_function().graph.as_graph_def().library.function for n in f.node_def}
    assert "SparseToDense" not in ops


def test_an_empty_batch_and_all_missing_rows_score() -> None:
    reference = tf.function(_transform, input_signature=SIGNATURE)
    fn, _ = optimize.optimized(_transform, SIGNATURE, "test")
    for inputs in (
        {"price": tf.constant([], tf.float32), "city": tf.constant([], tf.string)},
        {"price": tf.constant([math.nan, math.nan]), "city": tf.constant([b"", b""])},
    ):
        expected, got = reference(inputs), fn(inputs)
        for key in expected:
            np.testing.assert_array_equal(got[key].numpy(), expected[key].numpy(), err_msg=key)


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


def test_an_input_check_survives_and_fails_before_the_shape_error_it_guards() -> None:
    """A check guarding a column by a control edge is kept (and still ordered first) while
    the stateless gating edges around it are dropped."""

    def checked(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        rows = tf.shape(features["city"])[0]
        check = tf.debugging.Assert(tf.equal(tf.size(features["price"]), rows), ["price: one value per row"])
        with tf.control_dependencies([check]):
            price = tf.reshape(features["price"], [-1])
        price.op._set_attr("_grappler_do_not_remove", tf.compat.v1.AttrValue(b=True))
        return _transform({"price": price, "city": features["city"]})

    fn, report = optimize.optimized(checked, SIGNATURE, "checked")
    expected = tf.function(_transform, input_signature=SIGNATURE)(_inputs())
    got = fn(_inputs())
    for key in expected:
        np.testing.assert_array_equal(got[key].numpy(), expected[key].numpy(), err_msg=key)
    assert report["peepholes"] > 0
    bad = {"price": tf.constant([1.0, 2.0, 3.0]), "city": tf.constant([b"paris", b"oslo"])}
    with pytest.raises(tf.errors.InvalidArgumentError, match="price: one value per row"):
        fn(bad)


def _ops(fn: object) -> set[str]:
    graph_def = fn.get_concrete_function().graph.as_graph_def()  # type: ignore[attr-defined]
    return {n.op for n in graph_def.node} | {n.op for f in graph_def.library.function for n in f.node_def}


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
