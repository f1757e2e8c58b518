"""extract_transform on the sample warehouse: outputs, split, vocabularies, checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from tfpipe_jobs import packed_examples
from tfpipe_jobs.arrow_batches import SchemaMismatchError
from tfpipe_jobs.beam_jobs.extract_transform.data_stats import DataValidationError
from tfpipe_operators.warehouse import WarehouseError


def _read_examples(folder: Path, feature_spec: dict) -> dict[str, np.ndarray]:
    files = sorted(str(p) for p in folder.glob("part-*.tfrecord.gz"))
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(100_000)
    batch = next(iter(ds))
    parsed = tf.io.parse_example(batch, packed_examples.packed_feature_spec(feature_spec))
    return {k: v.numpy() for k, v in packed_examples.unpack(parsed).items()}


def test_outputs_and_counts(ctr_run) -> None:
    data = ctr_run.day() / "data"
    result = ctr_run.results["extract_transform"]
    assert (data / "_SUCCESS").exists()
    assert result["rows_read"] == 6000  # 3 days of 2000 rows: ds and its 2-day look-back
    assert result["train_rows"] + result["eval_rows"] == 6000
    assert 0.15 < result["eval_rows"] / 6000 < 0.25  # eval_percent 20
    tft_out = tft.TFTransformOutput(str(data))
    train = _read_examples(data / "train", tft_out.transformed_feature_spec())
    evals = _read_examples(data / "eval", tft_out.transformed_feature_spec())
    assert len(train["__label"]) == result["train_rows"] and len(evals["__label"]) == result["eval_rows"]
    # rows are packed 64 to a record (the default extract.rows_per_record), as stats.json says
    stats = json.loads((data / "stats.json").read_text())
    assert stats["rows_per_record"] == 64
    records = sum(1 for _ in tf.data.TFRecordDataset([str(p) for p in (data / "train").glob("part-*")], "GZIP"))
    assert result["train_rows"] / 64 <= records < result["train_rows"] / 32
    assert set(np.unique(train["__label"])) == {0, 1}
    # numeric: z-scored on the train split
    assert abs(train["item_price_xf"].mean()) < 0.05 and abs(train["item_price_xf"].std() - 1) < 0.05
    # bucketized: 6 quantile buckets plus one for NULL
    assert set(np.unique(train["hour_xf"])) <= set(range(7))
    # hashed into 64 buckets
    assert train["country_xf"].min() >= 0 and train["country_xf"].max() < 64
    # vocabulary: ids within vocabulary + OOV buckets
    assert train["user_id_xf"].max() < tft_out.vocabulary_size_by_name("vocab_user_id") + 10


def test_vocabularies_hold_the_warehouse_values(ctr_run) -> None:
    tft_out = tft.TFTransformOutput(str(ctr_run.day() / "data"))
    devices = {v.decode() for v in tft_out.vocabulary_by_name("vocab_device")}
    assert devices == {"mobile", "desktop", "tablet", "tv"}
    with ctr_run.duckdb() as con:
        categories = {r[0] for r in con.execute("SELECT DISTINCT item_category FROM events").fetchall()}
    assert {v.decode() for v in tft_out.vocabulary_by_name("vocab_item_category")} == categories


def test_stats_and_user_age_nulls(ctr_run) -> None:
    stats = json.loads((ctr_run.day() / "data" / "stats.json").read_text())
    assert stats["rows"] == 6000
    with ctr_run.duckdb() as con:
        nulls, mean_label = con.execute(
            "SELECT count(*) FILTER (user_age IS NULL), avg(clicked) FROM events"
        ).fetchone()
    assert stats["columns"]["user_age"]["nulls"] == nulls > 0
    assert stats["columns"]["__label"]["mean"] == pytest.approx(mean_label)
    assert stats["provenance"]["ds"] == "2026-11-21"


def test_split_is_deterministic_by_key(ctr_run, tmp_path: Path) -> None:
    before = set(pq.read_table(ctr_run.day() / "data" / "eval_raw").column("event_id").to_pylist())
    rerun = ctr_run.run("extract_transform", "--set", "train.epochs=1")  # same data, another run of the step
    assert rerun["exit_code"] == 0
    after = set(pq.read_table(ctr_run.day() / "data" / "eval_raw").column("event_id").to_pylist())
    assert before == after and len(after) == rerun["eval_rows"]
    assert not list(ctr_run.day().glob("data.tmp-*")) and not list(ctr_run.day().glob("data.old-*"))


def test_empty_day_stops_before_training(ctr_warehouse) -> None:
    with pytest.raises(DataValidationError, match="returned no rows for this ds"):
        ctr_warehouse.run("extract_transform", ds="2026-10-01")
    assert not (Path(ctr_warehouse.artifacts) / "ctr" / "2026-10-01" / "data").exists()


def test_missing_column_is_named(ctr_warehouse, spec_dir: Path) -> None:
    sql = (spec_dir / "train.sql").read_text().replace("  item_price,\n", "")
    (spec_dir / "train.sql").write_text(sql)
    # The statistics query runs first and the warehouse names the missing column.
    with pytest.raises(WarehouseError, match="item_price"):
        ctr_warehouse.run("extract_transform", spec=str(spec_dir / "pipeline.yaml"), ds="2026-11-20")
    assert not (Path(ctr_warehouse.artifacts) / "ctr" / "2026-11-20" / "data").exists()


def test_wrong_type_is_named() -> None:
    import pyarrow as pa

    from tfpipe_jobs.arrow_batches import raw_columns
    from tfpipe_operators.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parents[3] / "dags" / "pipelines" / "ctr" / "pipeline.yaml")
    batch = pa.RecordBatch.from_pydict({f.name: pa.array(["1"]) for f in spec.features} | {"clicked": pa.array([1])})
    batch = batch.set_column(batch.schema.get_field_index("device"), "device", pa.array([0.5]))
    with pytest.raises(SchemaMismatchError, match="column 'device': expected a categorical"):
        raw_columns(spec, batch, with_label=True)


def _counter_of(values) -> dict:
    from collections import Counter

    return dict(Counter(v.decode() if isinstance(v, bytes) else v for v in values))


def test_vocabulary_counts_beside_each_vocabulary(ctr_run) -> None:
    """`vocab_<f>_counts` holds each value with its count over the train split, in the same order
    as the vocabulary the lookup uses; and the lookup maps each eval row to its own value."""
    data = ctr_run.day() / "data"
    tft_out = tft.TFTransformOutput(str(data))
    vocab = [v.decode() for v in tft_out.vocabulary_by_name("vocab_device")]
    lines = Path(tft_out.vocabulary_file_by_name("vocab_device_counts")).read_text().splitlines()
    counted = {value: int(count) for count, value in (line.split(" ", 1) for line in lines)}
    assert [line.split(" ", 1)[1] for line in lines] == vocab
    eval_raw = pq.read_table(data / "eval_raw")
    with ctr_run.duckdb() as con:
        everywhere = dict(con.execute("SELECT device, count(*) FROM events GROUP BY device").fetchall())
    in_eval = _counter_of(eval_raw.column("device").to_pylist())
    assert counted == {d: everywhere[d] - in_eval.get(d, 0) for d in everywhere}
    assert sum(counted.values()) == ctr_run.results["extract_transform"]["train_rows"]
    evals = _read_examples(data / "eval", tft_out.transformed_feature_spec())
    assert _counter_of(vocab[i] for i in evals["device_xf"]) == in_eval


CROSS = {"name": "country_x_category", "kind": "cross", "crosses": ["country", "item_category"], "buckets": 1000}


def _transform_raw(tft_out: tft.TFTransformOutput, spec, rows: list[dict]) -> dict[str, np.ndarray]:
    """Raw rows through the saved transform graph, as serving applies it."""
    inputs = {}
    for f in spec.raw_features:
        values = [r[f.name] for r in rows]
        dtype = tf.float32 if f.raw_type == "float" else tf.string
        inputs[f.name] = tf.sparse.from_dense(tf.constant(values, dtype)[:, None])
    out = tft_out.transform_features_layer()(inputs)
    return {k: v.numpy() for k, v in out.items()}


def test_feature_cross_is_trained_and_served(ctr_warehouse, spec_dir: Path, tmp_path: Path) -> None:
    import yaml

    from tfpipe_operators.spec import load_spec

    raw = yaml.safe_load((spec_dir / "pipeline.yaml").read_text())
    raw["features"].append(CROSS)
    (spec_dir / "pipeline.yaml").write_text(yaml.safe_dump(raw))
    spec_path = str(spec_dir / "pipeline.yaml")
    artifacts = str(tmp_path / "artifacts")
    result = ctr_warehouse.run("extract_transform", spec=spec_path, artifacts=artifacts)
    assert result["exit_code"] == 0
    data = Path(artifacts) / "ctr" / "2026-11-21" / "data"
    tft_out = tft.TFTransformOutput(str(data))
    assert "country_x_category" not in tft_out.raw_feature_spec()
    evals = _read_examples(data / "eval", tft_out.transformed_feature_spec())
    ids = evals["country_x_category_xf"]
    assert ids.min() >= 0 and ids.max() < 1000
    eval_raw = pq.read_table(data / "eval_raw")
    countries, categories = eval_raw.column("country").to_pylist(), eval_raw.column("item_category").to_pylist()
    pairs = set(zip(countries, categories, strict=True))
    # Hashing ~340 pairs into 1000 buckets leaves ~15% sharing a bucket; one feature alone
    # would give at most 40 (countries) or 12 (categories) ids.
    assert 0.75 * len(pairs) <= len(set(ids.tolist())) <= len(pairs)

    spec = load_spec(spec_path)
    base = {f.name: (1.0 if f.raw_type == "float" else "x") for f in spec.raw_features}
    rows = [
        {**base, "country": "c01", "item_category": "cat_03", "user_id": "u1", "item_price": 3.0},
        {**base, "country": "c01", "item_category": "cat_03", "user_id": "u2", "item_price": 9.0},
        {**base, "country": "c03", "item_category": "cat_01", "user_id": "u1", "item_price": 3.0},
        {**base, "country": "c01", "item_category": "cat_04", "user_id": "u1", "item_price": 3.0},
    ]
    crossed = _transform_raw(tft_out, spec, rows)["country_x_category_xf"]
    assert crossed[0] == crossed[1]  # same crossed values, other features differ
    assert len({crossed[0], crossed[2], crossed[3]}) == 3  # order matters; another category differs

    for step in ("train", "export_serving_model"):
        done = ctr_warehouse.run(step, "--set", "train.epochs=1", spec=spec_path, artifacts=artifacts)
        assert done["exit_code"] == 0, (step, done)
    model = tf.saved_model.load(str(Path(artifacts) / "ctr" / "2026-11-21" / "serving" / "saved_model"))
    signature = model.signatures["predict_raw"]
    assert "country_x_category" not in signature.structured_input_signature[1]
    served = signature(
        **{
            f.name: tf.constant([r[f.name] for r in rows], tf.float32 if f.raw_type == "float" else tf.string)
            for f in spec.raw_features
        }
    )
    assert all(v.shape[0] == len(rows) for v in served.values())


def test_two_worker_processes_give_the_same_split_and_rows(ctr_run, tmp_path: Path) -> None:
    """extract.direct_num_workers=2: two processes, each reading a hash range of the keys."""
    artifacts = str(tmp_path / "artifacts")
    two = ctr_run.run(
        "extract_transform",
        "--set",
        "extract.direct_num_workers=2",
        "--set",
        "extract.rows_per_shard=1000",
        "--set",
        "extract.batch_rows=256",
        artifacts=artifacts,
    )
    one = ctr_run.results["extract_transform"]
    assert two["exit_code"] == 0
    assert {k: two[k] for k in ("rows_read", "train_rows", "eval_rows")} == {
        k: one[k] for k in ("rows_read", "train_rows", "eval_rows")
    }
    data_one, data_two = ctr_run.day() / "data", Path(artifacts) / "ctr" / "2026-11-21" / "data"
    ids = [set(pq.read_table(d / "eval_raw").column("event_id").to_pylist()) for d in (data_one, data_two)]
    assert ids[0] == ids[1]
    # Several train files (at most ~1000 rows each, whole batches), every row in exactly one.
    files = list((data_two / "train").glob("part-*.tfrecord.gz"))
    assert len(files) >= 4
    spec = tft.TFTransformOutput(str(data_one)).transformed_feature_spec()
    for split in ("train", "eval"):
        a, b = _read_examples(data_one / split, spec), _read_examples(data_two / split, spec)
        assert len(a["__label"]) == len(b["__label"]) == one[f"{split}_rows"]
        for name in ("item_price_xf", "user_id_xf", "device_xf", "__label"):
            np.testing.assert_allclose(np.sort(a[name]), np.sort(b[name]), rtol=1e-5, atol=1e-5)


def test_the_day_is_monitored_and_reported(ctr_run) -> None:
    """The real extraction checked its schema and published drift.json and its picture beside stats.json;
    publish_scores measured the skew before publishing."""
    data = ctr_run.day() / "data"
    report = json.loads((data / "drift.json").read_text())
    assert report["schema"]["version"] == 1 and (Path(ctr_run.artifacts) / "ctr" / "schema" / "v0001.json").exists()
    assert report["profile"]["rows"] == 2000  # the day alone, not its look-back days
    assert (data / "drift.png").read_bytes()[:4] == b"\x89PNG"
    assert ctr_run.results["extract_transform"]["drift_report"] == str(data / "drift.png")
    published = ctr_run.results["publish_scores"]["skew"]
    skew = json.loads(Path(published["report"]).read_text())
    assert skew["scoring_rows"] == 500 and len(skew["skew"]) == 9
    assert (ctr_run.day() / "scores" / "monitoring.png").exists()


def _sorted_rows(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same rows in an order that depends on their values only (the files' order is the runner's)."""
    names = sorted(columns)
    order = np.lexsort([columns[n] for n in names])
    return {n: columns[n][order] for n in names}


