"""The analyzers computed in the warehouse against tf.Transform's own analyzers on the same rows.

The reference is the transform graph as it was written with tf.Transform's analyzers
(`tft.vocabulary`, `tft.mean`, `tft.var`, `tft.quantiles`), analysed and applied by
tf.Transform on Beam over the very train rows the extract job writes (read through the job's
own split). The warehouse's results must give the same vocabularies and counts, means and
variances within 1e-6 relative, quantile boundaries within tf.Transform's approximation,
and, through the job's analyzer-free graph, the same transformed values.
"""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
import yaml
from tfx_bsl.tfxio import tensor_adapter

from tfpipe_jobs import arrow_batches, preprocessing
from tfpipe_jobs.arrow_batches import SchemaMismatchError
from tfpipe_jobs.artifacts import RunPaths
from tfpipe_jobs.beam_jobs.extract_transform import warehouse_analyzers
from tfpipe_jobs.beam_jobs.extract_transform.pipeline import SplitBatch
from tfpipe_jobs.context import JobContext
from tfpipe_operators.config import resolve_config
from tfpipe_operators.features import LABEL_KEY, FeatureKind, Task, vocabulary_file_for_label
from tfpipe_operators.spec import PipelineSpec, load_spec
from tfpipe_operators.warehouse import open_warehouse

END = date(2026, 11, 21)
CTR_SPEC = Path(__file__).resolve().parents[3] / "dags" / "pipelines" / "ctr" / "pipeline.yaml"


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> str:
    from tfpipe_jobs.tools import sample_data

    path = tmp_path_factory.mktemp("analyzers") / "warehouse.duckdb"
    sample_data.generate(str(path), END, days=1, rows_per_day=20_000, candidates_per_day=100, seed=11)
    return f"duckdb://{path}"


def _context(spec_path: Path, warehouse: str, **overrides: Any) -> JobContext:
    spec = load_spec(spec_path)
    config = resolve_config(spec, environ={}, overrides={"extract.lookback_days": 0, **overrides})
    return JobContext(spec, config, END, RunPaths("/unused", spec.pipeline, END.isoformat()), open_warehouse(warehouse))


def _train_batches(ctx: JobContext) -> list[pa.RecordBatch]:
    """The train split exactly as the extract job's Beam read and SplitBatch produce it."""
    cfg = ctx.config.extract
    split = SplitBatch(ctx.spec, cfg.eval_percent, cfg.sample_fraction)
    sql = warehouse_analyzers.split_hash_sql(ctx.spec, ctx.warehouse)
    return [
        out.value
        for batch in ctx.warehouse.batches(sql, ctx.query_params, 5000)
        for out in split.process(batch)
        if out.tag == "train"
    ]


def _reference_fn(spec: PipelineSpec) -> Any:
    """The graph as written with tf.Transform's analyzers, each analyzer's value also an output."""

    def preprocessing_fn(inputs: dict[str, Any]) -> dict[str, tf.Tensor]:
        rows = tf.shape(inputs[spec.raw_features[0].name])[0:1]
        out = {}
        for f in spec.raw_features:
            x = inputs[f.name]
            if f.kind is FeatureKind.NUMERIC:
                mean, var = tft.mean(x.values), tft.var(x.values)
                out[f"{f.name}__mean"], out[f"{f.name}__var"] = tf.fill(rows, mean), tf.fill(rows, var)
                filled = tf.where(preprocessing._present(x), preprocessing._dense(x, 0.0), mean)
                std = tf.sqrt(var)
                out[f.transformed_name] = (filled - mean) / tf.where(std > 0, std, tf.ones_like(std))
            elif f.kind is FeatureKind.BUCKETIZED:
                assert f.buckets is not None
                boundaries = tft.quantiles(x.values, f.buckets, epsilon=min(1.0 / f.buckets, 0.01))
                out[f"{f.name}__boundaries"] = tf.tile(boundaries, tf.concat([rows, [1]], 0))
                ids = tft.apply_buckets(preprocessing._dense(x, 0.0), boundaries)
                out[f.transformed_name] = tf.where(preprocessing._present(x), ids, tf.constant(f.buckets, tf.int64))
            elif f.kind is FeatureKind.VOCABULARY:
                values = preprocessing._dense(x, b"")
                tft.vocabulary(
                    values,
                    top_k=f.top_k,
                    frequency_threshold=f.frequency_threshold,
                    vocab_filename=f.counts_file,
                    store_frequency=True,
                )
                out[f.transformed_name] = tft.compute_and_apply_vocabulary(
                    values,
                    top_k=f.top_k,
                    frequency_threshold=f.frequency_threshold,
                    num_oov_buckets=f.oov_buckets,
                    vocab_filename=f.vocabulary_file,
                )
        if spec.label.task is Task.MULTICLASS:
            out[LABEL_KEY] = tft.compute_and_apply_vocabulary(
                preprocessing._dense(inputs[LABEL_KEY], b""), vocab_filename=vocabulary_file_for_label()
            )
        return out

    return preprocessing_fn


