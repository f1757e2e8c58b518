from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import duckdb
import pytest

from tfpipe_jobs.tools.sample_data import CANDIDATES_DDL, EVENTS_DDL
from tfpipe_operators.spec import PipelineSpec, load_spec, spec_queries
from tfpipe_operators.warehouse import DuckDBWarehouse, WarehouseError, open_warehouse, parameters, to_duckdb


def test_parameters_are_bound_not_formatted(tmp_path: Path) -> None:
    path = tmp_path / "wh.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t (name VARCHAR, d DATE)")
        con.execute(
            "INSERT INTO t VALUES ('a', DATE '2026-11-20'), ('b', DATE '2026-11-21'), "
            "('x''; DROP TABLE t; --', DATE '2026-11-21')"
        )
    sql = "SELECT name FROM t WHERE d BETWEEN DATE_SUB(@ds, INTERVAL @lookback_days DAY) AND @ds AND name != @who"
    assert parameters(sql) == {"ds", "lookback_days", "who"}
    assert "$ds" in to_duckdb(sql)
    wh = open_warehouse(f"duckdb://{path}")
    hostile = "'; DROP TABLE t; --"
    rows = wh.table(sql, {"ds": date(2026, 11, 21), "lookback_days": 0, "who": hostile}).to_pydict()
    assert sorted(rows["name"]) == ["b", "x'; DROP TABLE t; --"]
    rows = wh.table(sql, {"ds": date(2026, 11, 21), "lookback_days": 1, "who": "b"}).to_pydict()
    assert sorted(rows["name"]) == ["a", "x'; DROP TABLE t; --"]


def test_missing_parameter_and_bad_sql_are_named(tmp_path: Path) -> None:
    path = tmp_path / "wh.duckdb"
    duckdb.connect(str(path)).close()
    wh = open_warehouse(f"duckdb://{path}")
    with pytest.raises(WarehouseError, match="parameters with no value: ds"):
        wh.table("SELECT @ds AS d", {})
    with pytest.raises(WarehouseError, match="query failed on DuckDB.*nope"):
        wh.table("SELECT * FROM nope WHERE d = @ds", {"ds": date(2026, 1, 1)})


def test_batches_stream_in_bounded_chunks(tmp_path: Path) -> None:
    path = tmp_path / "wh.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t AS SELECT range AS i FROM range(10000)")
    batches = list(open_warehouse(f"duckdb://{path}").batches("SELECT i FROM t", {}, batch_rows=1024))
    assert sum(b.num_rows for b in batches) == 10000
    assert max(b.num_rows for b in batches) <= 1024
    schema = open_warehouse(f"duckdb://{path}").result_schema("SELECT i, 'x' AS s FROM t", {})
    assert schema.names == ["i", "s"]


def test_has_table_sees_tables_and_views_only_by_their_name(tmp_path: Path) -> None:
    path = tmp_path / "wh.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE ctr_scores (ds DATE)")
        con.execute("CREATE VIEW ctr_scores_latest AS SELECT * FROM ctr_scores")
    wh = open_warehouse(f"duckdb://{path}")
    assert wh.has_table("ctr_scores") and wh.has_table("ctr_scores_latest")
    assert not wh.has_table("ctr_score") and not wh.has_table("' OR 1=1 --")


def test_a_missing_duckdb_file_is_refused_and_never_created(tmp_path: Path) -> None:
    # A typo in the file name (its folder exists): a writer must not create an empty warehouse.
    for missing in (tmp_path / "warehuose.duckdb", tmp_path / "typo" / "warehouse.duckdb"):
        wh = open_warehouse(f"duckdb://{missing}")
        assert isinstance(wh, DuckDBWarehouse)
        for read_only in (False, True):
            with pytest.raises(WarehouseError) as err:
                wh.connect(read_only=read_only)
            assert f"DuckDB warehouse {missing} does not exist" in str(err.value)
            assert "--warehouse" in str(err.value) and "TFPIPE_WAREHOUSE" in str(err.value)
        assert not missing.exists()


def _sample_spec(spec_dir: Path, sql_file: str, old: str, new: str) -> tuple[PipelineSpec, Path, int]:
    """The sample spec with one edit in one SQL file; returns the spec, the file and the edited line."""
    path = spec_dir / sql_file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    line = next(i for i, content in enumerate(path.read_text().splitlines(), 1) if new.strip() in content)
    return load_spec(spec_dir / "pipeline.yaml"), path, line


