"""A warehouse batch's columns as the model's tensors, and its NULL / unseen counts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tfpipe_jobs.beam_jobs.batch_score.inputs import float_tensor, missing_and_unseen, string_tensor


@pytest.mark.parametrize(
    "values",
    [
        ["u1", None, "", "ünïcode", "a much longer token than the others"],
        [None, None],
        [],
    ],
)
def test_string_tensor_matches_the_values_with_null_as_empty(values: list) -> None:
    column = pa.array(["head", *values, "tail"], pa.string()).slice(1, len(values))  # a slice: offset != 0
    got = string_tensor(column).numpy().tolist()
    assert got == [(v or "").encode() for v in values]


@pytest.mark.parametrize("dtype", [pa.binary(), pa.large_string(), pa.large_binary()])
def test_string_tensor_reads_every_string_layout(dtype: pa.DataType) -> None:
    column = pa.array([b"ab", None, b"", b"xyz"], dtype).slice(1)
    assert string_tensor(column).numpy().tolist() == [b"", b"", b"xyz"]


def test_string_tensor_ignores_the_bytes_under_a_null() -> None:
    """Arrow lets a NULL slot span bytes; the tensor must still hold b"" for it."""
    offsets = pa.array([0, 2, 5, 6], pa.int32())
    spanning = pa.StringArray.from_buffers(
        3, offsets.buffers()[1], pa.py_buffer(b"abXYZc"), pa.array([True, False, True]).buffers()[1], 1
    )
    assert spanning.to_pylist() == ["ab", None, "c"]
    assert string_tensor(spanning).numpy().tolist() == [b"ab", b"", b"c"]


def test_missing_and_unseen_counts_nulls_and_tokens_outside_the_vocabulary() -> None:
    typed = {
        "user_id": pa.array([b"u1", b"u9", None, b"u2", b"u9"], pa.binary()),
        "user_age": pa.array([1.0, None, None, 3.0, 4.0], pa.float32()),
    }
    counts = missing_and_unseen(typed, {"user_id": pa.array([b"u1", b"u2"], pa.binary())})
    # rows 2, 3 and 5 have a NULL or unseen value (row 3 both): the share the prediction gate limits
    assert counts == {"missing_user_id": 1, "unseen_user_id": 2, "missing_user_age": 2, "rows_missing_or_unseen": 3}
    assert missing_and_unseen({"user_id": typed["user_id"].slice(0, 1)}, {"user_id": pa.array([b"u1"])}) == {}


def test_float_tensor_turns_null_into_nan() -> None:
    got = float_tensor(pa.chunked_array([[1, None], [3]], pa.int64())).numpy()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, [1.0, np.nan, 3.0])
