"""What the serving graph's rewrites and passes leave behind, removed.

Control edges that order nothing stateful are dropped (tf.Transform gates its constants on
all of its inputs, including a dummy label it builds), duplicate constants merged, dead
nodes pruned; and the graph is readied for import into the serving function (no control
edges on its inputs, library functions under fresh names).
"""

from __future__ import annotations

import uuid
from typing import Any

from tensorflow.core.framework import graph_pb2
from tensorflow.python.framework import op_def_registry

from tfpipe_jobs.serving_export.graph_view import canonical, input_ref

# Stateful ops whose position in the order nothing can observe: an input, and an input
# check (`Assert`). An edge straight from an Assert is kept (its check must fail before the
# op it guards sees the bad input); an Assert further up a cone does not keep an edge.
_ORDERS_NOTHING = frozenset({"Placeholder", "Assert"})


def _is_stateful(op: str) -> bool:
    op_def = op_def_registry.get(op)
    return op_def is None or op_def.is_stateful


def drop_stateless_control_edges(graph_def: graph_pb2.GraphDef) -> int:
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


def prune(graph_def: graph_pb2.GraphDef, keep: list[str]) -> int:
    """Delete every node that `keep` (tensor or node names) does not need; returns how many."""
    nodes = {n.name: n for n in graph_def.node}
    needed: set[str] = set()
    stack = [canonical(k).split(":")[0] for k in keep]
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


def drop_control_on_inputs(graph_def: graph_pb2.GraphDef, inputs: list[str]) -> None:
    """Remove control edges from the graph's inputs: an input is ready before anything
    runs, and importing the graph maps only data edges onto the caller's tensors."""
    placeholders = {"^" + input_ref(canonical(n)).split(":")[0] for n in inputs}
    for node in graph_def.node:
        kept = [i for i in node.input if i not in placeholders]
        if len(kept) != len(node.input):
            del node.input[:]
            node.input.extend(kept)


def rename_functions(graph_def: graph_pb2.GraphDef) -> None:
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
