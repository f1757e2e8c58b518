"""Statistics of the day's training rows, computed in the warehouse, and the checks on them.

The statistics query wraps the spec's own SQL, so it sees exactly the rows the Beam job
reads, and the warehouse does the scan (no extra pass in Python). A failed check stops
the DAG before training, with the column, the value and the threshold in the message.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from tfpipe_jobs.context import JobContext
from tfpipe_operators.config import ExtractConfig
from tfpipe_operators.features import FeatureKind, Task
from tfpipe_operators.spec import PipelineSpec

log = logging.getLogger(__name__)


class DataValidationError(ValueError):
    """The day's data fails a check; training must not run on it."""


def stats_sql(spec: PipelineSpec) -> str:
    """BigQuery SQL computing per-column statistics over the spec's source query."""
    parts = ["COUNT(*) AS row_count"]
    for f in spec.raw_features:
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


def validate(
    spec: PipelineSpec, stats: dict[str, Any], cfg: ExtractConfig, previous: dict[str, Any] | None = None
) -> list[str]:
    """Raise on what makes training meaningless; return warnings (also kept in the stats).

    Checks the day alone (empty, label missing or single-class, a feature mostly NULL) and
    against the previous day's statistics when they exist (NULLs jumping, the label rate
    moving, a vocabulary collapsing). Every message names the column, the value and the
    threshold that was crossed.
    """
    where = f"{spec.pipeline}"
    if stats["rows"] == 0:
        raise DataValidationError(f"{where}: the source query returned no rows for this ds (empty day)")
    columns = stats["columns"]
    label = columns.get("__label", {})
    if label.get("null_rate", 0.0) >= 1.0:
        raise DataValidationError(f"{where}: label column '{spec.label.column}' is NULL in every row")
    if spec.label.task is Task.BINARY:
        mean = label.get("mean")
        if mean is not None and (mean <= 0.0 or mean >= 1.0):
            raise DataValidationError(
                f"{where}: label column '{spec.label.column}' has a single class (mean {mean:.3f}); "
                "a binary model needs both"
            )
    failures: list[str] = []
    warnings: list[str] = []
    for f in spec.raw_features:
        rate = columns.get(f.name, {}).get("null_rate", 0.0) or 0.0
        if rate > cfg.max_null_rate:
            failures.append(f"column '{f.name}': null rate {rate:.3f} > extract.max_null_rate {cfg.max_null_rate}")
        elif rate > cfg.max_null_rate / 2:
            warnings.append(f"column '{f.name}': null rate {rate:.3f} is over half of extract.max_null_rate")
    if previous:
        failures += _against_previous(spec, columns, previous["columns"], cfg, warnings)
    for w in warnings:
        log.warning("data check: %s", w)
    stats["warnings"] = warnings
    stats["previous_ds"] = (previous or {}).get("provenance", {}).get("ds")
    if failures:
        raise DataValidationError(
            f"{where}: the day's data failed {len(failures)} check(s):\n  " + "\n  ".join(failures)
        )
    return warnings


def _against_previous(
    spec: PipelineSpec, now: dict[str, Any], before: dict[str, Any], cfg: ExtractConfig, warnings: list[str]
) -> list[str]:
    failures = []
    for f in spec.raw_features:
        a, b = now.get(f.name, {}), before.get(f.name, {})
        jump = (a.get("null_rate") or 0.0) - (b.get("null_rate") or 0.0)
        if jump > cfg.max_null_rate_increase:
            failures.append(
                f"column '{f.name}': null rate rose from {b.get('null_rate') or 0.0:.3f} to "
                f"{a.get('null_rate') or 0.0:.3f} (+{jump:.3f} > extract.max_null_rate_increase "
                f"{cfg.max_null_rate_increase})"
            )
        if f.kind is FeatureKind.VOCABULARY and b.get("distinct"):
            ratio = (a.get("distinct") or 0.0) / b["distinct"]
            if ratio < cfg.min_distinct_ratio:
                failures.append(
                    f"column '{f.name}': vocabulary collapsed from {b['distinct']:.0f} to {a.get('distinct') or 0:.0f} "
                    f"distinct values ({ratio:.2f} < extract.min_distinct_ratio {cfg.min_distinct_ratio})"
                )
    label_now, label_before = now.get("__label", {}).get("mean"), before.get("__label", {}).get("mean")
    if spec.label.task is Task.BINARY and label_now is not None and label_before:
        change = abs(label_now - label_before) / label_before
        if change > cfg.max_label_rate_change:
            failures.append(
                f"label '{spec.label.column}': rate moved from {label_before:.4f} to {label_now:.4f} "
                f"({change:.0%} > extract.max_label_rate_change {cfg.max_label_rate_change:.0%})"
            )
        elif change > cfg.max_label_rate_change / 2:
            warnings.append(f"label '{spec.label.column}': rate moved {change:.0%} since the previous day")
    return failures


def previous_stats(ctx: JobContext) -> dict[str, Any] | None:
    """The statistics the previous day's extract validated, if that day ran."""
    from tfpipe_jobs import artifacts
    from tfpipe_jobs.artifacts import RunPaths

    day_before = (ctx.ds - timedelta(days=1)).isoformat()
    folder = artifacts.published(RunPaths(ctx.paths.root, ctx.paths.pipeline, day_before).data)
    return dict(artifacts.read_json(artifacts.join(folder, "stats.json"))) if folder else None
