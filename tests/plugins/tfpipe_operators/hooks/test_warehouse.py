"""The warehouse hook: the profile's warehouse URL, as the source sensor asks it for a day's rows."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest

from tfpipe_operators.hooks.warehouse import WarehouseHook
from tfpipe_operators.warehouse import BigQueryWarehouse, DuckDBWarehouse, WarehouseError


@pytest.fixture
def events(tmp_path: Path) -> Path:
    path = tmp_path / "wh.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE events (event_id VARCHAR, event_date DATE)")
        con.execute(
            "INSERT INTO events VALUES ('a', DATE '2026-11-20'), ('b', DATE '2026-11-21'), ('c', DATE '2026-11-21')"
        )
    return path


def test_the_url_names_the_backend(events: Path) -> None:
    duck = WarehouseHook(f"duckdb://{events}").get_conn()
    assert isinstance(duck, DuckDBWarehouse) and duck.url == f"duckdb://{events}"
    big = WarehouseHook("bigquery://acme-ml/analytics").get_conn()
    assert isinstance(big, BigQueryWarehouse)  # opening it reaches no server: no query has run


def test_partition_rows_counts_one_day_and_a_missing_table_as_none(events: Path) -> None:
    hook = WarehouseHook(f"duckdb://{events}")
    assert hook.partition_rows("events", "event_date", date(2026, 11, 21)) == 2
    assert hook.partition_rows("events", "event_date", date(2026, 11, 22)) == 0
    assert hook.partition_rows("not_there", "event_date", date(2026, 11, 21)) == 0


def test_a_url_it_cannot_open_is_named() -> None:
    with pytest.raises(WarehouseError, match="postgres://db/x"):
        WarehouseHook("postgres://db/x").get_conn()
