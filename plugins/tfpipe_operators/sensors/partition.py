"""WarehousePartitionSensor: wait until the source table has rows for `ds` (DuckDB or BigQuery)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from airflow.sdk import BaseSensorOperator, Context

from tfpipe_operators.hooks.warehouse import WarehouseHook


class WarehousePartitionSensor(BaseSensorOperator):  # type: ignore[misc]
    template_fields: Sequence[str] = ("ds",)

    def __init__(self, *, warehouse: str, table: str, partition_column: str, ds: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.warehouse = warehouse
        self.table = table
        self.partition_column = partition_column
        self.ds = ds

    def poke(self, context: Context) -> bool:
        rows = WarehouseHook(self.warehouse).partition_rows(
            self.table, self.partition_column, date.fromisoformat(self.ds)
        )
        self.log.info("%s.%s = %s: %d rows", self.table, self.partition_column, self.ds, rows)
        return rows > 0
