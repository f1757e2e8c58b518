"""export_serving_model: the trained model + tf.Transform graph -> one serving SavedModel.

The model's variables are folded into constants (its concrete function, frozen); the
tf.Transform layer stays a tracked object because its vocabulary lookups are resource
tables, which freezing cannot fold. A `tf.Module` calls both, so a loaded model needs
nothing but TensorFlow. Each signature is then frozen whole, rewritten and optimised
once by Grappler into one flat function (`optimize.py`, `export.optimize`); `export.xla`
also XLA-compiles the dense part. The optimised signatures make each raw column dense
once and treat a NaN / b"" value like an absent one; a `tf.Example` feature with more than
one value (as in training), or a `predict_raw` feature with another number of values than
rows, fails with an error naming the feature. Before publishing, the export is loaded back and its
predictions are compared with the trained model's on the day's raw eval rows; a
difference above the tolerance (1e-5, or `export.xla_tolerance` with XLA) fails the step.

Signatures (stable across architectures):
  serving_default(examples: string[N])  serialized raw tf.Examples -> predictions
  predict_raw(<feature>: [N] ...)       raw features by name (NaN / b"" = missing)
  transform_features(examples)          the transformed features, for checking skew
Predictions: binary {probability}, multiclass {probabilities, class_id}, regression {value}.

Beside the SavedModel: `equivalence.json` (both signatures vs the trained model, the
export config, the graph's node counts before/after and what each rewrite changed),
`signatures.txt` (what `saved_model_cli show --all` prints), and inside it
`assets.extra/tf_serving_warmup_requests` (TensorFlow Serving replays it at load time).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tensorflow.core.framework import attr_value_pb2
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
from tfx_bsl.tfxio import tensor_adapter

from tfpipe_jobs import arrow_batches, artifacts, eval_rows, preprocessing, registry
from tfpipe_jobs.context import JobContext
from tfpipe_jobs.serving_export import densify, optimize
from tfpipe_operators.config import ExportConfig
from tfpipe_operators.features import LABEL_KEY, OUTPUT_KEYS, Task
from tfpipe_operators.spec import PipelineSpec

log = logging.getLogger(__name__)

TOLERANCE = 1e-5
SAVED_MODEL_DIR = artifacts.SAVED_MODEL_DIR
_TF_TYPES = {"float": tf.float32, "string": tf.string}
_MISSING: dict[str, float | bytes] = {"float": float("nan"), "string": b""}


class ExportMismatchError(RuntimeError):
    """The exported model does not reproduce the trained model's predictions."""


def prediction_outputs(task: Task, scores: tf.Tensor) -> dict[str, tf.Tensor]:
    if task is Task.BINARY:
        return {"probability": tf.reshape(scores, [-1])}
    if task is Task.MULTICLASS:
        return {"probabilities": scores, "class_id": tf.argmax(scores, axis=-1)}
    return {"value": tf.reshape(scores, [-1])}


def freeze(model: Any) -> tuple[Any, list[str]]:
    """The model's inference function with variables folded into constants, and its input order."""
    specs = {t.name: tf.TensorSpec([None], t.dtype, name=t.name) for t in model.inputs}
    concrete = tf.function(lambda inputs: model(inputs, training=False)).get_concrete_function(specs)
    frozen = convert_variables_to_constants_v2(concrete)
    order = [t.name.split(":")[0] for t in frozen.inputs]
    return frozen, order


def dense_function(model: Any, xla: bool) -> Callable[[dict[str, tf.Tensor]], tf.Tensor]:
    """transformed features -> scores, through the frozen model; XLA-compiled if asked.

    XLA fuses the dense layers into one compiled kernel (no per-op dispatch, no oneDNN
    set-up per tiny matmul) but compiles once per batch size it meets: a server with
    varying batch sizes pays that on each new size, hence off by default."""
    frozen, order = freeze(model)

    def dense(transformed: dict[str, tf.Tensor]) -> tf.Tensor:
        return frozen(*[transformed[name] for name in order])[0]

    if not xla:
        return dense
    compiled = tf.function(lambda *inputs: frozen(*inputs)[0], jit_compile=True)
    return lambda transformed: compiled(*[transformed[name] for name in order])


