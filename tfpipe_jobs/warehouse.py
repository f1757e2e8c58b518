"""Warehouse access for the jobs: the spec's BigQuery SQL, run where the profile says.

Spec SQL is BigQuery Standard SQL with named parameters (`@ds`, `@lookback_days`).
Values are always bound as query parameters, never formatted into the text. Locally the
same SQL runs on DuckDB after sqlglot transpiles it; in the gcp profile it runs on
BigQuery with `ScalarQueryParameter`s. Results stream as Arrow record batches.

A spec's SQL carries its file's path (`tfpipe_operators.sql_files`): parse and engine
errors are reported as `<file>:<line>: ...` in the file's own line numbering, however the
query was wrapped. A step never creates a DuckDB file: a wrong path is an error, not a
new empty warehouse.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import pyarrow as pa
import sqlglot

from tfpipe_operators import sql_files
from tfpipe_operators.spec import SpecQuery
from tfpipe_operators.sql_files import parameters_used

__all__ = ["Warehouse", "WarehouseError", "parameters_used", "to_duckdb"]

log = logging.getLogger(__name__)

LOCK_WAIT_SECONDS = 120.0
# What one job's DuckDB queries may hold in memory before they spill to disk. Without a
# limit DuckDB takes up to 80% of the machine, and a day's duplicate-key check or
# distinct counts grow with the rows (measured +700 MB at 10M scoring rows, +130 MB at
# 1M); with it the job's peak memory stays flat as the day grows, at the same speed here.
DUCKDB_MEMORY_LIMIT = os.environ.get("TFPIPE_DUCKDB_MEMORY_LIMIT", "256MB")


class WarehouseError(RuntimeError):
    """A query could not run; the message names the query's purpose and the cause."""


def _parameters(bigquery_sql: str) -> set[str]:
    try:
        return parameters_used(bigquery_sql)
    except sqlglot.errors.SqlglotError as exc:
        raise WarehouseError(sql_files.parse_error(bigquery_sql, exc)) from None


def to_duckdb(bigquery_sql: str) -> str:
    """Transpile BigQuery Standard SQL to DuckDB; `@name` parameters become `$name`."""
    try:
        statements = sqlglot.transpile(bigquery_sql, read="bigquery", write="duckdb")
    except sqlglot.errors.SqlglotError as exc:
        raise WarehouseError(sql_files.parse_error(bigquery_sql, exc)) from None
    if len(statements) != 1:
        raise WarehouseError(
            sql_files.locate(bigquery_sql, f"expected exactly one SQL statement, found {len(statements)}")
        )
    return statements[0]


