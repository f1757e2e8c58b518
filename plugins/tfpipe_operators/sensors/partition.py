"""WarehousePartitionSensor: wait until the source table has rows for `ds` (DuckDB or BigQuery)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from typing import Any

from airflow.sdk import BaseSensorOperator, Context
from airflow.sdk.exceptions import AirflowSensorTimeout

from tfpipe_operators.hooks.warehouse import WarehouseHook


def _hours(seconds: float) -> str:
    minutes = round(seconds) // 60
    if minutes < 60:
        return f"{minutes}m" if minutes else f"{round(seconds)}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


class WarehousePartitionSensor(BaseSensorOperator):  # type: ignore[misc]
    """Succeeds once `table` has a row with `partition_column = ds`; fails clearly after `timeout`."""

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

    def execute(self, context: Context) -> Any:
        # Airflow's own timeout says only "run duration of N seconds exceeds the timeout":
        # it names neither the partition nor what to do about it.
        try:
            return super().execute(context)
        except AirflowSensorTimeout as timed_out:
            found = re.search(r"run duration of ([0-9.]+) seconds", str(timed_out))
            raise AirflowSensorTimeout(
                self.timeout_message(float(found.group(1)) if found else float(self.timeout))
            ) from timed_out

    def timeout_message(self, waited: float) -> str:
        return (
            f"{self.table} has no rows with {self.partition_column} = {self.ds}: waited {_hours(waited)} "
            f"(the sensor's timeout is {_hours(float(self.timeout))}) and the partition is still empty. "
            f"Load that day into {self.table} and clear this task to run the day, or mark {self.task_id} "
            "skipped to skip the day (or success to run the day on whatever rows are there by then)."
        )