def test_the_rows_are_transformed_as_tf_transform_transforms_them(ctr_run) -> None:
    """The written eval TFRecords hold what the saved transform_fn gives for the step's own raw eval
    rows (NULLs included), applied the way training and serving apply it (TFXIO's tensor adapter,
    then `TFTransformOutput.transform_raw_features`): rows, feature names and values all equal."""
    from tfx_bsl.tfxio import tensor_adapter

    from tfpipe_jobs import arrow_batches, preprocessing
    from tfpipe_operators.spec import load_spec

    data = ctr_run.day() / "data"
    spec = load_spec(ctr_run.spec)
    raw = pq.read_table(data / "eval_raw").combine_chunks()
    names = [f.name for f in arrow_batches.tfxio_schema(spec)]
    assert raw.column("user_age").null_count > 0
    adapter = tensor_adapter.TensorAdapter(
        tensor_adapter.TensorAdapterConfig(
            arrow_batches.tfxio_schema(spec), preprocessing.tensor_representations(names)
        )
    )
    tensors = adapter.ToBatchTensors(arrow_batches.to_tfxio({n: raw.column(n).chunk(0) for n in names}))
    tft_out = tft.TFTransformOutput(str(data))
    theirs = {n: np.reshape(t.numpy(), -1) for n, t in tft_out.transform_raw_features(tensors).items()}
    ours = _read_examples(data / "eval", tft_out.transformed_feature_spec())
    assert sorted(ours) == sorted(theirs) and len(ours["__label"]) == raw.num_rows
    theirs_sorted, ours_sorted = _sorted_rows(theirs), _sorted_rows(ours)
    for name in ours:
        np.testing.assert_array_equal(ours_sorted[name], theirs_sorted[name], err_msg=name)
