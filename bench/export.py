"""Serving export benchmark: the plain SavedModel vs each optimised export, same model.

After a real extract_transform and train on one day of N synthetic events (default 200K),
this process builds, from that one trained model and transform output:
  plain    the SavedModel saved straight from the trained model + transform (variables,
           no freezing, no Grappler pass at export)              - the baseline;
  frozen   variables folded into constants, no Grappler pass       (export.optimize=false);
  default  frozen, rewritten and Grappler-optimised, each signature one flat function
           (sparse round trip of dense raw columns removed, table sizes folded,
           peepholes, dead control edges and nodes dropped)  (what the step publishes);
  xla      default + the dense part XLA-compiled                  (export.xla=true).
plus a floor: signatures with the same inputs returning zeros (the cost of a call itself).
Each is saved, loaded back with `tf.saved_model.load` and called from Python through its
signatures: batch 1 latency (p50, p99 over --calls calls, each on a different eval row)
with serialized tf.Examples (`serving_default`) and with raw tensors (`predict_raw`), and
rows/s at batch 4096. Variants are measured in interleaved rounds, so load from other
processes on the machine spreads over all of them. Prints figures; asserts nothing.
Target (issue 5): default >= 1.5x plain at batch 1, and no slower at any shape.

    .venv-jobs/bin/python bench/export.py --rows 200000
    .venv-jobs/bin/python bench/export.py --reuse   # same trained model, variants rebuilt
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import numpy as np
from common import REPO, SPEC, Workspace, fresh_workspace

from tfpipe_jobs import sample_data

DS = date(2026, 11, 21)
BIG = 4096
VARIANTS = {
    "plain": {"plain": True},
    "frozen": {"optimize": False},
    "default": {},
    "xla": {"xla": True},
}


def build_variants(ws: Workspace) -> tuple[dict[str, str], Any, Any]:
    """Save every variant from the same trained model; their paths, the spec and eval rows."""
    import tensorflow_transform as tft
    import tf_keras as keras

    from tfpipe_jobs.serving_export import export
    from tfpipe_operators.spec import ExportConfig, load_spec

    spec = load_spec(SPEC)
    day = ws.artifacts / "ctr" / DS.isoformat()
    tft_output = tft.TFTransformOutput(str(day / "data"))
    model = keras.models.load_model(str(day / "model" / "keras_model"), compile=False)
    shutil.rmtree(ws.root / "variants", ignore_errors=True)
    paths = {}
    for name, options in VARIANTS.items():
        plain = bool(options.get("plain"))
        config = ExportConfig(**{k: v for k, v in options.items() if k != "plain"})
        paths[name] = str(ws.root / "variants" / name)
        started = time.perf_counter()
        export.save(export.ServingModule(spec, model, tft_output, config, plain=plain), paths[name])
        print(f"  built {name:<8} in {time.perf_counter() - started:5.1f}s", flush=True)
    paths["floor"] = str(ws.root / "variants" / "floor")
    save_floor(spec, paths["floor"])
    return paths, spec, export.read_eval_raw(str(day / "data"), max_rows=20_000)


def save_floor(spec: Any, path: str) -> None:
    """Signatures with the same inputs that return zeros: what calling any SavedModel
    signature from Python costs, whatever the model (no variant can go below it)."""
    import tensorflow as tf

    from tfpipe_jobs.serving_export.export import _TF_TYPES

    raw_specs = {f.name: tf.TensorSpec([None], _TF_TYPES[f.raw_type], name=f.name) for f in spec.raw_features}

    class Floor(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"probability": tf.zeros(tf.shape(examples), tf.float32)}

        @tf.function(input_signature=[raw_specs])
        def raw(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            return {"probability": tf.zeros(tf.shape(features[spec.raw_features[0].name]), tf.float32)}

    floor = Floor()
    tf.saved_model.save(floor, path, signatures={"serving_default": floor.examples, "predict_raw": floor.raw})


def interleaved(calls: dict[str, list[Callable[[], Any]]], rounds: int) -> dict[str, np.ndarray]:
    """Seconds per call; every variant runs a slice of its calls in each round."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for fns in calls.values():
        for fn in fns[:20]:  # warm up: tracing, XLA compilation, first allocations
            fn()
    for r in range(rounds):
        for name, fns in calls.items():
            for fn in fns[r::rounds]:
                started = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - started)
    return {name: np.array(t) for name, t in times.items()}


