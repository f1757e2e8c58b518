"""A worse model is refused: nothing is published and scoring keeps the blessed model."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

from tfpipe_jobs import sample_data

NEXT_DS = "2026-11-22"


def test_noise_labels_are_refused_and_scoring_uses_the_old_model(ctr_run, spec_dir: Path, tmp_path: Path) -> None:
    # A copy of the shared run's warehouse and registry, with one more day of data.
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(ctr_run.warehouse.removeprefix("duckdb://"), warehouse)
    sample_data.generate(
        warehouse, date.fromisoformat(NEXT_DS), days=1, rows_per_day=2000, candidates_per_day=500, seed=7
    )
    root = tmp_path / "artifacts"
    shutil.copytree(Path(ctr_run.artifacts) / "ctr" / "registry", root / "ctr" / "registry")
    blessed_before = json.loads((root / "ctr" / "registry" / "blessed.json").read_text())

    # The label becomes the parity of the event number: noise no feature can predict.
    sql = (
        (spec_dir / "train.sql")
        .read_text()
        .replace("  clicked\n", "  CAST(MOD(CAST(SUBSTR(event_id, 10) AS INT64), 2) AS INT64) AS clicked\n")
    )
    (spec_dir / "train.sql").write_text(sql)
    spec = str(spec_dir / "pipeline.yaml")
    run = ctr_run.__class__(tmp_path)
    run.spec = spec

    for step in ("extract", "train", "export"):
        assert run.run(step, ds=NEXT_DS)["exit_code"] == 0, step
    verdict = run.run("evaluate", ds=NEXT_DS)
    assert verdict["verdict"] == "refused"
    assert 0.4 < verdict["new"]["auc"] < 0.6
    assert any(r.startswith("FAIL lift over baseline") for r in verdict["rules"])

    published = run.run("publish-model", ds=NEXT_DS)
    assert published["exit_code"] == 99 and "the gate refused the model of 2026-11-22" in published["skipped"]
    assert json.loads((root / "ctr" / "registry" / "blessed.json").read_text()) == blessed_before

    scored = run.run("score", ds=NEXT_DS)
    assert scored["model_version"] == blessed_before["model_version"]
    assert run.run("publish-scores", ds=NEXT_DS)["rows"] == 500
    with run.duckdb() as con:
        versions = con.execute("SELECT DISTINCT ds, model_version FROM ctr_scores ORDER BY ds").fetchall()
    assert [(str(d), v) for d, v in versions] == [
        ("2026-11-21", blessed_before["model_version"]),
        (NEXT_DS, blessed_before["model_version"]),
    ]
