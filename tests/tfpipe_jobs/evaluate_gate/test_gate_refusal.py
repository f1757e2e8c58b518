"""A worse model is refused: nothing is published and scoring keeps the blessed model."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

from tfpipe_jobs.tools import sample_data

NEXT_DS = "2026-11-22"


def test_noise_labels_are_refused_and_scoring_uses_the_old_model(ctr_run, spec_dir: Path, tmp_path: Path) -> None:
    # A copy of the shared run's warehouse and registry, with one more day of data.
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(ctr_run.warehouse.removeprefix("duckdb://"), warehouse)
    sample_data.generate(
        warehouse, date.fromisoformat(NEXT_DS), days=1, rows_per_day=2000, candidates_per_day=500, seed=7
    )
    root = tmp_path / "artifacts"
    for part in ("registry", "models"):
        shutil.copytree(Path(ctr_run.artifacts) / "ctr" / part, root / "ctr" / part)
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

    for step in ("extract_transform", "train", "export_serving_model"):
        assert run.run(step, ds=NEXT_DS)["exit_code"] == 0, step
    verdict = run.run("evaluate_gate", ds=NEXT_DS)
    assert verdict["verdict"] == "refused"
    assert 0.4 < verdict["new"]["auc"] < 0.6
    assert any(r.startswith("FAIL lift over baseline") for r in verdict["rules"])

    published = run.run("publish_model", ds=NEXT_DS)
    assert published["exit_code"] == 99 and "the gate refused the model of 2026-11-22" in published["skipped"]
    assert json.loads((root / "ctr" / "registry" / "blessed.json").read_text()) == blessed_before

    scored = run.run("batch_score", ds=NEXT_DS)
    assert scored["model_version"] == blessed_before["model_version"]
    assert run.run("publish_scores", ds=NEXT_DS)["rows"] == 500
    with run.duckdb() as con:
        versions = con.execute("SELECT DISTINCT ds, model_version FROM ctr_scores ORDER BY ds").fetchall()
    assert [(str(d), v) for d, v in versions] == [
        ("2026-11-21", blessed_before["model_version"]),
        (NEXT_DS, blessed_before["model_version"]),
    ]


def test_a_refused_same_day_retrain_never_scores_under_the_blessed_name(ctr_run, tmp_path: Path) -> None:
    """Retrain and export the blessed day again with a learning rate that ruins the model: the
    gate judges the new files against the blessed version's own copy, refuses them, and
    scoring keeps the blessed model's files and name."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ds = "2026-11-21"
    root = tmp_path / "artifacts"
    for part in ("registry", "models", f"{ds}/data"):
        shutil.copytree(Path(ctr_run.artifacts) / "ctr" / part, root / "ctr" / part)
    run = ctr_run.__class__(tmp_path)
    run.warehouse, run.artifacts = ctr_run.warehouse, str(root)
    blessed = json.loads((root / "ctr" / "registry" / "blessed.json").read_text())

    assert run.run("train", "--set", "train.learning_rate=10", "--set", "train.epochs=1")["exit_code"] == 0
    exported = run.run("export_serving_model")
    assert exported["model_version"] != blessed["model_version"]
    verdict = run.run("evaluate_gate")
    assert verdict["verdict"] == "refused", verdict["rules"]
    assert verdict["compared_with"] == blessed["model_version"] != verdict["model_version"]
    assert run.run("publish_model")["exit_code"] == 99

    scored = run.run("batch_score")
    assert scored["model_version"] == blessed["model_version"]

    def probabilities(day: Path) -> list[float]:
        table = pa.concat_tables(pq.read_table(p) for p in sorted((day / "scores").glob("*.parquet")))
        return table.sort_by([("user_id", "ascending"), ("item_id", "ascending")])["probability"].to_pylist()

    assert probabilities(root / "ctr" / ds) == probabilities(ctr_run.day())
    assert len(set(probabilities(root / "ctr" / ds))) > 100  # a real model's scores, not one constant
