"""What every step asks of the warehouse, whichever engine holds it.

The spec's SQL is BigQuery Standard SQL with named parameters (`@ds`, `@lookback_days`);
values are always bound as query parameters, never formatted into the text, and results
stream as Arrow record batches. A backend (DuckDB locally, BigQuery in the gcp profile)
supplies the engine-specific part: running a query, a result's columns without its rows,
the hash range of a parallel read, a partition's row count and the atomic replacement of
one day of a table. Everything built on those (parameter checks, a spec query's columns
and types, row counts) is written once here.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import pyarrow as pa
import sqlglot

from tfpipe_operators import sql_files
from tfpipe_operators.features import FeatureKind, Task
from tfpipe_operators.spec import PipelineSpec, SpecQuery

log = logging.getLogger(__name__)

# Parameters the jobs bind for every spec query; anything else a query uses is unbound.
KNOWN_PARAMETERS = ("ds", "lookback_days")
NUMERIC_KINDS = (FeatureKind.NUMERIC, FeatureKind.BUCKETIZED)


class WarehouseError(RuntimeError):
    """A query could not run; the message names the query's file and line and the cause."""


def parameters(bigquery_sql: str) -> set[str]:
    """The `@name` parameters a query uses; a parse error names the file and line."""
    try:
        return sql_files.parameters_used(bigquery_sql)
    except sqlglot.errors.SqlglotError as exc:
        raise WarehouseError(sql_files.parse_error(bigquery_sql, exc)) from None


@dataclass(frozen=True)
class QueryCheck:
    """A spec query checked before a step reads it: its result's columns, or what is wrong."""

    query: SpecQuery
    schema: pa.Schema | None
    bound: dict[str, Any]
    errors: tuple[str, ...]
    warnings: tuple[str, ...]

    def require(self) -> pa.Schema:
        """The result's schema; a WarehouseError naming every problem when there is one."""
        for warning in self.warnings:
            log.warning("%s", warning)
        if self.errors or self.schema is None:
            raise WarehouseError("\n".join(self.errors))
        return self.schema


@dataclass(frozen=True)
class PartitionWrite:
    """One day of a table replaced by staged Parquet files, as one atomic change.

    The rules are the caller's (which rows go in, when a smaller day is refused); the
    backend decides how the change stays atomic. `select_rows`/`count_rows` turn the
    staged rows (a relation in the engine's dialect, and its identifier quote) into the
    rows to publish and their count; without them every staged row is published.
    `before_write` sees the count and the table's `(ds, rows)` for the day and the newest
    day before it, and raises to refuse with nothing changed; `after_write` sees the
    partition's rows and the count expected, and raises when they differ.
    """

    table: str
    view: str
    ds: date
    files: list[str]
    staged_rows: int
    before_write: Callable[[int, list[tuple[Any, int]]], None]
    after_write: Callable[[int, int], None]
    select_rows: Callable[[str, str], str] | None = None
    count_rows: Callable[[str, str], str] | None = None


def reference_counts_sql(table: str, quote: str, param: str) -> str:
    """Row counts of the day's existing partition and of the newest one before it."""
    t = f"{quote}{table}{quote}"
    return f"SELECT ds, COUNT(*) AS n FROM {t} WHERE ds <= {param} GROUP BY ds ORDER BY ds DESC LIMIT 2"


def latest_view_sql(table: str, quote: str) -> str:
    t = f"{quote}{table}{quote}"
    return f"SELECT * FROM {t} WHERE ds = (SELECT MAX(ds) FROM {t})"


