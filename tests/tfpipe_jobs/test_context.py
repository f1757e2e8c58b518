"""A job's context: the only values its SQL sees, and the provenance saved beside its outputs."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from tfpipe_jobs.artifacts import RunPaths
from tfpipe_jobs.context import JobContext
from tfpipe_operators.config import resolve_config
from tfpipe_operators.spec import load_spec
from tfpipe_operators.warehouse import open_warehouse


def _context(
    root: Path, spec_path: Path, trial: str = "", variant: str | None = None, overrides: dict[str, Any] | None = None
) -> JobContext:
    spec = load_spec(spec_path)
    return JobContext(
        spec=spec,
        config=resolve_config(spec, variant=variant, overrides=overrides, environ={}),
        ds=date(2026, 11, 21),
        paths=RunPaths(root=str(root), pipeline=spec.pipeline, ds="2026-11-21", trial=trial),
        warehouse=open_warehouse(f"duckdb://{root}/warehouse.duckdb"),
    )


def test_sql_sees_the_day_and_the_lookback_only(tmp_path: Path, ctr_spec_path: Path) -> None:
    ctx = _context(tmp_path, ctr_spec_path, overrides={"extract.lookback_days": 6})
    assert ctx.query_params == {"ds": date(2026, 11, 21), "lookback_days": 6}


def test_provenance_says_which_spec_config_variant_and_trial_made_an_output(
    tmp_path: Path, ctr_spec_path: Path
) -> None:
    plain = _context(tmp_path, ctr_spec_path).provenance()
    assert plain["pipeline"] == "ctr" and plain["ds"] == "2026-11-21" and plain["spec"] == str(ctr_spec_path)
    assert plain["variant"] is None and plain["trial"] is None and plain["tuned_from"] is None
    wide = _context(tmp_path, ctr_spec_path, trial="trial-03", variant="wide").provenance()
    assert wide["variant"] == "wide" and wide["trial"] == "trial-03"
    assert wide["config_hash"] != plain["config_hash"]  # another config, another hash
    assert _context(tmp_path, ctr_spec_path).provenance()["config_hash"] == plain["config_hash"]


def test_provenance_names_the_tuning_run_a_config_came_from(tmp_path: Path, ctr_spec_path: Path) -> None:
    ctx = _context(tmp_path, ctr_spec_path)
    tuned = JobContext(**{**ctx.__dict__, "tuned": {"ds": "2026-11-20", "trial": "trial-01", "overrides": {}}})
    assert tuned.provenance()["tuned_from"] == {"ds": "2026-11-20", "trial": "trial-01"}
