"""Rewrites of single ops and short op chains into cheaper ones that Grappler lacks.

Each is exact (same values, same errors on bad input):
- table sizes (after inlining): `LookupTableSizeV2` of a table the graph never writes is
  a constant (the vocabulary is an asset fixed at export).
- select peepholes (after the passes): a comparison of a select between constants is its
  condition; nested selects on one condition collapse; a negated condition swaps branches.
- reshapes of a rank-1 tensor to [its length, 1] get a constant shape.
- tf.Transform's bucketizing (`UpperBound` between reshapes) becomes one `Bucketize`.
- matrix products (last, `export.eigen_matmul`, default on): float32 `MatMul` runs as
  `SparseMatMul` with dense operands, Eigen's contraction, which TensorFlow's oneDNN rewrite
  does not take over; oneDNN's fixed cost per product outweighs a small layer at batch 1.
"""

from __future__ import annotations

from collections.abc import Callable

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
    scalar_value,
)

_TABLE_WRITERS = frozenset(
    {
        "LookupTableInsertV2",
        "LookupTableRemoveV2",
        "LookupTableImportV2",
        "InitializeTableV2",
        "InitializeTableFromTextFileV2",
        "MutableHashTableV2",
    }
)


def fold_table_sizes(graph_def: graph_pb2.GraphDef, handles: dict[str, tf.Tensor]) -> int:
    """`LookupTableSizeV2` of a table no node writes -> its size now, as a constant.

    `handles` maps the graph's table-handle inputs (tensor names) to the live tables."""
    graph = GraphView(graph_def)
    written = {graph.source(n.input[0]) for n in graph_def.node if n.op in _TABLE_WRITERS and n.input}
    folded = 0
    for node in graph_def.node:
        if node.op != "LookupTableSizeV2":
            continue
        handle = graph.source(node.input[0])
        if handle in written or handle not in handles:
            continue
        size = tf.raw_ops.LookupTableSizeV2(table_handle=handles[handle]).numpy()
        node.CopyFrom(const_node(node.name, size, tf.int64))
        folded += 1
    return folded


_COMPARISONS = {
    "Greater": np.greater,
    "GreaterEqual": np.greater_equal,
    "Less": np.less,
    "LessEqual": np.less_equal,
    "Equal": np.equal,
    "NotEqual": np.not_equal,
}


def simplify_selects(graph_def: graph_pb2.GraphDef) -> int:
    """Peepholes on `SelectV2` that Grappler lacks, each exact (scalar constants only):
    - cmp(SelectV2(p, a, b), y) -> p or not p, when cmp(a, y) != cmp(b, y);
    - SelectV2(p, SelectV2(p, x, z), w) -> SelectV2(p, x, w), and the mirror image;
    - SelectV2(LogicalNot(c), a, b) -> SelectV2(c, b, a).
    Returns how many nodes were rewritten."""
    graph = GraphView(graph_def)
    rewritten = 0
    for node in graph_def.node:
        data = [i for i in node.input if not i.startswith("^")]
        controls = [i for i in node.input if i.startswith("^")]
        if node.op in _COMPARISONS and len(data) == 2:
            select, y = graph.producer(data[0]), scalar_value(graph, data[1])
            if select is None or select.op != "SelectV2" or y is None:
                continue
            a, b = scalar_value(graph, select.input[1]), scalar_value(graph, select.input[2])
            if a is None or b is None:
                continue
            on_true, on_false = bool(_COMPARISONS[node.op](a, y)), bool(_COMPARISONS[node.op](b, y))
            if on_true == on_false:
                continue
            node.CopyFrom(
                node_def_pb2.NodeDef(
                    name=node.name, op="Identity" if on_true else "LogicalNot", input=[select.input[0], *controls]
                )
            )
            if on_true:
                node.attr["T"].type = tf.bool.as_datatype_enum
            rewritten += 1
        elif node.op == "SelectV2":
            condition = graph.source(data[0])
            for branch, keep in ((1, 1), (2, 2)):
                inner = graph.producer(data[branch])
                # The inner select's other branch must be a scalar, so dropping it cannot
                # change the broadcast shape.
                if inner is not None and inner.op == "SelectV2" and graph.source(inner.input[0]) == condition:
                    other = 2 if keep == 1 else 1
                    if scalar_value(graph, inner.input[other]) is not None:
                        node.input[branch] = inner.input[keep]
                        rewritten += 1
            negated = graph.producer(node.input[0])
            if negated is not None and negated.op == "LogicalNot":
                node.input[0], node.input[1], node.input[2] = negated.input[0], node.input[2], node.input[1]
                rewritten += 1
    return rewritten


def eigen_matmuls(graph_def: graph_pb2.GraphDef) -> int:
    """Each float32 `MatMul` -> `SparseMatMul` with neither operand marked sparse; returns how many.

    That op's kernel then runs Eigen's dense contraction, the one TensorFlow's own MatMul
    kernel runs without oneDNN: the same product under an op name that TensorFlow's oneDNN
    graph rewrite (on by default on x86) leaves alone. oneDNN's matmul carries a fixed cost
    per call that dominates a serving model's small layers at batch 1. The op has no GPU
    kernel, so it is behind `export.eigen_matmul` for a GPU server to turn off."""
    rewritten = 0
    for node in graph_def.node:
        if node.op != "MatMul" or node.attr["T"].type != tf.float32.as_datatype_enum:
            continue
        product = node_def_pb2.NodeDef(name=node.name, op="SparseMatMul", input=node.input, device=node.device)
        for key in ("transpose_a", "transpose_b"):
            product.attr[key].b = node.attr[key].b
        for key in ("a_is_sparse", "b_is_sparse"):
            product.attr[key].b = False
        product.attr["Ta"].type = product.attr["Tb"].type = tf.float32.as_datatype_enum
        node.CopyFrom(product)
        rewritten += 1
    return rewritten


