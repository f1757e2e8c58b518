"""`<pipeline>_registry`: the registry's history, a rollback or a manual bless, from the UI.

Manual only (no schedule). The trigger form asks for the action and its values; its one
task runs `tfpipe-job registry <action> ...` with the operator the pipeline's steps use (a
local subprocess, or a pod in the gcp profile), so the change goes through the same
registry update as publish_model. The user who triggered the run is recorded as `--who`.
What each action needs (a reason and the expected current version for a change, a version
to roll back to) is checked by the job command, which says what is missing; the task log
shows its output (the history for `list`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import DAG, Param

from tfpipe_operators.profiles import Profile
from tfpipe_operators.spec import PipelineSpec
from tfpipe_operators.step_tasks import task_kwargs
from tfpipe_operators.steps import REGISTRY

ACTIONS = ("list", "rollback", "bless")
# Airflow 3 records who triggered a run (the UI's or API's user). A run without one is
# recorded as the run, never as the worker's OS user (the job's fallback at a terminal).
WHO = "{{ dag_run.triggering_user_name or ('airflow run ' ~ run_id) }}"
VERSION_PATTERN = r"\d{4}-\d{2}-\d{2}-[0-9a-f]+"


def registry_params() -> dict[str, Param]:
    """The trigger form: each field is checked by the form before the run is created."""
    return {
        "action": Param(
            "list",
            type="string",
            enum=list(ACTIONS),
            description="list: the history and which version scores `ds`; rollback: from `ds` on, score with "
            "`version`; bless: bless the model the gate refused for `ds`",
        ),
        "version": Param(
            None,
            type=["null", "string"],
            pattern=f"^({VERSION_PATTERN})?$",  # blank allowed: list needs no version
            description="rollback: the blessed version to score with (from `list`); bless: the refused "
            "version you expect (optional check)",
        ),
        "expected_current": Param(
            None,
            type=["null", "string"],
            pattern=f"^(none|{VERSION_PATTERN})?$",
            description="rollback, bless (required): the version that scores `ds` now, as `list` shows it "
            "(none: no model yet); the change is refused if someone changed the registry since",
        ),
        "ds": Param(
            None,
            type=["null", "string"],
            pattern=r"^(\d{4}-\d{2}-\d{2})?$",  # YYYY-MM-DD or blank
            description="YYYY-MM-DD. list: the day to resolve (empty: today); rollback: the first day rolled back "
            "(empty: the current blessing's day); bless: the day whose refused model is blessed",
        ),
        "reason": Param(
            None,
            type=["null", "string"],
            maxLength=500,
            description="rollback, bless: why (required, recorded with your user name)",
        ),
    }


def registry_arguments(spec_path: str, profile: Profile) -> list[str]:
    """The job command, every form field passed (empty when left blank): the command checks them."""
    return [
        REGISTRY.task_id,
        "{{ params.action }}",
        "--spec",
        spec_path,
        "--artifact-root",
        profile.artifact_root,
        "--ds",
        "{{ params.ds or '' }}",
        "--version",
        "{{ params.version or '' }}",
        "--expected-current",
        "{{ params.expected_current or '' }}",
        "--reason",
        "{{ params.reason or '' }}",
        "--who",
        WHO,
    ]


def build_registry_dag(spec: PipelineSpec, profile: Profile) -> DAG:
    dag = DAG(
        dag_id=f"{spec.pipeline}_registry",
        description=f"Model history, rollback and manual bless for {spec.pipeline}",
        doc_md=(
            f"### {spec.pipeline}: the model registry\n\n"
            "Trigger with an action:\n\n"
            "- **list**: every registry event (blessings, manual blessings, rollbacks: who, when, why, metrics), "
            "newest first, and the version that scores `ds`. Read it in the task log.\n"
            "- **rollback**: from `ds` on (empty: the current blessing's day), score with the earlier blessed "
            "`version`. A newer day's blessing supersedes it from that day on.\n"
            "- **bless**: bless the model the gate refused for `ds`, with your reason.\n\n"
            "A change names in `expected_current` the version that scores its day now (run `list` first): "
            "if someone changed the registry since, it is refused and says what scores the day instead. "
            "Changes are recorded as new events with your user name; nothing is rewritten. Registry: "
            f"`{profile.artifact_root}/{spec.pipeline}/registry/blessed.json`."
        ),
        schedule=None,
        start_date=datetime.combine(spec.start_date, datetime.min.time(), tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        tags=["tfpipe", spec.pipeline, profile.name, "registry"],
        params=registry_params(),
        # A change is not retried blindly: its error says what to fix, then one triggers again.
        default_args={"owner": spec.owner, "retries": 0},
    )
    arguments = registry_arguments(profile.job_spec_path(spec.path), profile)
    with dag:  # the operator joins the DAG it is created in
        profile.operators.step_task(spec, profile, REGISTRY, arguments, 0, **task_kwargs(REGISTRY, spec))
    return dag
