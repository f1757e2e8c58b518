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

This module orders the work; the rewrites no Grappler pass knows live beside it, each
exact (same values, same errors on bad input):
1. inline every call (Grappler's function pass);
2. `densify.densify` (the sparse round trip of each raw column) and
   `op_rewrites.fold_table_sizes`;
3. Grappler's `PASSES`;
4. `op_rewrites` select and reshape peepholes and `Bucketize`, and
   `graph_cleanup.drop_stateless_control_edges`; then Grappler's `CLEANUP`;
5. `op_rewrites.eigen_matmuls` (`export.eigen_matmul`, default on);
6. `graph_cleanup`: duplicate constants merged, dead nodes pruned, functions renamed.
At batch 1 a call costs a fixed overhead plus what its ops cost: a cheap op is a fraction
of a microsecond, so what pays there is removing or replacing the costly ones (the sparse
round trip, recomputed constants, oneDNN's per-product set-up); `equivalence.json` has the
counts and `bench/export_profile.py` shows where a call's time goes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, rewriter_config_pb2
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
from tensorflow.python.grappler import tf_optimizer

from tfpipe_jobs.serving_export.densify import densify, views_in
from tfpipe_jobs.serving_export.graph_cleanup import (
    dedup_constants,
    drop_control_on_inputs,
    drop_stateless_control_edges,
    prune,
    rename_functions,
)
from tfpipe_jobs.serving_export.graph_view import canonical, count_nodes
from tfpipe_jobs.serving_export.op_rewrites import (
    bucketize_upper_bounds,
    eigen_matmuls,
    fold_table_sizes,
    simplify_reshapes,
    simplify_selects,
)

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


class OptimizationError(RuntimeError):
    """Grappler could not optimise a serving signature; the message names the signature."""


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


def optimized(
    fn: Any, input_signature: list[Any], name: str, eigen_matmul: bool = True
) -> tuple[Callable[..., Any], dict[str, int]]:
    """A tf.function with `fn`'s signature running the frozen, rewritten, Grappler-optimised
    graph (its matrix products on Eigen's kernel unless `eigen_matmul` is off). Returns it
    and what changed (node counts before/after, rewrites), for the report."""
    concrete = tf.function(fn, input_signature=input_signature).get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)
    views = views_in(concrete.graph)
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
    handles = {canonical(n): external[n] for n in input_names[n_args:]}

    try:
        graph_def = run_grappler(frozen.graph.as_graph_def(), output_names, INLINE)
        densified = densify(graph_def, views)
        folded = fold_table_sizes(graph_def, handles)
        graph_def = run_grappler(graph_def, output_names, PASSES)
        simplified = (
            simplify_selects(graph_def)
            + simplify_reshapes(graph_def)
            + bucketize_upper_bounds(graph_def)
            + drop_stateless_control_edges(graph_def)
        )
        graph_def = run_grappler(graph_def, output_names, CLEANUP)
        eigen = eigen_matmuls(graph_def) if eigen_matmul else 0
    except Exception as exc:  # Grappler raises bare status errors without the signature's name
        raise OptimizationError(f"Grappler failed on signature {name}: {exc}") from exc
    drop_control_on_inputs(graph_def, input_names)
    dedup_constants(graph_def)
    prune(graph_def, [*output_names, *input_names])
    rename_functions(graph_def)
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
