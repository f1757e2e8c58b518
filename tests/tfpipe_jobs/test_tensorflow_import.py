"""TensorFlow without Keras 3: a scoring worker still loads and runs the serving model, and the
job command's steps still extract, train (tf_keras) and export."""

from __future__ import annotations

import json
import subprocess
import sys

# Run in a fresh interpreter: the test session has imported TensorFlow (and Keras) already.
WORKER = """
import json, sys
from tfpipe_jobs.tensorflow_import import import_tensorflow
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

    from tfpipe_jobs.tensorflow_import import KERAS_3_OPTIMIZERS, TF_KERAS_OPTIMIZERS, import_tensorflow

    assert import_tensorflow() is tf
    assert all(sys.modules.get(name, "absent") is not None for name in (KERAS_3_OPTIMIZERS, TF_KERAS_OPTIMIZERS))


# The job command in a fresh interpreter, as a pod runs it: three steps in a row.
CHAIN = """
import json, sys
from tfpipe_jobs import cli
spec, ds, root, warehouse = sys.argv[1:5]
codes = {}
for step in ("extract_transform", "train", "export_serving_model"):
    codes[step] = cli.main([step, "--spec", spec, "--ds", ds, "--artifact-root", root, "--warehouse", warehouse,
                            "--set", "train.epochs=1"])
tops = {m.split(".")[0] for m in sys.modules}
print("RESULT " + json.dumps({"codes": codes, "loaded": sorted(tops & {"keras", "tf_keras", "matplotlib"})}))
"""


def test_the_job_command_extracts_trains_and_exports_without_keras_3(ctr_warehouse, tmp_path) -> None:
    ds = ctr_warehouse.day().name
    root = tmp_path / "artifacts"
    args = [ctr_warehouse.spec, ds, str(root), ctr_warehouse.warehouse]
    out = subprocess.run(
        [sys.executable, "-c", CHAIN, *args], capture_output=True, text=True, timeout=900, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))[7:])
    assert result["codes"] == {"extract_transform": 0, "train": 0, "export_serving_model": 0}
    # tf_keras for the model; matplotlib for the learning curves, imported after the step's module.
    assert result["loaded"] == ["matplotlib", "tf_keras"]
    day = root / "ctr" / ds
    assert (day / "model" / "curves.png").stat().st_size > 0
    assert (day / "serving" / "saved_model" / "saved_model.pb").exists()
