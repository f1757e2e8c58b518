"""The model step's score-table columns."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pytest

from tfpipe_jobs.beam_jobs.batch_score.model_handler import constant_column, prediction_columns, prediction_fields
from tfpipe_operators.features import Task

DS = date(2026, 11, 21)


def test_constant_column_has_the_type_and_length() -> None:
    column = constant_column(DS, 3, pa.date32())
    assert column.type == pa.date32() and column.to_pylist() == [DS, DS, DS]
    assert constant_column("v1", 0, pa.string()).to_pylist() == []
    assert constant_column("v1", 2, pa.string()).to_pylist() == ["v1", "v1"]


def _multiclass(probabilities: list[list[float]], class_id: list[int]) -> dict:
    import tensorflow as tf

    return {"probabilities": tf.constant(probabilities, tf.float32), "class_id": tf.constant(class_id, tf.int64)}


def test_multiclass_rows_name_their_class_and_every_probability() -> None:
    names = pa.array(["cheap", "mid", "dear"], pa.string())
    # 4 outputs for 3 named classes (label.num_classes above the data's classes): id 3 has no name
    outputs = _multiclass([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.2, 0.6]], [0, 3])
    columns = prediction_columns(Task.MULTICLASS, outputs, names)
    assert set(columns) == {f.name for f in prediction_fields(Task.MULTICLASS)}
    assert columns["class_id"].to_pylist() == [0, 3]
    assert columns["class_name"].to_pylist() == ["cheap", None]
    first = columns["class_probabilities"].to_pylist()[0]
    assert [e["class_name"] for e in first] == ["cheap", "mid", "dear"]
    assert [round(e["probability"], 6) for e in first] == [0.7, 0.1, 0.1]
    assert len(columns["probabilities"].to_pylist()[1]) == 4


def test_a_label_vocabulary_larger_than_the_models_outputs_is_refused() -> None:
    names = pa.array(["a", "b", "c"], pa.string())
    with pytest.raises(ValueError, match="raise label.num_classes in the spec to at least 3"):
        prediction_columns(Task.MULTICLASS, _multiclass([[0.5, 0.5]], [1]), names)
