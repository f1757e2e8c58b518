"""The gcp profile's pods, rendered without a cluster and validated against the Kubernetes schema."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import kubernetes_validate
import pytest
from googleapiclient.discovery import build
from googleapiclient.http import HttpMockSequence
from kubernetes.client import ApiClient

from tfpipe_jobs import cli
from tfpipe_operators.config import SpecError
from tfpipe_operators.dag_factory import build_dag
from tfpipe_operators.operators.pod import TfpipePodOperator, TfpipeTrainPodOperator, pod_kwargs
from tfpipe_operators.profiles import load_profile
from tfpipe_operators.spec import load_spec
from tfpipe_operators.steps import DAILY, STEPS
from tfpipe_operators.tune_dag import build_tune_dag

ENV = {
    "TFPIPE_PROFILE": "gcp",
    "TFPIPE_GCP_PROJECT": "acme-ml",
    "TFPIPE_JOB_IMAGE": "europe-docker.pkg.dev/acme-ml/tfpipe/jobs-gpu:0.1.0",
    "TFPIPE_ARTIFACT_ROOT": "gs://acme-ml-tfpipe/artifacts",
    "TFPIPE_WAREHOUSE": "bigquery://acme-ml/analytics",
    "TFPIPE_GPU_POOL": "gpu",
    "TFPIPE_DATAFLOW_IMAGE": "europe-docker.pkg.dev/acme-ml/tfpipe/dataflow:0.1.0",
}
K8S_VERSION = "1.33.0"


def _pod(task_id: str, ctr_spec_path: Path) -> dict:
    dag = build_dag(load_spec(ctr_spec_path), load_profile(ENV))
    op = dag.get_task(task_id)
    pod = op.build_pod_request_obj(dry_run=True)
    return ApiClient().sanitize_for_serialization(pod)


def test_train_pod_asks_for_a_gpu_and_is_valid(ctr_spec_path: Path) -> None:
    pod = _pod("train", ctr_spec_path)
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    spec = pod["spec"]
    container = spec["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"] == {"cpu": "4", "memory": "16Gi", "ephemeral-storage": "20Gi"}
    assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["serviceAccountName"] == "tfpipe-jobs"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["image"] == ENV["TFPIPE_JOB_IMAGE"]
    assert container["command"] == ["tfpipe-job"]
    assert container["args"][0] == "train"


def test_cpu_steps_have_no_gpu(ctr_spec_path: Path) -> None:
    for task_id in ("extract_transform", "export_serving_model", "batch_score"):
        pod = _pod(task_id, ctr_spec_path)
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
        limits = pod["spec"]["containers"][0]["resources"]["limits"]
        assert "nvidia.com/gpu" not in limits
        assert "tolerations" not in pod["spec"] or not pod["spec"]["tolerations"]


def test_pod_operator_settings(ctr_spec_path: Path) -> None:
    dag = build_dag(load_spec(ctr_spec_path), load_profile(ENV))
    train = dag.get_task("train")
    assert train.deferrable is True
    assert train.skip_on_exit_code == [99]
    assert train.on_finish_action.value == "delete_succeeded_pod"
    assert train.get_logs is True
    assert train.pool == "gpu"
    assert dag.get_task("extract_transform").pool != "gpu"


def _rendered(task_id: str, ctr_spec_path: Path, try_number: int = 1):
    dag = build_dag(load_spec(ctr_spec_path), load_profile(ENV))
    op = dag.get_task(task_id)
    context = {"ds": "2026-11-21", "ds_nodash": "20261121", "ti": SimpleNamespace(try_number=try_number), "params": {}}
    op.render_template_fields(context)
    return op


def test_dataflow_steps_pass_the_rendered_job_name_and_options(ctr_spec_path: Path) -> None:
    op = _rendered("batch_score", ctr_spec_path, try_number=3)
    assert op.dataflow_job_name == "tfpipe-ctr-daily-batch-score-20261121-t03"
    # exactly what the job command's parser makes of the pod's arguments
    beam_args = cli.build_parser().parse_args(op.arguments).beam_arg
    assert "--job_name=tfpipe-ctr-daily-batch-score-20261121-t03" in beam_args
    assert f"--sdk_container_image={ENV['TFPIPE_DATAFLOW_IMAGE']}" in beam_args  # not the job image
    assert "--staging_location=gs://acme-ml-tfpipe/artifacts/_dataflow/staging" in beam_args


@pytest.mark.parametrize("task_id", [s.task_id for s in DAILY])
def test_every_pod_command_parses_as_the_job_command(task_id: str, ctr_spec_path: Path) -> None:
    op = _rendered(task_id, ctr_spec_path)
    args = cli.build_parser().parse_args(op.arguments)
    assert args.command == task_id and args.ds.isoformat() == "2026-11-21"


class RecordingHttp(HttpMockSequence):
    """The Dataflow REST API's HTTP transport, answering from a script and recording requests."""


