from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest

from tfpipe_jobs.warehouse import Warehouse, WarehouseError, parameters_used, to_duckdb


def test_parameters_are_bound_not_formatted(tmp_path: Path) -> None:
    path = tmp_path / "wh.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t (name VARCHAR, d DATE)")
        con.execute(
            "INSERT INTO t VALUES ('a', DATE '2026-11-20'), ('b', DATE '2026-11-21'), "
            "('x''; DROP TABLE t; --', DATE '2026-11-21')"
        )
    sql = "SELECT name FROM t WHERE d BETWEEN DATE_SUB(@ds, INTERVAL @lookback_days DAY) AND @ds AND name != @who"
    assert parameters_used(sql) == {"ds", "lookback_days", "who"}
    assert "$ds" in to_duckdb(sql)
    wh = Warehouse(f"duckdb://{path}")
    hostile = "'; DROP TABLE t; --"
    rows = wh.table(sql, {"ds": date(2026, 11, 21), "lookback_days": 0, "who": hostile}).to_pydict()
    assert sorted(rows["name"]) == ["b", "x'; DROP TABLE t; --"]
    rows = wh.table(sql, {"ds": date(2026, 11, 21), "lookback_days": 1, "who": "b"}).to_pydict()
    assert sorted(rows["name"]) == ["a", "x'; DROP TABLE t; --"]


def test_missing_parameter_and_bad_sql_are_named(tmp_path: Path) -> None:
    path = tmp_path / "wh.duckdb"
    duckdb.connect(str(path)).close()
    wh = Warehouse(f"duckdb://{path}")
    with pytest.raises(WarehouseError, match="parameters with no value: ds"):
        wh.table("SELECT @ds AS d", {})
    with pytest.raises(WarehouseError, match="query failed on DuckDB.*nope"):
        wh.table("SELECT * FROM nope WHERE d = @ds", {"ds": date(2026, 1, 1)})


def test_batches_stream_in_bounded_chunks(tmp_path: Path) -> None:
    path = tmp_path / "wh.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t AS SELECT range AS i FROM range(10000)")
    batches = list(Warehouse(f"duckdb://{path}").batches("SELECT i FROM t", {}, batch_rows=1024))
    assert sum(b.num_rows for b in batches) == 10000
    assert max(b.num_rows for b in batches) <= 1024
    schema = Warehouse(f"duckdb://{path}").result_schema("SELECT i, 'x' AS s FROM t", {})
    assert schema.names == ["i", "s"]


def test_a_missing_duckdb_file_is_refused_and_never_created(tmp_path: Path) -> None:
    # A typo in the file name (its folder exists): a writer must not create an empty warehouse.
    for missing in (tmp_path / "warehuose.duckdb", tmp_path / "typo" / "warehouse.duckdb"):
        wh = Warehouse(f"duckdb://{missing}")
        for read_only in (False, True):
            with pytest.raises(WarehouseError) as err:
                wh.connect_duckdb(read_only=read_only)
            assert f"DuckDB warehouse {missing} does not exist" in str(err.value)
            assert "--warehouse" in str(err.value) and "TFPIPE_WAREHOUSE" in str(err.value)
        assert not missing.exists()
