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
rows/s at batch 4096. Variants are measured in interleaved rounds (the order reversed every
other round), so load from other processes on the machine falls on all of them alike; each
figure is a median over rounds, and each speed-up is computed within a round (plain and the
variant measured moments apart) and reported as the median over rounds with its quartiles.
Prints figures; asserts nothing.
Target (issue 5): default >= 1.5x plain at batch 1, and no slower at any shape.

    .venv-jobs/bin/python bench/export.py --rows 200000
    .venv-jobs/bin/python bench/export.py --reuse   # same trained model, variants rebuilt
    TF_NUM_INTEROP_THREADS=1 TF_ENABLE_ONEDNN_OPTS=0 .venv-jobs/bin/python bench/export.py --reuse
                                                    # both under a batch-1 server's settings
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import numpy as np
from common import REPO, SPEC, Workspace, fresh_workspace

from tfpipe_jobs.tools import sample_data

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

    from tfpipe_jobs import eval_rows
    from tfpipe_jobs.serving_export import export_serving_model as export
    from tfpipe_operators.config import ExportConfig
    from tfpipe_operators.spec import load_spec

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
    return paths, spec, eval_rows.read_eval_raw(str(day / "data"), max_rows=20_000)


def save_floor(spec: Any, path: str) -> None:
    """Signatures with the same inputs that return zeros: what calling any SavedModel
    signature from Python costs, whatever the model (no variant can go below it)."""
    import tensorflow as tf

    from tfpipe_jobs.serving_export.export_serving_model import _TF_TYPES

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


def interleaved(calls: dict[str, list[Callable[[], Any]]], rounds: int) -> dict[str, list[np.ndarray]]:
    """Seconds per call, per round: in each round every variant runs its next slice of calls,
    in an order reversed every other round, so that each round's figures of all variants
    were taken under the same load from the rest of the machine."""
    times: dict[str, list[np.ndarray]] = {name: [] for name in calls}
    for fns in calls.values():
        for fn in fns[:20]:  # warm up: tracing, XLA compilation, first allocations
            fn()
    names = list(calls)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            taken = []
            for fn in calls[name][r::rounds]:
                started = time.perf_counter()
                fn()
                taken.append(time.perf_counter() - started)
            times[name].append(np.array(taken))
    return times


Figures = dict[str, dict[str, float]]
# name -> metric -> (median, first quartile, third quartile) of the per-round speed-ups vs plain
Ratios = dict[str, dict[str, tuple[float, float, float]]]


def summarise(times: dict[str, list[np.ndarray]], metric: str, rows: int, results: Figures, ratios: Ratios) -> None:
    """Per variant: the median over rounds of each round's median (and, at batch 1, the p99
    over every call); per variant, the speed-up vs plain is computed round by round (the two
    measured moments apart) and summarised by its median and quartiles."""
    per_round = {name: np.array([np.median(t) for t in rounds]) for name, rounds in times.items()}
    for name, medians in per_round.items():
        if rows == 1:
            results[name][f"{metric} p50 us"] = float(np.median(medians) * 1e6)
            results[name][f"{metric} p99 us"] = float(np.percentile(np.concatenate(times[name]), 99) * 1e6)
        else:
            results[name][f"{metric} rows/s @{rows}"] = rows / float(np.median(medians))
        speed_ups = per_round["plain"] / medians  # time ratio: > 1 when the variant is faster
        q1, q2, q3 = np.percentile(speed_ups, [25, 50, 75])
        ratios[name][f"{metric} @{rows}"] = (float(q2), float(q1), float(q3))


def measure(paths: dict[str, str], spec: Any, table: Any, n_calls: int) -> tuple[Figures, Ratios]:
    import tensorflow as tf

    from tfpipe_jobs.arrow_batches import model_inputs
    from tfpipe_jobs.serving_export.export_serving_model import raw_examples

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

    results: Figures = {name: {} for name in paths}
    ratios: Ratios = {name: {} for name in paths}
    for label, signature, inputs in (("examples", "serving_default", one_ex), ("raw", "predict_raw", one_raw)):
        summarise(interleaved(calls(signature, inputs), rounds=40), label, 1, results, ratios)
        print(f"  batch 1 {label} done", flush=True)
    for label, signature, big in (("examples", "serving_default", big_ex), ("raw", "predict_raw", big_raw)):
        summarise(interleaved(calls(signature, [big] * 90), rounds=30), label, BIG, results, ratios)
        print(f"  batch {BIG} {label} done", flush=True)
    return results, ratios


def print_table(results: Figures, ratios: Ratios) -> None:
    columns = list(next(iter(results.values())))
    print("\nmedian over rounds (measured on a busy machine)")
    print("variant  " + "  ".join(f"{c:>20}" for c in columns))
    for name, row in results.items():
        print(f"{name:<8} " + "  ".join(f"{row[c]:>20,.0f}" for c in columns))
    floor = results.pop("floor")
    ratios.pop("floor")
    print(
        f"\nfloor (a signature returning zeros: the cost of any call from Python): examples p50 "
        f"{floor['examples p50 us']:,.0f} us, raw p50 {floor['raw p50 us']:,.0f} us"
    )
    shapes = list(next(iter(ratios.values())))
    print("\nspeed-up vs plain, paired round by round: median [quartiles] (>1 is faster)")
    print("variant  " + "  ".join(f"{s:>24}" for s in shapes))
    for name, row in ratios.items():
        if name == "plain":
            continue
        print(f"{name:<8} " + "  ".join(f"{row[s][0]:>9.2f}x [{row[s][1]:.2f}-{row[s][2]:.2f}]" for s in shapes))
    default = ratios["default"]
    batch_1 = min(default["examples @1"][0], default["raw @1"][0])
    slowest = min(v[0] for v in default.values())
    print(
        f"\ntarget: default >= 1.5x plain at batch 1 (median {batch_1:.2f}x: "
        f"{'met' if batch_1 >= 1.5 else 'NOT met'}), no slower at any shape (lowest median "
        f"{slowest:.2f}x: {'met' if slowest >= 1.0 else 'NOT met'})"
    )
    base = results["plain"]
    above = {
        k: (base[f"{k} p50 us"] - floor[f"{k} p50 us"]) / (results["default"][f"{k} p50 us"] - floor[f"{k} p50 us"])
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
        sample_data.generate(str(ws.warehouse_file), DS, days=1, rows_per_day=args.rows, candidates_per_day=1000)
        for step in ("extract_transform", "train"):
            run = ws.step(step, DS.isoformat(), "extract.lookback_days=0")
            print(f"{step}: {args.rows:,} rows in {run.seconds:.0f}s", flush=True)
    # Server settings, read by TensorFlow at start-up; they apply to every variant alike.
    settings = {k: os.environ.get(k, "unset") for k in ("TF_NUM_INTEROP_THREADS", "TF_ENABLE_ONEDNN_OPTS")}
    print("server settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()), flush=True)
    paths, spec, table = build_variants(ws)
    results, ratios = measure(paths, spec, table, args.calls)
    print_table(results, ratios)


if __name__ == "__main__":
    main()
