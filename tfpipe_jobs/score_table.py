"""publish_scores: replace one `ds` partition of the score table, all at once.

local: DuckDB; the day's rows are deleted and inserted in one transaction, so a reader
sees the old partition or the new one, never a mix and never both. gcp: one BigQuery
load job into `table$YYYYMMDD` with WRITE_TRUNCATE, which replaces that partition
atomically. Either way the `<table>_latest` view shows the newest partition,
and the number of rows in the partition is checked against what batch_score wrote.

With `scoring.top_k` in the spec only the best k rows per group are published (ties
broken by the key columns, so a rerun keeps the same rows); the count check then expects
min(rows, k) per group. The ranking is one SQL statement that DuckDB and BigQuery share.
"""

from __future__ import annotations

import logging
from typing import Any

from tfpipe_jobs import artifacts
from tfpipe_jobs.context import JobContext
from tfpipe_operators.spec import PipelineSpec

log = logging.getLogger(__name__)


class PartitionCountError(RuntimeError):
    """The published partition does not hold exactly the rows that were scored."""


class PartitionShrinkError(RuntimeError):
    """The new partition is empty or far smaller than the one it would replace or follow."""


def reference_counts_sql(table: str, quote: str, param: str) -> str:
    """Row counts of the day's existing partition and the newest one before it."""
    t = f"{quote}{table}{quote}"
    return f"SELECT ds, COUNT(*) AS n FROM {t} WHERE ds <= {param} GROUP BY ds ORDER BY ds DESC LIMIT 2"


def check_not_shrinking(ctx: JobContext, new_rows: int, counts: list[tuple[Any, int]]) -> None:
    """Refuse to publish 0 rows, or fewer than `score.min_rows_vs_previous` of the reference
    partition (the day's own when it is rerun, else the newest before it), unless allowed."""
    cfg = ctx.config.score
    same_day = [n for d, n in counts if str(d) == ctx.ds.isoformat()]
    reference = same_day[0] if same_day else (counts[0][1] if counts else None)
    where = "the partition it replaces" if same_day else "the previous partition"
    if new_rows == 0:
        problem = f"0 rows to publish for ds={ctx.ds}" + (f" ({where} holds {reference})" if reference else "")
    elif reference and new_rows < cfg.min_rows_vs_previous * reference:
        problem = (
            f"{new_rows} rows to publish for ds={ctx.ds}, fewer than score.min_rows_vs_previous "
            f"{cfg.min_rows_vs_previous} of the {reference} rows of {where}"
        )
    else:
        return
    if cfg.allow_fewer_rows:
        log.warning("publish_scores: %s; publishing anyway (score.allow_fewer_rows is set)", problem)
        return
    raise PartitionShrinkError(
        f"{ctx.spec.scoring.table}: {problem}. Nothing was changed: the existing partition and "
        f"{ctx.spec.scoring.latest_view} stay as they were. Check the scoring query "
        f"({ctx.spec.directory / ctx.spec.scoring.sql}) for this ds; if the day really is this small, rerun with "
        "score.allow_fewer_rows=true (TFPIPE_SCORE_ALLOW_FEWER_ROWS=true, or the trigger param where the spec "
        "makes it overridable)"
    )


def publish(ctx: JobContext) -> dict[str, Any]:
    scores_dir = artifacts.require_complete(ctx.paths.scores, "batch_score")
    summary = artifacts.read_json(artifacts.join(scores_dir, "summary.json"))
    files = artifacts.glob(artifacts.join(scores_dir, "*.parquet"))
    if ctx.warehouse.kind == "duckdb":
        written = _publish_duckdb(ctx, files, summary)
    else:
        written = _publish_bigquery(ctx, scores_dir, summary)
    top = ctx.spec.scoring.top_k
    kept = f" (top {top.k} per {', '.join(top.group_by)} of {summary['rows']} scored)" if top else ""
    log.info(
        "publish_scores: %d rows written%s to %s, partition ds=%s (model %s); analysts: SELECT * FROM %s",
        written,
        kept,
        ctx.spec.scoring.table,
        ctx.ds,
        summary["model_version"],
        ctx.spec.scoring.latest_view,
    )
    return {
        "table": ctx.spec.scoring.table,
        "ds": ctx.ds.isoformat(),
        "rows": written,
        "rows_scored": summary["rows"],
        "view": ctx.spec.scoring.latest_view,
        "model_version": summary["model_version"],
    }


def check_count(ctx: JobContext, written: int, expected: int, scored: int | None = None) -> None:
    if written != expected:
        kept = "" if scored is None or scored == expected else f" (top {ctx.spec.scoring.top_k.k} of {scored})"  # type: ignore[union-attr]
        raise PartitionCountError(
            f"partition ds={ctx.ds} of {ctx.spec.scoring.table} holds {written} rows, "
            f"expected {expected}{kept} from what batch_score wrote"
        )


def published_rows_sql(spec: PipelineSpec, source: str, quote: str, score: str | None) -> str:
    """The rows of `source` that go into the partition: all, or the top k per group by `score`."""
    top = spec.scoring.top_k
    if top is None:
        return f"SELECT * FROM {source}"
    if score is None:
        raise ValueError(
            f"scoring.top_k: the day's scores do not name their score column; rerun batch_score ({source})"
        )
    q = quote
    groups = ", ".join(f"{q}{c}{q}" for c in top.group_by)
    order = ", ".join([f"{q}{score}{q} DESC"] + [f"{q}{c}{q}" for c in spec.scoring.keys if c not in top.group_by])
    # BigQuery accepts QUALIFY only after a WHERE, GROUP BY or HAVING clause.
    return (
        f"SELECT * FROM {source} WHERE TRUE "
        f"QUALIFY ROW_NUMBER() OVER (PARTITION BY {groups} ORDER BY {order}) <= {top.k}"
    )


