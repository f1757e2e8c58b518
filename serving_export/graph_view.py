"""Reading and building GraphDef nodes, for the serving graph's rewrites.

Inlining leaves Identity chains between every producer and consumer, so a rewrite that
matches a pattern of ops looks through them (`GraphView`); the node builders make the
few node kinds the rewrites put in.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import graph_pb2, node_def_pb2


def canonical(name: str) -> str:
    """A tensor name with its output index (`node` -> `node:0`)."""
    return name if ":" in name else f"{name}:0"


def input_ref(tensor: str) -> str:
    """A tensor name as a GraphDef input refers to it (output 0 without its index)."""
    return tensor.removesuffix(":0")


class GraphView:
    """Node lookup over a GraphDef, seeing through Identity nodes (inlining leaves many)."""

    def __init__(self, graph_def: graph_pb2.GraphDef) -> None:
        self.nodes = {n.name: n for n in graph_def.node}

    def source(self, tensor: str) -> str:
        """The tensor an input name stands for once Identity chains are skipped."""
        tensor = canonical(tensor)
        while True:
            node = self.nodes.get(tensor.split(":")[0])
            if node is None or node.op != "Identity" or not tensor.endswith(":0"):
                return tensor
            tensor = canonical(node.input[0])

    def producer(self, tensor: str) -> node_def_pb2.NodeDef | None:
        return self.nodes.get(self.source(tensor).split(":")[0])

    def const_value(self, tensor: str) -> np.ndarray | None:
        node = self.producer(tensor)
        if node is None or node.op != "Const":
            return None
        return tf.make_ndarray(node.attr["value"].tensor)


def is_dim0_of(graph: GraphView, tensor: str, shape: str) -> bool:
    """`tensor` is `shape[0]` as a scalar (a StridedSlice [0:1] with the axis shrunk)."""
    node = graph.producer(tensor)
    if node is None or node.op != "StridedSlice" or graph.source(node.input[0]) != shape:
        return False
    bounds = [graph.const_value(i) for i in node.input[1:4]]
    masks = {k: node.attr[k].i for k in ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask")}
    return (
        all(b is not None and b.tolist() == want for b, want in zip(bounds, ([0], [1], [1]), strict=True))
        and node.attr["shrink_axis_mask"].i == 1
        and not any(masks.values())
    )


def n_control(node: node_def_pb2.NodeDef) -> int:
    return sum(1 for i in node.input if i.startswith("^"))


def const_node(name: str, value: Any, dtype: tf.DType) -> node_def_pb2.NodeDef:
    node = node_def_pb2.NodeDef(name=name, op="Const")
    node.attr["dtype"].type = dtype.as_datatype_enum
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
    return node


def op_node(name: str, op: str, inputs: list[str], **types: tf.DType) -> node_def_pb2.NodeDef:
    node = node_def_pb2.NodeDef(name=name, op=op, input=inputs)
    for key, dtype in types.items():
        node.attr[key].type = dtype.as_datatype_enum
    return node


def scalar_value(graph: GraphView, tensor: str) -> np.ndarray | None:
    value = graph.const_value(tensor)
    return value if value is not None and value.ndim == 0 else None


def count_nodes(graph_def: graph_pb2.GraphDef) -> int:
    """Executable nodes (constants excluded), the top level plus every library function."""
    nodes = [n for n in graph_def.node if n.op != "Const"]
    inner = [n for f in graph_def.library.function for n in f.node_def if n.op != "Const"]
    return len(nodes) + len(inner)
