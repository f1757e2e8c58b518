"""Freeze a whole serving function and run Grappler over it once, at export time.

TensorFlow's runtime optimises each function it instantiates, but a loaded serving
signature is a chain of nested functions (parsing, the tf.Transform graph, the model),
and the tf.Transform part keeps computing, on every call, values that are constants
(e.g. the square root of an analysed variance). Here the whole signature is frozen
(model variables -> constants; lookup tables are resources and stay inputs), every nested
call is inlined, and constant folding, arithmetic simplification, dependency and shape
optimisation and pruning to the signature's outputs run on the one flat graph. The
result is imported into the signature's own function (no nested call) with the same
table handles as inputs, so the tables stay tracked objects of the SavedModel.

Rewrites no Grappler pass knows, each exact (same values, same errors on bad input):
- densify (after inlining): the signatures hold dense raw columns (one value or missing
  per row) but tf.Transform takes sparse ones and densifies them again. Each such
  `SparseToDense` of a column built by `sparse_view` becomes the dense column itself (or
  one `SelectV2` with its presence mask); the sparse construction is then dead.
- table sizes (after inlining): `LookupTableSizeV2` of a table the graph never writes is
  a constant (the vocabulary is an asset fixed at export).
- after the passes: select peepholes (a comparison of a select between constants is its
  condition), reshapes of a rank-1 tensor to [its length, 1] with a constant shape,
  control edges that order nothing stateful dropped (tf.Transform gates its constants
  on all of its inputs, including a dummy label it builds), duplicate constants merged,
  dead nodes pruned; tf.Transform's bucketizing (`UpperBound` between reshapes) becomes
  one `Bucketize`.
- matrix products (last, `export.eigen_matmul`, default on): float32 `MatMul` runs as
  `SparseMatMul` with dense operands, Eigen's contraction, which TensorFlow's oneDNN rewrite
  does not take over; oneDNN's fixed cost per product outweighs a small layer at batch 1.
At batch 1 a call costs a fixed overhead plus what its ops cost: a cheap op is a fraction
of a microsecond, so what pays there is removing or replacing the costly ones (the sparse
round trip, recomputed constants, oneDNN's per-product set-up); `equivalence.json` has the
counts and `bench/export_profile.py` shows where a call's time goes.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import graph_pb2, node_def_pb2
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, rewriter_config_pb2
from tensorflow.python.framework import op_def_registry
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
from tensorflow.python.grappler import tf_optimizer

INLINE = ("function",)
# Run in this order after inlining and the rewrites; constant folding and arithmetic run
# again once the first folding has exposed more constants. "pruning" is implied by the
# fetch list.
PASSES = (
    "constfold",
    "arithmetic",
    "dependency",
    "shape",
    "remap",
    "constfold",
    "arithmetic",
    "dependency",
)
# After the rewrites that follow the passes: drop what they left dead.
CLEANUP = ("constfold", "arithmetic", "dependency")
# Ops that change a lookup table's contents: a table touched by one is not folded.
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


# Stateful ops whose position in the order nothing can observe: an input, and an input
# check (`Assert`). An edge straight from an Assert is kept (its check must fail before the
# op it guards sees the bad input); an Assert further up a cone does not keep an edge.
_ORDERS_NOTHING = frozenset({"Placeholder", "Assert"})


class OptimizationError(RuntimeError):
    """Grappler could not optimise a serving signature; the message names the signature."""


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


def count_nodes(graph_def: graph_pb2.GraphDef) -> int:
    """Executable nodes (constants excluded), the top level plus every library function."""
    nodes = [n for n in graph_def.node if n.op != "Const"]
    inner = [n for f in graph_def.library.function for n in f.node_def if n.op != "Const"]
    return len(nodes) + len(inner)


def run_grappler(graph_def: graph_pb2.GraphDef, fetches: list[str], passes: tuple[str, ...]) -> graph_pb2.GraphDef:
    """`graph_def` after `passes`, keeping only what `fetches` (tensor names) need."""
    meta_graph = meta_graph_pb2.MetaGraphDef()
    meta_graph.graph_def.CopyFrom(graph_def)
    meta_graph.collection_def["train_op"].node_list.value.extend(fetches)  # Grappler's fetch nodes
    config = config_pb2.ConfigProto()
    rewrite = config.graph_options.rewrite_options
    rewrite.optimizers.extend(passes)
    rewrite.min_graph_nodes = -1  # optimise small graphs too
    # Inline stateful calls as well (the tf.Transform layer's function holds table lookups).
    rewrite.function_optimization = rewriter_config_pb2.RewriterConfig.AGGRESSIVE
    return tf_optimizer.OptimizeGraph(config, meta_graph)


def _canonical(name: str) -> str:
    return name if ":" in name else f"{name}:0"


def _ref(tensor: str) -> str:
    """A tensor name as a GraphDef input refers to it (output 0 without its index)."""
    return tensor.removesuffix(":0")


class _Graph:
    """Node lookup over a GraphDef, seeing through Identity nodes (inlining leaves many)."""

    def __init__(self, graph_def: graph_pb2.GraphDef) -> None:
        self.nodes = {n.name: n for n in graph_def.node}

    def source(self, tensor: str) -> str:
        """The tensor an input name stands for once Identity chains are skipped."""
        tensor = _canonical(tensor)
        while True:
            node = self.nodes.get(tensor.split(":")[0])
            if node is None or node.op != "Identity" or not tensor.endswith(":0"):
                return tensor
            tensor = _canonical(node.input[0])

    def producer(self, tensor: str) -> node_def_pb2.NodeDef | None:
        return self.nodes.get(self.source(tensor).split(":")[0])

    def const_value(self, tensor: str) -> np.ndarray | None:
        node = self.producer(tensor)
        if node is None or node.op != "Const":
            return None
        return tf.make_ndarray(node.attr["value"].tensor)


def _is_dim0_of(graph: _Graph, tensor: str, shape: str) -> bool:
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


def _is_n_by_1(graph: _Graph, tensor: str, view: DenseView) -> bool:
    """`tensor` is [sparse_shape[0], 1]: the rows of the column, one value each."""
    node = graph.producer(tensor)
    if node is None or node.op != "Pack" or len(node.input) - _n_control(node) != 2 or node.attr["axis"].i != 0:
        return False
    one = graph.const_value(node.input[1])
    return one is not None and one.ndim == 0 and int(one) == 1 and _is_dim0_of(graph, node.input[0], view.sparse_shape)


def _n_control(node: node_def_pb2.NodeDef) -> int:
    return sum(1 for i in node.input if i.startswith("^"))


def _filled_value(graph: _Graph, tensor: str, view: DenseView) -> str | None:
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


def _const(name: str, value: Any, dtype: tf.DType) -> node_def_pb2.NodeDef:
    node = node_def_pb2.NodeDef(name=name, op="Const")
    node.attr["dtype"].type = dtype.as_datatype_enum
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
    return node


def _op(name: str, op: str, inputs: list[str], **types: tf.DType) -> node_def_pb2.NodeDef:
    node = node_def_pb2.NodeDef(name=name, op=op, input=inputs)
    for key, dtype in types.items():
        node.attr[key].type = dtype.as_datatype_enum
    return node


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
    graph = _Graph(graph_def)
    by_indices = {_canonical(v.sparse_indices): v for v in views}
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
        if graph.source(values) == _canonical(view.sparse_values):
            chosen = _ref(view.values)
            if not _is_missing_value(graph.const_value(default), view):
                chosen = f"{node.name}/densified"
                added.append(_op(chosen, "SelectV2", [_ref(view.present), _ref(view.values), default], T=dtype))
        else:
            filled = _filled_value(graph, values, view)
            if filled is None:
                continue
            chosen = f"{node.name}/densified"
            added.append(_op(chosen, "SelectV2", [_ref(view.present), _ref(filled), default], T=dtype))
        controls = [i for i in node.input if i.startswith("^")]
        added.append(_const(f"{node.name}/densified_shape", [-1, 1], tf.int32))
        node.CopyFrom(_op(node.name, "Reshape", [chosen, f"{node.name}/densified_shape", *controls], T=dtype))
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


def fold_table_sizes(graph_def: graph_pb2.GraphDef, handles: dict[str, tf.Tensor]) -> int:
    """`LookupTableSizeV2` of a table no node writes -> its size now, as a constant.

    `handles` maps the graph's table-handle inputs (tensor names) to the live tables."""
    graph = _Graph(graph_def)
    written = {graph.source(n.input[0]) for n in graph_def.node if n.op in _TABLE_WRITERS and n.input}
    folded = 0
    for node in graph_def.node:
        if node.op != "LookupTableSizeV2":
            continue
        handle = graph.source(node.input[0])
        if handle in written or handle not in handles:
            continue
        size = tf.raw_ops.LookupTableSizeV2(table_handle=handles[handle]).numpy()
        node.CopyFrom(_const(node.name, size, tf.int64))
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