@dataclass(frozen=True)
class Warehouse:
    """`duckdb:///path/to/file.duckdb` (local) or `bigquery://project/dataset` (gcp)."""

    url: str

    @property
    def kind(self) -> str:
        return "bigquery" if self.url.startswith("bigquery://") else "duckdb"

    @property
    def duckdb_path(self) -> str:
        # duckdb:///abs/file.duckdb -> /abs/file.duckdb; a bare path is accepted too.
        return self.url.removeprefix("duckdb://")

    def batches(self, bigquery_sql: str, params: Mapping[str, Any], batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Run a SELECT and stream its rows as record batches of at most `batch_rows`."""
        used = _parameters(bigquery_sql)
        missing = used - set(params)
        if missing:
            raise WarehouseError(
                sql_files.locate(bigquery_sql, f"query uses parameters with no value: {', '.join(sorted(missing))}")
            )
        bound = {k: v for k, v in params.items() if k in used}
        if self.kind == "duckdb":
            yield from self._duckdb_batches(bigquery_sql, bound, batch_rows)
        else:
            yield from self._bigquery_batches(bigquery_sql, bound, batch_rows)

    def result_schema(self, bigquery_sql: str, params: Mapping[str, Any]) -> pa.Schema:
        """Column names and types of a query's result, without reading its rows."""
        body = bigquery_sql.strip().rstrip(";")
        empty = f"SELECT * FROM (\n{body}\n) AS q LIMIT 0"
        bound = {k: v for k, v in params.items() if k in _parameters(body)}
        if self.kind == "duckdb":
            import duckdb

            sql = to_duckdb(empty)
            con = self.connect_duckdb(read_only=True)
            try:
                return con.sql(sql, params=bound).to_arrow_reader(1).schema
            except duckdb.Error as exc:
                raise self._duckdb_error(empty, sql, exc) from exc
            finally:
                con.close()
        client, job_config = self._bigquery_client(bound)
        try:
            return client.query(empty, job_config=job_config).result().to_arrow().schema
        except Exception as exc:  # google.api_core's errors; their text carries [line:column]
            raise WarehouseError(sql_files.bigquery_error(empty, exc)) from exc

    def check_query(self, query: SpecQuery, params: Mapping[str, Any], spec_path: str) -> pa.Schema:
        """Refuse a spec query before a step runs it: no `@ds` (unless the spec says
        `static_sql`), or a result without a column the spec needs. Reads no rows."""
        _parameters(query.sql)  # bad SQL is named with its file and line before the @ds check parses it
        no_ds = sql_files.ds_problem(query.path, query.key, query.sql, query.static)
        if no_ds is not None:
            message, is_error = no_ds
            if is_error:
                raise WarehouseError(message)
            log.warning("%s", message)
        schema = self.result_schema(query.sql, params)
        missing = [column for column in query.columns if column not in schema.names]
        if missing:
            wanted = "; ".join(f"{column} ({query.columns[column]})" for column in missing)
            raise WarehouseError(
                f"{query.path}: the query's result has no column {wanted}, which {spec_path} asks for; "
                f"select them in {query.path.name} (it returns: {', '.join(schema.names)}) or change the spec"
            )
        return schema

    def table(self, bigquery_sql: str, params: Mapping[str, Any]) -> pa.Table:
        """The whole (small) result: statistics and checks, not data paths."""
        batches = list(self.batches(bigquery_sql, params, 1 << 16))
        if batches:
            return pa.Table.from_batches(batches)
        return pa.table({})

    def connect_duckdb(self, read_only: bool) -> Any:
        """Open the DuckDB file, waiting while another process holds its write lock."""
        import duckdb

        if self.duckdb_path != ":memory:" and not os.path.exists(self.duckdb_path):
            # duckdb.connect would create an empty file, and a publisher would write into it.
            raise WarehouseError(
                f"DuckDB warehouse {self.duckdb_path} does not exist; check the --warehouse argument or the "
                "TFPIPE_WAREHOUSE setting (duckdb:///path/to/warehouse.duckdb). No step creates a warehouse "
                "(tfpipe-job sample-data creates the sample one)"
            )
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                if not read_only:
                    return duckdb.connect(self.duckdb_path)
                spill = os.path.join(tempfile.gettempdir(), f"tfpipe-duckdb-{os.getpid()}")
                return duckdb.connect(
                    self.duckdb_path,
                    read_only=True,
                    config={"memory_limit": DUCKDB_MEMORY_LIMIT, "temp_directory": spill},
                )
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise WarehouseError(f"cannot open DuckDB warehouse {self.duckdb_path}: {exc}") from exc
                log.info("warehouse %s is locked by another process; waiting", self.duckdb_path)
                time.sleep(0.5)

    def _duckdb_batches(
        self, bigquery_sql: str, params: Mapping[str, Any], batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        import duckdb

        sql = to_duckdb(bigquery_sql)
        con = self.connect_duckdb(read_only=True)
        try:
            try:
                # Conversion errors can surface while streaming, not only when the query starts.
                reader = con.sql(sql, params=dict(params)).to_arrow_reader(batch_rows)
                yield from reader
            except duckdb.Error as exc:
                raise self._duckdb_error(bigquery_sql, sql, exc) from exc
        finally:
            con.close()

    def _duckdb_error(self, bigquery_sql: str, duckdb_sql: str, exc: Exception) -> WarehouseError:
        located = sql_files.duckdb_error(bigquery_sql, exc)
        detail = "\n".join(str(exc).strip().splitlines()[1:])
        return WarehouseError(
            f"{located} (warehouse {self.duckdb_path})" + (f"\n{detail}" if detail else "") + f"\nSQL: {duckdb_sql}"
        )

    def _bigquery_batches(
        self, bigquery_sql: str, params: Mapping[str, Any], batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        client, job_config = self._bigquery_client(params)
        try:
            rows = client.query(bigquery_sql, job_config=job_config).result(page_size=batch_rows)
        except Exception as exc:  # google.api_core's errors; their text carries [line:column]
            raise WarehouseError(sql_files.bigquery_error(bigquery_sql, exc)) from exc
        for batch in rows.to_arrow_iterable():
            yield from batch.to_batches(max_chunksize=batch_rows) if isinstance(batch, pa.Table) else [batch]

    def _bigquery_client(self, params: Mapping[str, Any]) -> tuple[Any, Any]:
        from google.cloud import bigquery

        project, _, dataset = self.url.removeprefix("bigquery://").partition("/")
        job_config = bigquery.QueryJobConfig(
            query_parameters=[_bq_param(bigquery, k, v) for k, v in params.items()],
            default_dataset=f"{project}.{dataset}" if dataset else None,
        )
        return bigquery.Client(project=project), job_config


def _bq_param(bigquery: Any, name: str, value: Any) -> Any:
    if isinstance(value, bool):
        kind = "BOOL"
    elif isinstance(value, int):
        kind = "INT64"
    elif isinstance(value, float):
        kind = "FLOAT64"
    elif isinstance(value, date):
        kind = "DATE"
    else:
        kind = "STRING"
    return bigquery.ScalarQueryParameter(name, kind, value)
