"""The dense raw columns given back to tf.Transform's densification (runs after inlining).

The serving signatures hold dense raw columns (one value or missing per row) but
tf.Transform takes sparse ones and densifies them again. `sparse_view` builds the sparse
column and records, in the graph being traced, which dense tensors it came from; `densify`
then turns each `SparseToDense` of such a column into the dense column itself (or one
`SelectV2` with its presence mask), exactly: same values, same errors. The sparse
construction is then dead and pruned.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import graph_pb2, node_def_pb2

from tfpipe_jobs.serving_export.graph_view import (
    GraphView,
    canonical,
    const_node,
    input_ref,
    is_dim0_of,
    n_control,
    op_node,
)


@dataclass(frozen=True)
class DenseView:
    """Tensor names of one raw column given densely and of the sparse form built from it."""

    values: str  # [N] raw values, `missing_value` where the row has none
    present: str  # [N] bool
    missing_value: float | bytes
    sparse_indices: str
    sparse_values: str
    sparse_shape: str


def sparse_view(values: tf.Tensor, missing_value: float | bytes) -> tf.SparseTensor:
    """[N] dense raw values (`missing_value` - NaN or b"" - where absent) -> the [N, 1]
    sparse column tf.Transform takes, the missing rows absent.

    Records the tensors in the graph being traced, so that `densify` can later give
    tf.Transform's own densification of this column the dense values directly."""
    missing = tf.math.is_nan(values) if values.dtype.is_floating else tf.equal(values, missing_value)
    present = tf.logical_not(missing)
    rows = tf.where(present)
    indices = tf.concat([rows, tf.zeros_like(rows)], axis=1)
    shape = tf.stack([tf.shape(values, out_type=tf.int64)[0], tf.constant(1, tf.int64)])
    sparse = tf.SparseTensor(indices, tf.gather_nd(values, rows), shape)
    view = DenseView(values.name, present.name, missing_value, indices.name, sparse.values.name, shape.name)
    _VIEWS.setdefault(tf.compat.v1.get_default_graph(), []).append(view)
    return sparse


# Per traced graph (weakly held, gone with the graph): the columns `sparse_view` built in it.
_VIEWS: weakref.WeakKeyDictionary[Any, list[DenseView]] = weakref.WeakKeyDictionary()


def views_in(graph: Any) -> list[DenseView]:
    """The columns `sparse_view` built while `graph` (a traced function's graph) was traced."""
    return _VIEWS.get(graph, [])


def _is_n_by_1(graph: GraphView, tensor: str, view: DenseView) -> bool:
    """`tensor` is [sparse_shape[0], 1]: the rows of the column, one value each."""
    node = graph.producer(tensor)
    if node is None or node.op != "Pack" or len(node.input) - n_control(node) != 2 or node.attr["axis"].i != 0:
        return False
    one = graph.const_value(node.input[1])
    return one is not None and one.ndim == 0 and int(one) == 1 and is_dim0_of(graph, node.input[0], view.sparse_shape)


def _filled_value(graph: GraphView, tensor: str, view: DenseView) -> str | None:
    """If `tensor` is a constant scalar broadcast over the column's sparse values (as
    `ones_like` is), that scalar's tensor name."""
    node = graph.producer(tensor)
    if node is None or node.op != "Fill":
        return None
    shape = graph.producer(node.input[0])
    if shape is None or shape.op != "Shape" or graph.source(shape.input[0]) != view.sparse_values:
        return None
    value = graph.const_value(node.input[1])
    return graph.source(node.input[1]) if value is not None and value.ndim == 0 else None


def _is_missing_value(value: np.ndarray | None, view: DenseView) -> bool:
    if value is None or value.ndim != 0:
        return False
    if isinstance(view.missing_value, bytes):
        return bool(value.item() == view.missing_value)
    return bool(np.isnan(value.item())) if np.isnan(view.missing_value) else bool(value.item() == view.missing_value)


def densify(graph_def: graph_pb2.GraphDef, views: list[DenseView]) -> int:
    """Replace, in place, each `SparseToDense` of a `sparse_view` column into [N, 1] by the
    dense column itself; returns how many were replaced.

    Exactly the same values: the sparse column holds the present rows' values at
    [row, 0], so densifying it puts each present value back in its row and the default
    elsewhere: `SelectV2(present, values, default)`, or the dense values as they are
    when the default is the column's own missing value. A constant broadcast over the
    sparse values (`ones_like`) becomes `SelectV2(present, constant, default)`. The
    `Squeeze` back to [N] that follows is skipped. Any other `SparseToDense` (another
    shape, values computed from the sparse values) is left as it is."""
    graph = GraphView(graph_def)
    by_indices = {canonical(v.sparse_indices): v for v in views}
    added: list[node_def_pb2.NodeDef] = []
    flat: dict[str, str] = {}  # replaced node -> its [N] result
    for node in list(graph_def.node):
        if node.op != "SparseToDense":
            continue
        indices, shape, values, default = node.input[:4]
        view = by_indices.get(graph.source(indices))
        if view is None or not _is_n_by_1(graph, shape, view):
            continue
        dtype = tf.as_dtype(node.attr["T"].type)
        if graph.source(values) == canonical(view.sparse_values):
            chosen = input_ref(view.values)
            if not _is_missing_value(graph.const_value(default), view):
                chosen = f"{node.name}/densified"
                added.append(
                    op_node(chosen, "SelectV2", [input_ref(view.present), input_ref(view.values), default], T=dtype)
                )
        else:
            filled = _filled_value(graph, values, view)
            if filled is None:
                continue
            chosen = f"{node.name}/densified"
            added.append(op_node(chosen, "SelectV2", [input_ref(view.present), input_ref(filled), default], T=dtype))
        controls = [i for i in node.input if i.startswith("^")]
        added.append(const_node(f"{node.name}/densified_shape", [-1, 1], tf.int32))
        node.CopyFrom(op_node(node.name, "Reshape", [chosen, f"{node.name}/densified_shape", *controls], T=dtype))
        node.attr["Tshape"].type = tf.int32.as_datatype_enum
        flat[node.name] = chosen
    for node in graph_def.node:
        if node.op == "Squeeze" and node.input and node.input[0] in flat:
            axes = list(node.attr["squeeze_dims"].list.i)
            if axes in ([1], [-1]):
                dtype = node.attr["T"].type
                node.CopyFrom(node_def_pb2.NodeDef(name=node.name, op="Identity", input=[flat[node.input[0]]]))
                node.attr["T"].type = dtype
    graph_def.node.extend(added)
    return len(flat)
