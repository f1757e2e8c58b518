"""extract_transform on the sample warehouse: outputs, split, vocabularies, checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from tfpipe_jobs.beam_jobs.arrow_batches import SchemaMismatchError
from tfpipe_jobs.beam_jobs.data_stats import DataValidationError
from tfpipe_jobs.warehouse import WarehouseError


def _read_examples(folder: Path, feature_spec: dict) -> dict[str, np.ndarray]:
    files = sorted(str(p) for p in folder.glob("part-*.tfrecord.gz"))
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(100_000)
    batch = next(iter(ds))
    return {k: v.numpy() for k, v in tf.io.parse_example(batch, feature_spec).items()}


def test_outputs_and_counts(ctr_run) -> None:
    data = ctr_run.day() / "data"
    result = ctr_run.results["extract"]
    assert (data / "_SUCCESS").exists()
    assert result["rows_read"] == 6000  # 3 days of 2000 rows: ds and its 2-day look-back
    assert result["train_rows"] + result["eval_rows"] == 6000
    assert 0.15 < result["eval_rows"] / 6000 < 0.25  # eval_percent 20
    tft_out = tft.TFTransformOutput(str(data))
    train = _read_examples(data / "train", tft_out.transformed_feature_spec())
    evals = _read_examples(data / "eval", tft_out.transformed_feature_spec())
    assert len(train["__label"]) == result["train_rows"] and len(evals["__label"]) == result["eval_rows"]
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
    rerun = ctr_run.run("extract", "--set", "train.epochs=1")  # same data, another run of the step
    assert rerun["exit_code"] == 0
    after = set(pq.read_table(ctr_run.day() / "data" / "eval_raw").column("event_id").to_pylist())
    assert before == after and len(after) == rerun["eval_rows"]
    assert not list(ctr_run.day().glob("data.tmp-*")) and not list(ctr_run.day().glob("data.old-*"))


def test_empty_day_stops_before_training(ctr_warehouse) -> None:
    with pytest.raises(DataValidationError, match="returned no rows for this ds"):
        ctr_warehouse.run("extract", ds="2026-10-01")
    assert not (Path(ctr_warehouse.artifacts) / "ctr" / "2026-10-01" / "data").exists()


def test_missing_column_is_named(ctr_warehouse, spec_dir: Path) -> None:
    sql = (spec_dir / "train.sql").read_text().replace("  item_price,\n", "")
    (spec_dir / "train.sql").write_text(sql)
    # The statistics query runs first and the warehouse names the missing column.
    with pytest.raises(WarehouseError, match="item_price"):
        ctr_warehouse.run("extract", spec=str(spec_dir / "pipeline.yaml"), ds="2026-11-20")
    assert not (Path(ctr_warehouse.artifacts) / "ctr" / "2026-11-20" / "data").exists()


def test_wrong_type_is_named() -> None:
    import pyarrow as pa

    from tfpipe_jobs.beam_jobs.arrow_batches import raw_columns
    from tfpipe_operators.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parents[2] / "dags" / "pipelines" / "ctr" / "pipeline.yaml")
    batch = pa.RecordBatch.from_pydict({f.name: pa.array(["1"]) for f in spec.features} | {"clicked": pa.array([1])})
    batch = batch.set_column(batch.schema.get_field_index("device"), "device", pa.array([0.5]))
    with pytest.raises(SchemaMismatchError, match="column 'device': expected a categorical"):
        raw_columns(spec, batch, with_label=True)
