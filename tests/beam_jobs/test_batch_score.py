"""batch_score + publish_scores: the score table checked row by row against the scoring query."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf

from tfpipe_jobs.beam_jobs.arrow_batches import model_inputs
from tfpipe_jobs.beam_jobs.batch_score import (
    DuplicateKeysError,
    constant_column,
    float_tensor,
    read_vocabulary,
    string_tensor,
)
from tfpipe_jobs.registry import NoBlessedModelError
from tfpipe_jobs.score_table import PartitionCountError
from tfpipe_jobs.warehouse import Warehouse
from tfpipe_operators.spec import load_spec

DS = date(2026, 11, 21)


def _partition(ctr_run) -> dict:
    with ctr_run.duckdb() as con:
        return con.execute("SELECT * FROM ctr_scores WHERE ds = $ds ORDER BY user_id, item_id", {"ds": DS}).fetchnumpy()


def test_one_row_per_scoring_key_with_the_models_prediction(ctr_run) -> None:
    spec = load_spec(ctr_run.spec)
    scoring = (
        Warehouse(ctr_run.warehouse)
        .table(spec.scoring_sql, {"ds": DS})
        .sort_by([("user_id", "ascending"), ("item_id", "ascending")])
    )
    table = _partition(ctr_run)
    assert len(table["user_id"]) == scoring.num_rows == 500
    assert list(table["user_id"]) == scoring.column("user_id").to_pylist()
    assert list(table["item_id"]) == scoring.column("item_id").to_pylist()
    # every prediction is what the blessed SavedModel says for that row
    model = tf.saved_model.load(str(ctr_run.day() / "serving" / "saved_model"))
    inputs = {k: tf.constant(v) for k, v in model_inputs(spec, scoring).items()}
    expected = model.signatures["predict_raw"](**inputs)["probability"].numpy()
    np.testing.assert_allclose(table["probability"], expected, atol=1e-6)
    assert set(table["model_version"]) == {ctr_run.results["publish-model"]["model_version"]}
    assert ctr_run.results["score"]["rows"] == ctr_run.results["publish-scores"]["rows"] == 500


def test_rerun_replaces_the_partition(ctr_run) -> None:
    first = _partition(ctr_run)
    assert ctr_run.run("score")["exit_code"] == 0
    assert ctr_run.run("publish-scores")["exit_code"] == 0
    again = _partition(ctr_run)
    assert len(again["user_id"]) == len(first["user_id"]) == 500
    assert list(again["user_id"]) == list(first["user_id"])
    assert (again["scored_at"] > first["scored_at"]).all()
    with ctr_run.duckdb() as con:
        assert con.execute("SELECT count(*) FROM ctr_scores").fetchone()[0] == 500
        assert con.execute("SELECT DISTINCT ds FROM ctr_scores_latest").fetchall() == [(DS,)]


def test_duplicate_keys_are_named(ctr_run, spec_dir: Path) -> None:
    sql = (
        (spec_dir / "score.sql")
        .read_text()
        .replace("FROM candidates\nWHERE event_date = @ds", "FROM events\nWHERE event_date = @ds")
    )
    (spec_dir / "score.sql").write_text(sql)
    with pytest.raises(
        DuplicateKeysError,
        match=r"duplicate keys \(user_id, item_id\) for ds 2026-11-21: user_id='u\d+', item_id='i\d+' \(\d+ rows\)",
    ):
        ctr_run.run("score", spec=str(spec_dir / "pipeline.yaml"))


def test_no_blessed_model_is_a_clear_error(ctr_warehouse, tmp_path: Path) -> None:
    with pytest.raises(NoBlessedModelError, match="no blessed model for pipeline 'ctr'"):
        ctr_warehouse.run("score", artifacts=str(tmp_path / "empty"))


def test_null_and_unseen_features_are_scored_and_counted(ctr_run) -> None:
    spec = load_spec(ctr_run.spec)
    scoring = Warehouse(ctr_run.warehouse).table(spec.scoring_sql, {"ds": DS})
    vocabulary = read_vocabulary(str(ctr_run.day() / "serving" / "saved_model" / "assets" / "vocab_user_id"))
    users = scoring.column("user_id").combine_chunks()
    unseen = sum(1 for u in users.to_pylist() if u is not None and u.encode() not in set(vocabulary.to_pylist()))
    missing_age = scoring.column("user_age").null_count
    result = ctr_run.results["score"]
    assert missing_age > 0 and result["missing_user_age"] == missing_age
    assert result.get("unseen_user_id", 0) == unseen
    # ... and every one of those rows still has a probability
    table = _partition(ctr_run)
    assert np.isfinite(table["probability"]).all() and len(table["probability"]) == scoring.num_rows


@pytest.mark.parametrize(
    "values",
    [
        ["u1", None, "", "ünïcode", "a much longer token than the others"],
        [None, None],
        [],
    ],
)
def test_string_tensor_matches_the_values_with_null_as_empty(values: list) -> None:
    column = pa.array(["head", *values, "tail"], pa.string()).slice(1, len(values))  # a slice: offset != 0
    got = string_tensor(column).numpy().tolist()
    assert got == [(v or "").encode() for v in values]


def test_float_tensor_turns_null_into_nan() -> None:
    got = float_tensor(pa.chunked_array([[1, None], [3]], pa.int64())).numpy()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, [1.0, np.nan, 3.0])


def test_constant_column_has_the_type_and_length() -> None:
    column = constant_column(DS, 3, pa.date32())
    assert column.type == pa.date32() and column.to_pylist() == [DS, DS, DS]
    assert constant_column("v1", 0, pa.string()).to_pylist() == []


def test_latest_view_switches_only_to_a_complete_partition(ctr_run) -> None:
    """A newer day whose publish fails leaves the table and the view exactly as they were."""
    import shutil

    import duckdb

    newer = "2026-11-22"
    staged = ctr_run.day(newer) / "scores"
    shutil.copytree(ctr_run.day() / "scores", staged)
    try:
        # 1. The files hold rows of another day: the partition count check fails -> rolled back.
        with pytest.raises(PartitionCountError, match="holds 0 rows"):
            ctr_run.run("publish-scores", ds=newer)
        # 2. A damaged file: the insert itself fails -> rolled back.
        part = sorted(staged.glob("*.parquet"))[0]
        part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
        with pytest.raises(duckdb.Error):
            ctr_run.run("publish-scores", ds=newer)
        with ctr_run.duckdb() as con:
            assert con.execute("SELECT DISTINCT ds FROM ctr_scores_latest").fetchall() == [(DS,)]
            assert con.execute("SELECT count(*) FROM ctr_scores").fetchone()[0] == 500
    finally:
        shutil.rmtree(ctr_run.day(newer))


def test_two_worker_processes_score_the_same_rows(ctr_run) -> None:
    """score.direct_num_workers=2: each worker reads a hash range of the keys; same partition."""
    first = _partition(ctr_run)
    result = ctr_run.run("score", "--set", "score.direct_num_workers=2")
    assert result["exit_code"] == 0 and result["rows"] == 500
    assert ctr_run.run("publish-scores")["exit_code"] == 0
    again = _partition(ctr_run)
    assert list(again["user_id"]) == list(first["user_id"])
    assert list(again["item_id"]) == list(first["item_id"])
    np.testing.assert_allclose(again["probability"], first["probability"], atol=1e-6)
    assert len(list((ctr_run.day() / "scores").glob("*.parquet"))) >= 1
