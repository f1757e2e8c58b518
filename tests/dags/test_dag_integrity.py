"""The whole dags folder parses, without errors and without importing TensorFlow or Beam."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("tensorflow", "tensorflow_transform", "apache_beam", "tfx_bsl", "tf_keras", "keras")

# Runs in a fresh interpreter: a meta-path finder records (and refuses) every attempt to
# import a heavy module, installed or not, while the DagBag parses the folder.
PROBE = """
import json, sys
HEAVY = {heavy!r}
attempts = []
class Guard:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            attempts.append(name)
            raise ImportError("blocked heavy import: " + name)
        return None
sys.meta_path.insert(0, Guard())
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={folder!r})
print("RESULT " + json.dumps({{
    "dags": sorted(bag.dags),
    "errors": {{k: str(v) for k, v in bag.import_errors.items()}},
    "attempts": attempts,
    "tasks": {{d: sorted(t.task_id for t in bag.dags[d].tasks) for d in bag.dags}},
    "descriptions": {{d: bag.dags[d].description for d in bag.dags}},
    "docs": {{d: bag.dags[d].doc_md for d in bag.dags}},
}}))
"""


def _parse(repo: Path, dags: Path | None = None) -> dict:
    folder = dags or repo / "dags"
    code = PROBE.format(heavy=HEAVY, folder=str(folder))
    env = {k: v for k, v in os.environ.items() if k != "TFPIPE_SPECS_DIR"}
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(folder)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=True)
    line = next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def test_dags_folder_parses_without_heavy_imports(repo: Path) -> None:
    result = _parse(repo)
    assert result["errors"] == {}
    assert result["attempts"] == []
    assert "ctr_daily" in result["dags"]
    assert set(result["tasks"]["ctr_daily"]) == {
        "wait_for_source",
        "extract_transform",
        "train",
        "export_serving_model",
        "evaluate_gate",
        "publish_model",
        "batch_score",
        "publish_scores",
    }


def test_every_spec_becomes_a_dag(repo: Path) -> None:
    """A daily and a registry DAG per spec, and a tune DAG per spec that has a search space."""
    import yaml

    specs = sorted((repo / "dags" / "pipelines").glob("*/pipeline.yaml"))
    assert specs
    expected = {f"{p.parent.name}_{kind}" for p in specs for kind in ("daily", "registry")}
    expected |= {f"{p.parent.name}_tune" for p in specs if yaml.safe_load(p.read_text()).get("search_space")}
    assert _parse(repo)["dags"] == sorted(expected)


def test_a_bad_spec_breaks_only_its_own_dags(repo: Path, tmp_path: Path) -> None:
    """A dags folder with a good and a bad spec: the good pipeline's DAGs load, there is no
    import error (it would mark every DAG of the file stale), and the bad pipeline's place
    holds a DAG whose description and doc name the spec file and the key."""
    import shutil

    dags = tmp_path / "dags"
    (dags / "pipelines").mkdir(parents=True)
    shutil.copy(repo / "dags" / "tfpipe_pipelines.py", dags)
    shutil.copytree(repo / "dags" / "pipelines" / "ctr", dags / "pipelines" / "ctr")
    bad = dags / "pipelines" / "ads"
    shutil.copytree(repo / "dags" / "pipelines" / "ctr", bad)
    text = (bad / "pipeline.yaml").read_text().replace("pipeline: ctr", "pipeline: ads")
    (bad / "pipeline.yaml").write_text(text.replace("lookback_days: 2", "lookback_days: 400"))

    result = _parse(repo, dags)
    assert result["errors"] == {}
    assert result["dags"] == ["ads_daily", "ctr_daily", "ctr_registry", "ctr_tune"]
    assert "publish_scores" in result["tasks"]["ctr_daily"]
    assert result["tasks"]["ads_daily"] == ["invalid_spec"]
    where = f"{bad / 'pipeline.yaml'}: extract.lookback_days: Input should be less than or equal to 366"
    assert where in result["docs"]["ads_daily"]
    assert result["descriptions"]["ads_daily"].startswith(f"INVALID SPEC: {where}")
