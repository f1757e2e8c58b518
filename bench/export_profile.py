"""Where a batch-1 call of a serving signature spends its time, per variant of the export benchmark.

Runs `--calls` batch-1 calls of each variant's signature under TensorFlow's profiler (host
tracer, no Python tracer) and prints, per call: the whole call as Python sees it, the
part inside the runtime (`TFE_Py_Execute`, of it `KernelAndDeviceFunc::Run`, of that the
executor's node processing `ExecutorState::Process` summed over its threads), so the rest
is Python-side argument and capture handling; then the ops the tracer times on their own
(the expensive ones: parsing, matrix products). The profiler adds its own overhead, so
compare variants within one run rather than with `export.py`'s latencies.

Needs the variants of a previous `bench/export.py` run (`make bench-export`).

    .venv-jobs/bin/python bench/export_profile.py [--signature serving_default] [--variants plain default floor]
"""

from __future__ import annotations

import argparse
import collections
import glob
import tempfile
from pathlib import Path
from typing import Any

from common import REPO, SPEC

VARIANTS_DIR = REPO / ".tfpipe" / "bench" / "export" / "variants"
DATA_DIR = REPO / ".tfpipe" / "bench" / "export" / "artifacts" / "ctr" / "2026-11-21" / "data"
# Trace events that nest: each is part of the one before it.
LAYERS = ("TFE_Py_ExecuteCancelable", "KernelAndDeviceFunc::Run", "ExecutorState::Process")


def batch_one_inputs(signature: str, calls: int) -> list[dict[str, Any]]:
    import tensorflow as tf

    from tfpipe_jobs.arrow_batches import model_inputs
    from tfpipe_jobs.eval_rows import read_eval_raw
    from tfpipe_jobs.serving_export.export_serving_model import raw_examples
    from tfpipe_operators.spec import load_spec

    spec = load_spec(SPEC)
    table = read_eval_raw(str(DATA_DIR), max_rows=calls)
    if signature == "predict_raw":
        raw = model_inputs(spec, table)
        return [{k: tf.constant(v[i : i + 1]) for k, v in raw.items()} for i in range(table.num_rows)]
    examples = raw_examples(spec, table)
    return [{"examples": tf.constant(examples[i : i + 1])} for i in range(table.num_rows)]


def profile(path: Path, signature: str, inputs: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    """Microseconds per call of each traced event, summed over threads: (call layers, ops)."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    fn = tf.saved_model.load(str(path)).signatures[signature]
    for x in inputs[:100]:  # warm up: instantiation and first allocations stay out of the trace
        fn(**x)
    logdir = tempfile.mkdtemp(prefix=f"tfpipe-profile-{path.name}-")
    options = tf.profiler.experimental.ProfilerOptions(host_tracer_level=3, python_tracer_level=0)
    tf.profiler.experimental.start(logdir, options=options)
    for x in inputs:
        fn(**x)
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    space.ParseFromString(Path(sorted(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True))[-1]).read_bytes())
    totals: collections.Counter[str] = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                totals[plane.event_metadata[event.metadata_id].name] += event.duration_ps
    per_call = {name: ps / 1e6 / len(inputs) for name, ps in totals.items()}
    wrapper = max((n for n in per_call if n.startswith("signature_wrapper")), key=per_call.__getitem__)
    layers = {"call": per_call[wrapper], **{name: per_call.get(name, 0.0) for name in LAYERS}}
    # Ops the tracer times individually show up as "<node name>:<op type>".
    ops = {
        name: us
        for name, us in per_call.items()
        if name.count(":") == 1 and not name.startswith(("EagerLocalExecute", "signature_wrapper"))
    }
    return layers, ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signature", default="serving_default", choices=["serving_default", "predict_raw"])
    parser.add_argument("--variants", nargs="+", default=["plain", "default", "floor"])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--top", type=int, default=8, help="individually timed ops to list per variant")
    args = parser.parse_args()
    missing = [v for v in args.variants if not (VARIANTS_DIR / v / "saved_model.pb").exists()]
    if missing:
        raise SystemExit(f"no variants {missing} under {VARIANTS_DIR}: run `make bench-export` first")
    inputs = batch_one_inputs(args.signature, args.calls)
    print(f"{args.signature}, batch 1, {len(inputs)} calls per variant; microseconds per call (profiler on)")
    print(f"{'variant':<9}{'whole call':>11}{'python side':>12}{'runtime':>9}{'of it run':>10}{'executor nodes':>15}")
    for variant in args.variants:
        layers, ops = profile(VARIANTS_DIR / variant, args.signature, inputs)
        execute, run, process = (layers[name] for name in LAYERS)
        print(
            f"{variant:<9}{layers['call']:>11.0f}{layers['call'] - execute:>12.0f}{execute:>9.0f}{run:>10.0f}"
            f"{process:>15.0f}"
        )
        for name, us in sorted(ops.items(), key=lambda item: -item[1])[: args.top]:
            node, _, op = name.rpartition(":")
            print(f"{'':<9}{us:>11.1f}  {op:<26} {node.split('/')[-2] if '/' in node else node}")


if __name__ == "__main__":
    main()
