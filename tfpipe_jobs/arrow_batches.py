"""Vectorised work on warehouse record batches: typing, null handling, split, sampling.

Everything here runs per record batch with Arrow/NumPy kernels: no per-row Python on
the data path. The raw layout tf.Transform reads (via TFXIO) has one list column per
feature: one value when present, an empty list when the warehouse value is NULL.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tfpipe_operators.features import LABEL_KEY, Feature, Task
from tfpipe_operators.spec import PipelineSpec


class SchemaMismatchError(ValueError):
    """The warehouse rows do not have the columns or types the spec declares."""


def eval_mask(hashes: np.ndarray, eval_percent: int) -> np.ndarray:
    """The eval split: the last two digits of each row's split hash (`warehouse_analyzers.split_hash_sql`)."""
    return (hashes % np.uint64(100)) < np.uint64(eval_percent)


def sample_mask(hashes: np.ndarray, fraction: float) -> np.ndarray:
    if fraction >= 1.0:
        return np.ones(hashes.shape, dtype=bool)
    # Different digits of the hash than the split uses, so sampling keeps the split ratio.
    return ((hashes // np.uint64(100)) % np.uint64(1_000_000)) < np.uint64(int(fraction * 1_000_000))


def _cast(column: pa.Array, raw_type: str, where: str) -> pa.Array:
    try:
        if raw_type == "float":
            return pc.cast(column, pa.float32())
        if raw_type == "int":
            return pc.cast(column, pa.int64())
        if pa.types.is_floating(column.type):
            raise SchemaMismatchError(f"{where}: expected a categorical (string or integer) column, got {column.type}")
        # Always plain binary: the TFXIO schema declares list<binary> for categorical features.
        return pc.cast(pc.cast(column, pa.string()), pa.binary())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SchemaMismatchError(f"{where}: cannot read {column.type} as {raw_type}: {exc}") from None


def _as_list(values: pa.Array) -> pa.Array:
    """[v, NULL, w] -> [[v], [], [w]] without touching rows one by one."""
    valid = np.asarray(values.is_valid())
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum(valid, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), values.drop_null())


def label_raw_type(task: Task) -> str:
    return {Task.BINARY: "int", Task.MULTICLASS: "string", Task.REGRESSION: "float"}[task]


def raw_columns(spec: PipelineSpec, batch: pa.RecordBatch, with_label: bool) -> dict[str, pa.Array]:
    """The spec's features (and label) from a warehouse batch, typed as the model reads them."""
    out: dict[str, pa.Array] = {}
    wanted: list[tuple[str, str, str]] = [(f.name, f.name, f.raw_type) for f in spec.raw_features]
    if with_label:
        wanted.append((LABEL_KEY, spec.label.column, label_raw_type(spec.label.task)))
    names = set(batch.schema.names)
    missing = [col for _, col, _ in wanted if col not in names]
    if missing:
        raise SchemaMismatchError(
            f"{spec.path}: column(s) {', '.join(missing)} declared in the spec are not in the query result "
            f"(it has: {', '.join(batch.schema.names)})"
        )
    for key, col, raw_type in wanted:
        out[key] = _cast(batch.column(col), raw_type, where=f"{spec.path}: column '{col}'")
    return out


def to_tfxio(columns: dict[str, pa.Array]) -> pa.RecordBatch:
    """Typed flat columns -> the list-column batch TFXIO turns into sparse tensors."""
    return pa.RecordBatch.from_arrays([_as_list(v) for v in columns.values()], names=list(columns))


def feature_dtype(feature: Feature) -> pa.DataType:
    return pa.float32() if feature.raw_type == "float" else pa.binary()


def typed_column(table: pa.Table | pa.RecordBatch, feature: Feature) -> pa.Array:
    """One feature's column cast to its raw type (float32 or binary), NULLs kept."""
    col = table.column(feature.name)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return _cast(col, feature.raw_type, where=f"column '{feature.name}'")


def model_inputs(spec: PipelineSpec, table: pa.Table | pa.RecordBatch) -> dict[str, np.ndarray]:
    """Dense NumPy inputs for the exported model's `predict_raw` signature.

    A missing numeric value is NaN and a missing categorical value is b"" (the signature
    turns both back into absent values, exactly as a NULL was absent in training).
    """
    out: dict[str, np.ndarray] = {}
    for f in spec.raw_features:
        typed = typed_column(table, f)
        if f.raw_type == "float":
            out[f.name] = typed.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        else:
            out[f.name] = np.asarray(typed.fill_null(b"").to_numpy(zero_copy_only=False), dtype=object)
    return out


def eval_raw_schema(spec: PipelineSpec) -> pa.Schema:
    fields = [pa.field(k, pa.string()) for k in spec.keys if k not in {f.name for f in spec.raw_features}]
    fields += [pa.field(f.name, feature_dtype(f)) for f in spec.raw_features]
    label_type = {"int": pa.int64(), "float": pa.float32(), "string": pa.binary()}[label_raw_type(spec.label.task)]
    return pa.schema([*fields, pa.field(LABEL_KEY, label_type)])


def tfxio_schema(spec: PipelineSpec) -> pa.Schema:
    """Features and label as list columns (the raw layout tf.Transform reads)."""
    raw = eval_raw_schema(spec)
    names = [f.name for f in spec.raw_features] + [LABEL_KEY]
    return pa.schema([pa.field(n, pa.list_(raw.field(n).type)) for n in names])
