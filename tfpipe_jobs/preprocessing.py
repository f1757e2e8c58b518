"""The tf.Transform side of the features module: raw specs and the `preprocessing_fn`.

Generated from the pipeline spec, so adding a feature is a line of YAML. Raw features
are sparse (a NULL in the warehouse is an absent value) and are densified here, with
the fill chosen per kind, so training and serving share one definition of "missing".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_metadata.proto.v0 import schema_pb2

from tfpipe_operators.features import LABEL_KEY, Feature, FeatureKind, Task, vocabulary_file_for_label
from tfpipe_operators.spec import PipelineSpec

_TF_TYPES = {"float": tf.float32, "string": tf.string, "int": tf.int64}


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


def _numeric(x: tf.SparseTensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(value with NULL filled by the mean, mean)."""
    mean = tft.mean(x.values)
    filled = tf.where(_present(x), _dense(x, 0.0), tf.cast(mean, tf.float32))
    return filled, mean


def transform_feature(feature: Feature, x: tf.SparseTensor) -> tf.Tensor:
    if feature.kind is FeatureKind.NUMERIC:
        filled, mean = _numeric(x)
        std = tf.sqrt(tft.var(x.values))
        safe = tf.where(std > 0, std, tf.ones_like(std))
        return (filled - tf.cast(mean, tf.float32)) / tf.cast(safe, tf.float32)
    if feature.kind is FeatureKind.BUCKETIZED:
        assert feature.buckets is not None
        # Quantiles of the present values only, computed in the same analysis pass as every
        # other analyzer. Filling NULLs with the mean first made the quantiles depend on the
        # mean analyzer, i.e. a second pass, for which the local runner kept every train row
        # in memory (peak 4.6 GB at 10M rows). NULL gets its own id after the quantile buckets,
        # so the value a NULL is filled with below never matters.
        boundaries = tft.quantiles(x.values, feature.buckets, epsilon=min(1.0 / feature.buckets, 0.01))
        buckets = tft.apply_buckets(_dense(x, 0.0), boundaries)
        return tf.where(_present(x), buckets, tf.constant(feature.buckets, tf.int64))
    if feature.kind is FeatureKind.VOCABULARY:
        values = _dense(x, b"")
        # The same top-k again with each value's count, for people reading the vocabulary; the
        # lookup keeps the plain file (one value per line), which scoring and the gate read too.
        tft.vocabulary(
            values,
            top_k=feature.top_k,
            frequency_threshold=feature.frequency_threshold,
            vocab_filename=feature.counts_file,
            store_frequency=True,
        )
        return tft.compute_and_apply_vocabulary(
            values,
            top_k=feature.top_k,
            frequency_threshold=feature.frequency_threshold,
            num_oov_buckets=feature.oov_buckets,
            vocab_filename=feature.vocabulary_file,
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


def transform_label(task: Task, y: tf.SparseTensor) -> tf.Tensor:
    if task is Task.BINARY:
        return _dense(y, tf.constant(0, tf.int64))
    if task is Task.MULTICLASS:
        return tft.compute_and_apply_vocabulary(
            _dense(y, b""), num_oov_buckets=0, default_value=0, vocab_filename=vocabulary_file_for_label()
        )
    return _dense(y, 0.0)


def make_preprocessing_fn(spec: PipelineSpec) -> Callable[[dict[str, Any]], dict[str, tf.Tensor]]:
    features = list(spec.features)
    task = spec.label.task

    def preprocessing_fn(inputs: dict[str, Any]) -> dict[str, tf.Tensor]:
        outputs = {f.transformed_name: transform_feature(f, inputs[f.name]) for f in features if f.is_raw}
        for cross in (f for f in features if not f.is_raw):
            outputs[cross.transformed_name] = transform_cross(cross, spec, inputs, outputs)
        if LABEL_KEY in inputs:
            outputs[LABEL_KEY] = transform_label(task, inputs[LABEL_KEY])
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