def refuse_by_name(wrong: tf.Tensor, names: list[str], counts: tf.Tensor, message: list[Any]) -> tf.Operation:
    """One check over all features (a check per feature would cost a chain of nodes each on
    every call): fails unless no entry of `wrong` is true, listing the features that are
    and their counts."""
    at = tf.where(wrong)[:, 0]
    # The raw op: `tf.debugging.Assert` wraps int64 data in a cond, which freezing turns
    # into switch/merge nodes.
    return tf.raw_ops.Assert(
        condition=tf.logical_not(tf.reduce_any(wrong)),
        data=[*message, "features:", tf.gather(tf.constant(names), at), "values:", tf.gather(counts, at)],
        summarize=len(names),
    )


def kept(tensor: tf.Tensor) -> tf.Tensor:
    """`tensor`, its op marked so that Grappler keeps it (with its control inputs) even when
    it computes nothing, e.g. a reshape of [N] to [N] that must wait for an input check."""
    tensor.op._set_attr("_grappler_do_not_remove", attr_value_pb2.AttrValue(b=True))
    return tensor


class ServingModule(tf.Module):  # type: ignore[misc]
    """The three serving signatures over one tf.Transform layer and one model.

    By default the model is frozen and each signature is frozen whole and optimised by
    Grappler (`optimize.py`); `export.xla` compiles the model's dense part with XLA.
    `plain=True` calls the trained model as it is (variables, no freezing, no Grappler
    pass at export): the benchmark's baseline, never what the step publishes.
    """

    def __init__(
        self,
        spec: PipelineSpec,
        model: Any,
        tft_output: tft.TFTransformOutput,
        config: ExportConfig | None = None,
        plain: bool = False,
    ) -> None:
        super().__init__()
        config = config or ExportConfig()
        self._spec = spec
        self.tft_layer = tft_output.transform_features_layer()
        self._plain = plain
        self._raw_spec = preprocessing.raw_feature_spec(spec, with_label=False)
        self._transformed_names = [f.transformed_name for f in spec.features]
        if plain:
            self.model = model
            self._dense: Callable[[dict[str, tf.Tensor]], tf.Tensor] = lambda x: model(x, training=False)
        else:
            self._dense = dense_function(model, xla=config.xla)

        examples = [tf.TensorSpec([None], tf.string, name="examples")]
        raw = [{f.name: tf.TensorSpec([None], _TF_TYPES[f.raw_type], name=f.name) for f in spec.raw_features}]
        signatures = {
            "serving_default": (self._serve_examples, examples),
            "predict_raw": (self._serve_raw, raw),
            "transform_features": (self._transform_examples, examples),
        }
        self.graph_nodes: dict[str, dict[str, int]] = {}
        functions = {}
        for name, (fn, signature) in signatures.items():
            if config.optimize and not plain:
                functions[name], self.graph_nodes[name] = optimize.optimized(
                    fn, signature, name, eigen_matmul=config.eigen_matmul
                )
            else:
                functions[name] = tf.function(fn, input_signature=signature)
        self.serve_examples = functions["serving_default"]
        self.serve_raw = functions["predict_raw"]
        self.transform_examples = functions["transform_features"]

    def _transformed(self, raw: dict[str, Any]) -> dict[str, tf.Tensor]:
        out = self.tft_layer(raw)
        return {k: out[k] for k in self._transformed_names}

    def _predict(self, raw: dict[str, Any]) -> dict[str, tf.Tensor]:
        return prediction_outputs(self._spec.label.task, self._dense(self._transformed(raw)))

    def _parse(self, examples: tf.Tensor) -> dict[str, Any]:
        parsed = tf.io.parse_example(examples, self._raw_spec)
        if self._plain:  # sparse, the way tf.Transform was fed
            return parsed
        # Made dense once here, one value or none per row, so that `densify.densify` can
        # skip tf.Transform's own sparse round trip. A second value of a feature in an
        # example is refused, as in training, by one check naming the feature (a parsed
        # column's dense shape is [rows, most values in one example]); the columns wait for
        # it, so that it is the error a caller sees rather than an index out of bounds.
        names = [f.name for f in self._spec.raw_features]
        most = tf.stack([parsed[n].dense_shape for n in names])[:, 1]
        check = refuse_by_name(
            most > 1, names, most, ["a tf.Example holds more than one value of a feature (one or none expected);"]
        )
        one_per_row = tf.stack([tf.shape(examples, out_type=tf.int64)[0], tf.constant(1, tf.int64)])
        dense = {}
        with tf.control_dependencies([check]):
            for f in self._spec.raw_features:
                column = parsed[f.name]
                filled = tf.sparse.to_dense(
                    tf.SparseTensor(column.indices, column.values, one_per_row), default_value=_MISSING[f.raw_type]
                )
                dense[f.name] = tf.reshape(filled, [-1])
        return self._sparse_columns(dense)

    def _sparse_columns(self, features: dict[str, tf.Tensor]) -> dict[str, tf.SparseTensor]:
        raw = {}
        for f in self._spec.raw_features:
            raw[f.name] = densify.sparse_view(features[f.name], _MISSING[f.raw_type])
        return raw

    def _serve_examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._predict(self._parse(examples))

    def _transform_examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._transformed(self._parse(examples))

    def _serve_raw(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        if self._plain:
            return self._predict(self._sparse_columns(features))
        # A feature with more or fewer values than the first one's rows would fail deep in
        # the model with a shape error naming no feature: checked first, by name; the
        # columns wait for the check (their reshapes are kept although they change nothing).
        first = self._spec.raw_features[0].name
        rows = tf.shape(features[first])[0]
        names = [f.name for f in self._spec.raw_features]
        counts = tf.stack([tf.size(features[n]) for n in names])
        check = refuse_by_name(
            tf.not_equal(counts, rows),
            names,
            counts,
            [f"predict_raw takes one value per row of every feature; rows (those of {first!r}):", rows],
        )
        with tf.control_dependencies([check]):
            columns = {name: kept(tf.reshape(features[name], [-1])) for name in names}
        return self._predict(self._sparse_columns(columns))


def save(module: ServingModule, path: str) -> None:
    tf.saved_model.save(
        module,
        path,
        signatures={
            "serving_default": module.serve_examples,
            "predict_raw": module.serve_raw,
            "transform_features": module.transform_examples,
        },
    )


def reference_predictions(spec: PipelineSpec, model: Any, tft_output: tft.TFTransformOutput, table: Any) -> np.ndarray:
    """Trained model + transform on the eval rows, fed the way training was fed (TFXIO)."""
    names = [f.name for f in spec.raw_features]
    schema = arrow_batches.tfxio_schema(spec)
    adapter = tensor_adapter.TensorAdapter(
        tensor_adapter.TensorAdapterConfig(
            schema.remove(schema.get_field_index(LABEL_KEY)), preprocessing.tensor_representations(names)
        )
    )
    layer = tft_output.transform_features_layer()
    out = []
    for batch in table.to_batches(max_chunksize=4096):
        columns = arrow_batches.raw_columns(spec, batch, with_label=False)
        tensors = adapter.ToBatchTensors(arrow_batches.to_tfxio(columns))
        transformed = layer(tensors)
        inputs = {f.transformed_name: transformed[f.transformed_name] for f in spec.features}
        out.append(model(inputs, training=False).numpy())
    return np.concatenate(out)


def raw_examples(spec: PipelineSpec, table: Any) -> list[bytes]:
    """Raw rows as serialized tf.Examples (what an online client sends), encoded in C++."""
    from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder

    encoder = RecordBatchToExamplesEncoder()
    out: list[bytes] = []
    for batch in table.to_batches(max_chunksize=4096):
        out += encoder.encode(arrow_batches.to_tfxio(arrow_batches.raw_columns(spec, batch, with_label=False)))
    return out


def write_warmup_requests(saved_model_dir: str, spec: PipelineSpec, examples: list[bytes]) -> str:
    """`assets.extra/tf_serving_warmup_requests`: TensorFlow Serving replays it at load time."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    folder = artifacts.join(saved_model_dir, "assets.extra")
    tf.io.gfile.makedirs(folder)
    path = artifacts.join(folder, "tf_serving_warmup_requests")
    with tf.io.TFRecordWriter(path) as writer:
        for size in (1, len(examples)):  # the shapes a server sees most: one row, a batch
            request = predict_pb2.PredictRequest()
            request.model_spec.name = spec.pipeline
            request.model_spec.signature_name = "serving_default"
            request.inputs["examples"].CopyFrom(tf.make_tensor_proto(examples[:size], dtype=tf.string))
            log_entry = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log_entry.SerializeToString())
    return path


def signature_summary(saved_model_dir: str) -> str:
    """What `saved_model_cli show --all` prints: inputs, outputs, dtypes of every signature."""
    import subprocess
    import sys
    from pathlib import Path

    cli = Path(sys.executable).parent / "saved_model_cli"
    out = subprocess.run(
        [str(cli), "show", "--dir", saved_model_dir, "--all"], capture_output=True, text=True, check=True
    )
    return out.stdout


def example_predictions(saved_model: Any, spec: PipelineSpec, examples: list[bytes]) -> np.ndarray:
    fn = saved_model.signatures["serving_default"]
    key = OUTPUT_KEYS[spec.label.task.value]
    parts = [fn(examples=tf.constant(examples[i : i + 4096]))[key].numpy() for i in range(0, len(examples), 4096)]
    return np.concatenate(parts)


def tolerance(config: ExportConfig) -> float:
    """Exact-path exports must match to 1e-5; XLA may reorder float sums and approximate
    activations, so it is held to its own documented `export.xla_tolerance`."""
    return config.xla_tolerance if config.xla else TOLERANCE


def compare(
    spec: PipelineSpec, reference: np.ndarray, loaded: Any, table: Any, examples: list[bytes]
) -> dict[str, float]:
    """Max |exported - trained| per prediction signature over the same rows."""
    diffs = {}
    for name, exported in (
        ("predict_raw", eval_rows.exported_predictions(loaded, spec, table)),
        ("serving_default", example_predictions(loaded, spec, examples)),
    ):
        diffs[name] = float(np.max(np.abs(reference.reshape(exported.shape) - exported))) if table.num_rows else 0.0
    return diffs


def run(ctx: JobContext) -> dict[str, Any]:
    data_dir = artifacts.require_complete(ctx.paths.data, "extract_transform")
    model_dir = artifacts.require_complete(ctx.paths.model, "train")
    tft_output = tft.TFTransformOutput(data_dir)
    model = keras.models.load_model(artifacts.join(model_dir, "keras_model"), compile=False)
    table = eval_rows.read_eval_raw(data_dir, max_rows=50_000)
    config = ctx.config.export
    allowed = tolerance(config)

    with artifacts.staged_output(ctx.paths.serving) as out:
        path = artifacts.join(out, SAVED_MODEL_DIR)
        module = ServingModule(ctx.spec, model, tft_output, config)
        save(module, path)
        reference = reference_predictions(ctx.spec, model, tft_output, table)
        examples = raw_examples(ctx.spec, table)
        diffs = compare(ctx.spec, reference, tf.saved_model.load(path), table, examples)
        max_diff = max(diffs.values())
        report = {
            "rows_compared": table.num_rows,
            "max_abs_diff": max_diff,
            "max_abs_diff_by_signature": diffs,
            "tolerance": allowed,
            "equal": max_diff <= allowed,
            "export_config": config.model_dump(),
            "graph_nodes": module.graph_nodes,  # executable nodes before/after Grappler
            **ctx.provenance(),
        }
        artifacts.write_json(artifacts.join(out, "equivalence.json"), report)
        if max_diff > allowed:
            raise ExportMismatchError(
                f"exported model differs from the trained model by {max_diff:.3g} (> {allowed}, "
                f"export config {config.model_dump()}) on {table.num_rows} eval rows ({diffs}); "
                f"not publishing {ctx.paths.serving}"
            )
        write_warmup_requests(path, ctx.spec, examples[:16])
        artifacts.write_text(artifacts.join(out, "signatures.txt"), signature_summary(path))
    # The published folder: on an object store the output lives in a version folder that
    # `serving/_CURRENT` names, not under `serving/` itself.
    published = artifacts.require_complete(ctx.paths.serving, "export_serving_model")
    version = registry.model_version(ctx.ds.isoformat(), registry.saved_model_digest(published))
    log.info("export: %s eval rows, max |diff| %.3g -> %s (%s)", table.num_rows, max_diff, ctx.paths.serving, version)
    return {
        "serving": ctx.paths.serving,
        "model_version": version,
        "rows_compared": table.num_rows,
        "max_abs_diff": max_diff,
    }
