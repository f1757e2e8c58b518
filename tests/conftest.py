"""Shared test setup: an isolated AIRFLOW_HOME and the paths of the two environments."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPECS_DIR = REPO / "dags" / "pipelines"
CTR_SPEC = SPECS_DIR / "ctr" / "pipeline.yaml"

# Before anything imports Airflow: never touch ~/airflow, never load the examples.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="tfpipe-airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "dags"))


import pytest  # noqa: E402

from tfpipe_operators.steps import DAILY  # noqa: E402


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def ctr_spec_path() -> Path:
    return CTR_SPEC


@pytest.fixture
def gcp_env() -> dict[str, str]:
    """The environment of a gcp-profile Airflow deployment (what load_profile reads)."""
    return {
        "TFPIPE_PROFILE": "gcp",
        "TFPIPE_GCP_PROJECT": "acme-ml",
        "TFPIPE_GCP_REGION": "europe-west4",
        "TFPIPE_JOB_IMAGE": "europe-docker.pkg.dev/acme-ml/tfpipe/jobs-cpu:0.1.0",
        "TFPIPE_DATAFLOW_IMAGE": "europe-docker.pkg.dev/acme-ml/tfpipe/dataflow:0.1.0",
        "TFPIPE_ARTIFACT_ROOT": "gs://acme-ml-tfpipe/artifacts",
        "TFPIPE_WAREHOUSE": "bigquery://acme-ml/analytics",
        "TFPIPE_JOB_SPECS_DIR": "/opt/tfpipe/pipelines",
    }


@pytest.fixture
def spec_dir(tmp_path: Path):
    """A copy of the ctr spec folder that a test may edit."""
    import shutil

    target = tmp_path / "pipelines" / "ctr"
    shutil.copytree(CTR_SPEC.parent, target)
    return target


@pytest.fixture
def edit_spec(spec_dir: Path) -> Callable[..., Path]:
    """Set top-level keys of the copied spec's pipeline.yaml (`edit_spec(train={...})`); returns its path."""
    import yaml

    def edit(**changes: object) -> Path:
        path = spec_dir / "pipeline.yaml"
        raw = yaml.safe_load(path.read_text())
        raw.update(changes)
        path.write_text(yaml.safe_dump(raw))
        return path

    return edit


# --- jobs environment: one real small run of every step, shared by the job tests ----------

DS = "2026-11-21"
ROWS_PER_DAY = 2000
CANDIDATES = 500


class CtrRun:
    """A warehouse with sample data and the artifacts of one real run of every step."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.warehouse = f"duckdb://{root / 'warehouse.duckdb'}"
        self.artifacts = str(root / "artifacts")
        self.spec = str(CTR_SPEC)
        self.results: dict[str, dict] = {}

    def args(
        self, step: str, ds: str = DS, spec: str | None = None, *extra: str, artifacts: str | None = None
    ) -> list[str]:
        return [
            step,
            "--spec",
            spec or self.spec,
            "--ds",
            ds,
            "--artifact-root",
            artifacts or self.artifacts,
            "--warehouse",
            self.warehouse,
            *extra,
        ]

    def run(self, step: str, *extra: str, ds: str = DS, spec: str | None = None, artifacts: str | None = None) -> dict:
        """Run one job command in this process; return its result (what XCom would get)."""
        import contextlib
        import io
        import json

        from tfpipe_jobs import cli

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = cli.main(self.args(step, ds, spec, *extra, artifacts=artifacts))
        line = [x for x in out.getvalue().splitlines() if x.startswith(cli.RESULT_PREFIX)][-1]
        result = json.loads(line[len(cli.RESULT_PREFIX) :])
        result["exit_code"] = code
        return result

    def day(self, ds: str = DS) -> Path:
        return Path(self.artifacts) / "ctr" / ds

    def write_scores(self, root: Path, ds: str, rows: int) -> None:
        """A batch_score output for `ds` under `root`: the first `rows` of this run's scores."""
        import json
        import shutil
        from datetime import date

        import pyarrow as pa
        import pyarrow.parquet as pq

        scored = pa.concat_tables(pq.read_table(p) for p in sorted((self.day() / "scores").glob("*.parquet")))
        folder = root / "ctr" / ds / "scores"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        part = scored.slice(0, rows)
        day = pa.array([date.fromisoformat(ds)] * rows, part.schema.field("ds").type)
        pq.write_table(part.set_column(part.schema.get_field_index("ds"), "ds", day), folder / "part-00000.parquet")
        summary = json.loads((self.day() / "scores" / "summary.json").read_text())
        # the count of rows with a NULL or unseen feature, in proportion to the rows kept
        flagged = round(summary["rows_missing_or_unseen"] * rows / max(summary["rows"], 1))
        (folder / "summary.json").write_text(json.dumps({**summary, "rows": rows, "rows_missing_or_unseen": flagged}))
        (folder / "_SUCCESS").write_text("")

    def duckdb(self, read_only: bool = True):
        import duckdb

        return duckdb.connect(self.warehouse.removeprefix("duckdb://"), read_only=read_only)


PRICE_BAND = "CASE WHEN item_price < 15 THEN 'cheap' WHEN item_price < 40 THEN 'mid' ELSE 'premium' END"


def _price_band_spec(ctr_spec: str, folder: Path, pipeline: str, label: str, gate: dict[str, object]) -> str:
    """The sample spec turned into a 3-class one: the item's price band (cheap, mid, premium) as
    the label, item_price dropped from the features; written to `folder`, its path returned."""
    import shutil

    import yaml

    ctr_dir = Path(ctr_spec).parent
    shutil.copytree(ctr_dir, folder)
    doc = yaml.safe_load((ctr_dir / "pipeline.yaml").read_text())
    doc["pipeline"] = pipeline
    doc["label"] = {"column": label, "task": "multiclass", "num_classes": 3}
    doc["features"] = [f for f in doc["features"] if f["name"] != "item_price"]
    doc["scoring"]["table"] = f"{pipeline}_scores"
    doc["gate"] = {"metric": "accuracy", **gate}
    doc.pop("search_space", None)
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    sql = (ctr_dir / "train.sql").read_text()
    assert "  clicked\n" in sql
    (folder / "train.sql").write_text(sql.replace("  clicked\n", f"  {PRICE_BAND} AS {label}\n"))
    return str(folder / "pipeline.yaml")


@pytest.fixture(scope="session")
def price_band_spec():  # type: ignore[no-untyped-def]
    """Writes the 3-class price-band variant of the sample spec (see `_price_band_spec`)."""
    return _price_band_spec


@pytest.fixture(scope="session")
def ctr_warehouse(tmp_path_factory: pytest.TempPathFactory) -> CtrRun:
    """Sample data only: 3 days of events up to DS (lookback 2 days reads all of them)."""
    from datetime import date

    from tfpipe_jobs.tools import sample_data

    run = CtrRun(tmp_path_factory.mktemp("ctr"))
    sample_data.generate(
        run.warehouse.removeprefix("duckdb://"),
        date.fromisoformat(DS),
        days=3,
        rows_per_day=ROWS_PER_DAY,
        candidates_per_day=CANDIDATES,
        seed=7,
    )
    return run


@pytest.fixture(scope="session")
def ctr_run(ctr_warehouse: CtrRun) -> CtrRun:
    """Every step of the daily chain, run for real on the sample warehouse, in DAG order."""
    run = ctr_warehouse
    for step in (s.task_id for s in DAILY):
        run.results[step] = run.run(step)
        assert run.results[step]["exit_code"] == 0, (step, run.results[step])
    return run