def measure(paths: dict[str, str], spec: Any, table: Any, n_calls: int) -> dict[str, dict[str, float]]:
    import tensorflow as tf

    from tfpipe_jobs.beam_jobs.arrow_batches import model_inputs
    from tfpipe_jobs.serving_export.export import raw_examples

    examples = raw_examples(spec, table)
    raw = model_inputs(spec, table)
    rows = [i % table.num_rows for i in range(n_calls)]
    one_ex = [tf.constant(examples[i : i + 1]) for i in rows]
    one_raw = [{k: tf.constant(v[i : i + 1]) for k, v in raw.items()} for i in rows]
    big_ex = tf.constant(examples[:BIG])
    big_raw = {k: tf.constant(v[:BIG]) for k, v in raw.items()}
    sigs = {name: tf.saved_model.load(path).signatures for name, path in paths.items()}

    def calls(signature: str, inputs: list[Any]) -> dict[str, list[Callable[[], Any]]]:
        out: dict[str, list[Callable[[], Any]]] = {}
        for name, s in sigs.items():
            fn = s[signature]
            if signature == "serving_default":
                out[name] = [lambda fn=fn, x=x: fn(examples=x) for x in inputs]
            else:
                out[name] = [lambda fn=fn, x=x: fn(**x) for x in inputs]
        return out

    results: dict[str, dict[str, float]] = {name: {} for name in paths}
    for label, signature, inputs in (("examples", "serving_default", one_ex), ("raw", "predict_raw", one_raw)):
        for name, t in interleaved(calls(signature, inputs), rounds=40).items():
            results[name][f"{label} p50 us"] = float(np.percentile(t, 50) * 1e6)
            results[name][f"{label} p99 us"] = float(np.percentile(t, 99) * 1e6)
        print(f"  batch 1 {label} done", flush=True)
    for label, signature, big in (("examples", "serving_default", big_ex), ("raw", "predict_raw", big_raw)):
        timed = interleaved(calls(signature, [big] * 60), rounds=20)
        for name, t in timed.items():
            results[name][f"{label} rows/s @{BIG}"] = BIG / float(np.median(t))
        print(f"  batch {BIG} {label} done", flush=True)
    return results


def print_table(results: dict[str, dict[str, float]]) -> None:
    columns = list(next(iter(results.values())))
    print("\nvariant  " + "  ".join(f"{c:>20}" for c in columns))
    for name, row in results.items():
        print(f"{name:<8} " + "  ".join(f"{row[c]:>20,.0f}" for c in columns))
    plain = results["plain"]
    floor = results.pop("floor")
    print(
        f"\nfloor (a signature returning zeros: the cost of any call from Python): examples p50 "
        f"{floor['examples p50 us']:,.0f} us, raw p50 {floor['raw p50 us']:,.0f} us"
    )
    print("\nspeed-up vs plain (>1 is faster; latency: plain/variant, throughput: variant/plain)")
    for name, row in results.items():
        if name == "plain":
            continue
        ratios = [
            plain[c] / row[c] if c.endswith(" us") else row[c] / plain[c]
            for c in columns  # latency: lower is better; throughput: higher is better
        ]
        print(f"{name:<8} " + "  ".join(f"{r:>19.2f}x" for r in ratios))
    default, base = results["default"], results["plain"]
    print(
        f"\ndefault/plain at batch 1 (p50): examples {base['examples p50 us'] / default['examples p50 us']:.2f}x, "
        f"raw {base['raw p50 us'] / default['raw p50 us']:.2f}x (target >= 1.5x)"
    )
    above = {
        k: (base[f"{k} p50 us"] - floor[f"{k} p50 us"]) / (default[f"{k} p50 us"] - floor[f"{k} p50 us"])
        for k in ("examples", "raw")
    }
    print(f"above the floor (the model's own time): examples {above['examples']:.2f}x, raw {above['raw']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--calls", type=int, default=2000, help="batch-1 calls per variant and signature")
    parser.add_argument(
        "--reuse", action="store_true", help="keep the last run's data and trained model (a second run to compare)"
    )
    args = parser.parse_args()
    model = REPO / ".tfpipe" / "bench" / "export" / "artifacts" / "ctr" / DS.isoformat() / "model" / "_SUCCESS"
    if args.reuse and model.exists():
        ws = Workspace(model.parents[4])
        print(f"reusing the data and model under {ws.root}", flush=True)
    else:
        ws = fresh_workspace("export")
        sample_data.generate(
            ws.warehouse.removeprefix("duckdb://"), DS, days=1, rows_per_day=args.rows, candidates_per_day=1000
        )
        for step in ("extract", "train"):
            run = ws.step(step, DS.isoformat(), "extract.lookback_days=0")
            print(f"{step}: {args.rows:,} rows in {run.seconds:.0f}s", flush=True)
    paths, spec, table = build_variants(ws)
    results = measure(paths, spec, table, args.calls)
    print_table(results)


if __name__ == "__main__":
    main()
