"""What every warehouse backend inherits: parameter checks, a spec query's columns and types,
row counts and the SQL of a partition's reference counts and latest view."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from tfpipe_jobs.tools.sample_data import CANDIDATES_DDL, EVENTS_DDL
from tfpipe_operators.spec import load_spec, spec_queries
from tfpipe_operators.warehouse import DuckDBWarehouse, WarehouseError, open_warehouse
from tfpipe_operators.warehouse.base import latest_view_sql, reference_counts_sql, type_problem

DS_PARAMS = {"ds": date(2026, 11, 21), "lookback_days": 0}


@pytest.fixture
def scores_warehouse(tmp_path: Path) -> DuckDBWarehouse:
    """A score table holding three days: 11-19 (2 rows), 11-20 (3 rows), 11-22 (1 row)."""
    path = tmp_path / "wh.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE scores (k INTEGER, ds DATE)")
        con.execute(
            "INSERT INTO scores VALUES (1, DATE '2026-11-19'), (2, DATE '2026-11-19'), (1, DATE '2026-11-20'), "
            "(2, DATE '2026-11-20'), (3, DATE '2026-11-20'), (1, DATE '2026-11-22')"
        )
    return open_warehouse(f"duckdb://{path}")


def test_reference_counts_are_the_day_and_the_newest_day_before_it(scores_warehouse: DuckDBWarehouse) -> None:
    sql = reference_counts_sql("scores", '"', "$ds")
    with scores_warehouse.connect(read_only=True) as con:
        on_a_new_day = con.execute(sql, {"ds": date(2026, 11, 21)}).fetchall()
        on_a_published_day = con.execute(sql, {"ds": date(2026, 11, 20)}).fetchall()
        before_anything = con.execute(sql, {"ds": date(2026, 11, 1)}).fetchall()
    assert on_a_new_day == [(date(2026, 11, 20), 3), (date(2026, 11, 19), 2)]
    assert on_a_published_day == [(date(2026, 11, 20), 3), (date(2026, 11, 19), 2)]
    assert before_anything == []


def test_the_latest_view_holds_only_the_newest_day(scores_warehouse: DuckDBWarehouse) -> None:
    with scores_warehouse.connect(read_only=True) as con:
        rows = con.execute(latest_view_sql("scores", '"')).fetchall()
    assert rows == [(1, date(2026, 11, 22))]


def test_count_rows_counts_in_the_warehouse_whatever_the_query_ends_with(scores_warehouse: DuckDBWarehouse) -> None:
    assert scores_warehouse.count_rows("SELECT * FROM scores WHERE ds <= @ds;\n", {"ds": date(2026, 11, 20)}) == 5
    assert scores_warehouse.count_rows("SELECT * FROM scores WHERE ds = @ds", {"ds": date(2026, 11, 21)}) == 0


def test_an_empty_result_is_an_empty_table(scores_warehouse: DuckDBWarehouse) -> None:
    table = scores_warehouse.table("SELECT k FROM scores WHERE ds = @ds", {"ds": date(2026, 1, 1)})
    assert table.num_rows == 0


def test_a_parameter_the_query_does_not_use_is_not_bound(scores_warehouse: DuckDBWarehouse) -> None:
    """A run binds @ds and @lookback_days for every query; one that uses only @ds still runs."""
    rows = scores_warehouse.table(
        "SELECT k FROM scores WHERE ds = @ds ORDER BY k", DS_PARAMS | {"ds": date(2026, 11, 20)}
    )
    assert rows.column("k").to_pylist() == [1, 2, 3]


@pytest.fixture
def sample_warehouse(tmp_path: Path) -> DuckDBWarehouse:
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(EVENTS_DDL)
        con.execute(CANDIDATES_DDL)
    return open_warehouse(f"duckdb://{path}")


def test_a_parameter_no_run_binds_is_named_with_the_ones_it_does(spec_dir: Path, sample_warehouse) -> None:
    path = spec_dir / "score.sql"
    path.write_text(path.read_text().replace("@ds", "@day", 1))
    spec = load_spec(spec_dir / "pipeline.yaml")
    check = sample_warehouse.check_query(spec, spec_queries(spec)["scoring"], DS_PARAMS)
    assert check.schema is None
    with pytest.raises(WarehouseError) as err:
        check.require()
    assert str(err.value) == f"{path}: uses @day, which no run binds (known: @ds, @lookback_days)"


def test_a_column_of_the_wrong_type_is_named_with_what_the_feature_needs(spec_dir: Path, sample_warehouse) -> None:
    path = spec_dir / "score.sql"
    text = path.read_text()
    assert "  hour,\n" in text and "  device,\n" in text
    path.write_text(
        text.replace("  hour,\n", "  CAST(hour AS VARCHAR) AS hour,\n").replace(
            "  device,\n", "  CAST(1.5 AS DOUBLE) AS device,\n"
        )
    )
    spec = load_spec(spec_dir / "pipeline.yaml")
    check = sample_warehouse.check_query(spec, spec_queries(spec)["scoring"], DS_PARAMS)
    assert check.schema is not None  # the query ran (dry): the problem is its types
    assert f"{path}: column 'hour' is string; a bucketized feature needs a numeric column" in check.errors
    assert f"{path}: column 'device' is double; a vocabulary feature needs a string or integer column" in check.errors
    with pytest.raises(WarehouseError) as err:
        check.require()
    assert sorted(str(err.value).splitlines()) == sorted(check.errors)  # every problem, one a line


def test_type_problem_follows_the_casts_the_jobs_make(ctr_spec_path: Path) -> None:
    spec = load_spec(ctr_spec_path)
    assert type_problem(spec, "user_age", pa.int64()) is None  # numeric: any number
    assert type_problem(spec, "user_age", pa.decimal128(10, 2)) is None
    assert type_problem(spec, "user_age", pa.string()) == "is string; a numeric feature needs a numeric column"
    assert type_problem(spec, "user_id", pa.int64()) is None  # an integer id is a category
    assert (
        type_problem(spec, "user_id", pa.float32()) == "is float; a vocabulary feature needs a string or integer column"
    )
    assert type_problem(spec, "clicked", pa.bool_()) is None
    assert type_problem(spec, "clicked", pa.string()) == "is string; a binary label needs a numeric column"
    assert type_problem(spec, "anything_else", pa.string()) is None  # keys and extra columns: not cast