def _is_stateful(op: str) -> bool:
    op_def = op_def_registry.get(op)
    return op_def is None or op_def.is_stateful


def _drop_stateless_control_edges(graph_def: graph_pb2.GraphDef) -> int:
    """Remove control edges whose source and everything before it is stateless.

    Such an edge orders nothing observable: it only delays its target and keeps dead
    computations alive (tf.Transform's inlined layer gates its constants on every input,
    including a dummy label it builds). Edges from stateful ops (table reads) stay."""
    nodes = {n.name: n for n in graph_def.node}
    stateful: dict[str, bool] = {}

    def has_stateful_cone(name: str) -> bool:
        stack, seen = [name], []
        while stack:
            current = stack.pop()
            if current in stateful:
                if stateful[current]:
                    break
                continue
            node = nodes.get(current)
            if node is None or (_is_stateful(node.op) and node.op not in _ORDERS_NOTHING):
                stateful[current] = True
                break
            seen.append(current)
            stack.extend(i.lstrip("^").split(":")[0] for i in node.input)
        else:
            for n in seen:
                stateful[n] = False
            return False
        for n in seen:
            stateful.setdefault(n, True)
        return True

    def orders_something(source: str) -> bool:
        node = nodes.get(source)
        return (node is not None and node.op == "Assert") or has_stateful_cone(source)

    dropped = 0
    for node in graph_def.node:
        kept = [i for i in node.input if not (i.startswith("^") and not orders_something(i[1:]))]
        dropped += len(node.input) - len(kept)
        if dropped and len(kept) != len(node.input):
            del node.input[:]
            node.input.extend(kept)
    return dropped