def test_on_kill_cancels_the_dataflow_job_by_its_name(ctr_spec_path: Path, monkeypatch) -> None:
    from airflow.providers.google.cloud.hooks.dataflow import DataflowHook

    op = _rendered("extract_transform", ctr_spec_path)
    jobs = {
        "jobs": [
            {
                "id": "job-run",
                "name": "tfpipe-ctr-daily-extract-transform-20261121-t01",
                "currentState": "JOB_STATE_RUNNING",
                "type": "JOB_TYPE_BATCH",
            },
            {
                "id": "job-old",
                "name": "tfpipe-ctr-daily-extract-transform-20261120-t01",
                "currentState": "JOB_STATE_RUNNING",
                "type": "JOB_TYPE_BATCH",
            },
            {
                "id": "job-done",
                "name": "tfpipe-ctr-daily-extract-transform-20261121-t01",
                "currentState": "JOB_STATE_DONE",
                "type": "JOB_TYPE_BATCH",
            },
        ]
    }
    http = RecordingHttp([({"status": "200"}, json.dumps(jobs)), ({"status": "200"}, json.dumps({"id": "job-run"}))])
    used: list[DataflowHook] = []

    def client(hook: DataflowHook):
        used.append(hook)
        return build("dataflow", "v1b3", http=http, static_discovery=True)

    monkeypatch.setattr(DataflowHook, "get_conn", client)
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", '{"conn_type": "google_cloud_platform"}')
    op.on_kill()  # no pod created yet: nothing to delete, the job is still cancelled

    assert used[0].gcp_conn_id == "google_cloud_default"
    (list_uri, list_method, _, _), (update_uri, update_method, body, _) = http.request_sequence
    assert list_method == "GET" and "/projects/acme-ml/locations/us-central1/jobs" in list_uri
    assert update_method == "PUT" and "/projects/acme-ml/locations/us-central1/jobs/job-run" in update_uri
    assert json.loads(body) == {"requestedState": "JOB_STATE_CANCELLED"}


def _all_pods(ctr_spec_path: Path) -> dict[str, dict]:
    """Every pod the gcp profile renders: the daily DAG's steps, the tune DAG's, and a tuning trial."""
    spec, profile = load_spec(ctr_spec_path), load_profile(ENV)
    ops = [t for dag in (build_dag(spec, profile), build_tune_dag(spec, profile)) for t in dag.tasks]
    pods = {
        f"{op.dag_id}.{op.task_id}": ApiClient().sanitize_for_serialization(op.build_pod_request_obj(dry_run=True))
        for op in ops
        if isinstance(op, TfpipePodOperator)
    }
    # The tune DAG's train is mapped: build one trial the way its expansion does.
    trial = TfpipeTrainPodOperator(arguments=["train"], **pod_kwargs(spec, profile, STEPS["train"], 1, task_id="trial"))
    pods["trial"] = ApiClient().sanitize_for_serialization(trial.build_pod_request_obj(dry_run=True))
    return pods


def test_every_pod_is_hardened(ctr_spec_path: Path) -> None:
    pods = _all_pods(ctr_spec_path)
    steps = ("extract_transform", "train", "export_serving_model", "evaluate_gate", "publish_model", "batch_score")
    assert {f"ctr_daily.{s}" for s in (*steps, "publish_scores")} | {"ctr_tune.select_trial", "trial"} <= set(pods)
    for where, pod in pods.items():
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
        spec = pod["spec"]
        assert spec["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        }, where
        names = [c["name"] for c in spec["containers"]]
        assert names == ["base", "airflow-xcom-sidecar"], where
        for container in spec["containers"]:  # the XCom sidecar too: a restricted namespace checks every one
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "runAsNonRoot": True,
                "capabilities": {"drop": ["ALL"]},
            }, (where, container["name"])


