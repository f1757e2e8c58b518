"""Warehouse record batches typed, split and sampled with Arrow/NumPy kernels."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tfpipe_jobs import arrow_batches
from tfpipe_jobs.arrow_batches import SchemaMismatchError
from tfpipe_operators.features import LABEL_KEY
from tfpipe_operators.spec import PipelineSpec, load_spec


@pytest.fixture
def spec(ctr_spec_path: Path) -> PipelineSpec:
    return load_spec(ctr_spec_path)


def _rows(spec: PipelineSpec, n: int = 3) -> pa.RecordBatch:
    """n warehouse rows of the ctr query: strings, integers and doubles, a NULL in each kind."""
    columns: dict[str, pa.Array] = {"event_id": pa.array([f"e{i}" for i in range(n)])}
    for f in spec.raw_features:
        if f.raw_type == "float":
            columns[f.name] = pa.array([1, None, *range(3, n + 1)], pa.int64())
        else:
            columns[f.name] = pa.array(["a", None, *(f"v{i}" for i in range(3, n + 1))])
    columns["clicked"] = pa.array([1, 0, *([1] * (n - 2))], pa.int64())
    return pa.RecordBatch.from_pydict(columns)


def _hashes(n: int) -> np.ndarray:
    """Split hashes as the warehouse gives them: uniform non-negative 64-bit numbers."""
    return np.random.default_rng(5).integers(0, 2**63 - 1, n, dtype=np.int64).astype(np.uint64)


def test_the_eval_share_is_what_was_asked() -> None:
    assert 0.18 < arrow_batches.eval_mask(_hashes(20000), 20).mean() < 0.22


def test_sampling_keeps_the_split_ratio() -> None:
    hashes = _hashes(40000)
    kept = arrow_batches.sample_mask(hashes, 0.25)
    assert 0.23 < kept.mean() < 0.27
    assert 0.18 < arrow_batches.eval_mask(hashes[kept], 20).mean() < 0.22
    assert arrow_batches.sample_mask(hashes, 1.0).all()


def test_raw_columns_are_typed_as_the_model_reads_them(spec: PipelineSpec) -> None:
    columns = arrow_batches.raw_columns(spec, _rows(spec), with_label=True)
    assert set(columns) == {f.name for f in spec.raw_features} | {LABEL_KEY}
    assert columns["user_age"].type == pa.float32() and columns["user_age"].to_pylist() == [1.0, None, 3.0]
    assert columns["user_id"].type == pa.binary() and columns["user_id"].to_pylist() == [b"a", None, b"v3"]
    assert columns[LABEL_KEY].type == pa.int64()
    assert LABEL_KEY not in arrow_batches.raw_columns(spec, _rows(spec), with_label=False)


def test_a_spec_column_missing_from_the_result_names_the_spec_and_the_columns(spec: PipelineSpec) -> None:
    rows = _rows(spec).drop_columns(["device"])
    with pytest.raises(SchemaMismatchError) as err:
        arrow_batches.raw_columns(spec, rows, with_label=False)
    assert str(err.value).startswith(f"{spec.path}: column(s) device declared in the spec are not in the query result")


def test_a_float_category_and_an_unreadable_number_are_refused_by_column(spec: PipelineSpec) -> None:
    rows = _rows(spec)
    floats = rows.set_column(rows.schema.get_field_index("device"), "device", pa.array([1.0, 2.0, 3.0]))
    with pytest.raises(SchemaMismatchError, match="column 'device': expected a categorical .* got double"):
        arrow_batches.raw_columns(spec, floats, with_label=False)
    words = rows.set_column(rows.schema.get_field_index("user_age"), "user_age", pa.array(["x", "1", "2"]))
    with pytest.raises(SchemaMismatchError, match="column 'user_age': cannot read string as float"):
        arrow_batches.raw_columns(spec, words, with_label=False)


def test_tfxio_lists_hold_one_value_or_none_per_row() -> None:
    batch = arrow_batches.to_tfxio({"x": pa.array([1.5, None, 2.5], pa.float32()), "s": pa.array([None, b"a", b"b"])})
    assert batch.column("x").to_pylist() == [[1.5], [], [2.5]]
    assert batch.column("s").to_pylist() == [[], [b"a"], [b"b"]]


def test_model_inputs_mark_a_missing_value_as_nan_or_empty(spec: PipelineSpec) -> None:
    inputs = arrow_batches.model_inputs(spec, pa.Table.from_batches([_rows(spec)]))
    assert inputs["user_age"].dtype == np.float32
    assert inputs["user_age"][0] == 1.0 and math.isnan(inputs["user_age"][1])
    assert inputs["user_id"].tolist() == [b"a", b"", b"v3"]