def _scalar(graph: _Graph, tensor: str) -> np.ndarray | None:
    value = graph.const_value(tensor)
    return value if value is not None and value.ndim == 0 else None


def simplify_selects(graph_def: graph_pb2.GraphDef) -> int:
    """Peepholes on `SelectV2` that Grappler lacks, each exact (scalar constants only):
    - cmp(SelectV2(p, a, b), y) -> p or not p, when cmp(a, y) != cmp(b, y);
    - SelectV2(p, SelectV2(p, x, z), w) -> SelectV2(p, x, w), and the mirror image;
    - SelectV2(LogicalNot(c), a, b) -> SelectV2(c, b, a).
    Returns how many nodes were rewritten."""
    graph = _Graph(graph_def)
    rewritten = 0
    for node in graph_def.node:
        data = [i for i in node.input if not i.startswith("^")]
        controls = [i for i in node.input if i.startswith("^")]
        if node.op in _COMPARISONS and len(data) == 2:
            select, y = graph.producer(data[0]), _scalar(graph, data[1])
            if select is None or select.op != "SelectV2" or y is None:
                continue
            a, b = _scalar(graph, select.input[1]), _scalar(graph, select.input[2])
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
                    if _scalar(graph, inner.input[other]) is not None:
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
    graph = _Graph(graph_def)
    consumers: dict[str, int] = {}
    for node in graph_def.node:
        for ref in node.input:
            producer = graph.producer(ref.lstrip("^"))
            if producer is not None:
                consumers[producer.name] = consumers.get(producer.name, 0) + 1
    added: list[node_def_pb2.NodeDef] = []
    for node in graph_def.node:
        if node.op != "Reshape" or _n_control(node):
            continue
        upper, shape = graph.producer(node.input[0]), graph.producer(node.input[1])
        if upper is None or upper.op != "UpperBound" or _n_control(upper) or consumers.get(upper.name) != 1:
            continue
        flat = graph.producer(upper.input[1])
        if flat is None or flat.op != "Reshape" or _n_control(flat) or shape is None or shape.op != "Shape":
            continue
        # The column the bucket ids are shaped like, possibly behind more reshapes (a
        # flattening one when its rank is not known when traced): the values are the same.
        column, chain = graph.source(shape.input[0]), [graph.source(flat.input[0])]
        while chain[-1] != column:
            before = graph.producer(chain[-1])
            if before is None or before.op != "Reshape" or _n_control(before):
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
        bucketize = _op(f"{node.name}/bucketize", "Bucketize", [_ref(column)], T=tf.float32)
        bucketize.attr["boundaries"].list.f.extend(boundaries[0].tolist())
        added.append(bucketize)
        out_type = upper.attr["out_type"].type
        node.CopyFrom(node_def_pb2.NodeDef(name=node.name, op="Cast", input=[bucketize.name]))
        node.attr["SrcT"].type = tf.int32.as_datatype_enum
        node.attr["DstT"].type = out_type
        node.attr["Truncate"].b = False
    graph_def.node.extend(added)
    return len(added)


