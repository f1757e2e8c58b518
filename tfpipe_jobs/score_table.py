"""publish_scores: replace one `ds` partition of the score table, all at once.

local: DuckDB; the day's rows are deleted and inserted in one transaction, so a reader
sees the old partition or the new one, never a mix and never both. gcp: one BigQuery
load job into `table$YYYYMMDD` with WRITE_TRUNCATE, which replaces that partition
atomically. Either way the `<pipeline>_scores_latest` view shows the newest partition,
and the number of rows in the partition is checked against what batch_score wrote.
"""

from __future__ import annotations

import logging
from typing import Any

from tfpipe_jobs import artifacts
from tfpipe_jobs.context import JobContext

log = logging.getLogger(__name__)


class PartitionCountError(RuntimeError):
    """The published partition does not hold exactly the rows that were scored."""


def latest_view(pipeline: str) -> str:
    return f"{pipeline}_scores_latest"


def publish(ctx: JobContext) -> dict[str, Any]:
    scores_dir = artifacts.require_complete(ctx.paths.scores, "batch_score")
    summary = artifacts.read_json(artifacts.join(scores_dir, "summary.json"))
    files = artifacts.glob(artifacts.join(scores_dir, "*.parquet"))
    if ctx.warehouse.kind == "duckdb":
        written = _publish_duckdb(ctx, files, summary["rows"])
    else:
        written = _publish_bigquery(ctx, scores_dir)
        check_count(ctx, written, summary["rows"])
    log.info(
        "publish_scores: %d rows written to %s, partition ds=%s (model %s); analysts: SELECT * FROM %s",
        written,
        ctx.spec.scoring.table,
        ctx.ds,
        summary["model_version"],
        latest_view(ctx.spec.pipeline),
    )
    return {
        "table": ctx.spec.scoring.table,
        "ds": ctx.ds.isoformat(),
        "rows": written,
        "view": latest_view(ctx.spec.pipeline),
        "model_version": summary["model_version"],
    }


def check_count(ctx: JobContext, written: int, scored: int) -> None:
    if written != scored:
        raise PartitionCountError(
            f"partition ds={ctx.ds} of {ctx.spec.scoring.table} holds {written} rows, batch_score wrote {scored}"
        )


def _publish_duckdb(ctx: JobContext, files: list[str], scored: int) -> int:
    table = ctx.spec.scoring.table
    con = ctx.warehouse.connect_duckdb(read_only=False)
    try:
        con.execute("BEGIN TRANSACTION")
        source = "read_parquet($files)"
        con.execute(f'CREATE TABLE IF NOT EXISTS "{table}" AS SELECT * FROM {source} LIMIT 0', {"files": files})
        con.execute(f'DELETE FROM "{table}" WHERE ds = $ds', {"ds": ctx.ds})
        con.execute(f'INSERT INTO "{table}" SELECT * FROM {source}', {"files": files})
        con.execute(
            f'CREATE OR REPLACE VIEW "{latest_view(ctx.spec.pipeline)}" AS '
            f'SELECT * FROM "{table}" WHERE ds = (SELECT max(ds) FROM "{table}")'
        )
        row = con.execute(f'SELECT count(*) FROM "{table}" WHERE ds = $ds', {"ds": ctx.ds}).fetchone()
        written = int(row[0]) if row else 0
        # Before COMMIT: a partition that is not exactly what was scored is never visible.
        check_count(ctx, written, scored)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    finally:
        con.close()
    return written


def _publish_bigquery(ctx: JobContext, scores_dir: str) -> int:
    from google.cloud import bigquery

    project, _, dataset = ctx.warehouse.url.removeprefix("bigquery://").partition("/")
    client = bigquery.Client(project=project)
    table_id = f"{project}.{dataset}.{ctx.spec.scoring.table}"
    job_config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        time_partitioning=bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY, field="ds"),
    )
    partition = f"{table_id}${ctx.ds:%Y%m%d}"
    client.load_table_from_uri(artifacts.join(scores_dir, "*.parquet"), partition, job_config=job_config).result()
    view = bigquery.Table(f"{project}.{dataset}.{latest_view(ctx.spec.pipeline)}")
    view.view_query = f"SELECT * FROM `{table_id}` WHERE ds = (SELECT MAX(ds) FROM `{table_id}`)"
    client.delete_table(view, not_found_ok=True)
    client.create_table(view)
    rows = client.query(
        f"SELECT COUNT(*) AS n FROM `{table_id}` WHERE ds = @ds",
        job_config=bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("ds", "DATE", ctx.ds)]),
    ).result()
    return int(next(iter(rows))["n"])
