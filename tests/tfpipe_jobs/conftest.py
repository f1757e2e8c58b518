"""Job-test fixtures shared by the registry tests: a day the gate judged, without running it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tfpipe_jobs import registry

Judge = Callable[[Path, str, str], dict]


@pytest.fixture
def judge(ctr_run) -> Judge:
    """`judge(root, ds, verdict)`: the shared run's serving model as `ds`'s export under `root`,
    and an evaluation blessing or refusing it; returns the candidate the gate recorded."""

    def judged(root: Path, ds: str, verdict: str) -> dict:
        serving = root / "ctr" / ds / "serving"
        if not serving.exists():
            shutil.copytree(ctr_run.day() / "serving", serving)
        digest = registry.saved_model_digest(str(serving))
        candidate = {"serving": str(serving), "model_version": registry.model_version(ds, digest), "digest": digest}
        folder = root / "ctr" / ds / "eval"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        rules = ["FAIL lift over baseline: auc 0.50 vs 0.50"] if verdict == "refused" else ["PASS lift over baseline"]
        evaluation = {
            "verdict": verdict,
            "rules": rules,
            "metrics": {"new": {"auc": 0.7}},
            "config_hash": "abc123abc123",
            "candidate": candidate,
        }
        (folder / "evaluation.json").write_text(json.dumps(evaluation))
        (folder / "verdict").write_text(verdict + "\n")
        (folder / "_SUCCESS").write_text("")
        return candidate

    return judged
