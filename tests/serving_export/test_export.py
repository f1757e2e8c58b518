"""The serving SavedModel: equal to the trained model, usable with TensorFlow alone."""

from __future__ import annotations

import json
import subprocess
import sys

# A fresh interpreter with only TensorFlow: no tfpipe module is imported or needed.
STANDALONE = r"""
import json, sys
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
def example(**features):
    ex = tf.train.Example()
    for name, value in features.items():
        if isinstance(value, str):
            ex.features.feature[name].bytes_list.value.append(value.encode())
        else:
            ex.features.feature[name].float_list.value.append(float(value))
    return ex.SerializeToString()
rows = [
    example(user_id="u1", item_id="i3", item_category="cat_01", device="mobile", country="c07", hour=20,
            user_age=31, item_price=12.5, position=1),
    example(user_id="never-seen", item_id="i3", device="tv", hour=3, item_price=80.0, position=19),  # OOV + NULLs
    example(),  # every feature missing
]
out = model.signatures["serving_default"](examples=tf.constant(rows))
raw = model.signatures["predict_raw"](
    user_id=tf.constant(["u1"]), item_id=tf.constant(["i3"]), item_category=tf.constant(["cat_01"]),
    device=tf.constant(["mobile"]), country=tf.constant(["c07"]), hour=tf.constant([20.0]),
    user_age=tf.constant([31.0]), item_price=tf.constant([12.5]), position=tf.constant([1.0]))
transformed = model.signatures["transform_features"](examples=tf.constant(rows[:1]))
print("RESULT " + json.dumps({
    "signatures": sorted(model.signatures.keys()),
    "probability": out["probability"].numpy().tolist(),
    "raw": raw["probability"].numpy().tolist(),
    "transformed": sorted(transformed.keys()),
}))
"""


def test_equivalence_report(ctr_run) -> None:
    report = json.loads((ctr_run.day() / "serving" / "equivalence.json").read_text())
    assert report["equal"] is True
    assert report["max_abs_diff"] <= 1e-5
    assert set(report["max_abs_diff_by_signature"]) == {"predict_raw", "serving_default"}
    assert report["rows_compared"] == ctr_run.results["extract"]["eval_rows"]


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
    path = ctr_run.day() / "serving" / "saved_model"
    out = subprocess.run([sys.executable, "-c", STANDALONE, str(path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))[7:])
    assert result["signatures"] == ["predict_raw", "serving_default", "transform_features"]
    probs = result["probability"]
    assert len(probs) == 3 and all(0.0 < p < 1.0 for p in probs)
    assert abs(result["raw"][0] - probs[0]) < 1e-6  # both signatures agree on the same row
    assert "user_id_xf" in result["transformed"]
