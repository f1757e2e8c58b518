"""The prediction gate: publish_scores checks a day's scores before analysts see them.

A model can pass its evaluation and still score a day badly (a feature that arrived all
NULL, a vocabulary that no longer matches the day's ids, a serving bug that answers 0.5
to everything). The gate measures the scores about to replace the day's partition:

- `score_psi` (binary, regression): the population stability index of the scores over
  the quantile buckets of the newest published partition before the day;
- `class_share_change` (multiclass): the largest change of a predicted class's share of
  the rows (the L-infinity distance of the class frequencies) vs that partition;
- `missing_or_unseen_share`: the share of rows scored with a NULL feature or a value
  outside the vocabulary (batch_score counts them into summary.json);
- `score_std`: the scores' standard deviation (multiclass: the largest of the classes'
  probabilities'); 0 when every row got the same score.

Each has a threshold in the `score` config. The measures are written to
`prediction_gate.json` in the day's scores folder, passed or not; a failure stops the
publish with nothing changed unless the run sets `score.override_prediction_gate`.
The reference partition is summarised in the warehouse (two small queries); the new
scores are read column by column from their Parquet files, one batch at a time.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from tfpipe_jobs import artifacts
from tfpipe_jobs.context import JobContext
from tfpipe_jobs.monitoring.distributions import psi, shares
from tfpipe_jobs.monitoring.distributions import quote as _quote
from tfpipe_operators.features import Task

log = logging.getLogger(__name__)

REPORT = "prediction_gate.json"
ROWS_MISSING_OR_UNSEEN = "rows_missing_or_unseen"  # batch_score's count in summary.json
OVERRIDE_KEY = "score.override_prediction_gate"


class PredictionGateError(RuntimeError):
    """The day's scores look wrong (shifted, degenerate, or scored from missing features); nothing was published."""


@dataclass
class Measure:
    """One of the gate's measures, its threshold and whether it passed."""

    name: str
    value: float
    threshold: float
    key: str  # the config key of the threshold
    limit: str  # "max" or "min"
    detail: str

    @property
    def passed(self) -> bool:
        return self.value <= self.threshold if self.limit == "max" else self.value >= self.threshold

    def describe(self) -> str:
        side = "above" if self.limit == "max" else "below"
        return f"{self.name} {self.value:.6g} is {side} {self.key} {self.threshold:g} ({self.detail})"


