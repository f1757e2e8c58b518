"""batch_score + publish_scores: the score table checked row by row against the scoring query."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfpipe_jobs.arrow_batches import model_inputs
from tfpipe_jobs.beam_jobs.batch_score.inputs import read_vocabulary
from tfpipe_jobs.beam_jobs.batch_score.pipeline import DuplicateKeysError
from tfpipe_jobs.publish_scores.score_table import PartitionCountError
from tfpipe_jobs.registry import NoBlessedModelError
from tfpipe_operators.spec import load_spec
from tfpipe_operators.warehouse import open_warehouse

DS = date(2026, 11, 21)


def _partition(ctr_run) -> dict:
    with ctr_run.duckdb() as con:
        return con.execute("SELECT * FROM ctr_scores WHERE ds = $ds ORDER BY user_id, item_id", {"ds": DS}).fetchnumpy()


def test_one_row_per_scoring_key_with_the_models_prediction(ctr_run) -> None:
    spec = load_spec(ctr_run.spec)
    scoring = (
        open_warehouse(ctr_run.warehouse)
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
    assert set(table["model_version"]) == {ctr_run.results["publish_model"]["model_version"]}
    assert ctr_run.results["batch_score"]["rows"] == ctr_run.results["publish_scores"]["rows"] == 500


def test_rerun_replaces_the_partition(ctr_run) -> None:
    first = _partition(ctr_run)
    assert ctr_run.run("batch_score")["exit_code"] == 0
    assert ctr_run.run("publish_scores")["exit_code"] == 0
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
        ctr_run.run("batch_score", spec=str(spec_dir / "pipeline.yaml"))


def test_no_blessed_model_is_a_clear_error(ctr_warehouse, tmp_path: Path) -> None:
    with pytest.raises(NoBlessedModelError, match="no model of pipeline 'ctr' was blessed on or before 2026-11-21"):
        ctr_warehouse.run("batch_score", artifacts=str(tmp_path / "empty"))


def test_null_and_unseen_features_are_scored_and_counted(ctr_run) -> None:
    spec = load_spec(ctr_run.spec)
    scoring = open_warehouse(ctr_run.warehouse).table(spec.scoring_sql, {"ds": DS})
    vocabulary = read_vocabulary(str(ctr_run.day() / "serving" / "saved_model" / "assets" / "vocab_user_id"))
    users = scoring.column("user_id").combine_chunks()
    unseen = sum(1 for u in users.to_pylist() if u is not None and u.encode() not in set(vocabulary.to_pylist()))
    missing_age = scoring.column("user_age").null_count
    result = ctr_run.results["batch_score"]
    assert missing_age > 0 and result["missing_user_age"] == missing_age
    assert result.get("unseen_user_id", 0) == unseen
    # summary.json counts the rows with at least one NULL or unseen value (the prediction gate's share)
    assets = ctr_run.day() / "serving" / "saved_model" / "assets"
    flagged = np.zeros(scoring.num_rows, dtype=bool)
    for feature in spec.raw_features:
        column = scoring.column(feature.name).combine_chunks()
        flagged |= np.asarray(column.is_null())
        if feature.kind.value == "vocabulary":
            known = set(read_vocabulary(str(assets / f"vocab_{feature.name}")).to_pylist())
            flagged |= np.array([v is not None and str(v).encode() not in known for v in column.to_pylist()])
    summary = json.loads((ctr_run.day() / "scores" / "summary.json").read_text())
    assert 0 < summary["rows_missing_or_unseen"] == int(flagged.sum()) == result["rows_missing_or_unseen"]
    assert summary["missing_or_unseen"]["missing_user_age"] == missing_age
    # ... and every one of those rows still has a probability
    table = _partition(ctr_run)
    assert np.isfinite(table["probability"]).all() and len(table["probability"]) == scoring.num_rows


def test_latest_view_switches_only_to_a_complete_partition(ctr_run) -> None:
    """A newer day whose publish fails leaves the table and the view exactly as they were."""

    from tfpipe_jobs.publish_scores.prediction_gate import DamagedScoresError

    newer = "2026-11-22"
    staged = ctr_run.day(newer) / "scores"
    shutil.copytree(ctr_run.day() / "scores", staged)
    try:
        # 1. The files hold rows of another day: the partition count check fails -> rolled back.
        with pytest.raises(PartitionCountError, match="holds 0 rows"):
            ctr_run.run("publish_scores", ds=newer)
        # 2. A damaged file: the prediction gate reads every file first and refuses, naming it.
        part = sorted(staged.glob("*.parquet"))[0]
        part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
        with pytest.raises(DamagedScoresError, match=rf"{part.name} is not a readable Parquet file"):
            ctr_run.run("publish_scores", ds=newer)
        with ctr_run.duckdb() as con:
            assert con.execute("SELECT DISTINCT ds FROM ctr_scores_latest").fetchall() == [(DS,)]
            assert con.execute("SELECT count(*) FROM ctr_scores").fetchone()[0] == 500
    finally:
        shutil.rmtree(ctr_run.day(newer))


def test_two_worker_processes_score_the_same_rows(ctr_run) -> None:
    """score.direct_num_workers=2: each worker reads a hash range of the keys; same partition."""
    first = _partition(ctr_run)
    result = ctr_run.run("batch_score", "--set", "score.direct_num_workers=2")
    assert result["exit_code"] == 0 and result["rows"] == 500
    assert ctr_run.run("publish_scores")["exit_code"] == 0
    again = _partition(ctr_run)
    assert list(again["user_id"]) == list(first["user_id"])
    assert list(again["item_id"]) == list(first["item_id"])
    np.testing.assert_allclose(again["probability"], first["probability"], atol=1e-6)
    assert len(list((ctr_run.day() / "scores").glob("*.parquet"))) >= 1


# --- multiclass: the score table names its classes ----------------------------------------

YESTERDAY = date(2026, 11, 20)


@pytest.fixture(scope="module")
def band_scores(ctr_warehouse, price_band_spec, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 3-class pipeline (the item's price band) run for real up to publish_scores, into a
    score table that already holds a day written before the class names existed."""
    folder = tmp_path_factory.mktemp("band_spec") / "band"
    gate = {"min_lift_over_baseline": 0.0, "max_regression": 1.0}
    spec = price_band_spec(ctr_warehouse.spec, folder, "band", "band", gate)
    root = str(tmp_path_factory.mktemp("band_artifacts"))
    results = {}
    for step in ("extract_transform", "train", "export_serving_model", "evaluate_gate", "publish_model", "batch_score"):
        results[step] = ctr_warehouse.run(step, spec=spec, artifacts=root)
        assert results[step]["exit_code"] == 0, (step, results[step])
    # Yesterday's partition, as the table looked before class_name/class_probabilities.
    staged = str(Path(root) / "band" / "2026-11-21" / "scores" / "*.parquet")
    with ctr_warehouse.duckdb(read_only=False) as con:
        con.execute(
            "CREATE TABLE band_scores AS SELECT user_id, item_id, class_id, probabilities, model_version, "
            "$yesterday::DATE AS ds, scored_at FROM read_parquet($files) LIMIT 7",
            {"files": [staged], "yesterday": YESTERDAY},
        )
    # Those 7 rows are no real day's scores (their class shares are anything): the prediction
    # gate, which would rightly refuse the comparison, is overridden as an operator would.
    override = ("--set", "score.override_prediction_gate=true")
    results["publish_scores"] = ctr_warehouse.run("publish_scores", *override, spec=spec, artifacts=root)
    assert results["publish_scores"]["exit_code"] == 0, results["publish_scores"]
    assert results["publish_scores"]["prediction_gate"]["verdict"] == "overridden"
    return {"spec": spec, "saved_model": Path(root) / "band" / "2026-11-21" / "serving" / "saved_model"}


