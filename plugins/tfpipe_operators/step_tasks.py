"""One step as an Airflow task: its job command line and the profile's operator that runs it.

The daily, the tune and the registry DAG build their job tasks here. The command is the
same in every profile; which operator runs it (a local subprocess, a Kubernetes pod) is
the profile's (`Profile.operators`), so nothing here asks which profile it is.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset, BaseOperator

from tfpipe_operators import callbacks
from tfpipe_operators.profiles import Profile
from tfpipe_operators.spec import PipelineSpec
from tfpipe_operators.steps import Step

# `ds` is the day whose data the run processes (the start of its data interval). A run
# created without a logical date falls back to the day it was asked to run.
DS = "{{ ds if ds is defined else (dag_run.run_after | ds) }}"
RUN_PARAMS = "{{ params | tfpipe_run_params }}"


def job_arguments(
    step: Step, spec_path: str, profile: Profile, ds: str = DS, run_params: str | None = RUN_PARAMS
) -> list[str]:
    """`<task id> --spec ... --ds ...`: the command every profile runs for the step; without
    `run_params` the command carries no run param (a tuning trial's values are its own)."""
    arguments = [
        step.task_id,
        "--spec",
        spec_path,
        "--ds",
        ds,
        "--artifact-root",
        profile.artifact_root,
        "--warehouse",
        profile.warehouse,
        "--runner",
        profile.beam_runner,
    ]
    return arguments if run_params is None else [*arguments, "--run-params", run_params]


def asset(spec: PipelineSpec, outlet: str) -> Asset:
    """What other DAGs can be scheduled on: the blessed model, the score table (a step's `outlet`)."""
    uri = spec.scoring.table if outlet == "scores" else outlet
    return Asset(name=f"tfpipe.{spec.pipeline}.{outlet}", uri=f"tfpipe://{spec.pipeline}/{uri}")


def task_kwargs(step: Step, spec: PipelineSpec) -> dict[str, Any]:
    """What every operator of the step gets whatever the profile: id, timeout, doc, trigger rule, outlet, alert."""
    common: dict[str, Any] = {
        "task_id": step.task_id,
        "execution_timeout": step.timeout,
        "doc_md": step.doc,
        "trigger_rule": step.trigger_rule,
    }
    if step.outlet:
        common["outlets"] = [asset(spec, step.outlet)]
    if step.alert_when_skipped:
        common["on_skipped_callback"] = callbacks.on_gate_refused
    return common


def step_task(step: Step, spec: PipelineSpec, profile: Profile) -> BaseOperator:
    """The step's task in the DAG being built, run by the profile's operator."""
    arguments = job_arguments(step, profile.job_spec_path(spec.path), profile)
    gpus = spec.config.train.gpus if step.gpu else 0
    return profile.operators.step_task(spec, profile, step, arguments, gpus, **task_kwargs(step, spec))
