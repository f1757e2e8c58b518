"""publish_scores with `scoring.top_k`: only the best k rows per group reach the partition."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tfpipe_jobs.publish_scores.score_table import PartitionCountError, check_count

DS = "2026-11-21"


@pytest.fixture
def top3(ctr_run, spec_dir: Path, tmp_path: Path):
    """The shared run's scores, published with top 3 per user into a copy of its warehouse."""
    raw = yaml.safe_load((spec_dir / "pipeline.yaml").read_text())
    raw["scoring"]["top_k"] = {"group_by": ["user_id"], "k": 3}
    (spec_dir / "pipeline.yaml").write_text(yaml.safe_dump(raw))
    run = type(ctr_run)(tmp_path / "copy")
    run.root.mkdir()
    shutil.copy(ctr_run.warehouse.removeprefix("duckdb://"), run.warehouse.removeprefix("duckdb://"))
    run.artifacts = ctr_run.artifacts  # read the same scores/ folder
    run.spec = str(spec_dir / "pipeline.yaml")
    return run


def _expected(ctr_run, k: int) -> list[tuple[str, str, float]]:
    """Top k per user from the full scored rows, ties broken by item_id (as the step promises)."""
    scored = pa.concat_tables(pq.read_table(p) for p in sorted((ctr_run.day() / "scores").glob("*.parquet")))
    rows = sorted(
        zip(
            scored["user_id"].to_pylist(), scored["item_id"].to_pylist(), scored["probability"].to_pylist(), strict=True
        ),
        key=lambda r: (r[0], -r[2], r[1]),
    )
    out, seen = [], {}
    for user, item, p in rows:
        seen[user] = seen.get(user, 0) + 1
        if seen[user] <= k:
            out.append((user, item, p))
    return out


def _published(run) -> list[tuple[str, str, float]]:
    with run.duckdb() as con:
        return con.execute(
            "SELECT user_id, item_id, probability FROM ctr_scores WHERE ds = $ds "
            "ORDER BY user_id, probability DESC, item_id",
            {"ds": DS},
        ).fetchall()


def test_top_k_per_group_keeps_the_best_rows(ctr_run, top3) -> None:
    result = top3.run("publish_scores")
    expected = _expected(ctr_run, 3)
    assert _published(top3) == expected
    assert result["rows"] == len(expected) < result["rows_scored"] == 500
    users = {u for u, _, _ in expected}
    assert len(expected) == sum(min(3, n) for n in _rows_per_user(ctr_run).values())
    assert len(users) == len(_rows_per_user(ctr_run))  # every user keeps at least one row
    # a rerun of the day publishes the same rows, not twice as many
    top3.run("publish_scores")
    assert _published(top3) == expected
    with top3.duckdb() as con:
        assert con.execute("SELECT count(*) FROM ctr_scores_latest").fetchone()[0] == len(expected)


def _rows_per_user(ctr_run) -> dict[str, int]:
    scored = pa.concat_tables(pq.read_table(p) for p in sorted((ctr_run.day() / "scores").glob("*.parquet")))
    counts: dict[str, int] = {}
    for user in scored["user_id"].to_pylist():
        counts[user] = counts.get(user, 0) + 1
    return counts


def test_count_mismatch_says_what_was_expected(top3) -> None:
    from types import SimpleNamespace

    from tfpipe_operators.spec import load_spec

    ctx = SimpleNamespace(spec=load_spec(top3.spec), ds=date.fromisoformat(DS))
    with pytest.raises(PartitionCountError, match=r"holds 10 rows, expected 12 \(top 3 of 500\)"):
        check_count(ctx, 10, 12, 500)  # type: ignore[arg-type]


def test_bigquery_ranking_sql_selects_the_same_rows(ctr_run, top3) -> None:
    """The gcp statement is valid BigQuery SQL and, run on the same rows, keeps the same ones."""
    import duckdb
    import sqlglot

    from tfpipe_jobs.publish_scores.score_table import expected_rows_sql, published_rows_sql
    from tfpipe_operators.spec import load_spec

    spec = load_spec(top3.spec)
    ranked = published_rows_sql(spec, "`acme.analytics.ctr_scores__staging_20261121`", "`", "probability")
    count = expected_rows_sql(spec, "`acme.analytics.ctr_scores__staging_20261121`", "`")
    con = duckdb.connect()
    con.execute("CREATE SCHEMA analytics")
    con.execute(
        "CREATE TABLE analytics.ctr_scores__staging_20261121 AS SELECT * FROM read_parquet($f)",
        {"f": [str(p) for p in sorted((ctr_run.day() / "scores").glob("*.parquet"))]},
    )
    as_duckdb = [
        sqlglot.transpile(sql.replace("acme.", ""), read="bigquery", write="duckdb")[0] for sql in (ranked, count)
    ]
    rows = con.execute(f"SELECT user_id, item_id, probability FROM ({as_duckdb[0]}) ORDER BY 1, 3 DESC, 2").fetchall()
    assert rows == _expected(ctr_run, 3)
    assert con.execute(as_duckdb[1]).fetchone()[0] == len(rows)


@pytest.fixture
def copied(ctr_run, tmp_path: Path):
    """A copy of the shared run's warehouse (ctr_scores holds 500 rows for DS) and an empty artifact root."""
    run = type(ctr_run)(tmp_path)
    shutil.copy(ctr_run.warehouse.removeprefix("duckdb://"), run.warehouse.removeprefix("duckdb://"))
    return run


def _counts(run) -> list[tuple[str, int]]:
    with run.duckdb() as con:
        table = con.execute("SELECT CAST(ds AS VARCHAR), count(*) FROM ctr_scores GROUP BY ds ORDER BY ds").fetchall()
        latest = con.execute("SELECT DISTINCT CAST(ds AS VARCHAR) FROM ctr_scores_latest").fetchall()
    return [*table, ("latest", latest[0][0])]


def test_a_day_that_really_is_small_is_published_when_allowed(copied, ctr_run) -> None:
    ctr_run.write_scores(Path(copied.artifacts), "2026-11-22", 100)
    result = copied.run("publish_scores", "--set", "score.allow_fewer_rows=true", ds="2026-11-22")
    assert result["rows"] == 100
    assert _counts(copied) == [(DS, 500), ("2026-11-22", 100), ("latest", "2026-11-22")]


def test_a_day_within_the_threshold_is_published(copied, ctr_run) -> None:
    ctr_run.write_scores(Path(copied.artifacts), "2026-11-22", 250)
    assert copied.run("publish_scores", ds="2026-11-22")["rows"] == 250