def test_pods_write_only_to_a_size_limited_scratch_volume(ctr_spec_path: Path) -> None:
    for where, pod in _all_pods(ctr_spec_path).items():
        spec = pod["spec"]
        base = spec["containers"][0]
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in base["volumeMounts"]}
        assert set(mounts) == {"/tmp", "/airflow/xcom"}, where
        scratch = volumes[mounts["/tmp"]]
        assert set(scratch) == {"name", "emptyDir"}, where  # a node-disk emptyDir, nothing from the host
        assert "medium" not in scratch["emptyDir"], where  # tmpfs would count against the memory limit
        limit = scratch["emptyDir"]["sizeLimit"]
        assert base["resources"]["requests"]["ephemeral-storage"] == limit, where
        env = {e["name"]: e["value"] for e in base["env"]}
        # Where TensorFlow/Keras (~), matplotlib, fontconfig, CUDA (~/.nv) and tempfile write.
        for var in ("HOME", "TMPDIR", "MPLCONFIGDIR", "XDG_CACHE_HOME"):
            assert env[var] == "/tmp" or env[var].startswith("/tmp/"), (where, var)
    pods = _all_pods(ctr_spec_path)

    def scratch_limit(where: str) -> str:
        (volume,) = (v for v in pods[where]["spec"]["volumes"] if v["name"] == "scratch")
        return volume["emptyDir"]["sizeLimit"]

    # train caches its parsed first epoch in TMPDIR: far more room than a step that only writes caches.
    assert scratch_limit("ctr_daily.train") == scratch_limit("trial") == "20Gi"
    assert scratch_limit("ctr_daily.evaluate_gate") == "1Gi"


def _base_env(pod) -> dict[str, str]:
    container = next(c for c in pod.spec.containers if c.name == "base")
    return {e.name: e.value for e in container.env}


def test_config_overrides_in_the_environment_reach_every_pod(ctr_spec_path: Path, monkeypatch) -> None:
    dag = build_dag(load_spec(ctr_spec_path), load_profile(ENV))
    # Set after the DAG was parsed: what counts is the worker's environment when the pod is built.
    monkeypatch.setenv("TFPIPE_TRAIN_EPOCHS", "5")
    monkeypatch.setenv("TFPIPE_GATE_MIN_VALUE", "0.7")
    monkeypatch.setenv("TFPIPE_FOO", "bar")  # no such stage
    monkeypatch.setenv("TFPIPE_TRAIN_NO_SUCH_KEY", "1")  # a stage, but not one of its keys
    monkeypatch.setenv("TFPIPE_PROFILE", "gcp")  # a deployment setting, not config
    for task_id in ("extract_transform", "train", "evaluate_gate", "batch_score"):
        op = dag.get_task(task_id)
        env = _base_env(op.build_pod_request_obj(dry_run=True))
        assert env["TFPIPE_TRAIN_EPOCHS"] == "5", task_id  # as written: the job parses it
        assert env["TFPIPE_GATE_MIN_VALUE"] == "0.7", task_id
        for name in ("TFPIPE_FOO", "TFPIPE_TRAIN_NO_SUCH_KEY", "TFPIPE_PROFILE"):
            assert name not in env, (task_id, name)
        assert env["HOME"] == "/tmp", task_id
        again = [e.name for e in op.build_pod_request_obj(dry_run=True).spec.containers[0].env]
        assert again.count("TFPIPE_TRAIN_EPOCHS") == 1, task_id  # building twice adds nothing twice


def test_the_pod_a_running_task_submits_carries_the_overrides(ctr_spec_path: Path, monkeypatch, tmp_path: Path) -> None:
    op = _rendered("train", ctr_spec_path)
    # A cluster config that is never contacted: the pod is caught where it would be created.
    kube_config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    (tmp_path / "kube.json").write_text(json.dumps(kube_config))
    monkeypatch.setenv(
        "AIRFLOW_CONN_KUBERNETES_DEFAULT",
        json.dumps({"conn_type": "kubernetes", "extra": {"kube_config_path": str(tmp_path / "kube.json")}}),
    )
    monkeypatch.setenv("TFPIPE_TRAIN_LEARNING_RATE", "0.002")
    submitted = []

    class Submitted(Exception):
        pass

    def get_or_create_pod(pod_request_obj, context):
        submitted.append(pod_request_obj)
        raise Submitted

    monkeypatch.setattr(op, "get_or_create_pod", get_or_create_pod)
    with pytest.raises(Submitted):
        ti = SimpleNamespace(dag_id="ctr_daily", task_id="train", map_index=-1, try_number=1)
        op.execute({"ds": "2026-11-21", "ti": ti, "run_id": "scheduled__2026-11-22", "dag": SimpleNamespace()})
    assert _base_env(submitted[0])["TFPIPE_TRAIN_LEARNING_RATE"] == "0.002"


def test_an_override_that_does_not_parse_stops_the_task_before_any_pod(ctr_spec_path: Path, monkeypatch) -> None:
    op = build_dag(load_spec(ctr_spec_path), load_profile(ENV)).get_task("train")
    monkeypatch.setenv("TFPIPE_TRAIN_EPOCHS", "[5")
    with pytest.raises(SpecError, match="TFPIPE_TRAIN_EPOCHS"):
        op.build_pod_request_obj(dry_run=True)