def bucketize_upper_bounds(graph_def: graph_pb2.GraphDef) -> int:
    """tf.Transform's `apply_buckets` on a column x, `Reshape(UpperBound(boundaries [1, B],
    Reshape(..x.., [1, n])), Shape(x))` with constant float boundaries, -> `Bucketize(x)`
    (cast to the same integer type): one kernel instead of seven nodes. Both count, per
    value, the boundaries at or below it (`std::upper_bound`), so the buckets are the same,
    NaN included. Returns how many were rewritten."""
    graph = GraphView(graph_def)
    consumers: dict[str, int] = {}
    for node in graph_def.node:
        for ref in node.input:
            producer = graph.producer(ref.lstrip("^"))
            if producer is not None:
                consumers[producer.name] = consumers.get(producer.name, 0) + 1
    added: list[node_def_pb2.NodeDef] = []
    for node in graph_def.node:
        if node.op != "Reshape" or n_control(node):
            continue
        upper, shape = graph.producer(node.input[0]), graph.producer(node.input[1])
        if upper is None or upper.op != "UpperBound" or n_control(upper) or consumers.get(upper.name) != 1:
            continue
        flat = graph.producer(upper.input[1])
        if flat is None or flat.op != "Reshape" or n_control(flat) or shape is None or shape.op != "Shape":
            continue
        # The column the bucket ids are shaped like, possibly behind more reshapes (a
        # flattening one when its rank is not known when traced): the values are the same.
        column, chain = graph.source(shape.input[0]), [graph.source(flat.input[0])]
        while chain[-1] != column:
            before = graph.producer(chain[-1])
            if before is None or before.op != "Reshape" or n_control(before):
                break
            chain.append(graph.source(before.input[0]))
        boundaries = graph.const_value(upper.input[0])
        if (
            chain[-1] != column
            or upper.attr["T"].type != tf.float32.as_datatype_enum
            or boundaries is None
            or boundaries.ndim != 2
            or boundaries.shape[0] != 1
            or not bool(np.all(boundaries[0, 1:] >= boundaries[0, :-1]))
        ):
            continue
        bucketize = op_node(f"{node.name}/bucketize", "Bucketize", [input_ref(column)], T=tf.float32)
        bucketize.attr["boundaries"].list.f.extend(boundaries[0].tolist())
        added.append(bucketize)
        out_type = upper.attr["out_type"].type
        node.CopyFrom(node_def_pb2.NodeDef(name=node.name, op="Cast", input=[bucketize.name]))
        node.attr["SrcT"].type = tf.int32.as_datatype_enum
        node.attr["DstT"].type = out_type
        node.attr["Truncate"].b = False
    graph_def.node.extend(added)
    return len(added)


def _static_ranks(graph_def: graph_pb2.GraphDef) -> Callable[[str], int | None]:
    """Tensor name -> its rank as TensorFlow's shape inference knows it (None if unknown)."""
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")

    def rank(tensor: str) -> int | None:
        try:
            return graph.get_tensor_by_name(canonical(tensor)).shape.rank  # type: ignore[no-any-return]
        except (KeyError, ValueError):
            return None

    return rank


def simplify_reshapes(graph_def: graph_pb2.GraphDef) -> int:
    """Reshape(t, [.., t's length, ..]) of a rank-1 `t`, every other dimension a constant
    1, gets the constant shape with -1 for the length: the same result without the
    Shape -> StridedSlice -> Pack chain computed on every call. Returns how many."""
    graph = GraphView(graph_def)
    rank = _static_ranks(graph_def)
    rewritten = 0
    added: list[node_def_pb2.NodeDef] = []
    for node in graph_def.node:
        if node.op != "Reshape" or rank(node.input[0]) != 1:
            continue
        pack = graph.producer(node.input[1])
        if pack is None or pack.op != "Pack" or pack.attr["axis"].i != 0 or n_control(pack):
            continue
        dims: list[int] = []
        for element in pack.input:
            sliced = graph.producer(element)
            shape = graph.producer(sliced.input[0]) if sliced is not None and sliced.op == "StridedSlice" else None
            reshaped = graph.source(node.input[0])
            if shape is not None and shape.op == "Shape" and graph.source(shape.input[0]) == reshaped:
                if not is_dim0_of(graph, element, canonical(shape.name)):
                    break
                dims.append(-1)
                continue
            value = scalar_value(graph, element)
            if value is None or int(value) != 1:
                break
            dims.append(1)
        else:
            if dims.count(-1) != 1:
                continue
            dtype = tf.as_dtype(pack.attr["T"].type)
            added.append(const_node(f"{node.name}/static_shape", dims, dtype))
            node.input[1] = f"{node.name}/static_shape"
            node.attr["Tshape"].type = dtype.as_datatype_enum
            rewritten += 1
    graph_def.node.extend(added)
    return rewritten
