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
}}))
"""


def _parse(repo: Path) -> dict:
    code = PROBE.format(heavy=HEAVY, folder=str(repo / "dags"))
    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(repo / "dags")}
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
