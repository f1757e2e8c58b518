"""Training benchmark on CPU: input pipeline vs model speed, per architecture, and quality.

On one day of N synthetic events (default 1M), after a real extract_transform:
  - input pipeline alone: examples/s of the tf.data pipeline over the train TFRecords;
  - each architecture: examples/s of one training epoch (tracing excluded);
  - quality: the default configuration trained by the real `train` step, exported and
    evaluated; its eval AUC against the Bayes-optimal AUC of the generator's true click
    probabilities on the same eval rows (target: ratio >= 0.98).

    .venv-jobs/bin/python bench/train.py --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date

from common import SPEC, fresh_workspace

from tfpipe_jobs import sample_data

DS = date(2026, 11, 21)


def input_pipeline_rate(data_dir: str, batch_size: int) -> float:
    import tensorflow_transform as tft

    from tfpipe_jobs.training import input_pipeline

    spec = tft.TFTransformOutput(data_dir).transformed_feature_spec()
    ds = input_pipeline.dataset(input_pipeline.files(data_dir, "train"), spec, batch_size, shuffle=True, seed=1)
    n, started = 0, time.perf_counter()
    for _, label in ds:
        n += int(label.shape[0])
    return n / (time.perf_counter() - started)


def architecture_rate(data_dir: str, architecture: str, batch_size: int) -> float:
    import tensorflow_transform as tft
    import tf_keras as keras

    from tfpipe_jobs.beam_jobs.preprocessing import cardinality
    from tfpipe_jobs.training import input_pipeline, models
    from tfpipe_operators.spec import TrainConfig, load_spec

    spec = load_spec(SPEC)
    out = tft.TFTransformOutput(data_dir)
    cards = {f.name: cardinality(f, out) for f in spec.features if f.is_categorical}
    cfg = TrainConfig(architecture=architecture, batch_size=batch_size)
    model = models.build(spec.features, cards, spec.label.task, spec.label.num_classes, cfg)
    ds = input_pipeline.dataset(
        input_pipeline.files(data_dir, "train"), out.transformed_feature_spec(), batch_size, shuffle=True, seed=1
    )

    class Timer(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if batch == 0:
                self.start = time.perf_counter()  # after the first step: tracing excluded
            self.last = batch

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.seconds = time.perf_counter() - self.start

    timer = Timer()
    model.fit(ds, epochs=1, callbacks=[timer], verbose=0)
    return timer.last * batch_size / timer.seconds


def bayes_ratio(ws) -> tuple[float, float]:
    import duckdb
    import pyarrow.parquet as pq

    from tfpipe_jobs.metrics import roc_auc

    day = ws.artifacts / "ctr" / DS.isoformat()
    evaluation = json.loads((day / "eval" / "evaluation.json").read_text())
    keys = pq.read_table(day / "data" / "eval_raw").column("event_id").to_pylist()
    with duckdb.connect(ws.warehouse.removeprefix("duckdb://"), read_only=True) as con:
        con.execute("CREATE TEMP TABLE k (event_id VARCHAR)")
        con.executemany("INSERT INTO k VALUES (?)", [[k] for k in keys])
        truth = con.execute("SELECT true_ctr, clicked FROM events JOIN k USING (event_id)").fetchnumpy()
    return evaluation["metrics"]["new"]["auc"], roc_auc(truth["clicked"], truth["true_ctr"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    ws = fresh_workspace("train")
    sample_data.generate(
        ws.warehouse.removeprefix("duckdb://"), DS, days=1, rows_per_day=args.rows, candidates_per_day=1000
    )
    extract = ws.step("extract", DS.isoformat(), "extract.lookback_days=0")
    print(f"extract_transform: {args.rows:,} rows in {extract.seconds:.0f}s", flush=True)
    data_dir = str(ws.artifacts / "ctr" / DS.isoformat() / "data")

    pipeline = input_pipeline_rate(data_dir, args.batch_size)
    print(f"input pipeline alone: {pipeline:,.0f} examples/s (batch {args.batch_size})", flush=True)
    from tfpipe_jobs.training.models import ARCHITECTURES

    rates = {}
    for name in sorted(ARCHITECTURES):
        rates[name] = architecture_rate(data_dir, name, args.batch_size)
        print(
            f"  {name:<10} {rates[name]:>10,.0f} examples/s training; input pipeline is "
            f"{pipeline / rates[name]:.1f}x that",
            flush=True,
        )

    train = ws.step("train", DS.isoformat(), "extract.lookback_days=0")
    for step in ("export", "evaluate"):
        ws.step(step, DS.isoformat(), "extract.lookback_days=0")
    auc, bayes = bayes_ratio(ws)
    print(
        f"\ndefault config ({train.result['architecture']}, {train.result['epochs']} epochs, "
        f"{train.seconds:.0f}s): eval AUC {auc:.4f}, Bayes-optimal {bayes:.4f}, ratio {auc / bayes:.4f} (target 0.98)"
    )
    print("\narchitecture  examples/s  input/model")
    for name, rate in rates.items():
        print(f"{name:<13} {rate:>10,.0f}  {pipeline / rate:>10.1f}x")


if __name__ == "__main__":
    main()
