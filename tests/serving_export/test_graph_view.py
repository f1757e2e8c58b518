"""GraphDef lookups the rewrites match patterns with: through Identity chains, constants read."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfpipe_jobs.serving_export.graph_view import GraphView, count_nodes


def _graph_def() -> tf.compat.v1.GraphDef:
    with tf.Graph().as_default() as graph:
        three = tf.constant([3.0, 4.0], name="three")
        alias = tf.identity(tf.identity(three, name="a1"), name="a2")
        x = tf.compat.v1.placeholder(tf.float32, [2], name="x")
        tf.multiply(x, alias, name="out")
    return graph.as_graph_def()


def test_a_tensor_behind_identities_is_its_source_and_a_constant_reads_as_its_value() -> None:
    graph = GraphView(_graph_def())
    assert graph.source("a2") == "three:0"
    assert graph.producer("a2:0").op == "Const"
    np.testing.assert_array_equal(graph.const_value("a2"), [3.0, 4.0])
    assert graph.const_value("x") is None
    assert graph.source("out") == "out:0"


def test_count_nodes_leaves_constants_out() -> None:
    assert count_nodes(_graph_def()) == 4  # a1, a2, x, out
