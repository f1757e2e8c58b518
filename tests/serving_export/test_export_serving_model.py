"""The serving SavedModel: equal to the trained model, usable with TensorFlow alone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

CTR_SPEC = Path(__file__).resolve().parents[2] / "dags" / "pipelines" / "ctr" / "pipeline.yaml"
DS = "2026-11-21"  # the day the shared sample run covers (tests/conftest.py)

# A fresh interpreter with only TensorFlow: no tfpipe module is imported or needed. It builds
# tf.Examples from plain rows (JSON), scores them through both prediction signatures and
# prints every output.
STANDALONE = r"""
import json, math, sys
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
rows = json.loads(sys.argv[2])
def example(row):
    ex = tf.train.Example()
    for name, value in row.items():
        if isinstance(value, str):
            ex.features.feature[name].bytes_list.value.append(value.encode())
        else:
            ex.features.feature[name].float_list.value.append(float(value))
    return ex.SerializeToString()
out = model.signatures["serving_default"](examples=tf.constant([example(r) for r in rows]))
raw_sig = model.signatures["predict_raw"]
specs = raw_sig.structured_input_signature[1]
raw = raw_sig(**{
    name: tf.constant([r.get(name, "" if spec.dtype == tf.string else math.nan) for r in rows], spec.dtype)
    for name, spec in specs.items()
})
transformed = model.signatures["transform_features"](examples=tf.constant([example(rows[0])]))
print("RESULT " + json.dumps({
    "signatures": sorted(model.signatures.keys()),
    "examples": {k: v.numpy().tolist() for k, v in out.items()},
    "raw": {k: v.numpy().tolist() for k, v in raw.items()},
    "transformed": sorted(transformed.keys()),
}))
"""
ROWS = [
    {
        "user_id": "u1",
        "item_id": "i3",
        "item_category": "cat_01",
        "device": "mobile",
        "country": "c07",
        "hour": 20,
        "user_age": 31,
        "item_price": 12.5,
        "position": 1,
    },
    {"user_id": "never-seen", "item_id": "i3", "device": "tv", "hour": 3, "item_price": 80.0, "position": 19},
    {},  # every feature missing
]


def score_standalone(saved_model: Path, label: str) -> dict:
    """Score ROWS (without the label column) in a fresh process that imports only TensorFlow."""
    rows = [{k: v for k, v in row.items() if k != label} for row in ROWS]
    out = subprocess.run(
        [sys.executable, "-c", STANDALONE, str(saved_model), json.dumps(rows)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))[7:])


def test_equivalence_report(ctr_run) -> None:
    report = json.loads((ctr_run.day() / "serving" / "equivalence.json").read_text())
    assert report["equal"] is True
    assert report["max_abs_diff"] <= 1e-5
    assert set(report["max_abs_diff_by_signature"]) == {"predict_raw", "serving_default"}
    assert report["rows_compared"] == ctr_run.results["extract_transform"]["eval_rows"]
    assert report["tolerance"] == 1e-5 and report["export_config"]["optimize"] is True
    assert report["export_config"]["xla"] is False and report["export_config"]["eigen_matmul"] is True


def test_grappler_shrinks_every_signature(ctr_run) -> None:
    nodes = json.loads((ctr_run.day() / "serving" / "equivalence.json").read_text())["graph_nodes"]
    assert set(nodes) == {"serving_default", "predict_raw", "transform_features"}
    for counts in nodes.values():
        assert 0 < counts["nodes_after"] < counts["nodes_before"], nodes
    # The sample's mlp: two hidden layers and the output layer, on Eigen's kernel by default;
    # the transformed features have no dense layer.
    assert nodes["serving_default"]["eigen_matmuls"] == nodes["predict_raw"]["eigen_matmuls"] == 3
    assert nodes["transform_features"]["eigen_matmuls"] == 0


def _beside(ctr_run, tmp_path: Path) -> str:
    """An artifact root holding the shared run's data and model, for a second export."""
    root = tmp_path / "artifacts"
    for step in ("data", "model"):
        shutil.copytree(ctr_run.day() / step, root / "ctr" / DS / step)
    return str(root)


