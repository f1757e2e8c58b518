"""The tf.Transform side of the features module: raw specs and the `preprocessing_fn`.

Generated from the pipeline spec, so adding a feature is a line of YAML. Raw features
are sparse (a NULL in the warehouse is an absent value) and are densified here, with
the fill chosen per kind, so training and serving share one definition of "missing".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_metadata.proto.v0 import schema_pb2

from tfpipe_jobs import artifacts
from tfpipe_operators.features import LABEL_KEY, Feature, FeatureKind, Task, vocabulary_file_for_label
from tfpipe_operators.spec import PipelineSpec

_TF_TYPES = {"float": tf.float32, "string": tf.string, "int": tf.int64}


@dataclass
class AnalyzerResults:
    """What the analyzers found on the training rows; the transform graph's constants and assets."""

    means: dict[str, float] = field(default_factory=dict)
    variances: dict[str, float] = field(default_factory=dict)
    boundaries: dict[str, list[float]] = field(default_factory=dict)
    # vocabulary file name -> (value, count), in the file's order
    vocabularies: dict[str, list[tuple[bytes, int]]] = field(default_factory=dict)
    counts_files: dict[str, str] = field(default_factory=dict)  # vocabulary file -> its counts file
    paths: dict[str, str] = field(default_factory=dict)  # vocabulary file -> where it was written

    def write(self, folder: str) -> None:
        """The vocabulary files (one value per line) and their counts files (`<count> <value>`)."""
        artifacts.make_dirs(folder)
        for name, entries in self.vocabularies.items():
            self.paths[name] = artifacts.join(folder, name)
            artifacts.write_bytes(self.paths[name], b"".join(token + b"\n" for token, _ in entries))
            if name in self.counts_files:
                counts = b"".join(b"%d %s\n" % (count, token) for token, count in entries)
                self.paths[self.counts_files[name]] = artifacts.join(folder, self.counts_files[name])
                artifacts.write_bytes(self.paths[self.counts_files[name]], counts)


def label_dtype(task: Task) -> tf.DType:
    return {Task.BINARY: tf.int64, Task.MULTICLASS: tf.string, Task.REGRESSION: tf.float32}[task]


def raw_feature_spec(spec: PipelineSpec, with_label: bool = True) -> dict[str, tf.io.VarLenFeature]:
    """How raw features (and the label) are parsed from a `tf.Example`: every one optional."""
    out = {f.name: tf.io.VarLenFeature(_TF_TYPES[f.raw_type]) for f in spec.raw_features}
    if with_label:
        out[LABEL_KEY] = tf.io.VarLenFeature(label_dtype(spec.label.task))
    return out


def tensor_representations(names: list[str]) -> dict[str, schema_pb2.TensorRepresentation]:
    """Every raw list column becomes a `tf.SparseTensor` of dense shape [batch, 1]."""
    reps = {}
    for name in names:
        rep = schema_pb2.TensorRepresentation()
        rep.varlen_sparse_tensor.column_name = name
        reps[name] = rep
    return reps


def _dense(sparse: tf.SparseTensor, default: Any) -> tf.Tensor:
    shape = tf.stack([sparse.dense_shape[0], tf.constant(1, tf.int64)])
    full = tf.sparse.to_dense(tf.SparseTensor(sparse.indices, sparse.values, shape), default_value=default)
    return tf.squeeze(full, axis=1)


def _present(sparse: tf.SparseTensor) -> tf.Tensor:
    ones = tf.SparseTensor(sparse.indices, tf.ones_like(sparse.values, dtype=tf.int64), sparse.dense_shape)
    return _dense(ones, 0) > 0


def _asset(path: str) -> tf.Tensor:
    """A file the transform graph reads, tracked as an asset of tf.Transform's SavedModel: it is
    copied into `transform_fn/assets/`, and the saved graph reads that copy wherever it is loaded."""
    asset = tft.make_and_track_object(lambda: tf.saved_model.Asset(path), name=path.rpartition("/")[2])
    return asset.asset_path