def _analyse_and_transform(spec: PipelineSpec, batches: list[pa.RecordBatch], fn: Any, folder: str) -> Any:
    """Rows transformed by `fn` on Beam's local runner; the transform output written to `folder`."""
    schema = arrow_batches.tfxio_schema(spec)
    config = tensor_adapter.TensorAdapterConfig(schema, preprocessing.tensor_representations([f.name for f in schema]))
    with beam.Pipeline(runner="DirectRunner") as pipeline:
        with tft_beam.Context(temp_dir=str(Path(folder, "tmp")), force_tf_compat_v1=False):
            rows = pipeline | beam.Create(batches, reshuffle=False).with_output_types(pa.RecordBatch)
            (transformed, _), transform_fn = (rows, config) | tft_beam.AnalyzeAndTransformDataset(
                fn, output_record_batches=True
            )
            _ = transform_fn | tft_beam.WriteTransformFn(folder)
            _ = (
                transformed
                | beam.Map(lambda element: element[0])
                | beam.combiners.ToList()
                | beam.Map(lambda found: pa.Table.from_batches(found).to_pandas().to_pickle(Path(folder, "rows.pkl")))
            )
    import pandas as pd

    return pd.read_pickle(Path(folder, "rows.pkl")), tft.TFTransformOutput(folder)


def _column(rows: Any, name: str) -> np.ndarray:
    """One transformed column as a flat array (a row's value may come as a list of one)."""
    return np.concatenate([np.ravel(v) for v in rows[name]])


def _within_rank(values: np.ndarray, boundary: float, q: float, epsilon: float) -> bool:
    """`boundary` is a q-quantile of `values` up to a rank error of `epsilon` (tf.Transform's guarantee)."""
    below, at_most = float(np.mean(values < boundary)), float(np.mean(values <= boundary))
    return below - epsilon <= q <= at_most + epsilon


