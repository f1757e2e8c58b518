"""The tf.Transform side of the spec: how raw features are parsed and what a missing value becomes."""

from __future__ import annotations

from pathlib import Path

import pytest
import tensorflow as tf

from tfpipe_jobs import preprocessing
from tfpipe_operators.features import LABEL_KEY, Task
from tfpipe_operators.spec import load_spec


def test_every_raw_feature_and_the_label_parse_as_optional_values(ctr_spec_path: Path) -> None:
    spec = load_spec(ctr_spec_path)
    parsed = preprocessing.raw_feature_spec(spec)
    assert set(parsed) == {f.name for f in spec.raw_features} | {LABEL_KEY}
    assert parsed["user_age"].dtype == tf.float32 and parsed["user_id"].dtype == tf.string
    assert parsed[LABEL_KEY].dtype == tf.int64
    assert LABEL_KEY not in preprocessing.raw_feature_spec(spec, with_label=False)
    reps = preprocessing.tensor_representations(["user_id"])
    assert reps["user_id"].varlen_sparse_tensor.column_name == "user_id"


def test_a_missing_label_is_the_tasks_default() -> None:
    y = tf.SparseTensor([[0, 0], [2, 0]], tf.constant([1, 1], tf.int64), [3, 1])
    assert preprocessing.transform_label(Task.BINARY, y, preprocessing.AnalyzerResults()).numpy().tolist() == [1, 0, 1]
    value = tf.SparseTensor([[1, 0]], tf.constant([2.5]), [2, 1])
    assert preprocessing.transform_label(Task.REGRESSION, value, preprocessing.AnalyzerResults()).numpy().tolist() == [
        0.0,
        2.5,
    ]


def test_cardinality_counts_the_null_bucket_and_refuses_a_numeric_feature(ctr_spec_path: Path) -> None:
    spec = load_spec(ctr_spec_path)
    hour, market = spec.feature_by_name["hour"], spec.feature_by_name["market"]
    assert preprocessing.cardinality(hour, None) == 6 + 1  # type: ignore[arg-type]
    assert preprocessing.cardinality(market, None) == 8192  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="feature 'user_age' is numeric; it has no cardinality"):
        preprocessing.cardinality(spec.feature_by_name["user_age"], None)  # type: ignore[arg-type]