def test_xla_option_reports_its_own_tolerance(ctr_run, tmp_path: Path) -> None:
    root = _beside(ctr_run, tmp_path)
    result = ctr_run.run("export_serving_model", "--set", "export.xla=true", artifacts=root)
    assert result["exit_code"] == 0
    serving = Path(root) / "ctr" / DS / "serving"
    report = json.loads((serving / "equivalence.json").read_text())
    assert report["export_config"]["xla"] is True and report["tolerance"] == 1e-4
    assert report["equal"] is True and report["max_abs_diff"] == result["max_abs_diff"] <= 1e-4
    assert b"_XlaMustCompile" in (serving / "saved_model" / "saved_model.pb").read_bytes()
    xla = score_standalone(serving / "saved_model", label="clicked")["examples"]["probability"]
    default = score_standalone(ctr_run.day() / "serving" / "saved_model", label="clicked")["examples"]["probability"]
    assert np.allclose(xla, default, atol=1e-4, rtol=0)


def test_a_mismatch_fails_the_step_and_publishes_nothing(ctr_run, tmp_path: Path, monkeypatch) -> None:
    from tfpipe_jobs.serving_export import export_serving_model as export

    reference = export.reference_predictions
    monkeypatch.setattr(export, "reference_predictions", lambda *a: reference(*a) + 1e-3)  # a drifted model
    root = _beside(ctr_run, tmp_path)
    with pytest.raises(export.ExportMismatchError, match=r"differs from the trained model by 0\.001 \(> 1e-05"):
        ctr_run.run("export_serving_model", artifacts=root)
    assert not (Path(root) / "ctr" / DS / "serving").exists()


def test_signature_summary_and_warmup_requests(ctr_run) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    serving = ctr_run.day() / "serving"
    summary = (serving / "signatures.txt").read_text()
    for text in ("signature_def['serving_default']", "signature_def['predict_raw']", "outputs['probability']"):
        assert text in summary
    warmup = serving / "saved_model" / "assets.extra" / "tf_serving_warmup_requests"
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(warmup))]
    assert [len(log.predict_log.request.inputs["examples"].string_val) for log in logs] == [1, 16]
    model = tf.saved_model.load(str(serving / "saved_model"))
    request = logs[1].predict_log.request
    out = model.signatures[request.model_spec.signature_name](examples=tf.make_ndarray(request.inputs["examples"]))
    assert out["probability"].shape == (16,)


def test_loads_and_scores_with_tensorflow_only(ctr_run) -> None:
    result = score_standalone(ctr_run.day() / "serving" / "saved_model", label="clicked")
    assert result["signatures"] == ["predict_raw", "serving_default", "transform_features"]
    probs = result["examples"]["probability"]
    assert set(result["examples"]) == {"probability"}
    assert len(probs) == 3 and all(0.0 < p < 1.0 for p in probs)
    # Both signatures agree row by row (a NaN / "" raw value is the same as an absent feature).
    assert np.allclose(result["raw"]["probability"], probs, atol=1e-6, rtol=0)
    assert "user_id_xf" in result["transformed"]


def test_a_feature_with_two_values_is_refused_by_name(ctr_run) -> None:
    import tensorflow as tf

    model = tf.saved_model.load(str(ctr_run.day() / "serving" / "saved_model"))
    good, bad = tf.train.Example(), tf.train.Example()
    good.features.feature["user_age"].float_list.value.append(30.0)
    bad.features.feature["device"].bytes_list.value.append(b"tv")
    bad.features.feature["user_age"].float_list.value.extend([30.0, 31.0])  # one value per example expected
    batch = tf.constant([good.SerializeToString(), bad.SerializeToString()])
    for signature in ("serving_default", "transform_features"):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"more than one value.*features:\] \[user_age\]"):
            model.signatures[signature](examples=batch)


