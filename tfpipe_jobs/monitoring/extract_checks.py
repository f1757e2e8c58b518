"""The extract step's monitoring: the schema check and the drift of each feature vs the previous day.

Runs after `data_stats` validated the day and before Beam reads a row. The schema is
checked on the rows trained on (the statistics `data_stats` computed over them) and the
day's value counts; drift compares the day alone (the training query bound with
`lookback_days = 0`) with the previous day alone, so a shift is not diluted by the
lookback days the two windows share. The day's profile is kept in `drift.json` beside
`stats.json`: the next day compares with it, publish_scores compares the scoring rows
with it (skew), and no day is read twice.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from tfpipe_jobs import artifacts
from tfpipe_jobs.artifacts import RunPaths
from tfpipe_jobs.context import JobContext
from tfpipe_jobs.monitoring import drift, schema

log = logging.getLogger(__name__)

REPORT = "drift.json"
PICTURE = "drift.png"


class DriftError(ValueError):
    """A feature drifted beyond a threshold whose action is `stop`; extraction stops."""


def day_params(ctx: JobContext) -> dict[str, Any]:
    """The training query's parameters for the day alone."""
    return {**ctx.query_params, "lookback_days": 0}


def previous_report(ctx: JobContext) -> dict[str, Any] | None:
    """The drift.json of the previous day's published extraction, if that day ran (and had one)."""
    day_before = (ctx.ds - timedelta(days=1)).isoformat()
    found = artifacts.published(RunPaths(ctx.paths.root, ctx.paths.pipeline, day_before).data)
    if not found or not artifacts.exists(artifacts.join(found, REPORT)):
        return None
    return dict(artifacts.read_json(artifacts.join(found, REPORT)))


def _schema(ctx: JobContext, stats: dict[str, Any], day: drift.Profile, notes: list[str]) -> dict[str, Any]:
    """Check the day against the current schema (inferred on the first day; widened when accepted)."""
    spec, cfg = ctx.spec, ctx.config.extract
    result_types = ctx.warehouse.result_schema(spec.source_sql, ctx.query_params)
    types = {name: schema.type_name(result_types.field(name).type) for name in result_types.names}
    seen = schema.infer(spec, stats, types, day.values, cfg)
    current = schema.current(ctx.paths)
    if current is None:
        current = schema.write_version(ctx.paths, seen, f"inferred from ds={ctx.ds}")
        notes.append(f"no schema yet: v0001 inferred from this day's rows ({schema.folder(ctx.paths)})")
    found = schema.check(current, spec, stats, types, day.values, cfg)
    if cfg.accept_schema and (found.failures or found.warnings):
        replaced = found
        current = schema.write_version(
            ctx.paths, schema.widen(current, seen, cfg.schema_max_values), f"accepted on ds={ctx.ds}"
        )
        found = schema.check(current, spec, stats, types, day.values, cfg)
        notes.append(
            f"{schema.ACCEPT_KEY}: schema v{current['version']:04d} written, widened from v{replaced.version:04d} "
            f"over: {'; '.join(replaced.failures + replaced.warnings)}"
        )
    for warning in found.warnings:
        log.warning("schema check: %s", warning)
    if found.failures:
        raise schema.SchemaViolationError(
            f"{spec.pipeline} ds={ctx.ds}: the day's data breaks schema v{found.version:04d} "
            f"({artifacts.join(schema.folder(ctx.paths), schema.SCHEMA_FILE)}) in {len(found.failures)} rule(s):\n  "
            + "\n  ".join(found.failures)
            + f"\nIf the data is right, edit the schema or rerun with {schema.ACCEPT_KEY}=true "
            "(TFPIPE_EXTRACT_ACCEPT_SCHEMA=true or --set) to write the next version"
        )
    return {
        "version": found.version,
        "warnings": found.warnings,
        "new_values": found.new_values,
        "file": artifacts.join(schema.folder(ctx.paths), schema.SCHEMA_FILE),
    }


def run(ctx: JobContext, stats: dict[str, Any]) -> dict[str, Any]:
    """Check the day; return the report drift.json holds (a failure raises before anything is written)."""
    spec, cfg = ctx.spec, ctx.config.extract
    previous = previous_report(ctx)
    reference = previous.get("profile") if previous else None
    day = drift.profile(ctx.warehouse, spec, spec.source_sql, day_params(ctx), cfg.drift_buckets, reference)
    notes: list[str] = []
    checked = _schema(ctx, stats, day, notes)
    checks: list[drift.FeatureCheck] = []
    if reference is None:
        notes.append(
            f"no drift.json of ds={ctx.ds - timedelta(days=1)} (the first day, or that day did not run): "
            "drift has nothing to compare with"
        )
    else:
        checks = drift.judge(drift.distances(day, reference, spec), cfg, drift.DRIFT)
    stop = drift.warn_and_stops(checks, "drift", notes, log)
    if stop:
        raise DriftError(
            f"{spec.pipeline} ds={ctx.ds}: {len(stop)} feature(s) drifted since ds={previous and previous.get('ds')} "
            "beyond a threshold whose action is stop:\n  "
            + "\n  ".join(c.describe("drift") for c in stop)
            + "\nIf the shift is real, rerun with a higher threshold or extract.drift_actions set to warn for it"
        )
    return {
        "ds": ctx.ds.isoformat(),
        "reference_ds": previous.get("ds") if previous else None,
        "rows_day": day.rows,
        "schema": checked,
        "drift": [c.to_json() for c in checks],
        "warnings": [c.describe("drift") for c in checks if c.exceeded],
        "notes": notes,
        "profile": day.to_json(cfg.schema_max_values),
    }


def write(out: str, ctx: JobContext, report: dict[str, Any]) -> None:
    """drift.json and drift.png into the staged data output (published with it)."""
    from tfpipe_jobs.monitoring import report_plot

    artifacts.write_json(artifacts.join(out, REPORT), report)
    first = report["notes"][-1] if report["reference_ds"] is None else "no features compared"
    report_plot.plot(
        artifacts.join(out, PICTURE),
        f"{ctx.spec.pipeline} ds={ctx.ds}: drift vs ds={report['reference_ds']}",
        [("drift vs the previous day", report["drift"], first)],
    )


def summary(ctx: JobContext, report: dict[str, Any]) -> dict[str, Any]:
    """The monitoring part of the extract step's result (XCom; the UI link reads `drift_report`)."""
    return {
        "drift_report": artifacts.join(artifacts.published(ctx.paths.data) or ctx.paths.data, PICTURE),
        "drift_warnings": len(report["warnings"]),
        "schema_version": report["schema"]["version"],
    }