def test_multiclass_scores_are_addressed_by_class_name(ctr_warehouse, band_scores: dict) -> None:
    """What an analyst types: one class's probability by name, and the predicted class."""
    spec = load_spec(band_scores["spec"])
    scoring = (
        open_warehouse(ctr_warehouse.warehouse)
        .table(spec.scoring_sql, {"ds": DS})
        .sort_by([("user_id", "ascending"), ("item_id", "ascending")])
    )
    model = tf.saved_model.load(str(band_scores["saved_model"]))
    inputs = {k: tf.constant(v) for k, v in model_inputs(spec, scoring).items()}
    expected = model.signatures["predict_raw"](**inputs)["probabilities"].numpy()
    names = read_vocabulary(str(band_scores["saved_model"] / "assets" / "vocab___label")).to_pylist()
    assert sorted(n.decode() for n in names) == ["cheap", "mid", "premium"]
    predicted = [names[i].decode() for i in expected.argmax(axis=1)]
    with ctr_warehouse.duckdb() as con:
        for class_id, name in enumerate(n.decode() for n in names):
            # the user's query, as written for BigQuery ML's ML.PREDICT output
            rows = con.execute(
                "SELECT class_name, p.probability FROM band_scores_latest, UNNEST(class_probabilities) p "
                "WHERE p.class_name = $name ORDER BY user_id, item_id",
                {"name": name},
            ).fetchall()
            assert len(rows) == scoring.num_rows == 500
            np.testing.assert_allclose([p for _, p in rows], expected[:, class_id], atol=1e-6)
            assert [c for c, _ in rows] == predicted
    assert len(set(predicted)) > 1  # the check above covers more than one class


def test_a_table_from_before_the_class_names_keeps_its_day(ctr_warehouse, band_scores: dict) -> None:
    with ctr_warehouse.duckdb() as con:
        days = con.execute(
            "SELECT ds, count(*), count(class_name), count(probabilities) FROM band_scores GROUP BY ds ORDER BY ds"
        ).fetchall()
        assert days == [(YESTERDAY, 7, 0, 7), (DS, 500, 500, 500)]
        assert con.execute("SELECT DISTINCT ds FROM band_scores_latest").fetchall() == [(DS,)]


def test_show_scores_prints_a_multiclass_query_that_runs(ctr_warehouse, band_scores: dict) -> None:
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[3] / "scripts" / "show_scores.py"
    args = ["--warehouse", ctr_warehouse.warehouse, "--spec", band_scores["spec"], "--ds", DS.isoformat()]
    out = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, check=True).stdout
    sql = next(line.strip().rstrip(";") for line in out.splitlines() if line.strip().startswith("SELECT"))
    assert "class_name, p.probability" in sql and "UNNEST(class_probabilities) p" in sql
    with ctr_warehouse.duckdb() as con:
        rows = con.execute(sql).fetchall()
    assert len(rows) == 20 and {r[2] for r in rows} <= {"cheap", "mid", "premium"}
    assert [r[3] for r in rows] == sorted((r[3] for r in rows), reverse=True)
