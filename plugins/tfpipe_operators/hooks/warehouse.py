"""The pipeline's warehouse as Airflow sees it: read-only checks through the one interface."""

from __future__ import annotations

from datetime import date

from airflow.sdk.bases.hook import BaseHook

from tfpipe_operators.warehouse import Warehouse, open_warehouse


class WarehouseHook(BaseHook):  # type: ignore[misc]
    """DuckDB locally or BigQuery in the gcp profile, named by the profile's warehouse URL."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def get_conn(self) -> Warehouse:
        return open_warehouse(self.url)

    def partition_rows(self, table: str, column: str, ds: date) -> int:
        """Rows of `table` whose `column` equals `ds`; 0 when the table does not exist yet."""
        return self.get_conn().partition_rows(table, column, ds)
