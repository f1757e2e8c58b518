"""A small sample warehouse per test and the extract step's checks run on its days, as extraction runs them."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

CTR_SPEC = Path(__file__).resolve().parents[3] / "dags" / "pipelines" / "ctr" / "pipeline.yaml"
END = date(2026, 11, 21)
DAYS = [END - timedelta(days=i) for i in (3, 2, 1, 0)]


@pytest.fixture(scope="session")
def sample_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tfpipe_jobs.tools import sample_data

    path = tmp_path_factory.mktemp("monitoring") / "warehouse.duckdb"
    sample_data.generate(str(path), END, days=len(DAYS), rows_per_day=2000, candidates_per_day=500, seed=7)
    return path


class Days:
    """A copy of the sample warehouse a test may change, and an artifact root of its own."""

    def __init__(self, root: Path, warehouse: Path, spec: Path = CTR_SPEC) -> None:
        self.root = root
        self.warehouse = warehouse
        self.spec = spec
        self.artifacts = str(root / "artifacts")

    def sql(self, statement: str, *params: Any) -> None:
        import duckdb

        with duckdb.connect(str(self.warehouse)) as con:
            con.execute(statement, list(params))

    def context(self, ds: date, **overrides: Any) -> Any:
        from tfpipe_jobs.artifacts import RunPaths
        from tfpipe_jobs.context import JobContext
        from tfpipe_operators.config import resolve_config
        from tfpipe_operators.spec import load_spec
        from tfpipe_operators.warehouse import open_warehouse

        spec = load_spec(self.spec)
        config = resolve_config(spec, environ={}, overrides=overrides)
        paths = RunPaths(self.artifacts, spec.pipeline, ds.isoformat())
        return JobContext(spec, config, ds, paths, open_warehouse(f"duckdb://{self.warehouse}"))

    def extract_checks(self, ds: date, **overrides: Any) -> dict[str, Any]:
        """What extraction does before Beam (statistics, their checks, schema, drift), and the
        drift.json and picture it publishes in the day's data folder."""
        from tfpipe_jobs import artifacts
        from tfpipe_jobs.beam_jobs.extract_transform import data_stats
        from tfpipe_jobs.monitoring import extract_checks

        ctx = self.context(ds, **overrides)
        stats = data_stats.compute(ctx)
        data_stats.validate(ctx.spec, stats, ctx.config.extract, data_stats.previous_stats(ctx))
        report = extract_checks.run(ctx, stats)
        out = Path(ctx.paths.data)
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        stats["provenance"] = ctx.provenance()
        artifacts.write_json(str(out / "stats.json"), stats)
        extract_checks.write(str(out), ctx, report)
        (out / "_SUCCESS").write_text("")
        return report

    def schema_dir(self) -> Path:
        return Path(self.artifacts) / "ctr" / "schema"


@pytest.fixture
def days(tmp_path: Path, sample_warehouse: Path) -> Days:
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(sample_warehouse, copy)
    return Days(tmp_path, copy)
