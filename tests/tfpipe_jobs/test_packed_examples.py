"""Packed transformed examples: rows written several per record read back as the same columns."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf
from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder

from tfpipe_jobs import packed_examples

SPEC = {
    "id_xf": tf.io.FixedLenFeature([], tf.int64),
    "price_xf": tf.io.FixedLenFeature([], tf.float32),
    "__label": tf.io.FixedLenFeature([], tf.int64),
}


def _transformed(rows: int) -> pa.RecordBatch:
    """Rows as tf.Transform's record batches hold them: one-value lists per row."""
    ids = np.arange(rows, dtype=np.int64)
    offsets = pa.array(np.arange(rows + 1, dtype=np.int32))
    return pa.RecordBatch.from_arrays(
        [
            pa.ListArray.from_arrays(offsets, pa.array(ids)),
            pa.ListArray.from_arrays(offsets, pa.array((ids / 4).astype(np.float32))),
            pa.ListArray.from_arrays(offsets, pa.array(ids % 3)),
        ],
        names=["id_xf", "price_xf", "__label"],
    )


@pytest.mark.parametrize("rows_per_record", [1, 7, 64, 1000])
def test_packed_records_parse_back_to_the_same_rows_in_order(rows_per_record: int) -> None:
    batch = _transformed(1000)
    records = RecordBatchToExamplesEncoder().encode(packed_examples.pack(batch, rows_per_record))
    assert len(records) == -(-1000 // rows_per_record)  # the last record holds the remainder
    parsed = tf.io.parse_example(tf.constant(records), packed_examples.packed_feature_spec(SPEC))
    columns = {k: v.numpy() for k, v in packed_examples.unpack(parsed).items()}
    np.testing.assert_array_equal(columns["id_xf"], np.arange(1000))
    np.testing.assert_allclose(columns["price_xf"], np.arange(1000) / 4)
    np.testing.assert_array_equal(columns["__label"], np.arange(1000) % 3)


def test_a_feature_with_several_values_per_row_is_refused_by_name() -> None:
    batch = _transformed(10)
    two_per_row = pa.ListArray.from_arrays(pa.array(np.arange(0, 21, 2, dtype=np.int32)), pa.array(np.arange(20)))
    bad = pa.RecordBatch.from_arrays([batch.column(0), two_per_row], names=["id_xf", "tags_xf"])
    with pytest.raises(ValueError, match=r"'tags_xf' is not one value per row \(20 values for 10 rows"):
        packed_examples.pack(bad, 4)


def test_a_non_scalar_feature_spec_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'embedding_xf'"):
        packed_examples.packed_feature_spec({"embedding_xf": tf.io.FixedLenFeature([3], tf.float32)})
