"""The `gcp` profile's steps: the job command in a KubernetesPodOperator on GKE.

`train` asks for GPUs (limit `nvidia.com/gpu`, accelerator node selector, GPU
toleration); the other steps run the same image on CPU (extract and score launch
Dataflow jobs from there). Pods run as non-root, stream logs to the task log, are
deleted once succeeded (kept on failure for inspection) and can defer while running.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kubernetes.client import models as k8s

from tfpipe_operators.profiles import Profile
from tfpipe_operators.spec import PipelineSpec

EXIT_SKIP = 99
JOB_USER = 1000
RESOURCES = {
    # step: (cpu request, memory request)
    "train": ("4", "16Gi"),
    "extract_transform": ("1", "4Gi"),
    "batch_score": ("1", "4Gi"),
}


def job_pod(
    spec: PipelineSpec, profile: Profile, step: str, arguments: list[str], gpus: int, **kwargs: Any
) -> KubernetesPodOperator:
    return KubernetesPodOperator(arguments=arguments, **pod_kwargs(spec, profile, step, gpus, **kwargs))


def pod_kwargs(spec: PipelineSpec, profile: Profile, step: str, gpus: int, **kwargs: Any) -> dict[str, Any]:
    """Everything but the arguments, so a mapped step (tuning trials) can `.partial(...)` it."""
    cpu, memory = RESOURCES.get(step, ("1", "4Gi"))
    limits = {"memory": memory}
    node_selector: dict[str, str] = {}
    tolerations: list[k8s.V1Toleration] = []
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
        node_selector["cloud.google.com/gke-accelerator"] = profile.gpu_accelerator
        tolerations.append(k8s.V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"))
        if profile.gpu_pool:
            kwargs.setdefault("pool", profile.gpu_pool)
    return dict(
        name=f"{spec.pipeline}-{step}".replace("_", "-"),
        namespace=profile.k8s_namespace,
        image=profile.job_image,
        cmds=["tfpipe-job"],
        labels={"app": "tfpipe", "pipeline": spec.pipeline, "step": step.replace("_", "-")},
        service_account_name=profile.k8s_service_account,
        container_resources=k8s.V1ResourceRequirements(requests={"cpu": cpu, "memory": memory}, limits=limits),
        node_selector=node_selector or None,
        tolerations=tolerations or None,
        security_context=k8s.V1PodSecurityContext(
            run_as_non_root=True, run_as_user=JOB_USER, run_as_group=JOB_USER, fs_group=JOB_USER
        ),
        container_security_context={"allowPrivilegeEscalation": False, "runAsNonRoot": True},
        kubernetes_conn_id=profile.kubernetes_conn_id,
        get_logs=True,
        log_events_on_failure=True,
        on_finish_action="delete_succeeded_pod",
        skip_on_exit_code=EXIT_SKIP,
        do_xcom_push=True,
        deferrable=True,
        **kwargs,
    )