@pytest.mark.parametrize("sample_fraction", [1.0, 0.5])
def test_warehouse_analyzers_equal_tf_transform_on_the_train_rows(
    warehouse: str, edit_spec: Any, sample_fraction: float
) -> None:
    # Cuts that matter: a top_k that falls among equal counts, a frequency threshold.
    features = yaml.safe_load(CTR_SPEC.read_text())["features"]
    for feature in features:
        feature.update({"user_id": {"top_k": 777}, "item_id": {"frequency_threshold": 9}}.get(feature["name"], {}))
    path = edit_spec(features=features)
    ctx = _context(path, warehouse, **{"extract.sample_fraction": sample_fraction})
    spec = ctx.spec

    with tempfile.TemporaryDirectory() as folder:
        analyzed = warehouse_analyzers.compute(ctx)
        analyzed.write(str(Path(folder, "analyzers")))
        batches = _train_batches(ctx)
        train = pa.Table.from_batches(batches)
        reference, reference_out = _analyse_and_transform(spec, batches, _reference_fn(spec), str(Path(folder, "ref")))
        ours, ours_out = _analyse_and_transform(
            spec, batches, preprocessing.make_preprocessing_fn(spec, analyzed), str(Path(folder, "ours"))
        )

        assert len(reference) == len(ours) == train.num_rows > 0
        for f in spec.raw_features:
            if f.kind is FeatureKind.VOCABULARY:
                for name in (f.vocabulary_file, f.counts_file):
                    want = Path(reference_out.vocabulary_file_by_name(name)).read_bytes()
                    assert Path(ours_out.vocabulary_file_by_name(name)).read_bytes() == want, name
                assert [t for t, _ in analyzed.vocabularies[f.vocabulary_file]] == reference_out.vocabulary_by_name(
                    f.vocabulary_file
                )
                np.testing.assert_array_equal(_column(ours, f.transformed_name), _column(reference, f.transformed_name))
            elif f.kind is FeatureKind.NUMERIC:
                assert analyzed.means[f.name] == pytest.approx(
                    float(_column(reference, f"{f.name}__mean")[0]), rel=1e-6
                )
                assert analyzed.variances[f.name] == pytest.approx(
                    float(_column(reference, f"{f.name}__var")[0]), rel=1e-6
                )
                np.testing.assert_allclose(
                    _column(ours, f.transformed_name), _column(reference, f.transformed_name), rtol=1e-5, atol=1e-5
                )
            elif f.kind is FeatureKind.BUCKETIZED:
                assert f.buckets is not None
                epsilon = min(1.0 / f.buckets, 0.01)
                present = train.column(f.name).combine_chunks().flatten().to_numpy(zero_copy_only=False)
                ours_b, theirs = (
                    analyzed.boundaries[f.name],
                    [float(b) for b in np.ravel(reference[f"{f.name}__boundaries"][0])],
                )
                assert len(ours_b) == len(theirs) == f.buckets - 1
                for i, boundary in enumerate(ours_b, start=1):
                    assert _within_rank(present, boundary, i / f.buckets, epsilon), (f.name, i, boundary, theirs)
                    assert _within_rank(present, theirs[i - 1], i / f.buckets, epsilon)
                # The sample's hours are whole numbers: both find the same values, so every bucket id agrees.
                assert ours_b == theirs
                np.testing.assert_array_equal(_column(ours, f.transformed_name), _column(reference, f.transformed_name))


def test_train_rows_sql_selects_the_rows_the_beam_job_writes_to_train(warehouse: str, ctr_spec_path: Path) -> None:
    ctx = _context(ctr_spec_path, warehouse, **{"extract.sample_fraction": 0.3})
    train_sql = warehouse_analyzers.train_rows_sql(ctx.spec, ctx.config.extract, ctx.warehouse)
    in_sql = ctx.warehouse.table(train_sql, ctx.query_params)
    assert in_sql.num_rows == sum(b.num_rows for b in _train_batches(ctx)) > 0
    # about 80% (eval 20%) of the 30% sample of the rows that have a label
    assert 0.2 < in_sql.num_rows / 20_000 < 0.28


def test_the_split_hash_is_the_same_on_every_read_and_in_every_shard(warehouse: str, ctr_spec_path: Path) -> None:
    ctx = _context(ctr_spec_path, warehouse)
    sql = warehouse_analyzers.split_hash_sql(ctx.spec, ctx.warehouse)
    whole = ctx.warehouse.table(sql, ctx.query_params).select(["event_id", warehouse_analyzers.SPLIT_HASH])
    again = ctx.warehouse.table(sql, ctx.query_params).select(["event_id", warehouse_analyzers.SPLIT_HASH])
    by_key = dict(zip(*whole.to_pydict().values(), strict=True))
    assert by_key == dict(zip(*again.to_pydict().values(), strict=True)) and len(by_key) == 20_000
    # A parallel read's shard sees each row with the hash the whole read gave it.
    shard = ctx.warehouse.hash_shard_sql(sql, ctx.spec.keys, "shard", "shards")
    part = ctx.warehouse.table(shard, {**ctx.query_params, "shard": 1, "shards": 3}).to_pydict()
    assert 0 < len(part["event_id"]) < 20_000
    assert all(by_key[k] == h for k, h in zip(part["event_id"], part[warehouse_analyzers.SPLIT_HASH], strict=True))


