"""The gate on a multiclass pipeline: metrics, class names from the label vocabulary, rules.

The pipeline is the ctr sample turned into a 3-class problem: the price band of the item
(learnable from `item_id`, since `item_price` itself is left out of the features). It runs
on the shared sample warehouse: day 1 trains normally and is blessed against the baseline;
day 2 trains a deliberately weak model that the gate refuses against the blessed one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tfpipe_jobs import metrics
from tfpipe_jobs.evaluate_gate import gate

DAY1, DAY2 = "2026-11-20", "2026-11-21"
BANDS = ("cheap", "mid", "premium")


# The label the price-band spec (tests/conftest.py) trains on, to count the classes by hand.
PRICE_BAND = "CASE WHEN item_price < 15 THEN 'cheap' WHEN item_price < 40 THEN 'mid' ELSE 'premium' END"


@pytest.fixture(scope="module")
def band_run(ctr_warehouse, price_band_spec, tmp_path_factory: pytest.TempPathFactory):
    """extract -> train -> export -> evaluate (-> publish) for two days of a multiclass spec."""
    folder = tmp_path_factory.mktemp("price_band") / "price_band"
    gate = {"min_lift_over_baseline": 0.05, "max_regression": 0.02}
    spec = price_band_spec(ctr_warehouse.spec, folder, "price_band", "price_band", gate)
    root = str(tmp_path_factory.mktemp("band_artifacts"))
    results: dict[str, dict] = {}

    def step(name: str, ds: str, *extra: str) -> dict:
        result = ctr_warehouse.run(name, *extra, ds=ds, spec=spec, artifacts=root)
        results[f"{name} {ds}"] = result
        return result

    for name in ("extract_transform", "train", "export_serving_model", "evaluate_gate", "publish_model"):
        assert step(name, DAY1)["exit_code"] == 0, results
    weak = ("--set", "train.epochs=1", "--set", "train.learning_rate=0.00001")
    assert step("extract_transform", DAY2)["exit_code"] == 0
    assert step("train", DAY2, *weak)["exit_code"] == 0
    assert step("export_serving_model", DAY2)["exit_code"] == 0
    assert step("evaluate_gate", DAY2)["exit_code"] == 0
    return {"root": Path(root) / "price_band", "results": results, "spec": spec}


def _evaluation(band_run: dict, ds: str) -> dict:
    return json.loads((band_run["root"] / ds / "eval" / "evaluation.json").read_text())


def test_first_multiclass_model_is_blessed_with_class_names(band_run: dict) -> None:
    evaluation = _evaluation(band_run, DAY1)
    assert evaluation["verdict"] == "blessed", evaluation["rules"]
    new, baseline = evaluation["metrics"]["new"], evaluation["metrics"]["baseline"]
    assert set(new) == {"accuracy", "top_2_accuracy", "log_loss", "macro_auc"}
    assert baseline["macro_auc"] == 0.5  # the same class frequencies on every row
    assert new["accuracy"] >= baseline["accuracy"] + 0.05
    assert new["log_loss"] < baseline["log_loss"] and new["macro_auc"] > 0.7
    assert any(r.startswith("PASS lift over baseline: accuracy") for r in evaluation["rules"])

    classes = evaluation["classes"]
    assert sorted(classes["names"]) == list(BANDS)  # names, in the vocabulary's (frequency) order
    vocabulary = band_run["root"] / DAY1 / "data" / "transform_fn" / "assets" / "vocab___label"
    assert classes["names"] == vocabulary.read_text().splitlines()  # tf.Transform's, via the SavedModel
    rows = classes["eval_rows_per_class"]
    assert sum(rows.values()) == evaluation["eval_rows"] and classes["eval_rows_with_unknown_label"] == 0
    assert set(rows) == set(classes["names"])
    matrix = classes["confusion_matrix"]["new"]
    assert set(matrix) == set(BANDS) and all(set(row) == set(BANDS) for row in matrix.values())
    assert {true: sum(row.values()) for true, row in matrix.items()} == rows
    correct = sum(matrix[name][name] for name in BANDS)
    assert correct / evaluation["eval_rows"] == pytest.approx(new["accuracy"])
    assert "blessed" not in classes["confusion_matrix"]
    assert (band_run["root"] / DAY1 / "eval" / "evaluation.png").read_bytes()[:4] == b"\x89PNG"


def test_eval_labels_match_the_warehouse(band_run: dict, ctr_warehouse) -> None:
    """The class counts come from the raw eval rows, mapped by name, not by a guessed id order."""
    import pyarrow.parquet as pq

    evaluation = _evaluation(band_run, DAY1)
    keys = pq.read_table(band_run["root"] / DAY1 / "data" / "eval_raw").column("event_id").to_pylist()
    with ctr_warehouse.duckdb() as con:
        con.execute("CREATE TEMP TABLE k (event_id VARCHAR)")
        con.executemany("INSERT INTO k VALUES (?)", [[k] for k in keys])
        counts = dict(
            con.execute(
                "SELECT " + PRICE_BAND + " AS band, COUNT(*) FROM events JOIN k USING (event_id) GROUP BY band"
            ).fetchall()
        )
    assert {k: v for k, v in evaluation["classes"]["eval_rows_per_class"].items() if v} == counts


def test_weak_model_is_refused_against_the_blessed_one(band_run: dict) -> None:
    evaluation = _evaluation(band_run, DAY2)
    assert evaluation["verdict"] == "refused"
    assert evaluation["blessed_model"]["ds"] == DAY1
    new, blessed = evaluation["metrics"]["new"], evaluation["metrics"]["blessed"]
    assert blessed["accuracy"] > new["accuracy"] + 0.02
    fail = [r for r in evaluation["rules"] if r.startswith("FAIL vs blessed: accuracy")]
    assert fail and f"{new['accuracy']:.5f} vs {blessed['accuracy']:.5f}" in fail[0]
    # The blessed model (day 1) is scored on day 2's rows with its own label vocabulary.
    matrices = evaluation["classes"]["confusion_matrix"]
    assert set(matrices) == {"axes", "new", "blessed"}
    day1_correct = sum(matrices["blessed"][name][name] for name in BANDS)
    assert day1_correct / evaluation["eval_rows"] == pytest.approx(blessed["accuracy"])
    published = band_run["results"]["publish_model " + DAY1]
    assert blessed["accuracy"] > 0.5 and published["ds"] == DAY1


def test_blessed_columns_are_aligned_by_class_name() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    aligned = gate.align_classes(probs, ["b", "a", "c"], ["a", "b", "c", "d"], where="test")
    assert aligned.tolist() == [[0.2, 0.7, 0.1, 0.0], [0.1, 0.1, 0.8, 0.0]]
    with pytest.raises(ValueError, match="test: the label vocabulary has 4 classes but the model outputs 3"):
        gate.align_classes(probs, ["a", "b", "c", "d"], ["a"], where="test")
    with pytest.raises(FileNotFoundError, match="carries no label vocabulary, so its class ids cannot be named"):
        gate.label_vocabulary("/nonexistent/saved_model")
    ids = gate.class_ids(np.array([b"b", b"zz", b"a"], dtype=object), ["a", "b"])
    assert ids.tolist() == [1, -1, 0]


def test_multiclass_metrics() -> None:
    labels = np.array([0, 1, 2, 2])
    probs = np.array([[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.1, 0.2, 0.7], [0.2, 0.5, 0.3]])
    assert metrics.accuracy(labels, probs) == 0.5
    assert metrics.top_k_accuracy(labels, probs, 2) == 1.0
    assert metrics.confusion_matrix(labels, probs).tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 1]]
    # One-vs-rest: class 0 ranks its row first (1); class 1's 0.4 beats 0.3 and 0.2 but not 0.5
    # (2/3); class 2's 0.7 and 0.3 beat both 0.1 (1).
    assert metrics.macro_auc(labels, probs) == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert metrics.macro_auc(np.array([0, 0, 1]), np.array([[0.4, 0.6], [0.6, 0.4], [0.5, 0.5]])) == 0.5
    with pytest.raises(ValueError, match=r"macro AUC needs at least two classes in the labels; got \[1\]"):
        metrics.macro_auc(np.array([1, 1]), probs[:2])


def test_the_prediction_gate_compares_predicted_class_shares(band_run: dict, ctr_warehouse, tmp_path: Path) -> None:
    """Both days scored by the day-1 model and published: the shares of the predicted classes
    barely move; day 2 rewritten to predict one class everywhere is refused, naming the class."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tfpipe_jobs.publish_scores.prediction_gate import PredictionGateError

    run = type(ctr_warehouse)(tmp_path)
    shutil.copy(ctr_warehouse.warehouse.removeprefix("duckdb://"), run.warehouse.removeprefix("duckdb://"))
    where = {"spec": band_run["spec"], "artifacts": str(band_run["root"].parent)}
    gates = {}
    for ds in (DAY1, DAY2):
        run.run("batch_score", ds=ds, **where)
        gates[ds] = run.run("publish_scores", ds=ds, **where)["prediction_gate"]
    assert gates[DAY1]["reference_ds"] is None and "class_share_change" not in gates[DAY1]["measures"]
    assert gates[DAY2]["verdict"] == "passed" and gates[DAY2]["reference_ds"] == DAY1

    def shares(ds: str) -> dict[int, float]:
        with run.duckdb() as con:
            rows = con.execute(
                "SELECT class_id, COUNT(*) FROM price_band_scores WHERE ds = $ds GROUP BY class_id", {"ds": ds}
            ).fetchall()
        total = sum(n for _, n in rows)
        return {int(c): n / total for c, n in rows}

    day1, day2 = shares(DAY1), shares(DAY2)
    expected = max(abs(day1.get(c, 0) - day2.get(c, 0)) for c in set(day1) | set(day2))
    assert gates[DAY2]["measures"]["class_share_change"] == pytest.approx(expected) and expected < 0.2

    rarest = min(day1, key=lambda c: day1[c])
    for part in sorted((band_run["root"] / DAY2 / "scores").glob("*.parquet")):
        table = pq.read_table(part)
        ids = pa.array([rarest] * table.num_rows, table.schema.field("class_id").type)
        pq.write_table(table.set_column(table.schema.get_field_index("class_id"), "class_id", ids), part)
    with pytest.raises(
        PredictionGateError,
        match=r"class_share_change \S+ is above score.max_class_share_change 0.2 "
        rf"\(class {rarest}: 1.0000 of the rows vs",
    ):
        run.run("publish_scores", ds=DAY2, **where)
    assert shares(DAY2) == day2  # the published day 2 stays as it was
