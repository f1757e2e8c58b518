"""Monitoring benchmark: what the schema, drift and skew checks cost, against the extraction.

On two days of N synthetic events (and N candidates to score), in this process, each
phase timed alone (all of it SQL in the DuckDB warehouse, the results summarised in Python):
  - data_stats: the statistics the day was already validated on (for scale; the schema
    check reads them, it runs no query of its own);
  - extract checks, first day: the profile of the day (quantiles, bucket counts, value
    counts) and the schema inferred and written;
  - extract checks, second day: the profile counted in the previous day's buckets too,
    the schema check and each feature's drift;
  - skew: the scoring query counted in the training day's buckets and its value counts.
Target (issue 19): the extract checks under 10% of the extraction. With `--extract` the
extract step itself runs on the second day (a subprocess, the checks included); without
it the checks are compared with the extraction's rows/s recorded in bench/README.md.

    .venv-jobs/bin/python bench/monitoring.py --rows 1000000 10000000 [--extract]
"""

from __future__ import annotations

import argparse
import shutil
import time
from datetime import date, timedelta
from pathlib import Path

from common import SPEC, fresh_workspace

from tfpipe_jobs import artifacts
from tfpipe_jobs.artifacts import RunPaths
from tfpipe_jobs.beam_jobs.extract_transform import data_stats
from tfpipe_jobs.context import JobContext
from tfpipe_jobs.monitoring import extract_checks, skew
from tfpipe_jobs.tools import sample_data
from tfpipe_operators.config import resolve_config
from tfpipe_operators.spec import load_spec
from tfpipe_operators.warehouse import open_warehouse

DS = date(2026, 11, 21)
# extract_transform at 10M rows on this machine (bench/README.md, bench-extract): 45,557 rows/s.
RECORDED_EXTRACT_ROWS_PER_S = 45_557


def _context(warehouse: str, root: Path, ds: date) -> JobContext:
    spec = load_spec(SPEC)
    config = resolve_config(spec, environ={}, overrides={"extract.lookback_days": 0})
    return JobContext(spec, config, ds, RunPaths(str(root), spec.pipeline, ds.isoformat()), open_warehouse(warehouse))


def _timed(label: str, fn, results: dict[str, float]):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    out = fn()
    results[label] = time.monotonic() - started
    print(f"  {label:<34} {results[label]:7.2f} s", flush=True)
    return out


def _publish_day(ctx: JobContext, stats: dict, report: dict) -> None:
    out = Path(ctx.paths.data)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    artifacts.write_json(str(out / "stats.json"), {**stats, "provenance": ctx.provenance()})
    extract_checks.write(str(out), ctx, report)
    (out / "_SUCCESS").write_text("")


def bench(rows: int, run_extract: bool) -> None:
    ws = fresh_workspace(f"monitoring-{rows}")
    print(f"{rows:,} rows a day: generating 2 days of events and candidates ...", flush=True)
    # as many candidates as events, where the population (a user and an item per 400 rows) has the pairs
    candidates = min(rows, (rows // sample_data.ROWS_PER_ID) ** 2 // 4)
    sample_data.generate(str(ws.warehouse_file), DS, days=2, rows_per_day=rows, candidates_per_day=candidates)
    results: dict[str, float] = {}
    first, second = DS - timedelta(days=1), DS
    for ds in (first, second):
        ctx = _context(ws.warehouse, ws.artifacts, ds)
        stats = _timed(f"data_stats {ds}", lambda ctx=ctx: data_stats.compute(ctx), results)
        report = _timed(f"extract checks {ds}", lambda ctx=ctx, s=stats: extract_checks.run(ctx, s), results)
        _publish_day(ctx, stats, report)
    drifted = [c["feature"] for c in report["drift"] if c["exceeded"]]
    print(f"  (drift compared for {len(report['drift'])} features; beyond a threshold: {drifted or 'none'})")
    ctx = _context(ws.warehouse, ws.artifacts, second)
    scores = ws.root / "scores"
    scores.mkdir()
    _timed(f"skew {second}", lambda: skew.check(ctx, str(scores)), results)

    checks = results[f"extract checks {second}"]
    recorded = rows / RECORDED_EXTRACT_ROWS_PER_S
    print(f"  extract checks (second day, drift included): {checks:.2f} s = {rows / checks:,.0f} rows/s")
    print(
        f"  vs the extraction recorded in bench/README.md ({RECORDED_EXTRACT_ROWS_PER_S:,} rows/s at 10M: "
        f"{recorded:.1f} s for {rows:,} rows): {checks / recorded:.1%}"
    )
    if run_extract:
        step = ws.step("extract_transform", second.isoformat(), "extract.lookback_days=0")
        print(
            f"  extract step measured now (checks included): {step.seconds:.1f} s; the checks are "
            f"{checks / step.seconds:.1%} of it"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--extract", action="store_true", help="also run the extract step on the second day")
    args = parser.parse_args()
    for rows in args.rows:
        bench(rows, args.extract)


if __name__ == "__main__":
    main()