def test_predict_raw_refuses_a_feature_with_more_values_than_rows_by_name(ctr_run) -> None:
    import tensorflow as tf

    model = tf.saved_model.load(str(ctr_run.day() / "serving" / "saved_model"))
    predict = model.signatures["predict_raw"]
    specs = predict.structured_input_signature[1]
    rows = {name: tf.constant(["" if spec.dtype == tf.string else np.nan], spec.dtype) for name, spec in specs.items()}
    assert predict(**rows)["probability"].shape == (1,)
    for wrong in (tf.constant([[30.0, 31.0]]), tf.constant([30.0, 31.0])):  # two values for one row
        with pytest.raises(
            tf.errors.InvalidArgumentError, match=r"one value per row.*features:\] \[user_age\] \[values:\] \[2\]"
        ):
            predict(**{**rows, "user_age": wrong})


# --- every task type: a pipeline per task on the same sample warehouse -------------------

TASK_SQL = """SELECT event_id, {columns}
FROM events
WHERE event_date BETWEEN DATE_SUB(@ds, INTERVAL @lookback_days DAY) AND @ds
"""
TASKS = {
    # task: (label column, its spec entry)
    "multiclass": ("device", {"column": "device", "task": "multiclass", "num_classes": 4}),
    "regression": ("item_price", {"column": "item_price", "task": "regression"}),
}


@pytest.fixture(scope="module", params=sorted(TASKS))
def task_export(request: pytest.FixtureRequest, ctr_warehouse, tmp_path_factory: pytest.TempPathFactory):
    """extract, train and export a pipeline whose label is another column of the events."""
    task = request.param
    label, label_spec = TASKS[task]
    folder = tmp_path_factory.mktemp(task) / "pipelines" / f"ctr_{task}"
    shutil.copytree(CTR_SPEC.parent, folder)
    spec = yaml.safe_load((folder / "pipeline.yaml").read_text())
    spec["pipeline"] = f"ctr_{task}"
    spec["label"] = label_spec
    spec["features"] = [f for f in spec["features"] if f["name"] != label]
    spec["source"]["sql"] = "train_task.sql"
    spec["train"]["epochs"] = 1
    spec.pop("gate")  # the task's default gate metric
    # Warehouse columns only: a cross is built inside the transform from other features.
    columns = [f["name"] for f in spec["features"] if f.get("kind") != "cross"] + [label]
    (folder / "train_task.sql").write_text(TASK_SQL.format(columns=", ".join(columns)))
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    root = str(folder.parent.parent / "artifacts")
    results = {}
    for step in ("extract_transform", "train", "export_serving_model"):
        results[step] = ctr_warehouse.run(step, spec=str(folder / "pipeline.yaml"), artifacts=root)
        assert results[step]["exit_code"] == 0, (step, results[step])
    results["features"] = [f["name"] for f in spec["features"]]
    return task, label, Path(root) / f"ctr_{task}" / DS, results


def test_every_task_exports_equal_to_the_trained_model(task_export) -> None:
    task, _, day, results = task_export
    report = json.loads((day / "serving" / "equivalence.json").read_text())
    assert report["equal"] is True and report["tolerance"] == 1e-5
    assert 0 <= report["max_abs_diff"] <= 1e-5
    assert report["rows_compared"] == results["extract_transform"]["eval_rows"] > 0
    summary = (day / "serving" / "signatures.txt").read_text()
    outputs = {"multiclass": ["probabilities", "class_id"], "regression": ["value"]}[task]
    for name in outputs:
        assert f"outputs['{name}']" in summary


def test_every_task_scores_with_tensorflow_only(task_export) -> None:
    task, label, day, results = task_export
    result = score_standalone(day / "serving" / "saved_model", label=label)
    assert result["signatures"] == ["predict_raw", "serving_default", "transform_features"]
    out, raw = result["examples"], result["raw"]
    if task == "multiclass":
        assert set(out) == {"probabilities", "class_id"}
        probs = np.array(out["probabilities"])
        assert probs.shape == (3, 4) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        assert out["class_id"] == probs.argmax(axis=1).tolist()
        assert np.allclose(raw["probabilities"], probs, atol=1e-6, rtol=0) and raw["class_id"] == out["class_id"]
    else:
        assert set(out) == {"value"}
        values = np.array(out["value"])
        assert values.shape == (3,) and np.isfinite(values).all()
        assert np.allclose(raw["value"], values, atol=1e-5, rtol=1e-6)
    assert sorted(result["transformed"]) == sorted(f"{name}_xf" for name in results["features"])