@dataclass
class GateReport:
    """What prediction_gate.json holds: the measures, the reference, notes, the verdict."""

    table: str
    ds: str
    task: str
    rows: int
    reference_ds: str | None
    reference_rows: int | None
    measures: list[Measure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    overridden: bool = False

    @property
    def failed(self) -> list[Measure]:
        return [m for m in self.measures if not m.passed]

    @property
    def verdict(self) -> str:
        if not self.failed:
            return "passed"
        return "overridden" if self.overridden else "failed"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["measures"] = [{**asdict(m), "passed": m.passed} for m in self.measures]
        out["verdict"] = self.verdict
        out["failed"] = [m.name for m in self.failed]
        out["published"] = self.verdict != "failed"
        return out

    def summary(self, path: str) -> dict[str, Any]:
        """The gate's part of the step's result (XCom)."""
        return {
            "verdict": self.verdict,
            "failed": [m.name for m in self.failed],
            "overridden": self.overridden and bool(self.failed),
            "reference_ds": self.reference_ds,
            "measures": {m.name: m.value for m in self.measures},
            "report": path,
        }


class _Moments:
    """Count, mean and sum of squared deviations, merged batch by batch (Chan et al.), per column."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: np.ndarray = np.zeros(0)
        self.m2: np.ndarray = np.zeros(0)

    def add(self, values: np.ndarray) -> None:
        """`values`: rows x columns (a column per class for multiclass, else one)."""
        if values.shape[0] == 0:
            return
        n_b, mean_b = values.shape[0], values.mean(axis=0)
        m2_b = ((values - mean_b) ** 2).sum(axis=0)
        if self.n == 0:
            self.n, self.mean, self.m2 = n_b, mean_b, m2_b
            return
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * n_b / n
        self.m2 = self.m2 + m2_b + delta**2 * self.n * n_b / n
        self.n = n

    def std(self) -> float:
        """The largest column's population standard deviation (0 for fewer than 2 rows)."""
        if self.n < 2:
            return 0.0
        return float(np.sqrt(np.max(self.m2) / self.n))


def reference_partition(ctx: JobContext) -> tuple[date, int] | None:
    """The newest published partition before the day, and its rows; None on the first day.

    Before, not the day's own: a rerun is compared with the day it follows, as the
    first run of that day was (a backfill likewise with the day before it)."""
    table = ctx.spec.scoring.table
    if not ctx.warehouse.has_table(table):
        return None
    sql = f"SELECT ds, COUNT(*) AS n FROM {_quote(table)} WHERE ds < @ds GROUP BY ds ORDER BY ds DESC LIMIT 1"
    rows = ctx.warehouse.table(sql, {"ds": ctx.ds}).to_pylist()
    if not rows:
        return None
    found = rows[0]["ds"]
    return (found if isinstance(found, date) else date.fromisoformat(str(found))), int(rows[0]["n"])


def reference_models(ctx: JobContext, ref: date) -> list[str]:
    """The model versions that scored the reference partition."""
    table = _quote(ctx.spec.scoring.table)
    sql = f"SELECT DISTINCT model_version FROM {table} WHERE ds = @ds ORDER BY model_version"
    return [str(r["model_version"]) for r in ctx.warehouse.table(sql, {"ds": ref}).to_pylist()]


def reference_buckets(ctx: JobContext, column: str, ref: date, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference partition's quantile edges (inner, ascending, unique) and its row count per bucket.

    Bucket i holds (edge[i-1], edge[i]]. Edges are the upper ends of NTILE buckets; tied
    values can make two equal, so the counts are taken again on the unique edges."""
    table, col = _quote(ctx.spec.scoring.table), _quote(column)
    scores = f"SELECT {col} AS x FROM {table} WHERE ds = @ref AND {col} IS NOT NULL"
    tiles = (
        f"SELECT bucket, MAX(x) AS upper FROM (SELECT x, NTILE({int(buckets)}) OVER (ORDER BY x) AS bucket "
        f"FROM ({scores}) AS s) AS q GROUP BY bucket ORDER BY bucket"
    )
    uppers = [float(r["upper"]) for r in ctx.warehouse.table(tiles, {"ref": ref}).to_pylist()]
    edges = np.unique(np.asarray(uppers[:-1], dtype=np.float64))  # the last upper end is the maximum
    params: dict[str, Any] = {"ref": ref, **{f"e{i}": float(e) for i, e in enumerate(edges)}}
    below = "".join(f", SUM(CASE WHEN x <= @e{i} THEN 1 ELSE 0 END) AS le{i}" for i in range(len(edges)))
    row = ctx.warehouse.table(f"SELECT COUNT(*) AS n{below} FROM ({scores}) AS s", params).to_pylist()[0]
    cumulative = [0, *(int(row[f"le{i}"] or 0) for i in range(len(edges))), int(row["n"])]
    return edges, np.diff(np.asarray(cumulative, dtype=np.int64))


def reference_classes(ctx: JobContext, ref: date) -> dict[int, int]:
    table = _quote(ctx.spec.scoring.table)
    sql = f"SELECT class_id, COUNT(*) AS n FROM {table} WHERE ds = @ref GROUP BY class_id"
    return {
        int(r["class_id"]): int(r["n"])
        for r in ctx.warehouse.table(sql, {"ref": ref}).to_pylist()
        if r["class_id"] is not None
    }


class DamagedScoresError(RuntimeError):
    """A scores file cannot be read: batch_score has to write the day again."""


def _score_batches(scores_dir: str, columns: list[str]) -> Any:
    import pyarrow as pa

    for path in artifacts.glob(artifacts.join(scores_dir, "*.parquet")):
        # A local file is streamed; one on an object store is read whole (one file at a time):
        # tf.io.gfile's file objects lack what pyarrow's reader asks of a Python file.
        source: Any = path if "://" not in path else pa.BufferReader(artifacts.read_bytes(path))
        try:
            yield from pq.ParquetFile(source).iter_batches(batch_size=65_536, columns=columns)
        except (pa.ArrowException, OSError) as exc:
            raise DamagedScoresError(
                f"{path} is not a readable Parquet file of scores ({exc}); nothing was published. "
                "Rerun batch_score for this ds"
            ) from exc


def evaluate(ctx: JobContext, scores_dir: str, summary: dict[str, Any]) -> GateReport:
    """Measure the day's scores (in `scores_dir`) against the config's thresholds."""
    cfg, spec = ctx.config.score, ctx.spec
    task = spec.label.task
    rows = int(summary["rows"])
    found = reference_partition(ctx)
    report = GateReport(
        table=spec.scoring.table,
        ds=ctx.ds.isoformat(),
        task=task.value,
        rows=rows,
        reference_ds=found[0].isoformat() if found else None,
        reference_rows=found[1] if found else None,
        overridden=cfg.override_prediction_gate,
    )
    if found is None:
        report.notes.append(
            f"no partition of {spec.scoring.table} before ds={ctx.ds}: the first day has no distribution to "
            "compare with (the other measures still apply)"
        )
    elif spec.scoring.top_k is not None:
        found = None  # the partition holds only the top k per group: not comparable with every row scored
        report.notes.append(
            "scoring.top_k: the published partition holds only the best rows per group, so the distribution "
            "of every row scored is not compared with it (the other measures still apply)"
        )
    else:
        previous = reference_models(ctx, found[0])
        current = str(summary.get("model_version") or "")
        if current and previous and previous != [current]:
            # A newly blessed model scores differently by design; evaluate_gate judged it on held-out
            # data. Day-over-day shift is a check of the data and the pipeline under one model.
            report.notes.append(
                f"scored by model {current}, ds={found[0]} by {', '.join(previous)}: a model change moves the "
                "distribution by design (evaluate_gate judged the new model), so it is not compared "
                "(the other measures still apply)"
            )
            found = None

    moments = _Moments()
    if task is Task.MULTICLASS:
        ref_classes = reference_classes(ctx, found[0]) if found else {}
        new_classes: dict[int, int] = {}
        for batch in _score_batches(scores_dir, ["class_id", "probabilities"]):
            ids = batch.column(0).drop_null().to_numpy()
            for value, count in zip(*np.unique(ids, return_counts=True), strict=True):
                new_classes[int(value)] = new_classes.get(int(value), 0) + int(count)
            probabilities = batch.column(1).drop_null()
            if len(probabilities):
                width = len(probabilities[0])
                flat = probabilities.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
                moments.add(flat.reshape(-1, width))
        if found:
            n_new, n_ref = max(sum(new_classes.values()), 1), max(sum(ref_classes.values()), 1)
            changes = {
                c: abs(new_classes.get(c, 0) / n_new - ref_classes.get(c, 0) / n_ref)
                for c in set(new_classes) | set(ref_classes)
            }
            worst = max(changes, key=lambda c: changes[c]) if changes else None
            detail = (
                f"class {worst}: {new_classes.get(worst, 0) / n_new:.4f} of the rows vs "
                f"{ref_classes.get(worst, 0) / n_ref:.4f} on ds={found[0]}"
                if worst is not None
                else "no classes on either day"
            )
            report.measures.append(
                Measure(
                    "class_share_change",
                    changes[worst] if worst is not None else 0.0,
                    cfg.max_class_share_change,
                    "score.max_class_share_change",
                    "max",
                    detail,
                )
            )
    else:
        column = str(summary.get("score_column") or ("probability" if task is Task.BINARY else "value"))
        edges, ref_counts = reference_buckets(ctx, column, found[0], cfg.psi_buckets) if found else (None, None)
        new_counts = np.zeros(len(edges) + 1, dtype=np.int64) if edges is not None else None
        for batch in _score_batches(scores_dir, [column]):
            values = batch.column(0).drop_null().to_numpy(zero_copy_only=False).astype(np.float64)
            moments.add(values.reshape(-1, 1))
            if edges is not None and new_counts is not None:
                new_counts += np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
        if found and ref_counts is not None and new_counts is not None:
            if int(ref_counts.sum()) == 0:
                report.notes.append(f"the partition ds={found[0]} has no {column} values: nothing to compare with")
            else:
                report.measures.append(
                    Measure(
                        "score_psi",
                        psi(new_counts, ref_counts),
                        cfg.max_score_psi,
                        "score.max_score_psi",
                        "max",
                        f"{column} over the {len(ref_counts)} quantile buckets of ds={found[0]}: "
                        f"{shares(new_counts)} of the rows vs {shares(ref_counts)}",
                    )
                )

    std = moments.std()
    if moments.n >= 2:
        every = f"every score is {float(moments.mean[0]):.6g}" if std == 0 and task is not Task.MULTICLASS else ""
        report.measures.append(
            Measure(
                "score_std",
                std,
                cfg.min_score_std,
                "score.min_score_std",
                "min",
                every or f"over {moments.n} rows; near 0 the scores do not depend on the features",
            )
        )
    else:
        report.notes.append(f"{moments.n} scored row(s): too few for a spread")

    flagged = summary.get(ROWS_MISSING_OR_UNSEEN)
    if flagged is None:
        report.notes.append(
            "summary.json has no rows_missing_or_unseen (scores written by an older batch_score): "
            "the share of rows with NULL or unseen features was not measured"
        )
    elif rows:
        per_feature = summary.get("missing_or_unseen") or {}
        top = sorted(per_feature.items(), key=lambda kv: -int(kv[1]))[:3]
        report.measures.append(
            Measure(
                "missing_or_unseen_share",
                int(flagged) / rows,
                cfg.max_missing_or_unseen_share,
                "score.max_missing_or_unseen_share",
                "max",
                f"{int(flagged)} of {rows} rows have a NULL or unseen feature value"
                + (f"; most: {', '.join(f'{k} {v}' for k, v in top)}" if top else ""),
            )
        )
    return report


def check(ctx: JobContext, scores_dir: str, summary: dict[str, Any]) -> dict[str, Any]:
    """Run the gate, record it beside the scores, and refuse the publish unless it passed or is overridden.

    Returns the gate's part of the step's result."""
    report = evaluate(ctx, scores_dir, summary)
    path = artifacts.join(scores_dir, REPORT)
    artifacts.write_json(path, report.to_json())
    for note in report.notes:
        log.info("prediction gate: %s", note)
    for measure in report.measures:
        log.info("prediction gate: %s %s", "PASS" if measure.passed else "FAIL", measure.describe())
    failed = report.failed
    if not failed:
        log.info("prediction gate: passed (%s)", path)
        return report.summary(path)
    problems = "; ".join(m.describe() for m in failed)
    if report.overridden:
        log.warning("prediction gate: %s; publishing anyway (%s is set; recorded in %s)", problems, OVERRIDE_KEY, path)
        return report.summary(path)
    raise PredictionGateError(
        f"{ctx.spec.scoring.table}: the prediction gate refused the scores for ds={ctx.ds}: {problems}. Nothing "
        f"was published: the existing partitions and {ctx.spec.scoring.latest_view} stay as they were; "
        f"the measures are in {path}. If these scores are right, rerun with {OVERRIDE_KEY}=true "
        "(TFPIPE_SCORE_OVERRIDE_PREDICTION_GATE=true, or the trigger param score_override_prediction_gate "
        "where the spec makes it overridable); to change a threshold, set the key named above"
    )