def prune(graph_def: graph_pb2.GraphDef, keep: list[str]) -> int:
    """Delete every node that `keep` (tensor or node names) does not need; returns how many."""
    nodes = {n.name: n for n in graph_def.node}
    needed: set[str] = set()
    stack = [_canonical(k).split(":")[0] for k in keep]
    while stack:
        name = stack.pop()
        if name in needed or name not in nodes:
            continue
        needed.add(name)
        stack.extend(i.lstrip("^").split(":")[0] for i in nodes[name].input)
    dead = [n for n in graph_def.node if n.name not in needed]
    for node in dead:
        graph_def.node.remove(node)
    return len(dead)


def _static_ranks(graph_def: graph_pb2.GraphDef) -> Callable[[str], int | None]:
    """Tensor name -> its rank as TensorFlow's shape inference knows it (None if unknown)."""
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")

    def rank(tensor: str) -> int | None:
        try:
            return graph.get_tensor_by_name(_canonical(tensor)).shape.rank  # type: ignore[no-any-return]
        except (KeyError, ValueError):
            return None

    return rank


def simplify_reshapes(graph_def: graph_pb2.GraphDef) -> int:
    """Reshape(t, [.., t's length, ..]) of a rank-1 `t`, every other dimension a constant
    1, gets the constant shape with -1 for the length: the same result without the
    Shape -> StridedSlice -> Pack chain computed on every call. Returns how many."""
    graph = _Graph(graph_def)
    rank = _static_ranks(graph_def)
    rewritten = 0
    added: list[node_def_pb2.NodeDef] = []
    for node in graph_def.node:
        if node.op != "Reshape" or rank(node.input[0]) != 1:
            continue
        pack = graph.producer(node.input[1])
        if pack is None or pack.op != "Pack" or pack.attr["axis"].i != 0 or _n_control(pack):
            continue
        dims: list[int] = []
        for element in pack.input:
            sliced = graph.producer(element)
            shape = graph.producer(sliced.input[0]) if sliced is not None and sliced.op == "StridedSlice" else None
            reshaped = graph.source(node.input[0])
            if shape is not None and shape.op == "Shape" and graph.source(shape.input[0]) == reshaped:
                if not _is_dim0_of(graph, element, _canonical(shape.name)):
                    break
                dims.append(-1)
                continue
            value = _scalar(graph, element)
            if value is None or int(value) != 1:
                break
            dims.append(1)
        else:
            if dims.count(-1) != 1:
                continue
            dtype = tf.as_dtype(pack.attr["T"].type)
            added.append(_const(f"{node.name}/static_shape", dims, dtype))
            node.input[1] = f"{node.name}/static_shape"
            node.attr["Tshape"].type = dtype.as_datatype_enum
            rewritten += 1
    graph_def.node.extend(added)
    return rewritten


def dedup_constants(graph_def: graph_pb2.GraphDef) -> int:
    """Merge constants of the same dtype and value (each one is a node run on every call;
    folding leaves dozens of copies of [0], [1], [-1, 1]); returns how many were removed."""
    first: dict[tuple[int, bytes], str] = {}
    alias: dict[str, str] = {}
    for node in graph_def.node:
        if node.op != "Const" or node.input:
            continue
        key = (node.attr["dtype"].type, node.attr["value"].tensor.SerializeToString(deterministic=True))
        if key in first:
            alias[node.name] = first[key]
        else:
            first[key] = node.name
    if not alias:
        return 0
    for node in graph_def.node:
        for k, ref in enumerate(node.input):
            control = ref.startswith("^")
            name, _, index = ref.lstrip("^").partition(":")
            if name in alias and index in ("", "0"):
                node.input[k] = ("^" if control else "") + alias[name]
    for node in [n for n in graph_def.node if n.name in alias]:
        graph_def.node.remove(node)
    return len(alias)


