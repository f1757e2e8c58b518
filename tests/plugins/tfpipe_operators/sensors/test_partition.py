from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
from airflow.sdk.exceptions import AirflowSensorTimeout

from tfpipe_operators.sensors.partition import WarehousePartitionSensor


def _sensor(path: Path, table: str = "events", **kwargs: Any) -> WarehousePartitionSensor:
    return WarehousePartitionSensor(
        task_id="wait_for_source",
        warehouse=f"duckdb://{path}",
        table=table,
        partition_column="event_date",
        ds="2026-11-21",
        **kwargs,
    )


def test_waits_until_the_day_has_rows(tmp_path: Path) -> None:
    path = tmp_path / "wh.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE events (event_id VARCHAR, event_date DATE)")
        con.execute("INSERT INTO events VALUES ('a', DATE '2026-11-20')")
    assert _sensor(path).poke({}) is False
    with duckdb.connect(str(path)) as con:
        con.execute("INSERT INTO events VALUES ('b', DATE '2026-11-21')")
    assert _sensor(path).poke({}) is True


def test_missing_table_means_not_yet(tmp_path: Path) -> None:
    path = tmp_path / "wh.duckdb"
    duckdb.connect(str(path)).close()
    assert _sensor(path, table="not_there").poke({}) is False


def test_an_empty_partition_fails_after_the_timeout_saying_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "wh.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE events (event_id VARCHAR, event_date DATE)")
        con.execute("INSERT INTO events VALUES ('a', DATE '2026-11-20')")
    sensor = _sensor(path, mode="poke", timeout=1, poke_interval=0.2)
    with pytest.raises(AirflowSensorTimeout) as failed:
        sensor.execute({})
    message = str(failed.value)
    assert message.startswith("events has no rows with event_date = 2026-11-21: waited 1s")
    assert "the sensor's timeout is 1s" in message
    assert "Load that day into events and clear this task" in message
    assert "mark wait_for_source skipped" in message


def test_the_timeout_message_speaks_in_hours_for_the_daily_wait(tmp_path: Path) -> None:
    sensor = _sensor(tmp_path / "wh.duckdb", timeout=12 * 3600)
    assert "waited 12h00m (the sensor's timeout is 12h00m)" in sensor.timeout_message(12 * 3600 + 31)
