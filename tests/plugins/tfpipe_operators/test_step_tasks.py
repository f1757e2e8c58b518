"""One step as a task: its command line, and the operator its profile gives it."""

from __future__ import annotations

from pathlib import Path

from tfpipe_operators.profiles import Profile, load_profile
from tfpipe_operators.spec import load_spec
from tfpipe_operators.step_tasks import DS, RUN_PARAMS, job_arguments, step_task, task_kwargs
from tfpipe_operators.steps import DAILY, STEPS


def test_the_command_is_the_task_id_and_the_days_places() -> None:
    profile = Profile(artifact_root="/a", warehouse="duckdb:///w.duckdb")
    args = job_arguments(STEPS["batch_score"], "/specs/ctr/pipeline.yaml", profile)
    assert args == [
        "batch_score",
        "--spec",
        "/specs/ctr/pipeline.yaml",
        "--ds",
        DS,
        "--artifact-root",
        "/a",
        "--warehouse",
        "duckdb:///w.duckdb",
        "--runner",
        "DirectRunner",
        "--run-params",
        RUN_PARAMS,
    ]
    without = job_arguments(STEPS["train"], "/s.yaml", profile, ds="2026-11-21", run_params=None)
    assert without[without.index("--ds") + 1] == "2026-11-21" and "--run-params" not in without


def test_every_profile_gets_the_same_task_settings_from_the_step_table(ctr_spec_path: Path) -> None:
    spec = load_spec(ctr_spec_path)
    publish = task_kwargs(STEPS["publish_model"], spec)
    assert publish["trigger_rule"] == "all_success" and publish["on_skipped_callback"] is not None
    assert [a.uri for a in publish["outlets"]] == ["tfpipe://ctr/blessed_model"]
    assert task_kwargs(STEPS["batch_score"], spec)["trigger_rule"] == "none_failed"


def test_the_operator_class_comes_from_the_profile_and_the_steps_link(ctr_spec_path: Path, gcp_env) -> None:
    spec = load_spec(ctr_spec_path)
    local = {step.task_id: type(step_task(step, spec, Profile())).__name__ for step in DAILY}
    assert local["train"] == "TfpipeTrainJobOperator"
    assert {local[s.task_id] for s in DAILY if s.task_id != "train"} == {"TfpipeJobOperator"}
    gcp = {step.task_id: type(step_task(step, spec, load_profile(gcp_env))).__name__ for step in DAILY}
    assert gcp["train"] == "TfpipeTrainPodOperator"
    assert gcp["extract_transform"] == "DataflowExtractPodOperator" and gcp["batch_score"] == "DataflowPodOperator"
    assert gcp["publish_scores"] == "TfpipePodOperator"