def test_a_missing_key_column_is_named_with_what_the_result_has(warehouse: str, edit_spec: Any) -> None:
    ctx = _context(edit_spec(keys=["event_id", "session_id"]), warehouse)
    with pytest.raises(SchemaMismatchError, match=r"key column\(s\) session_id not in the query result \(event_id, "):
        warehouse_analyzers.compute(ctx)


def _analyse_both(ctx: JobContext, folder: Path) -> tuple[Any, Any, Any, Any]:
    """The warehouse's results, then the train rows transformed by the reference and by ours."""
    analyzed = warehouse_analyzers.compute(ctx)
    analyzed.write(str(folder / "analyzers"))
    batches = _train_batches(ctx)
    reference, reference_out = _analyse_and_transform(ctx.spec, batches, _reference_fn(ctx.spec), str(folder / "ref"))
    ours, ours_out = _analyse_and_transform(
        ctx.spec, batches, preprocessing.make_preprocessing_fn(ctx.spec, analyzed), str(folder / "ours")
    )
    assert len(reference) == len(ours) == sum(b.num_rows for b in batches) > 0
    return analyzed, reference, ours, (reference_out, ours_out)


def test_a_feature_with_no_value_on_the_train_rows_is_analysed_as_tf_transform_does(
    tmp_path: Path, ctr_spec_path: Path
) -> None:
    """A day whose numeric and bucketized columns are all NULL (a day extract.max_null_rate 1 lets
    through): tf.Transform's mean and variance are 0 and its boundaries zeros, not NaN and none."""
    import duckdb

    from tfpipe_jobs.tools import sample_data

    path = tmp_path / "warehouse.duckdb"
    sample_data.generate(str(path), END, days=1, rows_per_day=3000, candidates_per_day=10, seed=5)
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE events SET user_age = NULL, hour = NULL")
    analyzed, reference, ours, _ = _analyse_both(_context(ctr_spec_path, f"duckdb://{path}"), tmp_path)

    assert (analyzed.means["user_age"], analyzed.variances["user_age"]) == (
        float(_column(reference, "user_age__mean")[0]),
        float(_column(reference, "user_age__var")[0]),
    )
    assert analyzed.boundaries["hour"] == [float(b) for b in np.ravel(reference["hour__boundaries"][0])]
    for f in load_spec(ctr_spec_path).raw_features:  # what the reference graph transforms
        want = _column(reference, f.transformed_name)
        assert not np.isnan(want.astype(float)).any(), f.name
        np.testing.assert_allclose(_column(ours, f.transformed_name), want, rtol=1e-5, atol=1e-5, err_msg=f.name)


def test_a_multiclass_label_gets_tf_transform_s_vocabulary(
    tmp_path: Path, warehouse: str, price_band_spec: Any
) -> None:
    path = Path(price_band_spec(str(CTR_SPEC), tmp_path / "spec", "price_band", "price_band", {}))
    analyzed, reference, ours, (reference_out, ours_out) = _analyse_both(_context(path, warehouse), tmp_path)

    name = vocabulary_file_for_label()
    assert sorted(reference_out.vocabulary_by_name(name)) == [b"cheap", b"mid", b"premium"]
    assert (
        Path(ours_out.vocabulary_file_by_name(name)).read_bytes()
        == Path(reference_out.vocabulary_file_by_name(name)).read_bytes()
    )
    assert [t for t, _ in analyzed.vocabularies[name]] == reference_out.vocabulary_by_name(name)
    np.testing.assert_array_equal(_column(ours, LABEL_KEY), _column(reference, LABEL_KEY))
