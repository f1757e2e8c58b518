"""A scoring worker's TensorFlow: imported without Keras, and still loads and runs the serving model."""

from __future__ import annotations

import json
import subprocess
import sys

# Run in a fresh interpreter: the test session has imported TensorFlow (and Keras) already.
WORKER = """
import json, sys
from tfpipe_jobs.inference_runtime import import_tensorflow
tf = import_tensorflow()
tops = {m.split(".")[0] for m in sys.modules}
loaded_at_import = sorted(tops & {"keras", "tf_keras", "matplotlib"})
model = tf.saved_model.load(sys.argv[1])
out = model.signatures["predict_raw"](
    user_id=tf.constant(["u1", ""]), item_id=tf.constant(["i1", "never-seen"]),
    item_category=tf.constant(["books", ""]), device=tf.constant(["mobile", ""]),
    country=tf.constant(["c01", ""]), hour=tf.constant([3.0, float("nan")]),
    user_age=tf.constant([30.0, float("nan")]), item_price=tf.constant([9.5, float("nan")]),
    position=tf.constant([1.0, float("nan")]),
)
dense = tf.keras.layers.Dense(2)  # tf.keras still loads on first use
print("RESULT " + json.dumps({
    "loaded_at_import": loaded_at_import,
    "probability": out["probability"].numpy().tolist(),
    "dense_module": type(dense).__module__,
    "dense_units": dense.units,
}))
"""


def test_scoring_worker_loads_the_model_without_keras(ctr_run) -> None:
    saved_model = ctr_run.day() / "serving" / "saved_model"
    out = subprocess.run([sys.executable, "-c", WORKER, str(saved_model)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))[7:])
    assert result["loaded_at_import"] == []
    assert len(result["probability"]) == 2
    assert all(0.0 < p < 1.0 for p in result["probability"])
    assert result["dense_module"].split(".")[0] in ("keras", "tf_keras") and result["dense_units"] == 2


def test_an_import_after_tensorflow_returns_the_same_module() -> None:
    import tensorflow as tf

    from tfpipe_jobs.inference_runtime import EAGER_KERAS_MODULES, import_tensorflow

    assert import_tensorflow() is tf
    assert all(sys.modules.get(name, "absent") is not None for name in EAGER_KERAS_MODULES)
