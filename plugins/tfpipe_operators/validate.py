"""Check a pipeline spec before Airflow ever parses it: the data engineers' one command.

    python -m tfpipe_operators.validate dags/pipelines/<name>/pipeline.yaml [--warehouse duckdb:///path]

A broken spec otherwise shows up as a DAG import error, and a SQL file that lost a
column only fails at night inside the extract job. This runs the same checks up front:

1. the spec loads and validates, with its config and every variant resolved;
2. with a DuckDB warehouse (``--warehouse`` or ``TFPIPE_WAREHOUSE``), the source and
   scoring SQL are transpiled from BigQuery like the jobs do, dry-run as
   ``SELECT * FROM (<sql>) LIMIT 0`` with the run's parameters bound, read-only, and their
   result columns compared with the spec (keys, label, features; scoring keys, features);
   a query that does not use ``@ds`` fails (a warning with ``static_sql: true``), and SQL
   errors are reported as ``<file>:<line>`` in the file's own numbering;
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

import sqlglot

from tfpipe_operators import sql_files
from tfpipe_operators.features import FeatureKind, Task
from tfpipe_operators.spec import PipelineSpec, SpecError, SpecQuery, load_spec, resolve_config, spec_queries

# Parameters the jobs bind for every query (see tfpipe_jobs.warehouse); anything else is unbound.
KNOWN_PARAMETERS = ("ds", "lookback_days")
NUMERIC_KINDS = (FeatureKind.NUMERIC, FeatureKind.BUCKETIZED)
_INTEGER_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"}
)
_FLOAT_TYPES = frozenset({"FLOAT", "DOUBLE"})


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


def duckdb_path(warehouse: str | None) -> str | None:
    """`duckdb:///abs/file.duckdb` -> `/abs/file.duckdb`; None for BigQuery or nothing."""
    if warehouse and warehouse.startswith("duckdb://"):
        return warehouse.removeprefix("duckdb://")
    return None


def dry_run_sql(spec: PipelineSpec, warehouse: str, report: Report, ds: date) -> None:
    """Run each query with LIMIT 0 on the DuckDB warehouse and compare its columns with the spec."""
    import duckdb

    path = duckdb_path(warehouse) or warehouse
    if not Path(path).is_file():
        report.fail(
            "warehouse",
            f"{warehouse}: DuckDB file not found; check --warehouse (default: the TFPIPE_WAREHOUSE environment "
            "variable), or create it with tfpipe-job sample-data",
        )
        return
    try:
        con = duckdb.connect(path, read_only=True)
    except duckdb.Error as exc:
        report.fail("warehouse", f"{warehouse}: cannot open read-only: {exc}")
        return
    try:
        config = resolve_config(spec, environ={})
        values: dict[str, Any] = {"ds": ds, "lookback_days": config.extract.lookback_days}
        for check, query in expected_queries(spec):
            _check_query(con, spec, check, query, values, report)
    finally:
        con.close()


def _check_query(
    con: Any, spec: PipelineSpec, check: str, query: SpecQuery, values: dict[str, Any], report: Report
) -> None:
    import duckdb

    where = str(query.path)
    body = query.sql.strip().rstrip(";")
    wrapped = f"SELECT * FROM (\n{body}\n) AS q LIMIT 0"
    try:
        used = sorted(sql_files.parameters_used(body))
    except sqlglot.errors.SqlglotError as exc:
        report.fail(check, sql_files.parse_error(body, exc))
        return
    try:
        statements = sqlglot.transpile(wrapped, read="bigquery", write="duckdb")
    except sqlglot.errors.SqlglotError as exc:
        report.fail(check, sql_files.parse_error(wrapped, exc))
        return
    if len(statements) != 1:
        report.fail(check, f"{where}: expected exactly one SELECT statement, found {len(statements)}")
        return
    unbound = [name for name in used if name not in values]
    if unbound:
        known = ", ".join(f"@{name}" for name in KNOWN_PARAMETERS)
        report.fail(check, f"{where}: uses @{', @'.join(unbound)}, which no run binds (known: {known})")
        return
    no_ds = sql_files.ds_problem(query.path, query.key, body, query.static)
    if no_ds is not None:
        message, is_error = no_ds
        if is_error:
            report.fail(check, message)
            return
        report.warn(check, message)
    try:
        relation = con.sql(statements[0], params={name: values[name] for name in used})
        columns = {name: str(kind) for name, kind in zip(relation.columns, relation.types, strict=True)}
    except duckdb.Error as exc:
        report.fail(check, sql_files.duckdb_error(body, exc, what="does not run on DuckDB"))
        return
    bound = ", ".join(f"@{name}={values[name]}" for name in used) or "no parameters"
    problems = 0
    for column, role in query.columns.items():
        if column not in columns:
            problems += 1
            report.fail(check, f"{where}: result has no column '{column}' ({role} in {spec.path.name})")
            continue
        wrong = _type_problem(spec, column, columns[column])
        if wrong:
            problems += 1
            report.fail(check, f"{where}: column '{column}' {wrong}")
    if problems:
        return
    report.ok(check, f"{where}: runs on DuckDB ({bound}) and returns all {len(query.columns)} spec columns")
    counted = sqlglot.transpile(f"SELECT COUNT(*) FROM (\n{body}\n) AS q", read="bigquery", write="duckdb")[0]
    rows = int(con.execute(counted, {name: values[name] for name in used}).fetchall()[0][0])
    if rows:
        report.ok(check, f"{where}: returns {rows:,} rows for ds {values['ds']}")
    else:
        report.warn(
            check,
            f"{where}: returns 0 rows for ds {values['ds']}: a run of that day would stop (extract) or be refused "
            "(score); pass --ds for a day that has data",
        )


def _type_problem(spec: PipelineSpec, column: str, duck_type: str) -> str | None:
    """The casts the jobs make (tfpipe_jobs.beam_jobs.arrow_batches), checked on the result type.

    Numeric features are read as floats, categorical ones as strings (a float column is
    refused there), a binary label as an integer and a regression label as a float.
    """
    base = duck_type.partition("(")[0].upper()
    numeric = base in _INTEGER_TYPES or base in _FLOAT_TYPES or base in ("DECIMAL", "BOOLEAN")
    feature = spec.feature_by_name.get(column)
    if feature is not None:
        if feature.kind in NUMERIC_KINDS and not numeric:
            return f"is {duck_type}; a {feature.kind.value} feature needs a numeric column"
        if feature.kind not in NUMERIC_KINDS and base in _FLOAT_TYPES:
            return f"is {duck_type}; a {feature.kind.value} feature needs a string or integer column"
    if column == spec.label.column and spec.label.task in (Task.BINARY, Task.REGRESSION) and not numeric:
        return f"is {duck_type}; a {spec.label.task.value} label needs a numeric column"
    return None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_dag(spec: PipelineSpec, report: Report) -> None:
    """Render the DAG as Airflow would (local profile); compare its task ids and their order with the design."""
    try:
        from tfpipe_operators.dag_factory import STEPS, build_dag
        from tfpipe_operators.profiles import Profile

        dag = build_dag(spec, Profile())
    except Exception as exc:  # any error here is what Airflow would show as an import error
        report.fail("dag", f"{spec.path}: the DAG does not render: {type(exc).__name__}: {_first_line(exc)}")
        return
    expected = ["wait_for_source", *STEPS]
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
    path = duckdb_path(warehouse)
    if path is None:
        why = f"{warehouse} is not a DuckDB warehouse" if warehouse else "no warehouse given"
        report.skip("sql", f"{why}; pass --warehouse duckdb:///path/to/warehouse.duckdb to dry-run the SQL")
    else:
        dry_run_sql(spec, path, report, ds or yesterday())
    check_dag(spec, report)
    return not report.failed


def yesterday() -> date:
    """The `ds` of tonight's scheduled run: the day that just ended (UTC)."""
    return datetime.now(UTC).date() - timedelta(days=1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tfpipe_operators.validate",
        description="Validate a tfpipe pipeline spec, dry-run its SQL on a DuckDB warehouse and render its DAG.",
    )
    parser.add_argument("spec", type=Path, help="the pipeline's pipeline.yaml")
    parser.add_argument(
        "--warehouse",
        default=os.environ.get("TFPIPE_WAREHOUSE"),
        help="duckdb:///path/to/warehouse.duckdb (default: $TFPIPE_WAREHOUSE); opened read-only",
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
