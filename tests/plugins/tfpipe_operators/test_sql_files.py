"""SQL errors point at the spec's SQL file and its own line, however the query was wrapped."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlglot

from tfpipe_operators import sql_files

FILE = Path("/specs/ctr/score.sql")
TEXT = "-- the day's candidates\nSELECT\n  user_id,\n  hour\nFROM candidates\nWHERE event_date = @ds\n"


def _wrapped(text: str = TEXT) -> str:
    body = sql_files.tag(FILE, text).strip().rstrip(";")
    return f"SELECT COUNT(*) FROM (\n\n{body}\n) AS rows_of_the_day"  # two wrapper lines before the file


def test_the_tag_moves_no_line_and_is_found_in_a_wrapped_query() -> None:
    tagged = sql_files.tag(FILE, TEXT)
    assert tagged.splitlines()[1:] == TEXT.splitlines()[1:]
    assert tagged.count("\n") == TEXT.count("\n")
    [place] = sql_files.places(_wrapped())
    assert (place.path, place.first_line, place.lines) == (str(FILE), 3, 6)
    assert place.body.splitlines() == TEXT.splitlines()
    assert sql_files.source_file(_wrapped()) == str(FILE)
    assert sql_files.parameters_used(tagged) == {"ds"}


def test_a_parse_error_gets_the_file_line_not_the_wrapper_line() -> None:
    broken = TEXT.replace("  hour\n", "  CAST(hour AS)\n")
    query = _wrapped(broken)
    with pytest.raises(sqlglot.errors.ParseError) as err:
        sqlglot.parse_one(query, read="bigquery")
    assert err.value.errors[0]["line"] == 6  # the wrapped text's numbering
    assert sql_files.parse_error(query, err.value).startswith(f"{FILE}:4: not valid BigQuery SQL: ")


def test_an_error_past_the_last_line_is_reported_at_the_end_of_the_file() -> None:
    query = _wrapped(TEXT.replace("WHERE event_date = @ds", "WHERE (event_date = @ds"))
    with pytest.raises(sqlglot.errors.ParseError) as err:
        sqlglot.parse_one(query, read="bigquery")
    message = sql_files.parse_error(query, err.value)
    assert message.startswith(f"{FILE}:6: ") and message.endswith("(at the end of the file)")


def test_an_unclosed_string_is_located_too() -> None:
    query = _wrapped(TEXT.replace("  hour\n", "  'hour\n"))
    with pytest.raises(sqlglot.errors.SqlglotError) as err:
        sqlglot.parse_one(query, read="bigquery")
    assert sql_files.parse_error(query, err.value).startswith(f"{FILE}:")


def test_duckdb_errors_are_located_by_the_name_they_give() -> None:
    class BinderException(Exception):
        pass

    error = BinderException('Binder Error: Referenced column "hour" not found in FROM clause!\nCandidate bindings: x')
    assert sql_files.duckdb_error(_wrapped(), error) == (
        f'{FILE}:4: query failed on DuckDB: Binder Error: Referenced column "hour" not found in FROM clause!'
    )
    missing_table = BinderException("Catalog Error: Table with name candidates does not exist!")
    assert sql_files.duckdb_error(_wrapped(), missing_table).startswith(f"{FILE}:5: ")
    # A name only the wrapper uses: the file, without a line that would mislead.
    other = BinderException('Binder Error: Referenced column "n" not found')
    assert sql_files.duckdb_error(_wrapped(), other).startswith(f"{FILE}: query failed on DuckDB")


def test_bigquery_positions_are_mapped_to_the_file() -> None:
    error = RuntimeError('400 Syntax error: Unexpected identifier "FORM" at [7:1]; reason: invalidQuery')
    assert sql_files.bigquery_error(_wrapped(), error).startswith(f"{FILE}:5: query failed on BigQuery: 400 Syntax")


def test_an_untagged_query_keeps_its_message() -> None:
    assert sql_files.locate("SELECT 1", "boom", query_line=1) == "line 1: boom"
    assert sql_files.locate("SELECT 1", "boom") == "boom"


def test_a_query_without_ds_is_an_error_unless_the_spec_says_static() -> None:
    fixed = TEXT.replace("@ds", "DATE '2026-11-21'")
    message, is_error = sql_files.ds_problem(FILE, "scoring.sql", fixed, static=False) or ("", False)
    assert is_error
    assert message.startswith(f"{FILE}: does not use @ds (it has the date literal(s) 2026-11-21)")
    assert "scoring.static_sql: true" in message
    warning = sql_files.ds_problem(FILE, "scoring.sql", fixed, static=True)
    assert warning is not None and warning[1] is False
    assert sql_files.ds_problem(FILE, "scoring.sql", TEXT, static=False) is None
