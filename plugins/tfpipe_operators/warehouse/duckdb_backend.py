"""The local profile's warehouse: one DuckDB file, the spec's SQL transpiled by sqlglot.

A step never creates the file: a wrong path is an error, not a new empty warehouse. A
writer holds DuckDB's file lock for a short transaction; readers wait for it instead of
failing. A partition is replaced inside one transaction, so a reader sees the old day
or the new one, never a mix and never both.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from datetime import date
from typing import Any

import pyarrow as pa
import sqlglot

from tfpipe_operators import sql_files
from tfpipe_operators.warehouse.base import (
    PartitionWrite,
    Warehouse,
    WarehouseError,
    latest_view_sql,
    reference_counts_sql,
)

log = logging.getLogger(__name__)

LOCK_WAIT_SECONDS = 120.0
# What one process's DuckDB queries may hold in memory before they spill to disk. Without
# a limit DuckDB takes up to 80% of the machine, and a day's duplicate-key check or
# distinct counts grow with the rows (measured +700 MB at 10M scoring rows, +130 MB at
# 1M); with it a job's peak memory stays flat as the day grows, at the same speed here.
DUCKDB_MEMORY_LIMIT = os.environ.get("TFPIPE_DUCKDB_MEMORY_LIMIT", "256MB")


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


class DuckDBWarehouse(Warehouse):
    kind = "duckdb"

    def __init__(self, url: str, path: str) -> None:
        super().__init__(url)
        self.path = path

    def connect(self, read_only: bool) -> Any:
        """Open the file, waiting while another process holds its write lock."""
        import duckdb

        if self.path != ":memory:" and not os.path.exists(self.path):
            # duckdb.connect would create an empty file, and a publisher would write into it.
            raise WarehouseError(
                f"DuckDB warehouse {self.path} does not exist; check the --warehouse argument or the "
                "TFPIPE_WAREHOUSE setting (duckdb:///path/to/warehouse.duckdb). No step creates a warehouse "
                "(tfpipe-job sample-data creates the sample one)"
            )
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                if not read_only:
                    return duckdb.connect(self.path)
                spill = os.path.join(tempfile.gettempdir(), f"tfpipe-duckdb-{os.getpid()}")
                return duckdb.connect(
                    self.path, read_only=True, config={"memory_limit": DUCKDB_MEMORY_LIMIT, "temp_directory": spill}
                )
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise WarehouseError(f"cannot open DuckDB warehouse {self.path}: {exc}") from exc
                log.info("warehouse %s is locked by another process; waiting", self.path)
                time.sleep(0.5)

    def ping(self) -> str:
        self.connect(read_only=True).close()
        return f"DuckDB file {self.path} opens read-only"

    def _batches(self, bigquery_sql: str, bound: Mapping[str, Any], batch_rows: int) -> Iterator[pa.RecordBatch]:
        import duckdb

        sql = to_duckdb(bigquery_sql)
        con = self.connect(read_only=True)
        try:
            try:
                # Conversion errors can surface while streaming, not only when the query starts.
                yield from con.sql(sql, params=dict(bound)).to_arrow_reader(batch_rows)
            except duckdb.Error as exc:
                raise self._error(bigquery_sql, sql, exc) from exc
        finally:
            con.close()

    def _schema(self, bigquery_sql: str, bound: Mapping[str, Any]) -> pa.Schema:
        import duckdb

        body = bigquery_sql.strip().rstrip(";")
        empty = f"SELECT * FROM (\n{body}\n) AS q LIMIT 0"
        sql = to_duckdb(empty)
        con = self.connect(read_only=True)
        try:
            return con.sql(sql, params=dict(bound)).to_arrow_reader(1).schema
        except duckdb.Error as exc:
            raise self._error(empty, sql, exc) from exc
        finally:
            con.close()

    def partition_rows(self, table: str, column: str, ds: date) -> int:
        import duckdb

        con = self.connect(read_only=True)
        try:
            row = con.execute(f'SELECT count(*) FROM "{table}" WHERE "{column}" = $ds', {"ds": ds}).fetchone()
        except duckdb.CatalogException:
            return 0
        finally:
            con.close()
        return int(row[0]) if row else 0

    def has_table(self, table: str) -> bool:
        con = self.connect(read_only=True)
        try:
            row = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = $t", {"t": table})
            found = row.fetchone()
        finally:
            con.close()
        return bool(found and found[0])

    def hash_shard_sql(self, bigquery_sql: str, keys: list[str], shard_param: str, shards_param: str) -> str:
        body = bigquery_sql.strip().rstrip(";")
        columns = ", ".join(f"`{k}`" for k in keys)
        # DuckDB has no FARM_FINGERPRINT; its own HASH (varargs, unsigned, NULL-safe) passes the transpiler.
        bucket = f"HASH({columns}) % @{shards_param}"
        return f"SELECT * FROM (\n{body}\n) AS source_rows WHERE {bucket} = @{shard_param}"

    def row_hash_sql(self, keys: list[str], salt: str) -> str:
        columns = ", ".join(f"`{k}`" for k in keys)
        # HASH is unsigned 64-bit and NULL-safe; the salt makes it another hash than the read shards'.
        return f"HASH('{salt}', {columns})"

    def quantiles_sql(self, column_sql: str, buckets: int) -> str:
        # Exact: a discrete quantile is a value of the column, as tf.Transform's boundaries are.
        # (An unknown name to the transpiler, passed through as DuckDB's own.)
        points = ", ".join(repr(i / buckets) for i in range(buckets + 1))
        return f"QUANTILE_DISC({column_sql}, [{points}])"

    def replace_partition(self, write: PartitionWrite) -> int:
        table, source = write.table, "read_parquet($files)"
        files = {"files": write.files}
        con = self.connect(read_only=False)
        try:
            con.execute("BEGIN TRANSACTION")
            con.execute(f'CREATE TABLE IF NOT EXISTS "{table}" AS SELECT * FROM {source} LIMIT 0', files)
            add_missing_columns(con, table, source, files)
            count = write.count_rows(source, '"') if write.count_rows else f"SELECT COUNT(*) FROM {source}"
            row = con.execute(count, files).fetchone()
            expected = int(row[0]) if row and row[0] is not None else 0
            counts = con.execute(reference_counts_sql(table, '"', "$ds"), {"ds": write.ds}).fetchall()
            write.before_write(expected, [(d, int(n)) for d, n in counts])
            con.execute(f'DELETE FROM "{table}" WHERE ds = $ds', {"ds": write.ds})
            rows = write.select_rows(source, '"') if write.select_rows else f"SELECT * FROM {source}"
            # By name: a table created before a column existed has its columns in another order.
            con.execute(f'INSERT INTO "{table}" BY NAME {rows}', files)
            con.execute(f'CREATE OR REPLACE VIEW "{write.view}" AS {latest_view_sql(table, chr(34))}')
            row = con.execute(f'SELECT count(*) FROM "{table}" WHERE ds = $ds', {"ds": write.ds}).fetchone()
            written = int(row[0]) if row else 0
            # Before COMMIT: a partition that is not exactly what was scored is never visible.
            write.after_write(written, expected)
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        finally:
            con.close()
        return written

    def _error(self, bigquery_sql: str, duckdb_sql: str, exc: Exception) -> WarehouseError:
        located = sql_files.duckdb_error(bigquery_sql, exc)
        detail = "\n".join(str(exc).strip().splitlines()[1:])
        return WarehouseError(
            f"{located} (warehouse {self.path})" + (f"\n{detail}" if detail else "") + f"\nSQL: {duckdb_sql}"
        )


def add_missing_columns(con: Any, table: str, source: str, params: Mapping[str, Any]) -> list[str]:
    """Add to `table` the staged rows' columns it lacks (NULL on its older days); their names.

    A score table outlives the code that writes it: when a release adds a column (the
    multiclass `class_name`), yesterday's table takes it and keeps every day it holds.
    """
    existing = {row[0] for row in con.execute(f'DESCRIBE "{table}"').fetchall()}
    added = []
    for name, kind, *_ in con.execute(f"DESCRIBE SELECT * FROM {source}", params).fetchall():
        if name not in existing:
            con.execute(f'ALTER TABLE "{table}" ADD COLUMN "{name}" {kind}')
            added.append(name)
    if added:
        log.info("table %s: added columns %s (NULL on the days written before them)", table, ", ".join(added))
    return added
