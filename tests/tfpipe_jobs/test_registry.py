"""The registry: immutable model versions, blessings per day, one winner under concurrency."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tfpipe_jobs import artifacts, registry
from tfpipe_jobs.artifacts import RunPaths


def _registry(root: Path) -> dict:
    return json.loads((root / "ctr" / "registry" / "blessed.json").read_text())


def test_first_blessed_model_is_an_immutable_version(ctr_run) -> None:
    entry = _registry(Path(ctr_run.artifacts))
    digest = registry.saved_model_digest(str(ctr_run.day() / "serving"))
    assert entry["ds"] == "2026-11-21"
    assert entry["model_version"] == f"2026-11-21-{digest[:16]}" and entry["digest"] == digest
    # scoring reads the version's own folder, a copy the day's reruns never write to
    folder = Path(ctr_run.artifacts) / "ctr" / "models" / entry["model_version"]
    assert entry["serving"] == str(folder) and (folder / "_SUCCESS").exists()
    assert registry.saved_model_digest(str(folder)) == digest
    assert [e["model_version"] for e in entry["history"]] == [entry["model_version"]]
    published = ctr_run.results["publish_model"]
    assert published["model_version"] == entry["model_version"] == published["current"]
    assert ctr_run.results["export_serving_model"]["model_version"] == entry["model_version"]
    assert ctr_run.results["batch_score"]["model_version"] == entry["model_version"]


def test_refused_model_is_skipped_and_registry_kept(ctr_run, judge, tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    shutil.copytree(Path(ctr_run.artifacts) / "ctr" / "registry", root / "ctr" / "registry")
    before = (root / "ctr" / "registry" / "blessed.json").read_text()
    judge(root, "2026-11-22", "refused")
    result = ctr_run.run("publish_model", ds="2026-11-22", artifacts=str(root))
    assert result["exit_code"] == 99
    assert "the gate refused the model of 2026-11-22: FAIL lift over baseline" in result["skipped"]
    assert (root / "ctr" / "registry" / "blessed.json").read_text() == before
    assert not (root / "ctr" / "models").exists()


def test_an_older_day_is_blessed_for_itself_and_never_replaces_a_newer(ctr_run, judge, tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    for ds in ("2026-11-21", "2026-11-20", "2026-11-23"):
        judge(root, ds, "blessed")
    newer = ctr_run.run("publish_model", ds="2026-11-21", artifacts=str(root))
    older = ctr_run.run("publish_model", ds="2026-11-20", artifacts=str(root))
    assert older["exit_code"] == 0 and older["current"] == newer["model_version"]
    doc = _registry(root)
    assert doc["ds"] == "2026-11-21" and [e["ds"] for e in doc["history"]] == ["2026-11-20", "2026-11-21"]
    paths = RunPaths(str(root), "ctr", "")
    # each day is scored by the model blessed on or before it: a backfilled day by its own
    assert registry.blessed_as_of(paths, "2026-11-20")["model_version"] == older["model_version"]
    assert registry.blessed_as_of(paths, "2026-11-22")["model_version"] == newer["model_version"]
    assert registry.blessed_as_of(paths, "2026-11-19") is None
    with pytest.raises(registry.NoBlessedModelError, match="on or before 2026-11-19.*never scores an older day"):
        registry.require_blessed_as_of(paths, "2026-11-19")
    latest = ctr_run.run("publish_model", ds="2026-11-23", artifacts=str(root))
    assert latest["exit_code"] == 0 and _registry(root)["model_version"] == latest["model_version"]


def test_publish_refuses_a_serving_folder_changed_after_the_gate(ctr_run, judge, tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    candidate = judge(root, "2026-11-22", "blessed")
    # a same-day rerun of the export replaced the folder the gate judged
    with open(Path(candidate["serving"]) / "saved_model" / "saved_model.pb", "ab") as f:
        f.write(b"\0")
    with pytest.raises(registry.ModelIntegrityError, match="changed after evaluate_gate judged it"):
        ctr_run.run("publish_model", ds="2026-11-22", artifacts=str(root))
    assert not (root / "ctr" / "registry" / "blessed.json").exists()
    assert not list((root / "ctr").glob("models/*"))  # the staged copy is gone too


def test_a_damaged_registry_names_the_repair_and_the_repair_works(ctr_run, judge, tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    for ds in ("2026-11-20", "2026-11-21"):
        judge(root, ds, "blessed")
        assert ctr_run.run("publish_model", ds=ds, artifacts=str(root))["exit_code"] == 0
    good = _registry(root)
    blessed = root / "ctr" / "registry" / "blessed.json"
    blessed.write_text('{"ds": "2026-11-21",\n')
    for step in ("publish_model", "batch_score"):
        with pytest.raises(registry.RegistryCorruptError, match="not valid JSON.*tfpipe-job rebuild-registry"):
            ctr_run.run(step, ds="2026-11-21", artifacts=str(root))
    from tfpipe_jobs import cli

    assert cli.main(["rebuild-registry", "--spec", ctr_run.spec, "--artifact-root", str(root)]) == 0
    rebuilt = _registry(root)
    assert [e["model_version"] for e in rebuilt["history"]] == [e["model_version"] for e in good["history"]]
    assert rebuilt["model_version"] == good["model_version"]


def test_concurrent_blessings_in_threads_lose_no_update(ctr_run, tmp_path: Path) -> None:
    """Eight writers at once, each adding its own day: every day is in the history after."""
    paths = RunPaths(str(tmp_path), "ctr", "")
    days = [f"2026-10-{d:02d}" for d in range(1, 9)]
    barrier = threading.Barrier(len(days))

    errors: list[BaseException] = []

    def bless(ds: str) -> None:
        entry = {"ds": ds, "model_version": f"{ds}-x", "digest": "x", "blessed_at": ds}
        barrier.wait()
        try:
            registry._update(paths, lambda doc: registry._document(paths, [*(doc or {}).get("history", []), entry]))
        except Exception as exc:  # a thread's error would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=bless, args=(ds,)) for ds in days]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    doc = registry.read_registry(paths)
    assert doc is not None and [e["ds"] for e in doc["history"]] == days and doc["ds"] == days[-1]


def test_twenty_rounds_of_racing_publishes_keep_the_newer_day(ctr_run, judge, tmp_path: Path) -> None:
    """Two `publish_model` processes at once, 11-30 and 12-01: the 12-01 model is current every round."""
    cli = [str(Path(sys.executable).parent / "tfpipe-job")]  # the installed command, as Airflow runs it
    env = {**os.environ, "TFPIPE_JOB_CLI": ""}
    for round_ in range(20):
        root = tmp_path / f"round{round_}"
        versions = {ds: judge(root, ds, "blessed")["model_version"] for ds in ("2026-11-30", "2026-12-01")}
        procs = [
            subprocess.Popen(
                [*cli, *ctr_run.args("publish_model", ds, artifacts=str(root))], env=env, stdout=subprocess.DEVNULL
            )
            for ds in (("2026-12-01", "2026-11-30") if round_ % 2 else ("2026-11-30", "2026-12-01"))
        ]
        assert [p.wait(timeout=120) for p in procs] == [0, 0], round_
        doc = _registry(root)
        assert doc["model_version"] == versions["2026-12-01"], round_
        assert [e["ds"] for e in doc["history"]] == ["2026-11-30", "2026-12-01"], round_
        assert artifacts.is_complete(str(root / "ctr" / "models" / versions["2026-11-30"]))
