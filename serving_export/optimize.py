"""Freeze a whole serving function and run Grappler over it once, at export time.

TensorFlow's runtime optimises each function it instantiates, but a loaded serving
signature is a chain of nested functions (parsing, the tf.Transform graph, the model),
and the tf.Transform part keeps computing, on every call, values that are constants
(e.g. the square root of an analysed variance). Here the whole signature is frozen
(model variables -> constants; lookup tables are resources and stay inputs), every nested
call is inlined, and constant folding, arithmetic simplification, dependency and shape
optimisation and pruning to the signature's outputs run on the one flat graph. The
result is re-imported as a function and called with the same table handles, so the
tables stay tracked objects of the SavedModel.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import tensorflow as tf
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
from tensorflow.python.eager import wrap_function
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
from tensorflow.python.grappler import tf_optimizer
from tensorflow.python.training.saver import export_meta_graph

# Run in this order; constant folding and arithmetic run again once inlining and the first
# folding have exposed more constants. "pruning" is implied by the fetch list.
PASSES = (
    "function",
    "constfold",
    "arithmetic",
    "dependency",
    "shape",
    "remap",
    "constfold",
    "arithmetic",
    "dependency",
)


class OptimizationError(RuntimeError):
    """Grappler could not optimise a serving signature; the message names the signature."""


def count_nodes(graph_def: graph_pb2.GraphDef) -> int:
    """Executable nodes (constants excluded), the top level plus every library function."""
    nodes = [n for n in graph_def.node if n.op != "Const"]
    inner = [n for f in graph_def.library.function for n in f.node_def if n.op != "Const"]
    return len(nodes) + len(inner)


def run_grappler(func: Any, passes: tuple[str, ...] = PASSES) -> graph_pb2.GraphDef:
    """The function's graph after `passes`, keeping only what its outputs need."""
    graph_def = func.graph.as_graph_def()
    meta_graph = export_meta_graph(graph_def=graph_def, graph=func.graph)
    fetches = meta_graph.collection_def["train_op"].node_list.value  # Grappler's fetch nodes
    fetches.extend(t.name for t in func.outputs)
    config = config_pb2.ConfigProto()
    rewrite = config.graph_options.rewrite_options
    rewrite.optimizers.extend(passes)
    rewrite.min_graph_nodes = -1  # optimise small graphs too
    # Inline stateful calls as well (the tf.Transform layer's function holds table lookups).
    rewrite.function_optimization = rewriter_config_pb2.RewriterConfig.AGGRESSIVE
    return tf_optimizer.OptimizeGraph(config, meta_graph)


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


def optimized(fn: Any, input_signature: list[Any], name: str) -> tuple[Callable[..., Any], dict[str, int]]:
    """A tf.function with `fn`'s signature running the frozen, Grappler-optimised graph.

    Returns it and the node counts before/after, for the equivalence report."""
    concrete = tf.function(fn, input_signature=input_signature).get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)
    try:
        graph_def = run_grappler(frozen)
    except Exception as exc:  # Grappler raises bare status errors without the signature's name
        raise OptimizationError(f"Grappler failed on signature {name}: {exc}") from exc
    _rename_functions(graph_def)
    input_names = [t.name for t in frozen.inputs]
    function = wrap_function.function_from_graph_def(graph_def, input_names, [t.name for t in frozen.outputs])

    # The frozen function's inputs: the signature's own tensors, then the captures that are
    # not variables (lookup table handles). Pass the same handles, so saving tracks them.
    n_args = len(tf.nest.flatten(input_signature))
    captures = zip(concrete.captured_inputs, concrete.graph.internal_captures, strict=True)
    external = {internal.name: ext for ext, internal in captures}
    missing = [n for n in input_names[n_args:] if n not in external]
    if missing:
        raise OptimizationError(f"signature {name}: frozen inputs {missing} are neither arguments nor captures")
    handles = [external[n] for n in input_names[n_args:]]
    structure = concrete.structured_outputs

    def call(*args: Any) -> Any:
        return tf.nest.pack_sequence_as(structure, function(*tf.nest.flatten(args), *handles))

    counts = {"nodes_before": count_nodes(concrete.graph.as_graph_def()), "nodes_after": count_nodes(graph_def)}
    return tf.function(call, input_signature=input_signature), counts
