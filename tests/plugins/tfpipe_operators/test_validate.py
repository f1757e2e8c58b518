"""The validation command a data engineer runs before a spec reaches Airflow."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tfpipe_jobs.tools.sample_data import CANDIDATES_DDL, EVENTS_DDL
from tfpipe_operators import validate


@pytest.fixture
def warehouse(tmp_path: Path) -> str:
    """An empty DuckDB warehouse with the sample tables' columns (LIMIT 0 needs no rows)."""
    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.execute(EVENTS_DDL)
    con.execute(CANDIDATES_DDL)
    con.close()
    return f"duckdb://{path}"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    code = validate.main(list(argv))
    return code, capsys.readouterr().out.splitlines()


def _fails(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("FAIL")]


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_sample_spec_is_valid_against_a_duckdb_warehouse(
    spec_dir: Path, warehouse: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = Path(warehouse.removeprefix("duckdb://"))
    before = (db.stat().st_mtime_ns, db.stat().st_size)
    code, lines = _run(capsys, str(spec_dir / "pipeline.yaml"), "--warehouse", warehouse)
    assert code == 0, "\n".join(lines)
    assert _fails(lines) == []
    checks = [line.split(":", 1)[0] for line in lines if line[:4] in ("OK  ", "FAIL", "SKIP")]
    assert checks == [
        "OK   spec",
        "OK   config",
        "OK   config",  # the spec as written and its variant `wide`
        "OK   warehouse",
        "OK   source sql",
        "OK   scoring sql",
        "OK   dag",
    ]
    source = next(line for line in lines if line.startswith("OK   source sql"))
    assert "train.sql" in source and "@lookback_days=2" in source  # bound from the spec's extract config
    assert "ctr_daily" in lines[-2] and "wait_for_source -> extract_transform" in lines[-2]
    assert lines[-1].startswith("valid:")
    assert (db.stat().st_mtime_ns, db.stat().st_size) == before  # opened read-only


def test_warehouse_defaults_to_tfpipe_warehouse(
    spec_dir: Path, warehouse: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TFPIPE_WAREHOUSE", warehouse)
    code, lines = _run(capsys, str(spec_dir / "pipeline.yaml"))
    assert code == 0
    assert any(line.startswith("OK   scoring sql") for line in lines)


def test_without_a_warehouse_the_sql_check_is_skipped(
    spec_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TFPIPE_WAREHOUSE", raising=False)
    code, lines = _run(capsys, str(spec_dir / "pipeline.yaml"))
    assert code == 0
    assert any(line.startswith("SKIP sql: no warehouse given") for line in lines)


def test_a_bigquery_warehouse_without_credentials_fails_saying_how_to_log_in(
    spec_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """BigQuery is checked like DuckDB (its dry run); with no credentials the line says how to get them."""
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "BIGQUERY_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # no gcloud login of this machine's user
    code, lines = _run(capsys, str(spec_dir / "pipeline.yaml"), "--warehouse", "bigquery://acme/analytics")
    assert code == 1
    [fail] = _fails(lines)
    assert fail.startswith("FAIL warehouse: warehouse bigquery://acme/analytics: no Google credentials")
    assert "gcloud auth application-default login" in fail and "GOOGLE_APPLICATION_CREDENTIALS" in fail
    assert any(line.startswith("OK   dag") for line in lines)  # the other checks still run


def test_training_sql_that_drops_a_feature_fails_naming_file_and_column(
    spec_dir: Path, warehouse: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(spec_dir / "train.sql", "  user_age,\n", "")
    code, lines = _run(capsys, str(spec_dir / "pipeline.yaml"), "--warehouse", warehouse)
    assert code == 1
    [fail] = _fails(lines)
    assert fail.startswith(
        f"FAIL source sql: {spec_dir / 'train.sql'}: result has no column 'user_age' (features in pipeline.yaml); "
        "select it in train.sql (it returns: event_id, user_id,"
    )
    assert any(line.startswith("OK   scoring sql") for line in lines)  # the other query is still checked
    assert lines[-1].startswith("INVALID:")


def test_scoring_sql_without_a_scoring_key_fails(
    spec_dir: Path, warehouse: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(spec_dir / "score.sql", "  item_id,\n", "")
    code, lines = _run(capsys, str(spec_dir / "pipeline.yaml"), "--warehouse", warehouse)
    assert code == 1
    [fail] = _fails(lines)
    assert "score.sql" in fail and "'item_id' (scoring.keys in pipeline.yaml)" in fail


def test_a_key_the_sql_does_not_return_fails_naming_the_key(
    spec_dir: Path, warehouse: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(spec_dir / "pipeline.yaml", "keys: [event_id]", "keys: [evnt_id]")
    code, lines = _run(capsys, str(spec_dir / "pipeline.yaml"), "--warehouse", warehouse)
    assert code == 1
    [fail] = _fails(lines)
    assert fail.startswith(
        f"FAIL source sql: {spec_dir / 'train.sql'}: result has no column 'evnt_id' (keys in pipeline.yaml); "
    )


def test_an_unknown_config_key_in_a_variant_fails_naming_file_and_key(
    spec_dir: Path, warehouse: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(spec_dir / "pipeline.yaml", "train.embedding_dim: 16", "train.embeding_dim: 16")
    code, lines = _run(capsys, str(spec_dir / "pipeline.yaml"), "--warehouse", warehouse)
    assert code == 1
    [fail] = _fails(lines)
    assert fail.startswith(f"FAIL spec: {spec_dir / 'pipeline.yaml'}: variants.wide:")
    assert "'train.embeding_dim' is not a config key" in fail
    assert any(line.startswith("SKIP sql: the spec did not load") for line in lines)


def test_a_numeric_feature_read_as_text_fails_with_its_type(
    spec_dir: Path, warehouse: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(spec_dir / "train.sql", "  user_age,\n", "  CAST(user_age AS VARCHAR) AS user_age,\n")
    code, lines = _run(capsys, str(spec_dir / "pipeline.yaml"), "--warehouse", warehouse)
    assert code == 1
    [fail] = _fails(lines)
    assert "'user_age' is string; a numeric feature needs a numeric column" in fail


def test_a_parameter_no_run_binds_fails(spec_dir: Path, warehouse: str, capsys: pytest.CaptureFixture[str]) -> None:
    _edit(spec_dir / "score.sql", "WHERE event_date = @ds", "WHERE event_date = @ds AND country = @country")
    code, lines = _run(capsys, str(spec_dir / "pipeline.yaml"), "--warehouse", warehouse)
    assert code == 1
    [fail] = _fails(lines)
    assert "score.sql" in fail and "@country" in fail and "which no run binds" in fail


def test_sql_that_does_not_run_fails_with_the_database_error(
    spec_dir: Path, warehouse: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(spec_dir / "train.sql", "FROM events", "FROM event_log")
    code, lines = _run(capsys, str(spec_dir / "pipeline.yaml"), "--warehouse", warehouse)
    assert code == 1
    [fail] = _fails(lines)
    line = _line_of(spec_dir / "train.sql", "FROM event_log")
    assert fail.startswith(f"FAIL source sql: {spec_dir / 'train.sql'}:{line}: query failed on DuckDB: Catalog Error")
    assert "event_log" in fail


def test_a_missing_warehouse_file_fails(spec_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.duckdb"
    code, lines = _run(capsys, str(spec_dir / "pipeline.yaml"), "--warehouse", f"duckdb://{missing}")
    assert code == 1
    [fail] = _fails(lines)
    assert fail.startswith(f"FAIL warehouse: DuckDB warehouse {missing} does not exist")
    assert "tfpipe-job sample-data" in fail
    assert not missing.exists()  # read-only: never creates the file


def test_a_dag_that_does_not_render_fails(
    spec_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tfpipe_operators import dag_factory

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("schedule 'nightly' is not a cron expression")

    monkeypatch.setattr(dag_factory, "build_dag", broken)
    code, lines = _run(capsys, str(spec_dir / "pipeline.yaml"), "--warehouse", "")
    assert code == 1
    [fail] = _fails(lines)
    assert fail.startswith(f"FAIL dag: {spec_dir / 'pipeline.yaml'}: the DAG does not render: ValueError")


def test_a_missing_spec_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _run(capsys, str(tmp_path / "pipeline.yaml"))
    assert code == 1
    assert _fails(lines) == [f"FAIL spec: {tmp_path / 'pipeline.yaml'}: spec file not found"]


def test_a_query_without_ds_fails_naming_the_file(
    spec_dir: Path, warehouse: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(spec_dir / "score.sql", "WHERE event_date = @ds", "WHERE event_date = DATE '2026-11-20'")
    code, lines = _run(capsys, str(spec_dir / "pipeline.yaml"), "--warehouse", warehouse)
    assert code == 1
    [fail] = _fails(lines)
    assert fail.startswith(
        f"FAIL scoring sql: {spec_dir / 'score.sql'}: does not use @ds (it has the date literal(s) 2026-11-20)"
    )
    assert "scoring.static_sql: true" in fail
    assert not any(line.startswith("OK   scoring sql") for line in lines)


def test_static_sql_turns_the_missing_ds_into_a_warning(
    spec_dir: Path, warehouse: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(spec_dir / "score.sql", "WHERE event_date = @ds", "WHERE event_date = DATE '2026-11-20'")
    _edit(spec_dir / "pipeline.yaml", "  table: ctr_scores\n", "  table: ctr_scores\n  static_sql: true\n")
    code, lines = _run(capsys, str(spec_dir / "pipeline.yaml"), "--warehouse", warehouse)
    assert code == 0, "\n".join(lines)
    [warning] = [line for line in lines if line.startswith("WARN") and "@ds" in line]  # (and 0 rows: empty tables)
    assert warning.startswith(f"WARN scoring sql: {spec_dir / 'score.sql'}: does not use @ds")
    assert any(line.startswith("OK   scoring sql") and "(no parameters)" in line for line in lines)


def test_a_syntax_error_names_the_file_and_its_own_line(
    spec_dir: Path, warehouse: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(spec_dir / "train.sql", "  hour,\n", "  CAST(hour AS),\n")
    code, lines = _run(capsys, str(spec_dir / "pipeline.yaml"), "--warehouse", warehouse)
    assert code == 1
    [fail] = _fails(lines)
    line = _line_of(spec_dir / "train.sql", "CAST(hour AS)")
    assert fail.startswith(f"FAIL source sql: {spec_dir / 'train.sql'}:{line}: not valid BigQuery SQL: Expected TYPE")


def test_ds_picks_the_day_and_the_rows_are_counted(
    spec_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import date

    from tfpipe_jobs.tools import sample_data

    db = tmp_path / "filled.duckdb"
    sample_data.generate(db, date(2026, 11, 21), days=1, rows_per_day=300, candidates_per_day=40, seed=3)
    spec = str(spec_dir / "pipeline.yaml")
    code, lines = _run(capsys, spec, "--warehouse", f"duckdb://{db}", "--ds", "2026-11-21")
    assert code == 0, "\n".join(lines)
    assert any(line.startswith("OK   source sql") and "returns 300 rows for ds 2026-11-21" in line for line in lines)
    assert any(line.startswith("OK   scoring sql") and "returns 40 rows for ds 2026-11-21" in line for line in lines)
    code, lines = _run(capsys, spec, "--warehouse", f"duckdb://{db}", "--ds", "2026-12-25")
    warned = [line for line in lines if line.startswith("WARN") and "returns 0 rows for ds 2026-12-25" in line]
    assert code == 0 and len(warned) == 2
