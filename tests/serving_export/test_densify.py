"""Densify: tf.Transform's sparse round trip of each raw column replaced by the dense column."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfpipe_jobs.serving_export import optimize
from tfpipe_jobs.serving_export.densify import densify, sparse_view, views_in
from tfpipe_jobs.serving_export.optimize import INLINE, run_grappler


def test_rewrites_keep_every_value_and_remove_the_sparse_round_trip(stand_in) -> None:
    reference = tf.function(stand_in.fn, input_signature=stand_in.signature)(stand_in.inputs())
    fn, report = optimize.optimized(stand_in.fn, stand_in.signature, "test")
    out = fn(stand_in.inputs())
    assert set(out) == set(reference)
    for key in reference:
        assert out[key].shape == reference[key].shape, key
        np.testing.assert_array_equal(out[key].numpy(), reference[key].numpy(), err_msg=key)
    assert report["densified_columns"] == 3  # price twice (values, presence), city once
    assert report["nodes_after"] < report["nodes_before"]
    ops = {n.op for n in fn.get_concrete_function().graph.as_graph_def().node}
    ops |= {n.op for f in fn.get_concrete_function().graph.as_graph_def().library.function for n in f.node_def}
    assert "SparseToDense" not in ops


def test_a_densification_of_values_computed_from_the_column_is_left_as_it_is() -> None:
    """Only the column's own values (or a constant over them) are given back densely: a
    SparseToDense of values computed from them keeps its sparse input."""
    signature = [tf.TensorSpec([None], tf.float32)]

    def doubled(x: tf.Tensor) -> dict[str, tf.Tensor]:
        sparse = sparse_view(x, float("nan"))
        twice = tf.SparseTensor(sparse.indices, sparse.values * 2.0, sparse.dense_shape)
        return {"twice": tf.sparse.to_dense(twice, -1.0)}

    concrete = tf.function(doubled, input_signature=signature).get_concrete_function()
    outputs = [t.name for t in concrete.outputs]
    graph_def = run_grappler(concrete.graph.as_graph_def(), outputs, INLINE)
    assert len(views_in(concrete.graph)) == 1
    assert densify(graph_def, views_in(concrete.graph)) == 0
    assert "SparseToDense" in {n.op for n in graph_def.node}
