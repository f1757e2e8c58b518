"""The gcp profile's pods, rendered without a cluster and validated against the Kubernetes schema."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
from kubernetes.client import ApiClient

from tfpipe_operators.dag_factory import build_dag
from tfpipe_operators.profiles import load_profile
from tfpipe_operators.spec import load_spec

ENV = {
    "TFPIPE_PROFILE": "gcp",
    "TFPIPE_GCP_PROJECT": "acme-ml",
    "TFPIPE_JOB_IMAGE": "europe-docker.pkg.dev/acme-ml/tfpipe/jobs-gpu:0.1.0",
    "TFPIPE_ARTIFACT_ROOT": "gs://acme-ml-tfpipe/artifacts",
    "TFPIPE_WAREHOUSE": "bigquery://acme-ml/analytics",
    "TFPIPE_GPU_POOL": "gpu",
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
    assert container["resources"]["requests"] == {"cpu": "4", "memory": "16Gi"}
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
