"""The BigQuery backend's own SQL and types (its calls run against the stand-in in tests/gcp_emulated)."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pytest
from google.cloud.bigquery import SchemaField

from tfpipe_operators.warehouse import PartitionWrite, WarehouseError, open_warehouse
from tfpipe_operators.warehouse.bigquery_backend import arrow_field


def test_shard_filter_hashes_every_key_null_safe() -> None:
    sql = open_warehouse("bigquery://p/d").hash_shard_sql("SELECT a, b FROM t;", ["a", "b"], "shard", "shards")
    assert "FARM_FINGERPRINT(IFNULL(CAST(`a` AS STRING), '') || '\\x1f' || IFNULL(CAST(`b` AS STRING), ''))" in sql
    assert sql.endswith("= @shard") and "FROM t\n)" in sql and "@shards)), @shards)" in sql


def test_split_hash_is_salted_null_safe_and_non_negative_and_quantiles_are_bigquerys() -> None:
    import sqlglot

    warehouse = open_warehouse("bigquery://p/d")
    expr = warehouse.row_hash_sql(["a", "b"], "salt-1")
    assert expr == (
        "(FARM_FINGERPRINT('salt-1' || IFNULL(CAST(`a` AS STRING), '') || '\\x1f' || "
        "IFNULL(CAST(`b` AS STRING), '')) & 0x7FFFFFFFFFFFFFFF)"
    )
    quantiles = warehouse.quantiles_sql("CAST(`x` AS FLOAT64)", 6)
    assert quantiles == "APPROX_QUANTILES(CAST(`x` AS FLOAT64), 6)"
    sqlglot.parse_one(f"SELECT {expr} AS h, {quantiles} AS q FROM t", read="bigquery")  # valid BigQuery


def test_dry_run_columns_become_the_arrow_types_the_rows_arrive_as() -> None:
    fields = [
        SchemaField("user_id", "STRING"),
        SchemaField("age", "INTEGER"),
        SchemaField("price", "FLOAT"),
        SchemaField("clicked", "BOOLEAN", mode="REQUIRED"),
        SchemaField("ds", "DATE"),
        SchemaField("tags", "STRING", mode="REPEATED"),
        SchemaField("probs", "RECORD", mode="REPEATED", fields=[SchemaField("p", "FLOAT64")]),
    ]
    schema = pa.schema([arrow_field(f) for f in fields])
    assert schema.types == [
        pa.string(),
        pa.int64(),
        pa.float64(),
        pa.bool_(),
        pa.date32(),
        pa.list_(pa.string()),
        pa.list_(pa.struct([pa.field("p", pa.float64())])),
    ]
    assert not schema.field("clicked").nullable
    with pytest.raises(WarehouseError, match="column g: BigQuery type GEOGRAPHY"):
        arrow_field(SchemaField("g", "GEOGRAPHY"))


def test_no_credentials_is_named_with_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")
    with pytest.raises(WarehouseError) as err:
        open_warehouse("bigquery://acme/analytics").ping()
    assert "warehouse bigquery://acme/analytics: no Google credentials" in str(err.value)
    assert "GOOGLE_APPLICATION_CREDENTIALS" in str(err.value)


class _Job:
    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def result(self) -> list[dict]:
        return self.rows


class _RecordingClient:
    """Takes the requests replace_partition sends, answering the counts a real day would."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.loads: list[tuple[list[str], str, dict]] = []

    def query(self, sql: str, job_config: object = None) -> _Job:
        return _Job([{"ds": date(2026, 11, 20), "n": self.rows}] if "GROUP BY ds" in sql else [{"n": self.rows}])

    def load_table_from_uri(self, files: list[str], destination: str, job_config: object) -> _Job:
        self.loads.append((files, destination, job_config.to_api_repr()))  # type: ignore[attr-defined]
        return _Job([])

    def delete_table(self, table: object, not_found_ok: bool = False) -> None:
        pass

    def create_table(self, table: object) -> None:
        pass


def test_a_partition_load_adds_new_columns_and_reads_lists_as_repeated_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Request shape only: no BigQuery here (the stand-in does not run load jobs from Parquet)."""
    warehouse = open_warehouse("bigquery://acme/analytics")
    client = _RecordingClient(rows=500)
    monkeypatch.setattr(warehouse, "client", lambda: client)
    write = PartitionWrite(
        table="band_scores",
        view="band_scores_latest",
        ds=date(2026, 11, 21),
        files=["gs://bucket/band/2026-11-21/scores/*.parquet"],
        staged_rows=500,
        before_write=lambda rows, counts: None,
        after_write=lambda written, expected: None,
    )
    assert warehouse.replace_partition(write) == 500
    [(files, destination, config)] = client.loads
    assert files == write.files
    assert destination == "acme.analytics.band_scores$20261121"
    load = config["load"]
    assert load["sourceFormat"] == "PARQUET" and load["writeDisposition"] == "WRITE_TRUNCATE"
    assert load["schemaUpdateOptions"] == ["ALLOW_FIELD_ADDITION"]
    assert load["parquetOptions"] == {"enableListInference": True}
    assert load["timePartitioning"] == {"type": "DAY", "field": "ds"}