def transform_feature(feature: Feature, x: tf.SparseTensor, analyzed: AnalyzerResults) -> tf.Tensor:
    """One raw feature transformed, with the analyzers' results (computed in the warehouse) as constants."""
    if feature.kind is FeatureKind.NUMERIC:
        mean = tf.constant(analyzed.means[feature.name], tf.float32)
        filled = tf.where(_present(x), _dense(x, 0.0), mean)
        std = tf.sqrt(tf.constant(analyzed.variances[feature.name], tf.float32))
        safe = tf.where(std > 0, std, tf.ones_like(std))
        return (filled - mean) / safe
    if feature.kind is FeatureKind.BUCKETIZED:
        assert feature.buckets is not None
        # Quantiles of the present values only; NULL gets its own id after the quantile
        # buckets, so the value a NULL is filled with below never matters.
        boundaries = tf.constant([analyzed.boundaries[feature.name]], tf.float32)
        buckets = tft.apply_buckets(_dense(x, 0.0), boundaries)
        return tf.where(_present(x), buckets, tf.constant(feature.buckets, tf.int64))
    if feature.kind is FeatureKind.VOCABULARY:
        # The counts file travels with the plain one, for people reading the vocabulary; the
        # lookup reads the plain file (one value per line), which scoring and the gate read too.
        _asset(analyzed.paths[feature.counts_file])
        return tft.apply_vocabulary(
            _dense(x, b""),
            _asset(analyzed.paths[feature.vocabulary_file]),
            num_oov_buckets=feature.oov_buckets,
        )
    if feature.kind is FeatureKind.HASHED:
        assert feature.buckets is not None
        return tft.hash_strings(_dense(x, b""), feature.buckets)
    raise ValueError(f"feature '{feature.name}': kind {feature.kind.value} is not transformed from one raw column")


# Between the crossed values: a byte no warehouse string holds, so ("a b", "c") != ("a", "b c").
_CROSS_SEPARATOR = "\x1f"


def transform_cross(
    cross: Feature, spec: PipelineSpec, inputs: dict[str, Any], transformed: dict[str, tf.Tensor]
) -> tf.Tensor:
    """Hash bucket of the crossed features' values joined in the declared order.

    String features enter as their raw value (NULL as ""), a bucketized one as its bucket
    id, which was already computed (one quantile analyzer, shared with the feature itself).
    """
    assert cross.buckets is not None and cross.crosses is not None
    parts = []
    for name in cross.crosses:
        crossed = spec.feature_by_name[name]
        if crossed.kind is FeatureKind.BUCKETIZED:
            parts.append(tf.strings.as_string(transformed[crossed.transformed_name]))
        else:
            parts.append(_dense(inputs[name], b""))
    return tft.hash_strings(tf.strings.join(parts, separator=_CROSS_SEPARATOR), cross.buckets)


def transform_label(task: Task, y: tf.SparseTensor, analyzed: AnalyzerResults) -> tf.Tensor:
    if task is Task.BINARY:
        return _dense(y, tf.constant(0, tf.int64))
    if task is Task.MULTICLASS:
        return tft.apply_vocabulary(
            _dense(y, b""), _asset(analyzed.paths[vocabulary_file_for_label()]), num_oov_buckets=0, default_value=0
        )
    return _dense(y, 0.0)


def make_preprocessing_fn(
    spec: PipelineSpec, analyzed: AnalyzerResults
) -> Callable[[dict[str, Any]], dict[str, tf.Tensor]]:
    """The transform graph, analyzer-free: `analyzed` holds what the warehouse computed
    (`extract_transform.warehouse_analyzers`), its vocabularies already written."""
    features = list(spec.features)
    task = spec.label.task

    def preprocessing_fn(inputs: dict[str, Any]) -> dict[str, tf.Tensor]:
        outputs = {f.transformed_name: transform_feature(f, inputs[f.name], analyzed) for f in features if f.is_raw}
        for cross in (f for f in features if not f.is_raw):
            outputs[cross.transformed_name] = transform_cross(cross, spec, inputs, outputs)
        if LABEL_KEY in inputs:
            outputs[LABEL_KEY] = transform_label(task, inputs[LABEL_KEY], analyzed)
        return outputs

    return preprocessing_fn


def cardinality(feature: Feature, tft_output: tft.TFTransformOutput) -> int:
    """Number of distinct ids a categorical transformed feature can take (embedding rows)."""
    if feature.kind is FeatureKind.VOCABULARY:
        return int(tft_output.vocabulary_size_by_name(feature.vocabulary_file)) + feature.oov_buckets
    if feature.kind is FeatureKind.BUCKETIZED:
        assert feature.buckets is not None
        return feature.buckets + 1
    if feature.kind in (FeatureKind.HASHED, FeatureKind.CROSS):
        assert feature.buckets is not None
        return feature.buckets
    raise ValueError(f"feature '{feature.name}' is numeric; it has no cardinality")
