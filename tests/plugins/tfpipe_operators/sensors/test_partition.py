from __future__ import annotations

from pathlib import Path

import duckdb

from tfpipe_operators.sensors.partition import WarehousePartitionSensor


def _sensor(path: Path, table: str = "events") -> WarehousePartitionSensor:
    return WarehousePartitionSensor(
        task_id="wait", warehouse=f"duckdb://{path}", table=table, partition_column="event_date", ds="2026-11-21"
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