@pytest.fixture
def sample_warehouse(tmp_path: Path) -> DuckDBWarehouse:
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(EVENTS_DDL)
        con.execute(CANDIDATES_DDL)
    return open_warehouse(f"duckdb://{path}")


DS_PARAMS = {"ds": date(2026, 11, 21), "lookback_days": 0}


def test_a_syntax_error_names_the_sql_file_and_its_own_line(spec_dir: Path, sample_warehouse: DuckDBWarehouse) -> None:
    spec, path, line = _sample_spec(spec_dir, "score.sql", "  hour,\n", "  CAST(hour AS),\n")
    for run in (
        lambda: sample_warehouse.result_schema(spec.scoring_sql, DS_PARAMS),  # wrapped in SELECT * ... LIMIT 0
        lambda: sample_warehouse.table(spec.scoring_sql, DS_PARAMS),
    ):
        with pytest.raises(WarehouseError) as err:
            run()
        assert str(err.value).startswith(f"{path}:{line}: not valid BigQuery SQL: Expected TYPE after CAST")


def test_a_duckdb_error_names_the_sql_file_and_the_line_of_the_name(
    spec_dir: Path, sample_warehouse: DuckDBWarehouse
) -> None:
    spec, path, line = _sample_spec(spec_dir, "score.sql", "FROM candidates", "FROM candidatez")
    with pytest.raises(WarehouseError) as err:
        sample_warehouse.result_schema(spec.scoring_sql, DS_PARAMS)
    assert str(err.value).startswith(
        f"{path}:{line}: query failed on DuckDB: Catalog Error: Table with name candidatez"
    )
    # Wrapped by a step (here like the duplicate-key check) and run for its rows: still the file's line.
    _sample_spec(spec_dir, "score.sql", "FROM candidatez", "FROM candidates")
    spec, path, line = _sample_spec(spec_dir, "score.sql", "  hour,\n", "  hourz,\n")
    body = spec.scoring_sql.strip().rstrip(";")
    with pytest.raises(WarehouseError) as err:
        sample_warehouse.table(f"SELECT user_id, COUNT(*) AS n FROM (\n{body}\n) AS q GROUP BY user_id", DS_PARAMS)
    assert str(err.value).startswith(f'{path}:{line}: query failed on DuckDB: Binder Error: Referenced column "hourz"')


def test_check_query_names_the_file_the_missing_columns_and_the_spec(
    spec_dir: Path, sample_warehouse: DuckDBWarehouse
) -> None:
    spec = load_spec(spec_dir / "pipeline.yaml")
    schema = sample_warehouse.check_query(spec, spec_queries(spec)["scoring"], DS_PARAMS).require()
    assert "hour" in schema.names
    spec, path, _ = _sample_spec(spec_dir, "score.sql", "  hour,\n", "  -- hour dropped\n")
    with pytest.raises(WarehouseError) as err:
        sample_warehouse.check_query(spec, spec_queries(spec)["scoring"], DS_PARAMS).require()
    message = str(err.value)
    assert message.startswith(
        f"{path}: result has no column 'hour' (features in pipeline.yaml); select it in score.sql"
    )


def test_check_query_refuses_a_query_without_ds_unless_the_spec_says_static(
    spec_dir: Path, sample_warehouse: DuckDBWarehouse, caplog: pytest.LogCaptureFixture
) -> None:
    spec, path, _ = _sample_spec(spec_dir, "train.sql", "AND @ds", "AND DATE '2026-11-21'")
    _sample_spec(spec_dir, "train.sql", "DATE_SUB(@ds,", "DATE_SUB(DATE '2026-11-21',")
    spec = load_spec(spec_dir / "pipeline.yaml")
    query = spec_queries(spec)["source"]
    with pytest.raises(WarehouseError) as err:
        sample_warehouse.check_query(spec, query, DS_PARAMS).require()
    assert str(err.value).startswith(f"{path}: does not use @ds (it has the date literal(s) 2026-11-21)")
    assert "source.static_sql: true" in str(err.value)
    with caplog.at_level("WARNING"):
        sample_warehouse.check_query(spec, replace(query, static=True), DS_PARAMS).require()
    assert any("does not use @ds" in record.getMessage() for record in caplog.records)