def _drop_control_on_inputs(graph_def: graph_pb2.GraphDef, inputs: list[str]) -> None:
    """Remove control edges from the graph's inputs: an input is ready before anything
    runs, and importing the graph maps only data edges onto the caller's tensors."""
    placeholders = {"^" + _ref(_canonical(n)).split(":")[0] for n in inputs}
    for node in graph_def.node:
        kept = [i for i in node.input if i not in placeholders]
        if len(kept) != len(node.input):
            del node.input[:]
            node.input.extend(kept)


def _rename_functions(graph_def: graph_pb2.GraphDef) -> None:
    """Give library functions fresh names: the eager context may already hold different
    definitions under the old ones (e.g. an XLA-compiled function before freezing)."""
    suffix = f"_serving_{uuid.uuid4().hex[:8]}"
    names = {f.signature.name: f.signature.name + suffix for f in graph_def.library.function}

    def fix(nodes: Any) -> None:
        for node in nodes:
            for attr in node.attr.values():
                if attr.HasField("func") and attr.func.name in names:
                    attr.func.name = names[attr.func.name]

    fix(graph_def.node)
    for function in graph_def.library.function:
        function.signature.name = names[function.signature.name]
        fix(function.node_def)


def optimized(
    fn: Any, input_signature: list[Any], name: str, eigen_matmul: bool = True
) -> tuple[Callable[..., Any], dict[str, int]]:
    """A tf.function with `fn`'s signature running the frozen, rewritten, Grappler-optimised
    graph (its matrix products on Eigen's kernel unless `eigen_matmul` is off). Returns it
    and what changed (node counts before/after, rewrites), for the report."""
    concrete = tf.function(fn, input_signature=input_signature).get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)
    views = _VIEWS.get(concrete.graph, [])
    input_names = [t.name for t in frozen.inputs]
    output_names = [t.name for t in frozen.outputs]

    # The frozen function's inputs: the signature's own tensors, then the captures that are
    # not variables (lookup table handles). Pass the same handles, so saving tracks them.
    n_args = len(tf.nest.flatten(input_signature))
    captures = zip(concrete.captured_inputs, concrete.graph.internal_captures, strict=True)
    external = {internal.name: ext for ext, internal in captures}
    missing = [n for n in input_names[n_args:] if n not in external]
    if missing:
        raise OptimizationError(f"signature {name}: frozen inputs {missing} are neither arguments nor captures")
    handles = {_canonical(n): external[n] for n in input_names[n_args:]}

    try:
        graph_def = run_grappler(frozen.graph.as_graph_def(), output_names, INLINE)
        densified = densify(graph_def, views)
        folded = fold_table_sizes(graph_def, handles)
        graph_def = run_grappler(graph_def, output_names, PASSES)
        simplified = (
            simplify_selects(graph_def)
            + simplify_reshapes(graph_def)
            + bucketize_upper_bounds(graph_def)
            + _drop_stateless_control_edges(graph_def)
        )
        graph_def = run_grappler(graph_def, output_names, CLEANUP)
        eigen = eigen_matmuls(graph_def) if eigen_matmul else 0
    except Exception as exc:  # Grappler raises bare status errors without the signature's name
        raise OptimizationError(f"Grappler failed on signature {name}: {exc}") from exc
    _drop_control_on_inputs(graph_def, input_names)
    dedup_constants(graph_def)
    prune(graph_def, [*output_names, *input_names])
    _rename_functions(graph_def)
    structure = concrete.structured_outputs
    handle_args = [external[n] for n in input_names[n_args:]]

    def call(*args: Any) -> Any:
        # Import the optimised graph into this function's own body: one flat function,
        # no nested call to instantiate and run on every request.
        # The table handles as this function's captures themselves (an identity of each
        # would be one more node per table on every call).
        graph = tf.compat.v1.get_default_graph()
        inputs = [*tf.nest.flatten(args), *(graph.capture(h) for h in handle_args)]
        feeds = dict(zip(input_names, inputs, strict=True))
        outputs = tf.graph_util.import_graph_def(
            graph_def, input_map=feeds, return_elements=output_names, name="serving"
        )
        return tf.nest.pack_sequence_as(structure, outputs)

    report = {
        "nodes_before": count_nodes(concrete.graph.as_graph_def()),
        "nodes_after": count_nodes(graph_def),
        "densified_columns": densified,
        "folded_table_sizes": folded,
        "peepholes": simplified,
        "eigen_matmuls": eigen,
    }
    return tf.function(call, input_signature=input_signature), report
