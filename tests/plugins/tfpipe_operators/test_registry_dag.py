"""`<pipeline>_registry`: the trigger form, the command its task renders, and that command run."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import kubernetes_validate
import pytest
from airflow.sdk.exceptions import AirflowException
from kubernetes.client import ApiClient

from tfpipe_jobs import cli
from tfpipe_operators.dag_factory import build_dags
from tfpipe_operators.operators.job import TfpipeJobOperator
from tfpipe_operators.operators.pod import TfpipePodOperator
from tfpipe_operators.profiles import Profile, load_profile
from tfpipe_operators.registry_dag import build_registry_dag, registry_params
from tfpipe_operators.spec import load_spec
from tfpipe_operators.steps import REGISTRY

TASK_ID = REGISTRY.task_id
CTR_SPEC = Path(__file__).resolve().parents[3] / "dags" / "pipelines" / "ctr" / "pipeline.yaml"

VERSION = "2026-11-18-0123456789abcdef"
BLANK = {"action": "list", "version": None, "expected_current": None, "ds": None, "reason": None}


def _rendered(profile: Profile, params: dict, user: str | None = "alice"):
    """The registry task (of a DAG built anew) with its templates rendered as a manual run of `params` would."""
    op = build_registry_dag(load_spec(CTR_SPEC), profile).get_task(TASK_ID)
    context = {
        "params": {**BLANK, **params},
        "dag_run": SimpleNamespace(triggering_user_name=user),
        "run_id": "manual__2026-12-02T10:00:00+00:00",
    }
    op.render_template_fields(context)
    return op


def test_each_spec_gets_a_manual_registry_dag(repo: Path, tmp_path: Path) -> None:
    dags = build_dags(repo / "dags" / "pipelines", Profile(artifact_root=str(tmp_path)))
    dag = dags["ctr_registry"]
    assert dag.schedule is None and type(dag.timetable).__name__ == "NullTimetable"  # manual trigger only
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert [t.task_id for t in dag.tasks] == [TASK_ID]
    op = dag.get_task(TASK_ID)
    assert type(op) is TfpipeJobOperator  # the operator every local step runs through
    assert op.retries == 0  # a refused change is fixed and triggered again, not retried
    assert "registry" in dag.tags and f"{tmp_path}/ctr/registry/blessed.json" in dag.doc_md
    assert set(dag.params) == set(BLANK) and dag.params["action"] == "list"


def test_the_form_refuses_bad_values_before_a_run_exists() -> None:
    params = registry_params()
    assert params["action"].resolve("rollback") == "rollback"
    with pytest.raises(Exception, match="'delete' is not one of"):
        params["action"].resolve("delete")
    assert params["version"].resolve(VERSION) == VERSION
    with pytest.raises(Exception, match="does not match"):
        params["version"].resolve("latest")
    assert params["expected_current"].resolve("none") == "none"
    assert params["expected_current"].resolve(VERSION) == VERSION
    with pytest.raises(Exception, match="does not match"):
        params["expected_current"].resolve("the current one")
    with pytest.raises(Exception, match="does not match"):
        params["ds"].resolve("21/11/2026")
    with pytest.raises(Exception, match="is too long"):
        params["reason"].resolve("x" * 501)
    for name in ("version", "expected_current", "ds", "reason"):
        assert params[name].resolve(None) is None  # blank: an action that needs it says so


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"ds": "2026-11-21"}, ("list", "2026-11-21", "", "", "")),
        (
            {"action": "rollback", "version": VERSION, "expected_current": "2026-11-20-fedcba9876543210",
             "ds": "2026-11-21", "reason": "CTR fell after the 11-20 model"},
            ("rollback", "2026-11-21", VERSION, "2026-11-20-fedcba9876543210", "CTR fell after the 11-20 model"),
        ),
        (
            {"action": "bless", "expected_current": "none", "ds": "2026-11-20", "reason": "holiday traffic"},
            ("bless", "2026-11-20", "", "none", "holiday traffic"),
        ),
    ],
)  # fmt: skip
def test_the_task_runs_the_registry_command_with_the_form(
    params: dict, expected: tuple, ctr_spec_path: Path, tmp_path: Path
) -> None:
    op = _rendered(Profile(artifact_root=str(tmp_path)), params)
    args = cli.build_parser().parse_args(op.arguments)  # what the job command makes of them
    action, ds, version, expected_current, reason = expected
    assert (args.command, args.action) == ("registry", action)
    assert (args.ds.isoformat() if args.ds else None) == ds
    assert (args.version, args.expected_current, args.reason) == (version, expected_current, reason)
    assert args.who == "alice" and args.artifact_root == str(tmp_path)
    assert args.spec == ctr_spec_path.resolve()


def test_blank_fields_reach_the_command_as_not_given(ctr_spec_path: Path, tmp_path: Path) -> None:
    args = cli.build_parser().parse_args(_rendered(Profile(artifact_root=str(tmp_path)), {}, user=None).arguments)
    assert args.action == "list" and args.ds is None
    assert (args.version, args.expected_current, args.reason) == ("", "", "")
    # no user recorded for the run: the change is attributed to the run, not the worker's OS user
    assert args.who == "airflow run manual__2026-12-02T10:00:00+00:00"


def test_the_rendered_task_runs_the_real_job_command(ctr_spec_path: Path, tmp_path: Path) -> None:
    """The installed `tfpipe-job`, as the local profile runs it: its error reaches the task's failure."""
    job_cli = str(Path(sys.executable).parent / "tfpipe-job")
    profile = Profile(artifact_root=str(tmp_path), job_cli=job_cli)
    op = _rendered(profile, {"ds": "2026-11-21"})
    with pytest.raises(AirflowException, match=r"exit code 1(.|\n)*pipeline 'ctr' has no blessed model yet"):
        op.execute(context={})
    op = _rendered(profile, {"action": "bless", "ds": "2026-11-20", "reason": "r", "expected_current": "none"})
    with pytest.raises(AirflowException, match="tfpipe-job registry bless: .* the gate has not judged a model of 2026"):
        op.execute(context={})
    assert not (tmp_path / "ctr" / "registry" / "blessed.json").exists()


def test_in_the_gcp_profile_the_task_is_a_cpu_pod(ctr_spec_path: Path, gcp_env: dict[str, str]) -> None:
    op = build_registry_dag(load_spec(ctr_spec_path), load_profile(gcp_env)).get_task(TASK_ID)
    assert type(op) is TfpipePodOperator and op.skip_on_exit_code == [99]
    pod = ApiClient().sanitize_for_serialization(op.build_pod_request_obj(dry_run=True))
    kubernetes_validate.validate(pod, "1.33.0", strict=True)
    container = pod["spec"]["containers"][0]
    assert container["image"] == gcp_env["TFPIPE_JOB_IMAGE"] and container["command"] == ["tfpipe-job"]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert pod["metadata"]["labels"]["step"] == "registry"
    args = cli.build_parser().parse_args(_rendered(load_profile(gcp_env), {"action": "list"}).arguments)
    assert args.artifact_root == gcp_env["TFPIPE_ARTIFACT_ROOT"]
    assert str(args.spec) == "/opt/tfpipe/pipelines/ctr/pipeline.yaml"  # where the pod sees the spec
