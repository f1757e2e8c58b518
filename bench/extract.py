"""Extraction benchmark: the extract_transform step vs the pandas script a data scientist writes first.

On one day of N synthetic events, in separate processes (so each peak memory is its own):
  (a) `tfpipe-job extract_transform` (the analyzers in DuckDB's SQL, then one Beam pass through the
      tf.Transform graph -> gzipped TFRecords, vocabularies, statistics, raw eval rows);
      with `--compare-with REF`, also git commit REF's version of the step, in the same run;
  (b) a plain script doing the same transforms: the whole query into pandas, z-scores,
      quantile buckets, top-k vocabularies with OOV hashing, hashed strings, a hash split,
      and one tf.train.Example per row written with tf.io.TFRecordWriter.
Targets: (a) >= 5x (b) at 1M rows and >= 250K rows/s at 10M rows; (a)'s peak memory flat 1M -> 10M.
Peak memory is given for the largest process and for all of a step's processes together
(local Beam workers are processes of their own).

    .venv-jobs/bin/python bench/extract.py --rows 1000000 10000000 --workers 1 2 --compare-with 36fa2aa
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import date
from pathlib import Path

from common import SPEC, baseline_code, fresh_workspace, run_measured

from tfpipe_jobs.tools import sample_data

DS = date(2026, 11, 21)


def pandas_script(warehouse: str, out_dir: str) -> dict:
    """The baseline: everything in memory, one Python call per row to build examples."""
    import duckdb
    import numpy as np
    import pandas as pd
    import tensorflow as tf

    from tfpipe_operators.features import FeatureKind
    from tfpipe_operators.spec import load_spec
    from tfpipe_operators.warehouse import DuckDBWarehouse, open_warehouse, to_duckdb

    spec = load_spec(SPEC)
    opened = open_warehouse(warehouse)
    assert isinstance(opened, DuckDBWarehouse)
    with duckdb.connect(opened.path, read_only=True) as con:
        df = con.execute(to_duckdb(spec.source_sql), {"ds": DS, "lookback_days": 0}).df()
    hashed_keys = pd.util.hash_pandas_object(df[spec.keys].astype(str), index=False).to_numpy()
    is_eval = (hashed_keys % 100) < 20
    train = df[~is_eval]
    columns: dict[str, np.ndarray] = {}
    for f in spec.raw_features:
        col = df[f.name]
        if f.kind is FeatureKind.NUMERIC:
            mean, std = train[f.name].mean(), train[f.name].std() or 1.0
            columns[f.name + "_xf"] = ((col.fillna(mean) - mean) / std).to_numpy(np.float32)
        elif f.kind is FeatureKind.BUCKETIZED:
            edges = np.nanquantile(train[f.name].to_numpy(float), np.linspace(0, 1, f.buckets + 1)[1:-1])
            ids = np.digitize(col.fillna(train[f.name].mean()).to_numpy(float), edges)
            columns[f.name + "_xf"] = np.where(col.isna(), f.buckets, ids).astype(np.int64)
        elif f.kind is FeatureKind.VOCABULARY:
            counts = train[f.name].astype(str).value_counts()
            counts = counts[counts >= f.frequency_threshold].head(f.top_k)
            index = {v: i for i, v in enumerate(counts.index)}
            values = col.astype(str)
            oov = len(index) + tf.strings.to_hash_bucket_fast(values.to_numpy(), f.oov_buckets).numpy()
            columns[f.name + "_xf"] = np.where(values.isin(index), values.map(index).fillna(0), oov).astype(np.int64)
        else:
            columns[f.name + "_xf"] = tf.strings.to_hash_bucket_fast(
                col.fillna("").astype(str).to_numpy(), f.buckets
            ).numpy()
    for f in spec.features:
        if f.kind is FeatureKind.CROSS:  # the crossed values joined, hashed (bucket ids for bucketized ones)
            parts = [
                pd.Series(columns[name + "_xf"]).astype(str)
                if spec.feature_by_name[name].kind is FeatureKind.BUCKETIZED
                else df[name].fillna("").astype(str)
                for name in f.crosses or []
            ]
            joined = parts[0].str.cat(parts[1:], sep="\x1f")
            columns[f.name + "_xf"] = tf.strings.to_hash_bucket_fast(joined.to_numpy(), f.buckets).numpy()
    columns["__label"] = df[spec.label.column].to_numpy(np.int64)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    names = list(columns)
    for split, mask in (("train", ~is_eval), ("eval", is_eval)):
        Path(out_dir, split).mkdir(parents=True, exist_ok=True)
        with tf.io.TFRecordWriter(str(Path(out_dir, split, "part-0.tfrecord.gz")), options) as writer:
            rows = np.flatnonzero(mask)
            for i in rows:
                feature = {}
                for name in names:
                    value = columns[name][i]
                    if isinstance(value, np.floating):
                        feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
                    else:
                        feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return {"rows": len(df), "eval_rows": int(is_eval.sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1], help="extract.direct_num_workers to try")
    parser.add_argument(
        "--compare-with", metavar="REF", help="also run this git commit's extract_transform, side by side"
    )
    parser.add_argument("--pandas-only", metavar="OUT_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--warehouse", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pandas_only:
        import json

        print("TFPIPE_RESULT " + json.dumps(pandas_script(args.warehouse, args.pandas_only)))
        return

    with tempfile.TemporaryDirectory(prefix="tfpipe-bench-extract-") as tmp:
        versions: dict[str, Path | None] = {"this checkout": None}
        if args.compare_with:
            versions[args.compare_with] = baseline_code(args.compare_with, Path(tmp))
        figures = measure(args.rows, args.workers, versions)
    report(figures, args.workers, list(versions))


def measure(rows_list: list[int], workers_list: list[int], versions: dict[str, Path | None]) -> list[tuple]:
    figures = []
    for rows in rows_list:
        ws = fresh_workspace(f"extract-{rows}")
        sample_data.generate(str(ws.warehouse_file), DS, days=1, rows_per_day=rows, candidates_per_day=1000)
        script = run_measured(
            [sys.executable, __file__, "--pandas-only", str(ws.root / "pandas"), "--warehouse", ws.warehouse]
        )
        print(
            f"{rows:,} rows: pandas script {rows / script.seconds:,.0f} rows/s "
            f"({script.seconds:.0f}s, {script.peak_mb:,.0f} MB)",
            flush=True,
        )
        for workers in workers_list:
            for name, code in versions.items():
                sets = ("extract.lookback_days=0", f"extract.direct_num_workers={workers}")
                step = ws.step("extract_transform", DS.isoformat(), *sets, code=code)
                assert step.result["rows_read"] == rows, step.result
                figures.append((name, rows, workers, step, script))
                print(
                    f"{rows:,} rows, {name}: extract with {workers} worker(s) {rows / step.seconds:,.0f} rows/s "
                    f"({step.seconds:.0f}s, largest process {step.peak_mb:,.0f} MB, all processes "
                    f"{step.peak_tree_mb:,.0f} MB)",
                    flush=True,
                )
    return figures


def report(figures: list[tuple], workers_list: list[int], names: list[str]) -> None:
    print(
        f"\n{'code':<14} {'rows':<11} workers  extract rows/s  MB (largest / all)  pandas rows/s  pandas MB"
        "  extract/pandas speed"
    )
    for name, rows, workers, step, script in figures:
        mb = f"{step.peak_mb:,.0f} / {step.peak_tree_mb:,.0f}"
        print(
            f"{name:<14} {rows:<11,} {workers:>7} {rows / step.seconds:>15,.0f} {mb:>19} "
            f"{rows / script.seconds:>14,.0f} {script.peak_mb:>10,.0f} {script.seconds / step.seconds:>20.2f}x"
        )
    print("targets: >= 5x the pandas script at 1M rows, >= 250,000 rows/s at 10M rows, memory flat")
    for name in names:
        for workers in workers_list:
            runs = [(rows, step) for n, rows, w, step, _ in figures if w == workers and n == name]
            if len(runs) > 1:
                (small, first), (large, last) = runs[0], runs[-1]
                print(
                    f"{name} ({workers} worker(s)) peak memory {large:,} vs {small:,} rows: "
                    f"{last.peak_mb / first.peak_mb:.2f}x largest process, "
                    f"{last.peak_tree_mb / first.peak_tree_mb:.2f}x all processes"
                )


if __name__ == "__main__":
    main()
