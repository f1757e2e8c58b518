"""The BigQuery backend's own SQL and types (its calls run against the stand-in in tests/gcp_emulated)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from google.cloud.bigquery import SchemaField

from tfpipe_operators.warehouse import WarehouseError, open_warehouse
from tfpipe_operators.warehouse.bigquery_backend import arrow_field


def test_shard_filter_hashes_every_key_null_safe() -> None:
    sql = open_warehouse("bigquery://p/d").hash_shard_sql("SELECT a, b FROM t;", ["a", "b"], "shard", "shards")
    assert "FARM_FINGERPRINT(IFNULL(CAST(`a` AS STRING), '') || '\\x1f' || IFNULL(CAST(`b` AS STRING), ''))" in sql
    assert sql.endswith("= @shard") and "FROM t\n)" in sql and "@shards)), @shards)" in sql


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
