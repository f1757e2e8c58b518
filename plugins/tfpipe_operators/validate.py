"""Check a pipeline spec before Airflow ever parses it: the data engineers' one command.

    python -m tfpipe_operators.validate dags/pipelines/<name>/pipeline.yaml [--warehouse URL] [--ds YYYY-MM-DD]

A broken spec otherwise shows up as a DAG import error, and a SQL file that lost a
column only fails at night inside the extract job. This runs the same checks up front:

1. the spec loads and validates, with its config and every variant resolved;
2. with a warehouse (``--warehouse`` or ``TFPIPE_WAREHOUSE``: a DuckDB file or a BigQuery
   dataset), the source and scoring SQL are checked exactly as their steps check them
   before running (``Warehouse.check_query``: a dry run with the run's parameters bound,
   read-only, the result's columns and types compared with the spec), and the rows each
   returns for ``--ds`` are counted; a query that does not use ``@ds`` fails (a warning
   with ``static_sql: true``), and SQL errors are reported as ``<file>:<line>`` in the
   file's own numbering;
3. the DAG renders with the local profile and has the task ids of the design.

One line per check (``OK``, ``FAIL`` naming the file, the key or column and what is
wrong, or ``SKIP``); the exit code is 1 when anything failed. Airflow is only imported
for the DAG check, and TensorFlow, tf.Transform and Beam never.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from tfpipe_operators.config import SpecError, resolve_config
from tfpipe_operators.spec import PipelineSpec, SpecQuery, load_spec, spec_queries
from tfpipe_operators.warehouse import Warehouse, WarehouseError, open_warehouse


@dataclass
class Report:
    """Collects one line per check; `failed` decides the exit code."""

    lines: list[str] = field(default_factory=list)
    failed: bool = False
    echo: Callable[[str], None] = print

    def ok(self, check: str, detail: str) -> None:
        self._add("OK", check, detail)

    def fail(self, check: str, detail: str) -> None:
        self.failed = True
        self._add("FAIL", check, detail)

    def skip(self, check: str, detail: str) -> None:
        self._add("SKIP", check, detail)

    def warn(self, check: str, detail: str) -> None:
        self._add("WARN", check, detail)

    def _add(self, status: str, check: str, detail: str) -> None:
        line = f"{status:<4} {check}: {detail}"
        self.lines.append(line)
        self.echo(line)


def check_spec(path: Path, report: Report) -> PipelineSpec | None:
    """Load and validate the spec, then resolve its config and each variant separately.

    `load_spec` already refuses a bad variant; resolving each one here gives it its own line.
    """
    try:
        spec = load_spec(path)
    except SpecError as exc:
        for message in str(exc).splitlines():
            report.fail("spec", message)
        return None
    report.ok("spec", f"{path}: pipeline '{spec.pipeline}' loads ({len(spec.features)} features, DAG {spec.dag_id})")
    for variant in [None, *spec.variants]:
        name = f"variant {variant}" if variant else "spec config"
        try:
            config = resolve_config(spec, variant=variant, environ={})
        except SpecError as exc:
            report.fail("config", f"{name}: {exc}")
            continue
        report.ok("config", f"{path}: {name} resolves (config {config.digest()})")
    return spec


def expected_queries(spec: PipelineSpec) -> list[tuple[str, SpecQuery]]:
    """Each query with its check's name: what its result must hold comes from the spec."""
    queries = spec_queries(spec)
    return [("source sql", queries["source"]), ("scoring sql", queries["scoring"])]