def expected_rows_sql(spec: PipelineSpec, source: str, quote: str) -> str:
    top = spec.scoring.top_k
    if top is None:
        return f"SELECT COUNT(*) FROM {source}"
    groups = ", ".join(f"{quote}{c}{quote}" for c in top.group_by)
    return f"SELECT COALESCE(SUM(LEAST(n, {top.k})), 0) FROM (SELECT COUNT(*) AS n FROM {source} GROUP BY {groups})"


def _publish_duckdb(ctx: JobContext, files: list[str], summary: dict[str, Any]) -> int:
    table = ctx.spec.scoring.table
    con = ctx.warehouse.connect_duckdb(read_only=False)
    try:
        con.execute("BEGIN TRANSACTION")
        source = "read_parquet($files)"
        con.execute(f'CREATE TABLE IF NOT EXISTS "{table}" AS SELECT * FROM {source} LIMIT 0', {"files": files})
        expected = con.execute(expected_rows_sql(ctx.spec, source, '"'), {"files": files}).fetchone()
        counts = con.execute(reference_counts_sql(table, '"', "$ds"), {"ds": ctx.ds}).fetchall()
        check_not_shrinking(ctx, int(expected[0]) if expected else 0, [(d, int(n)) for d, n in counts])
        con.execute(f'DELETE FROM "{table}" WHERE ds = $ds', {"ds": ctx.ds})
        rows = published_rows_sql(ctx.spec, source, '"', summary.get("score_column"))
        con.execute(f'INSERT INTO "{table}" {rows}', {"files": files})
        con.execute(
            f'CREATE OR REPLACE VIEW "{ctx.spec.scoring.latest_view}" AS '
            f'SELECT * FROM "{table}" WHERE ds = (SELECT max(ds) FROM "{table}")'
        )
        row = con.execute(f'SELECT count(*) FROM "{table}" WHERE ds = $ds', {"ds": ctx.ds}).fetchone()
        written = int(row[0]) if row else 0
        # Before COMMIT: a partition that is not exactly what was scored is never visible.
        check_count(ctx, written, int(expected[0]) if expected else 0, summary["rows"])
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    finally:
        con.close()
    return written


def _publish_bigquery(ctx: JobContext, scores_dir: str, summary: dict[str, Any]) -> int:
    """One load job (all rows) or, with top_k, a load into a staging table and one ranking query.

    Both end in a single WRITE_TRUNCATE of `table$YYYYMMDD`: the partition flips at once.
    """
    from google.api_core.exceptions import NotFound
    from google.cloud import bigquery

    project, _, dataset = ctx.warehouse.url.removeprefix("bigquery://").partition("/")
    client = bigquery.Client(project=project)
    table_id = f"{project}.{dataset}.{ctx.spec.scoring.table}"
    partition = f"{table_id}${ctx.ds:%Y%m%d}"
    by_day = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY, field="ds")
    truncate = bigquery.WriteDisposition.WRITE_TRUNCATE
    files = artifacts.join(scores_dir, "*.parquet")
    parquet = bigquery.SourceFormat.PARQUET
    by_ds = bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("ds", "DATE", ctx.ds)])
    try:
        counts = [
            (r["ds"], int(r["n"])) for r in client.query(reference_counts_sql(table_id, "`", "@ds"), by_ds).result()
        ]
    except NotFound:
        counts = []  # the first partition of a new table
    if ctx.spec.scoring.top_k is None:
        expected = summary["rows"]
        check_not_shrinking(ctx, expected, counts)
        load = bigquery.LoadJobConfig(source_format=parquet, write_disposition=truncate, time_partitioning=by_day)
        client.load_table_from_uri(files, partition, job_config=load).result()
    else:
        staging = f"{table_id}__staging_{ctx.ds:%Y%m%d}"
        load = bigquery.LoadJobConfig(source_format=parquet, write_disposition=truncate)
        client.load_table_from_uri(files, staging, job_config=load).result()
        try:
            expected = int(next(iter(client.query(expected_rows_sql(ctx.spec, f"`{staging}`", "`")).result()))[0])
            check_not_shrinking(ctx, expected, counts)
            ranked = bigquery.QueryJobConfig(
                destination=partition, write_disposition=truncate, time_partitioning=by_day
            )
            sql = published_rows_sql(ctx.spec, f"`{staging}`", "`", summary.get("score_column"))
            client.query(sql, job_config=ranked).result()
        finally:
            client.delete_table(staging, not_found_ok=True)
    view = bigquery.Table(f"{project}.{dataset}.{ctx.spec.scoring.latest_view}")
    view.view_query = f"SELECT * FROM `{table_id}` WHERE ds = (SELECT MAX(ds) FROM `{table_id}`)"
    client.delete_table(view, not_found_ok=True)
    client.create_table(view)
    rows = client.query(f"SELECT COUNT(*) AS n FROM `{table_id}` WHERE ds = @ds", job_config=by_ds).result()
    written = int(next(iter(rows))["n"])
    check_count(ctx, written, expected, summary["rows"])
    return written
