"""publish_scores: replace one `ds` partition of the score table, all at once.

The rules are here: which rows go in, when a smaller day is refused, and that the
partition holds exactly what batch_score wrote. The warehouse makes the change atomic
(`Warehouse.replace_partition`): one DuckDB transaction locally, one WRITE_TRUNCATE of
`table$YYYYMMDD` on BigQuery. Either way the latest view shows the newest partition.
Before that, the scoring rows' features are compared with the training rows' (training/serving
skew, `monitoring/skew.py`), and the prediction gate (`prediction_gate.py`) measures the
scores against the previous published partition and refuses ones that look wrong.

With `scoring.top_k` in the spec only the best k rows per group are published (ties
broken by the key columns, so a rerun keeps the same rows); the count check then expects
min(rows, k) per group. The ranking is one SQL statement that DuckDB and BigQuery share.
"""

from __future__ import annotations

import logging
from typing import Any

from tfpipe_jobs import artifacts
from tfpipe_jobs.context import JobContext
from tfpipe_jobs.monitoring import skew as feature_skew
from tfpipe_jobs.publish_scores import prediction_gate
from tfpipe_operators.spec import PipelineSpec
from tfpipe_operators.warehouse import PartitionWrite

log = logging.getLogger(__name__)


class PartitionCountError(RuntimeError):
    """The published partition does not hold exactly the rows that were scored."""


class PartitionShrinkError(RuntimeError):
    """The new partition is empty or far smaller than the one it would replace or follow."""


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


def run(ctx: JobContext) -> dict[str, Any]:
    scores_dir = artifacts.require_complete(ctx.paths.scores, "batch_score")
    summary = artifacts.read_json(artifacts.join(scores_dir, "summary.json"))
    top = ctx.spec.scoring.top_k
    score = summary.get("score_column")
    # Before anything is written: scores that look wrong never replace a published day.
    skew = feature_skew.check(ctx, scores_dir)
    gate = prediction_gate.check(ctx, scores_dir, summary)
    staged = artifacts.join(scores_dir, "*.parquet")
    write = PartitionWrite(
        table=ctx.spec.scoring.table,
        view=ctx.spec.scoring.latest_view,
        ds=ctx.ds,
        files=[staged],  # DuckDB's read_parquet and a BigQuery load job both expand the wildcard
        staged_rows=int(summary["rows"]),
        before_write=lambda rows, counts: check_not_shrinking(ctx, rows, counts),
        after_write=lambda written, expected: check_count(ctx, written, expected, summary["rows"]),
        select_rows=(lambda source, quote: published_rows_sql(ctx.spec, source, quote, score)) if top else None,
        count_rows=(lambda source, quote: expected_rows_sql(ctx.spec, source, quote)) if top else None,
    )
    written = ctx.warehouse.replace_partition(write)
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
        "prediction_gate": gate,
        "skew": skew,
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