def dry_run_sql(spec: PipelineSpec, warehouse: Warehouse, report: Report, ds: date) -> None:
    """Check each query as its step will (the warehouse's own `check_query`: a dry run,
    reading no rows), then count the rows it returns for `ds`."""
    try:
        where = warehouse.ping()
    except WarehouseError as exc:
        report.fail("warehouse", str(exc))
        return
    report.ok("warehouse", where)
    config = spec.config
    values: dict[str, Any] = {"ds": ds, "lookback_days": config.extract.lookback_days}
    for check, query in expected_queries(spec):
        result = warehouse.check_query(spec, query, values)
        for warning in result.warnings:
            report.warn(check, warning)
        for error in result.errors:
            report.fail(check, error)
        if result.errors:
            continue
        bound = ", ".join(f"@{name}={value}" for name, value in result.bound.items()) or "no parameters"
        report.ok(
            check, f"{query.path}: runs on {warehouse.kind} ({bound}) and returns all {len(query.columns)} spec columns"
        )
        try:
            rows = warehouse.count_rows(query.sql, result.bound)
        except WarehouseError as exc:
            report.fail(check, str(exc))
            continue
        if rows:
            report.ok(check, f"{query.path}: returns {rows:,} rows for ds {ds}")
        else:
            report.warn(
                check,
                f"{query.path}: returns 0 rows for ds {ds}: a run of that day would stop (extract) or be refused "
                "(score); pass --ds for a day that has data",
            )


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_dag(spec: PipelineSpec, report: Report) -> None:
    """Render the DAG as Airflow would (local profile); compare its task ids and their order with the design."""
    try:
        from tfpipe_operators.dag_factory import build_dag
        from tfpipe_operators.profiles import Profile
        from tfpipe_operators.steps import DAILY

        dag = build_dag(spec, Profile())
    except Exception as exc:  # any error here is what Airflow would show as an import error
        report.fail("dag", f"{spec.path}: the DAG does not render: {type(exc).__name__}: {_first_line(exc)}")
        return
    expected = ["wait_for_source", *(s.task_id for s in DAILY)]
    present = set(dag.task_ids)
    missing = [task for task in expected if task not in present]
    extra = sorted(present - set(expected))
    if missing or extra:
        detail = "; ".join(
            part
            for part in (
                f"missing tasks {', '.join(missing)}" if missing else "",
                f"unexpected tasks {', '.join(extra)}" if extra else "",
            )
            if part
        )
        report.fail("dag", f"{spec.path}: {dag.dag_id}: {detail}")
        return
    broken = [
        f"{upstream} -> {downstream}"
        for upstream, downstream in itertools.pairwise(expected)
        if downstream not in dag.get_task(upstream).downstream_task_ids
    ]
    if broken:
        report.fail("dag", f"{spec.path}: {dag.dag_id}: tasks not chained as designed: {', '.join(broken)}")
        return
    report.ok("dag", f"{spec.path}: {dag.dag_id} renders with tasks {' -> '.join(expected)}")


def validate(spec_path: str | Path, warehouse: str | None, report: Report, ds: date | None = None) -> bool:
    """Run every check; True when none failed."""
    spec = check_spec(Path(spec_path), report)
    if spec is None:
        report.skip("sql", "the spec did not load; nothing more to check")
        return False
    if not warehouse:
        report.skip("sql", "no warehouse given; pass --warehouse (duckdb:///path or bigquery://project/dataset)")
    else:
        try:
            opened = open_warehouse(warehouse)
        except WarehouseError as exc:
            report.fail("warehouse", str(exc))
        else:
            dry_run_sql(spec, opened, report, ds or yesterday())
    check_dag(spec, report)
    return not report.failed


def yesterday() -> date:
    """The `ds` of tonight's scheduled run: the day that just ended (UTC)."""
    return datetime.now(UTC).date() - timedelta(days=1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tfpipe_operators.validate",
        description="Validate a tfpipe pipeline spec, dry-run its SQL on the warehouse and render its DAG.",
    )
    parser.add_argument("spec", type=Path, help="the pipeline's pipeline.yaml")
    parser.add_argument(
        "--warehouse",
        default=os.environ.get("TFPIPE_WAREHOUSE"),
        help="duckdb:///path/to/warehouse.duckdb or bigquery://project/dataset (default: $TFPIPE_WAREHOUSE); read only",
    )
    parser.add_argument(
        "--ds",
        type=date.fromisoformat,
        default=None,
        help="the day the SQL is dry-run for, YYYY-MM-DD (default: yesterday, tonight's scheduled run)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = Report()
    ok = validate(args.spec, args.warehouse, report, args.ds)
    print(f"{'valid' if ok else 'INVALID'}: {args.spec}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
