"""Training/serving skew: the scoring rows' features vs the training rows', before publishing.

publish_scores runs the spec's scoring query for the ds in the warehouse (one scan for
the numeric features, counted in the training day's quantile buckets, one for the
categorical ones) and compares it with the profile extract kept of the training query's
rows for the same ds (`drift.json`), by the measures drift uses: PSI for numeric
features, the L-infinity distance of value frequencies for categorical ones. A feature
all NULL in scoring, a country missing from the candidates, prices on another scale show
here before analysts see the scores. Thresholds and actions are `score.*skew*` keys; the
default action warns. The report (`skew.json`) and the day's picture of drift and skew
(`monitoring.png`) are written beside the scores.
"""

from __future__ import annotations

import logging
from typing import Any

from tfpipe_jobs import artifacts
from tfpipe_jobs.context import JobContext
from tfpipe_jobs.monitoring import drift, extract_checks, report_plot

log = logging.getLogger(__name__)

REPORT = "skew.json"
PICTURE = "monitoring.png"


class SkewError(RuntimeError):
    """A feature of the scoring rows is too far from the training rows' (action stop); nothing was published."""


def training_report(ctx: JobContext) -> tuple[str | None, dict[str, Any] | None]:
    """The day's extraction folder and its drift.json (None when either is missing)."""
    data = artifacts.published(ctx.paths.data)
    if data is None or not artifacts.exists(artifacts.join(data, extract_checks.REPORT)):
        return data, None
    return data, dict(artifacts.read_json(artifacts.join(data, extract_checks.REPORT)))


def check(ctx: JobContext, scores_dir: str) -> dict[str, Any]:
    """Measure the skew, record it beside the scores, and refuse the publish where a stop threshold is crossed."""
    spec = ctx.spec
    data, training = training_report(ctx)
    notes: list[str] = []
    checks: list[drift.FeatureCheck] = []
    rows = None
    if training is None or "profile" not in training:
        notes.append(
            f"no drift.json in the extraction of ds={ctx.ds} ({data or ctx.paths.data}): the day's training rows "
            "have no profile to compare the scoring rows with; skew not measured"
        )
    else:
        reference = training["profile"]
        scoring = drift.profile(
            ctx.warehouse, spec, spec.scoring_sql, ctx.query_params, 2, reference=reference, own_buckets=False
        )
        rows = scoring.rows
        checks = drift.judge(drift.distances(scoring, reference, spec), ctx.config.score, drift.SKEW)
    measured = [c.to_json() for c in checks]
    warnings = [c.describe("skew") for c in checks if c.exceeded]
    report = {
        "ds": ctx.ds.isoformat(),
        "scoring_rows": rows,
        "training_rows_day": (training or {}).get("rows_day"),
        "skew": measured,
        "warnings": warnings,
        "notes": notes,
    }
    path = artifacts.join(scores_dir, REPORT)
    artifacts.write_json(path, report)
    picture = artifacts.join(scores_dir, PICTURE)
    report_plot.plot(
        picture,
        f"{spec.pipeline} ds={ctx.ds}: drift vs ds={(training or {}).get('reference_ds')}, skew scoring vs training",
        [
            ("drift vs the previous day (extract)", (training or {}).get("drift", []), "no drift measured"),
            ("skew: scoring vs training rows", measured, notes[0] if notes else "no features compared"),
        ],
    )
    stop = drift.warn_and_stops(checks, "skew", notes, log)
    if stop:
        raise SkewError(
            f"{spec.scoring.table}: the scoring rows of ds={ctx.ds} are too far from the training rows in "
            f"{len(stop)} feature(s) whose skew action is stop:\n  "
            + "\n  ".join(c.describe("skew") for c in stop)
            + f"\nNothing was published; the measures are in {path}. Check the scoring query "
            f"({spec.directory / spec.scoring.sql}) for this ds, or set score.skew_actions for the feature to warn"
        )
    return {"report": path, "picture": picture, "warnings": len(warnings), "notes": notes}
