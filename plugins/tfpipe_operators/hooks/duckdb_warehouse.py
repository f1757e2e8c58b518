"""The local warehouse (a DuckDB file) as the Airflow side sees it: read-only checks."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

from airflow.sdk.bases.hook import BaseHook

LOCK_WAIT_SECONDS = 60.0


class DuckDBWarehouseHook(BaseHook):  # type: ignore[misc]
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path.removeprefix("duckdb://")

    def get_conn(self) -> Any:
        import duckdb

        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                return duckdb.connect(self.path, read_only=True)
            except duckdb.IOException as exc:
                # A job holds the write lock for a short transaction: wait, do not fail the sensor.
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def partition_rows(self, table: str, column: str, ds: date) -> int:
        """Rows of `table` whose `column` equals `ds`; 0 when the table does not exist yet."""
        import duckdb

        con = self.get_conn()
        try:
            row = con.execute(f'SELECT count(*) FROM "{table}" WHERE "{column}" = $ds', {"ds": ds}).fetchone()
        except duckdb.CatalogException:
            return 0
        finally:
            con.close()
        return int(row[0]) if row else 0