class Warehouse(ABC):
    """The pipeline's warehouse; open one with `tfpipe_operators.warehouse.open_warehouse`."""

    kind: str  # "duckdb" or "bigquery"

    def __init__(self, url: str) -> None:
        self.url = url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def table_id(self, table: str) -> str:
        """A table's name as a user types it in this warehouse (BigQuery: project.dataset.table)."""
        return table

    # -- what a backend supplies -------------------------------------------------------

    @abstractmethod
    def ping(self) -> str:
        """Reach the warehouse (read only); what it is, or a WarehouseError saying why not."""

    @abstractmethod
    def _batches(self, bigquery_sql: str, bound: Mapping[str, Any], batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Run a SELECT (its parameters already checked) and stream its rows."""

    @abstractmethod
    def _schema(self, bigquery_sql: str, bound: Mapping[str, Any]) -> pa.Schema:
        """A query's result columns and types, reading no rows (the engine's dry run)."""

    @abstractmethod
    def partition_rows(self, table: str, column: str, ds: date) -> int:
        """Rows of `table` whose `column` equals `ds`; 0 when the table does not exist yet."""

    @abstractmethod
    def has_table(self, table: str) -> bool:
        """Whether `table` (or a view of that name) exists: a score table's first day has none before it."""

    @abstractmethod
    def hash_shard_sql(self, bigquery_sql: str, keys: list[str], shard_param: str, shards_param: str) -> str:
        """The query restricted to one hash range of its key columns (`@<shard_param>` of
        `@<shards_param>`), so several workers each read a disjoint part of the rows."""

    @abstractmethod
    def row_hash_sql(self, keys: list[str], salt: str) -> str:
        """A non-negative 64-bit hash of the key columns (NULL-safe, salted) as a SELECT expression.

        Extraction's train/eval split and sample are digits of it, so the Beam read and the
        analyzers' queries, run by the same engine, agree on every row."""

    @abstractmethod
    def quantiles_sql(self, column_sql: str, buckets: int) -> str:
        """An expression: the quantiles 0, 1/buckets, …, 1 of a numeric column as an array of
        `buckets + 1` values (the minimum, the inner boundaries, the maximum), NULLs ignored."""

    @abstractmethod
    def replace_partition(self, write: PartitionWrite) -> int:
        """Replace the day's partition and point the view at the newest day; the rows written."""

    # -- built on them ------------------------------------------------------------------

    def batches(self, bigquery_sql: str, params: Mapping[str, Any], batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Run a SELECT and stream its rows as record batches of at most `batch_rows`."""
        yield from self._batches(bigquery_sql, self._bind(bigquery_sql, params), batch_rows)

    def result_schema(self, bigquery_sql: str, params: Mapping[str, Any]) -> pa.Schema:
        """Column names and types of a query's result, without reading its rows."""
        return self._schema(bigquery_sql, self._bind(bigquery_sql, params))

    def table(self, bigquery_sql: str, params: Mapping[str, Any]) -> pa.Table:
        """The whole (small) result: statistics and checks, not data paths."""
        batches = list(self.batches(bigquery_sql, params, 1 << 16))
        return pa.Table.from_batches(batches) if batches else pa.table({})

    def count_rows(self, bigquery_sql: str, params: Mapping[str, Any]) -> int:
        """How many rows a query returns (counted in the warehouse)."""
        body = bigquery_sql.strip().rstrip(";")
        result = self.table(f"SELECT COUNT(*) AS n FROM (\n{body}\n) AS q", params)
        return int(result.column("n")[0].as_py())

    def check_query(self, spec: PipelineSpec, query: SpecQuery, params: Mapping[str, Any]) -> QueryCheck:
        """A spec query checked as the steps will run it, reading no rows: its SQL parses,
        it binds only what a run binds, it uses `@ds` (unless the spec says `static_sql`),
        and its result has every column the spec reads, with a type the jobs can cast."""
        where = str(query.path)
        errors: list[str] = []
        warnings: list[str] = []

        def done(schema: pa.Schema | None = None, bound: dict[str, Any] | None = None) -> QueryCheck:
            return QueryCheck(query, schema, bound or {}, tuple(errors), tuple(warnings))

        try:
            used = parameters(query.sql)
        except WarehouseError as exc:
            errors.append(str(exc))
            return done()
        unbound = sorted(used - set(params))
        if unbound:
            known = ", ".join(f"@{name}" for name in KNOWN_PARAMETERS)
            errors.append(f"{where}: uses @{', @'.join(unbound)}, which no run binds (known: {known})")
            return done()
        no_ds = sql_files.ds_problem(query.path, query.key, query.sql, query.static)
        if no_ds is not None:
            message, is_error = no_ds
            (errors if is_error else warnings).append(message)
            if is_error:
                return done()
        bound = {name: params[name] for name in sorted(used)}
        try:
            schema = self.result_schema(query.sql, bound)
        except WarehouseError as exc:
            errors.append(str(exc))
            return done()
        for column, role in query.columns.items():
            if column not in schema.names:
                errors.append(
                    f"{where}: result has no column '{column}' ({role} in {spec.path.name}); select it in "
                    f"{query.path.name} (it returns: {', '.join(schema.names)}) or change the spec"
                )
                continue
            wrong = type_problem(spec, column, schema.field(column).type)
            if wrong:
                errors.append(f"{where}: column '{column}' {wrong}")
        return done(schema, bound)

    def _bind(self, bigquery_sql: str, params: Mapping[str, Any]) -> dict[str, Any]:
        used = parameters(bigquery_sql)
        missing = used - set(params)
        if missing:
            raise WarehouseError(
                sql_files.locate(bigquery_sql, f"query uses parameters with no value: {', '.join(sorted(missing))}")
            )
        return {k: v for k, v in params.items() if k in used}


def type_problem(spec: PipelineSpec, column: str, arrow_type: pa.DataType) -> str | None:
    """The casts the jobs make (tfpipe_jobs.arrow_batches), checked on the result type.

    Numeric features are read as floats, categorical ones as strings (a float column is
    refused there: 1.0 and 1 would be two categories), a binary label as an integer and a
    regression label as a float.
    """
    t = arrow_type
    numeric = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_boolean(t)
    feature = spec.feature_by_name.get(column)
    if feature is not None:
        if feature.kind in NUMERIC_KINDS and not numeric:
            return f"is {t}; a {feature.kind.value} feature needs a numeric column"
        if feature.kind not in NUMERIC_KINDS and pa.types.is_floating(t):
            return f"is {t}; a {feature.kind.value} feature needs a string or integer column"
    if column == spec.label.column and spec.label.task in (Task.BINARY, Task.REGRESSION) and not numeric:
        return f"is {t}; a {spec.label.task.value} label needs a numeric column"
    return None
