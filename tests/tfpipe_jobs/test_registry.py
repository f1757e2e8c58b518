from __future__ import annotations

import json
import shutil
from pathlib import Path


def _eval_dir(root: Path, ds: str, verdict: str) -> None:
    folder = root / "ctr" / ds / "eval"
    folder.mkdir(parents=True)
    rules = ["FAIL lift over baseline: auc 0.50 vs 0.50"] if verdict == "refused" else ["PASS lift over baseline"]
    (folder / "evaluation.json").write_text(
        json.dumps(
            {"verdict": verdict, "rules": rules, "metrics": {"new": {"auc": 0.7}}, "config_hash": "abc123abc123"}
        )
    )
    (folder / "verdict").write_text(verdict + "\n")
    (folder / "_SUCCESS").write_text("")


def test_first_blessed_model_is_registered(ctr_run) -> None:
    entry = json.loads((Path(ctr_run.artifacts) / "ctr" / "registry" / "blessed.json").read_text())
    assert entry["ds"] == "2026-11-21"
    assert entry["serving"] == str(ctr_run.day() / "serving")
    assert entry["model_version"] == f"2026-11-21-{entry['config_hash']}"
    assert ctr_run.results["publish-model"] == {
        **entry,
        "exit_code": 0,
        "seconds": ctr_run.results["publish-model"]["seconds"],
    }


def test_refused_model_is_skipped_and_registry_kept(ctr_run, tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    shutil.copytree(Path(ctr_run.artifacts) / "ctr" / "registry", root / "ctr" / "registry")
    before = (root / "ctr" / "registry" / "blessed.json").read_text()
    _eval_dir(root, "2026-11-22", "refused")
    result = ctr_run.run("publish-model", ds="2026-11-22", artifacts=str(root))
    assert result["exit_code"] == 99
    assert "the gate refused the model of 2026-11-22: FAIL lift over baseline" in result["skipped"]
    assert (root / "ctr" / "registry" / "blessed.json").read_text() == before


def test_backfilled_older_day_does_not_replace_newer(ctr_run, tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    shutil.copytree(Path(ctr_run.artifacts) / "ctr" / "registry", root / "ctr" / "registry")
    _eval_dir(root, "2026-11-20", "blessed")
    result = ctr_run.run("publish-model", ds="2026-11-20", artifacts=str(root))
    assert result["exit_code"] == 99
    assert "a model from a newer ds (2026-11-21) is blessed" in result["skipped"]
    _eval_dir(root, "2026-11-23", "blessed")
    result = ctr_run.run("publish-model", ds="2026-11-23", artifacts=str(root))
    assert result["exit_code"] == 0
    assert json.loads((root / "ctr" / "registry" / "blessed.json").read_text())["ds"] == "2026-11-23"
