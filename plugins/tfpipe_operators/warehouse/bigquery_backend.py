"""The gcp profile's warehouse: a BigQuery dataset, `bigquery://<project>/<dataset>`.

Queries run with the dataset as their default (the spec's SQL names tables without a
project), and `@name` parameters bound as `ScalarQueryParameter`s. A result's columns
come from a dry run (free, reads nothing). One day of a table is replaced by a single
WRITE_TRUNCATE into `table$YYYYMMDD`, which BigQuery applies atomically.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date
from typing import Any

import pyarrow as pa

from tfpipe_operators import sql_files
from tfpipe_operators.warehouse.base import (
    PartitionWrite,
    Warehouse,
    WarehouseError,
    latest_view_sql,
    reference_counts_sql,
)

# BigQuery's column types as Arrow types, the way the client's Arrow download gives them.
_ARROW_TYPES: dict[str, pa.DataType] = {
    "STRING": pa.string(),
    "BYTES": pa.binary(),
    "INTEGER": pa.int64(),
    "INT64": pa.int64(),
    "FLOAT": pa.float64(),
    "FLOAT64": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "BOOL": pa.bool_(),
    "NUMERIC": pa.decimal128(38, 9),
    "BIGNUMERIC": pa.decimal256(76, 38),
    "DATE": pa.date32(),
    "DATETIME": pa.timestamp("us"),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
    "TIME": pa.time64("us"),
    "JSON": pa.string(),
}


def arrow_field(field: Any) -> pa.Field:
    """A BigQuery SchemaField as an Arrow field (records become structs, REPEATED lists)."""
    kind = str(field.field_type).upper()
    if kind in ("RECORD", "STRUCT"):
        arrow: pa.DataType = pa.struct([arrow_field(f) for f in field.fields])
    elif kind in _ARROW_TYPES:
        arrow = _ARROW_TYPES[kind]
    else:
        raise WarehouseError(f"column {field.name}: BigQuery type {kind} has no Arrow equivalent here")
    if field.mode == "REPEATED":
        arrow = pa.list_(arrow)
    return pa.field(field.name, arrow, nullable=field.mode != "REQUIRED")


def _keys_text(keys: list[str]) -> str:
    """The key columns as one string to hash; IFNULL: a NULL key still hashes (to one range, one split)."""
    return " || '\\x1f' || ".join(f"IFNULL(CAST(`{k}` AS STRING), '')" for k in keys)


def _param(bigquery: Any, name: str, value: Any) -> Any:
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


def load_config(bigquery: Any, **options: Any) -> Any:
    """A WRITE_TRUNCATE load of Parquet files, their lists read as lists.

    Without list inference BigQuery loads a Parquet list as a RECORD wrapping a repeated
    `list.element`; with it a `list<struct<class_name, probability>>` becomes the
    REPEATED RECORD that `UNNEST(class_probabilities)` reads, as ML.PREDICT returns it.
    """
    parquet_options = bigquery.ParquetOptions()
    parquet_options.enable_list_inference = True
    return bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        parquet_options=parquet_options,
        **options,
    )


class BigQueryWarehouse(Warehouse):
    kind = "bigquery"

    def __init__(self, url: str, project: str, dataset: str) -> None:
        super().__init__(url)
        self.project = project
        self.dataset = dataset

    def client(self) -> Any:
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import bigquery

        try:
            return bigquery.Client(project=self.project)
        except DefaultCredentialsError as exc:
            raise WarehouseError(
                f"warehouse {self.url}: no Google credentials ({exc}); run `gcloud auth application-default login` "
                "or set GOOGLE_APPLICATION_CREDENTIALS"
            ) from exc

    def ping(self) -> str:
        try:
            self.client().get_dataset(f"{self.project}.{self.dataset}")
        except WarehouseError:
            raise
        except Exception as exc:  # google.api_core's errors: NotFound, Forbidden, ...
            raise WarehouseError(
                f"warehouse {self.url}: cannot read dataset {self.project}.{self.dataset}: {exc}"
            ) from exc
        return f"BigQuery dataset {self.project}.{self.dataset} is readable"

    def job_config(self, bound: Mapping[str, Any], **options: Any) -> Any:
        from google.cloud import bigquery

        return bigquery.QueryJobConfig(
            query_parameters=[_param(bigquery, k, v) for k, v in bound.items()],
            default_dataset=f"{self.project}.{self.dataset}",
            **options,
        )

    def table_id(self, table: str) -> str:
        return f"{self.project}.{self.dataset}.{table}"

    def _batches(self, bigquery_sql: str, bound: Mapping[str, Any], batch_rows: int) -> Iterator[pa.RecordBatch]:
        try:
            rows = self.client().query(bigquery_sql, job_config=self.job_config(bound)).result(page_size=batch_rows)
        except Exception as exc:  # google.api_core's errors; their text carries [line:column]
            raise WarehouseError(sql_files.bigquery_error(bigquery_sql, exc)) from exc
        for batch in rows.to_arrow_iterable():
            yield from batch.to_batches(max_chunksize=batch_rows) if isinstance(batch, pa.Table) else [batch]

    def _schema(self, bigquery_sql: str, bound: Mapping[str, Any]) -> pa.Schema:
        config = self.job_config(bound, dry_run=True, use_query_cache=False)
        try:
            job = self.client().query(bigquery_sql, job_config=config)
        except Exception as exc:
            raise WarehouseError(sql_files.bigquery_error(bigquery_sql, exc)) from exc
        return pa.schema([arrow_field(f) for f in job.schema or []])

    def partition_rows(self, table: str, column: str, ds: date) -> int:
        from google.api_core.exceptions import NotFound

        sql = f"SELECT COUNT(*) AS n FROM `{self.table_id(table)}` WHERE `{column}` = @ds"
        try:
            rows = self.client().query(sql, job_config=self.job_config({"ds": ds})).result()
        except NotFound:
            return 0
        return int(next(iter(rows))["n"])

    def has_table(self, table: str) -> bool:
        from google.api_core.exceptions import NotFound

        try:
            self.client().get_table(self.table_id(table))
        except NotFound:
            return False
        return True

    def hash_shard_sql(self, bigquery_sql: str, keys: list[str], shard_param: str, shards_param: str) -> str:
        body = bigquery_sql.strip().rstrip(";")
        bucket = f"MOD(ABS(MOD(FARM_FINGERPRINT({_keys_text(keys)}), @{shards_param})), @{shards_param})"
        return f"SELECT * FROM (\n{body}\n) AS source_rows WHERE {bucket} = @{shard_param}"

    def row_hash_sql(self, keys: list[str], salt: str) -> str:
        # The sign bit cleared: the split takes digits of a non-negative number.
        return f"(FARM_FINGERPRINT('{salt}' || {_keys_text(keys)}) & 0x7FFFFFFFFFFFFFFF)"

    def quantiles_sql(self, column_sql: str, buckets: int) -> str:
        # Approximate quantiles, as tf.Transform's own are.
        return f"APPROX_QUANTILES({column_sql}, {buckets})"

    def replace_partition(self, write: PartitionWrite) -> int:
        """One load job (every staged row) or, with a row selection, a load into a staging
        table and one query; both end in a single WRITE_TRUNCATE of `table$YYYYMMDD`."""
        from google.api_core.exceptions import NotFound
        from google.cloud import bigquery

        client = self.client()
        table_id = self.table_id(write.table)
        partition = f"{table_id}${write.ds:%Y%m%d}"
        by_day = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY, field="ds")
        truncate = bigquery.WriteDisposition.WRITE_TRUNCATE
        # A column the table does not have yet (a release added it) is added to it; its
        # older days read NULL. BigQuery allows this on a WRITE_TRUNCATE of one partition.
        add_fields = [bigquery.SchemaUpdateOption.ALLOW_FIELD_ADDITION]
        by_ds = self.job_config({"ds": write.ds})
        try:
            sql = reference_counts_sql(table_id, "`", "@ds")
            counts = [(r["ds"], int(r["n"])) for r in client.query(sql, job_config=by_ds).result()]
        except NotFound:
            counts = []  # the first partition of a new table
        if write.select_rows is None:
            expected = write.staged_rows
            write.before_write(expected, counts)
            load = load_config(bigquery, time_partitioning=by_day, schema_update_options=add_fields)
            client.load_table_from_uri(write.files, partition, job_config=load).result()
        else:
            staging = f"{table_id}__staging_{write.ds:%Y%m%d}"
            load = load_config(bigquery)  # a whole new staging table: its schema is the files'
            client.load_table_from_uri(write.files, staging, job_config=load).result()
            try:
                source = f"`{staging}`"
                count = write.count_rows(source, "`") if write.count_rows else f"SELECT COUNT(*) FROM {source}"
                expected = int(next(iter(client.query(count).result()))[0] or 0)
                write.before_write(expected, counts)
                ranked = bigquery.QueryJobConfig(
                    destination=partition,
                    write_disposition=truncate,
                    time_partitioning=by_day,
                    schema_update_options=add_fields,
                )
                client.query(write.select_rows(source, "`"), job_config=ranked).result()
            finally:
                client.delete_table(staging, not_found_ok=True)
        view = bigquery.Table(self.table_id(write.view))
        view.view_query = latest_view_sql(table_id, "`")
        client.delete_table(view, not_found_ok=True)
        client.create_table(view)
        rows = client.query(f"SELECT COUNT(*) AS n FROM `{table_id}` WHERE ds = @ds", job_config=by_ds).result()
        written = int(next(iter(rows))["n"])
        write.after_write(written, expected)
        return written
