"""Statistics of the day's training rows, computed in the warehouse, and the checks on them.

The statistics query wraps the spec's own SQL, so it sees exactly the rows the Beam job
reads, and the warehouse does the scan (no extra pass in Python). A failed check stops
the DAG before training, with the column, the value and the threshold in the message.
"""

from __future__ import annotations

import logging
from typing import Any

from tfpipe_jobs.context import JobContext
from tfpipe_operators.features import FeatureKind, Task
from tfpipe_operators.spec import PipelineSpec

log = logging.getLogger(__name__)


class DataValidationError(ValueError):
    """The day's data fails a check; training must not run on it."""


def stats_sql(spec: PipelineSpec) -> str:
    """BigQuery SQL computing per-column statistics over the spec's source query."""
    parts = ["COUNT(*) AS row_count"]
    for f in spec.features:
        col = f"`{f.name}`"
        parts.append(f"COUNTIF({col} IS NULL) AS {f.name}__nulls")
        if f.kind in (FeatureKind.NUMERIC, FeatureKind.BUCKETIZED):
            parts += [
                f"MIN(CAST({col} AS FLOAT64)) AS {f.name}__min",
                f"MAX(CAST({col} AS FLOAT64)) AS {f.name}__max",
                f"AVG(CAST({col} AS FLOAT64)) AS {f.name}__mean",
            ]
        else:
            parts.append(f"APPROX_COUNT_DISTINCT({col}) AS {f.name}__distinct")
    label = f"`{spec.label.column}`"
    parts.append(f"COUNTIF({label} IS NULL) AS __label__nulls")
    if spec.label.task is Task.BINARY:
        parts.append(f"AVG(CAST({label} AS FLOAT64)) AS __label__mean")
    elif spec.label.task is Task.REGRESSION:
        parts += [
            f"AVG(CAST({label} AS FLOAT64)) AS __label__mean",
            f"STDDEV(CAST({label} AS FLOAT64)) AS __label__std",
        ]
    else:
        parts.append(f"APPROX_COUNT_DISTINCT({label}) AS __label__distinct")
    body = spec.source_sql.strip().rstrip(";")
    return "SELECT\n  " + ",\n  ".join(parts) + f"\nFROM (\n{body}\n) AS source_rows"


def compute(ctx: JobContext) -> dict[str, Any]:
    table = ctx.warehouse.table(stats_sql(ctx.spec), ctx.query_params)
    row = {k: v[0] for k, v in table.to_pydict().items()}
    rows = int(row.pop("row_count") or 0)
    columns: dict[str, dict[str, Any]] = {}
    for key, value in row.items():
        column, _, stat = key.rpartition("__")
        columns.setdefault(column, {})[stat] = float(value) if value is not None else None
    for col in columns.values():
        if "nulls" in col and rows:
            col["null_rate"] = (col["nulls"] or 0) / rows
    return {"rows": rows, "columns": columns}


def validate(spec: PipelineSpec, stats: dict[str, Any]) -> list[str]:
    """Raise on what makes training meaningless; return warnings for the log."""
    if stats["rows"] == 0:
        raise DataValidationError(f"{spec.pipeline}: the source query returned no rows for this ds (empty day)")
    label = stats["columns"].get("__label", {})
    if label.get("null_rate", 0.0) >= 1.0:
        raise DataValidationError(f"{spec.pipeline}: label column '{spec.label.column}' is NULL in every row")
    if spec.label.task is Task.BINARY:
        mean = label.get("mean")
        if mean is not None and (mean <= 0.0 or mean >= 1.0):
            raise DataValidationError(
                f"{spec.pipeline}: label column '{spec.label.column}' has a single class (mean {mean:.3f}); "
                "a binary model needs both"
            )
    warnings = []
    for f in spec.features:
        rate = stats["columns"].get(f.name, {}).get("null_rate", 0.0)
        if rate >= 1.0:
            warnings.append(f"feature '{f.name}' is NULL in every row")
    for w in warnings:
        log.warning("data check: %s", w)
    stats["warnings"] = warnings
    return warnings
