"""What the rewrites leave behind: control edges that order nothing, duplicate constants, dead nodes."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfpipe_jobs.serving_export import optimize
from tfpipe_jobs.serving_export.graph_cleanup import dedup_constants, prune


def test_an_input_check_survives_and_fails_before_the_shape_error_it_guards(stand_in) -> None:
    """A check guarding a column by a control edge is kept (and still ordered first) while
    the stateless gating edges around it are dropped."""

    def checked(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        rows = tf.shape(features["city"])[0]
        check = tf.debugging.Assert(tf.equal(tf.size(features["price"]), rows), ["price: one value per row"])
        with tf.control_dependencies([check]):
            price = tf.reshape(features["price"], [-1])
        price.op._set_attr("_grappler_do_not_remove", tf.compat.v1.AttrValue(b=True))
        return stand_in.fn({"price": price, "city": features["city"]})

    fn, report = optimize.optimized(checked, stand_in.signature, "checked")
    expected = tf.function(stand_in.fn, input_signature=stand_in.signature)(stand_in.inputs())
    got = fn(stand_in.inputs())
    for key in expected:
        np.testing.assert_array_equal(got[key].numpy(), expected[key].numpy(), err_msg=key)
    assert report["peepholes"] > 0
    bad = {"price": tf.constant([1.0, 2.0, 3.0]), "city": tf.constant([b"paris", b"oslo"])}
    with pytest.raises(tf.errors.InvalidArgumentError, match="price: one value per row"):
        fn(bad)


def _graph() -> tuple[tf.compat.v1.GraphDef, str]:
    """x * [2, 2] + [2, 2] (two equal constants), and an unused x - 1; returns the output's name."""
    with tf.Graph().as_default() as graph:
        x = tf.compat.v1.placeholder(tf.float32, [2], name="x")
        out = tf.add(x * tf.constant([2.0, 2.0]), tf.constant([2.0, 2.0]), name="out")
        tf.subtract(x, 1.0, name="unused")
    return graph.as_graph_def(), out.name


def _run(graph_def: tf.compat.v1.GraphDef, output: str) -> np.ndarray:
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        tf.graph_util.import_graph_def(graph_def, name="")
        return session.run(output, {"x:0": [1.0, 3.0]})


def test_equal_constants_are_merged_and_the_values_kept() -> None:
    graph_def, out = _graph()
    before = _run(graph_def, out)
    consts = sum(n.op == "Const" for n in graph_def.node)
    assert dedup_constants(graph_def) == 1
    assert sum(n.op == "Const" for n in graph_def.node) == consts - 1
    np.testing.assert_array_equal(_run(graph_def, out), before)


def test_prune_keeps_what_the_outputs_need_and_nothing_else() -> None:
    graph_def, out = _graph()
    removed = prune(graph_def, [out])
    names = {n.name for n in graph_def.node}
    assert removed >= 2 and "unused" not in names and {"x", "out"} <= names
    np.testing.assert_array_equal(_run(graph_def, out), [4.0, 8.0])
