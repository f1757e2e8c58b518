"""Training benchmark on CPU: input pipeline vs model speed, per architecture, and quality.

On one day of N synthetic events (default 1M), after a real extract_transform:
  - input pipeline alone: examples/s of the train dataset as the `train` step builds it
    (spec config), for the first epoch (read + parse) and a later one (parsed cache);
  - each architecture: examples/s of one training epoch with the spec's train config
    (tracing excluded; data held in memory so only the model is timed);
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

from tfpipe_jobs.tools import sample_data

DS = date(2026, 11, 21)


def _spec_train_config(**changes: object):
    from tfpipe_operators.config import resolve_config
    from tfpipe_operators.spec import load_spec

    spec = load_spec(SPEC)
    return spec, resolve_config(spec, environ={}).train.model_copy(update=changes)


def input_pipeline_rates(data_dir: str, epochs: int = 2) -> list[float]:
    """examples/s of the train dataset exactly as `train` builds it, one figure per epoch:
    the first reads, decompresses and parses the TFRecords (and writes the parsed cache),
    later ones read the cache; shuffling runs on every epoch. Batches are pulled inside a
    compiled loop, as `fit` pulls them."""
    import tempfile

    import tensorflow_transform as tft

    from tfpipe_jobs.training import input_pipeline

    _, cfg = _spec_train_config()
    spec = tft.TFTransformOutput(data_dir).transformed_feature_spec()
    rates = []
    with tempfile.TemporaryDirectory() as cache_dir:
        ds = input_pipeline.dataset(
            input_pipeline.files(data_dir, "train"),
            spec,
            cfg.batch_size,
            shuffle=True,
            seed=cfg.seed,
            shuffle_buffer=cfg.shuffle_buffer,
            cache_file=f"{cache_dir}/train" if cfg.cache_parsed else None,
            rows_per_record=input_pipeline.rows_per_record(data_dir),
        )
        count_rows = _row_counter(ds)
        for _ in range(epochs):
            started, cpu = time.perf_counter(), time.process_time()
            n = int(count_rows(ds))
            seconds = time.perf_counter() - started
            rates.append(n / seconds)
            cpu_us = (time.process_time() - cpu) / n * 1e6
            cores = cpu_us * n / 1e6 / seconds
            print(f"  input epoch: {n:,} rows, {cpu_us:.2f} us of CPU per row, {cores:.2f} cores busy", flush=True)
    return rates


def _row_counter(ds):
    """A traced function giving the rows of one pass over `ds`, pulled by a graph loop: `fit`
    takes each batch inside its compiled train step, so no per-batch Python conversion is
    charged to the input pipeline."""
    import tensorflow as tf

    @tf.function
    def count(ds):
        n = tf.constant(0, tf.int64)
        for _, label in ds:
            n += tf.shape(label, out_type=tf.int64)[0]
        return n

    count.get_concrete_function(ds)  # traced here: tracing is not timed, as for the model's rate
    return count


def architecture_rate(data_dir: str, architecture: str) -> float:
    """examples/s of one training epoch of `architecture` with the spec's train config
    (tracing excluded), fed by the in-memory parsed data so only the model is timed."""
    import tensorflow as tf
    import tensorflow_transform as tft
    import tf_keras as keras

    from tfpipe_jobs.preprocessing import cardinality
    from tfpipe_jobs.training import input_pipeline, models

    spec, cfg = _spec_train_config(architecture=architecture)
    out = tft.TFTransformOutput(data_dir)
    cards = {f.name: cardinality(f, out) for f in spec.features if f.is_categorical}
    model = models.build(spec.features, cards, spec.label.task, spec.label.num_classes, cfg)
    parsed = input_pipeline.dataset(
        input_pipeline.files(data_dir, "train"),
        out.transformed_feature_spec(),
        cfg.batch_size,
        shuffle=False,
        seed=1,
        rows_per_record=input_pipeline.rows_per_record(data_dir),
    )
    # Held in memory: the model's rate must not depend on how fast the input is.
    ds = parsed.cache().prefetch(tf.data.AUTOTUNE)
    for _ in ds:
        pass

    class Timer(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if batch == 0:
                self.start = time.perf_counter()  # after the first step: tracing excluded
            self.last = batch

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.seconds = time.perf_counter() - self.start

    timer = Timer()
    model.fit(ds, epochs=1, callbacks=[timer], verbose=0)
    return timer.last * cfg.batch_size / timer.seconds


def bayes_ratio(ws) -> tuple[float, float]:
    import duckdb
    import pyarrow.parquet as pq

    from tfpipe_jobs.metrics import roc_auc

    day = ws.artifacts / "ctr" / DS.isoformat()
    evaluation = json.loads((day / "eval" / "evaluation.json").read_text())
    keys = pq.read_table(day / "data" / "eval_raw").column("event_id").to_pylist()
    with duckdb.connect(str(ws.warehouse_file), read_only=True) as con:
        con.execute("CREATE TEMP TABLE k (event_id VARCHAR)")
        con.executemany("INSERT INTO k VALUES (?)", [[k] for k in keys])
        truth = con.execute("SELECT true_ctr, clicked FROM events JOIN k USING (event_id)").fetchnumpy()
    return evaluation["metrics"]["new"]["auc"], roc_auc(truth["clicked"], truth["true_ctr"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    ws = fresh_workspace("train")
    sample_data.generate(str(ws.warehouse_file), DS, days=1, rows_per_day=args.rows, candidates_per_day=1000)
    extract = ws.step("extract_transform", DS.isoformat(), "extract.lookback_days=0")
    print(f"extract_transform: {args.rows:,} rows in {extract.seconds:.0f}s", flush=True)
    data_dir = str(ws.artifacts / "ctr" / DS.isoformat() / "data")

    first, cached = input_pipeline_rates(data_dir)
    print(
        f"input pipeline alone: {first:,.0f} examples/s in the first epoch (read, decompress, parse), "
        f"{cached:,.0f} examples/s in later epochs (parsed cache)",
        flush=True,
    )
    from tfpipe_jobs.training.models import ARCHITECTURES

    rates = {}
    for name in sorted(ARCHITECTURES):
        rates[name] = architecture_rate(data_dir, name)
        print(
            f"  {name:<10} {rates[name]:>10,.0f} examples/s training; input pipeline is "
            f"{first / rates[name]:.1f}x that in the first epoch, {cached / rates[name]:.1f}x later",
            flush=True,
        )

    train = ws.step("train", DS.isoformat(), "extract.lookback_days=0")
    for step in ("export_serving_model", "evaluate_gate"):
        ws.step(step, DS.isoformat(), "extract.lookback_days=0")
    auc, bayes = bayes_ratio(ws)
    print(
        f"\ndefault config ({train.result['architecture']}, {train.result['epochs']} epochs, kept epoch "
        f"{train.result['kept_epoch']}, "
        f"{train.seconds:.0f}s): eval AUC {auc:.4f}, Bayes-optimal {bayes:.4f}, ratio {auc / bayes:.4f} (target 0.98)"
    )
    print("\narchitecture  examples/s  input/model (first epoch)  input/model (later epochs)")
    for name, rate in rates.items():
        print(f"{name:<13} {rate:>10,.0f}  {first / rate:>25.1f}x  {cached / rate:>25.1f}x")


if __name__ == "__main__":
    main()
