"""The `gcp` profile's steps: the job command in a KubernetesPodOperator on GKE.

`train` asks for GPUs (limit `nvidia.com/gpu`, accelerator node selector, GPU
toleration); the other steps run the same image on CPU (extract and score launch
Dataflow jobs from there). Pods stream logs to the task log, are deleted once succeeded
(kept on failure for inspection) and can defer while running.

Every pod is hardened (the Pod Security Standards' `restricted` profile, and more): uid/gid
1000, no capabilities, no privilege escalation, seccomp `RuntimeDefault` and a read-only
root filesystem. What the job writes locally goes to one size-limited `emptyDir` at
`/tmp`, which `HOME`, `TMPDIR` and the libraries' cache variables point at (see SCRATCH_ENV).

The deployment's `TFPIPE_<STAGE>_<KEY>` config overrides reach the pod as they reach a
local subprocess: read from the worker's environment when the task builds its pod, so a
change takes effect on the next run without a DAG re-parse.

Stopping a Dataflow step stops its Dataflow job twice over: the task's `on_kill` cancels
the job by its name (unique per DAG, task, day and try), and the job process cancels it on
the SIGTERM it gets when the pod is deleted (which is what happens to a deferred task: the
trigger deletes the pod).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import BaseOperatorLink, Context
from kubernetes.client import models as k8s

from tfpipe_operators.config import env_overrides
from tfpipe_operators.contract import EXIT_SKIP
from tfpipe_operators.links import DataflowJobLink, DriftReportLink, PodLogsLink, TensorBoardLink
from tfpipe_operators.profiles import Profile
from tfpipe_operators.spec import PipelineSpec
from tfpipe_operators.steps import Step

JOB_USER = 1000
# The one writable place in a pod (the root filesystem is read-only).
SCRATCH = "/tmp"
SCRATCH_VOLUME = "scratch"
# Local writes, traced while every step ran as uid 1000 on a read-only root: Keras
# (~/.keras), matplotlib (MPLCONFIGDIR, else a fresh temp dir and font-list rebuild per
# process), fontconfig (~/.cache, else "No writable cache directories"), tempfile users
# (train's parsed cache, autograph's generated files, DuckDB spills, Beam's staging);
# on a GPU node also CUDA's JIT cache (~/.nv), not traced here.
SCRATCH_ENV = {
    "HOME": SCRATCH,  # exists from the start; the image's /home/tfpipe is read-only here
    "TMPDIR": SCRATCH,
    "MPLCONFIGDIR": f"{SCRATCH}/.matplotlib",
    "XDG_CACHE_HOME": f"{SCRATCH}/.cache",
}


def container_security_context() -> dict[str, Any]:
    """For every container of the pod, the XCom sidecar included (a fresh dict each time)."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def forwarded_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The `TFPIPE_<STAGE>_<KEY>` variables that name a config key, as `env_overrides` decides.

    Values pass on as written: the job parses them with the same rule (a value that does
    not parse fails here, naming the variable, before any pod starts).
    """
    return {name: value for name, value in environ.items() if env_overrides({name: value})}


class TfpipePodOperator(KubernetesPodOperator):  # type: ignore[misc]
    """One job command in a pod, with a link to its logs in Cloud Logging."""

    operator_extra_links: tuple[BaseOperatorLink, ...] = (PodLogsLink(),)

    def __init__(self, *, gcp_project: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gcp_project = gcp_project

    def build_pod_request_obj(self, context: Context | None = None, *, dry_run: bool = False) -> k8s.V1Pod:
        """The pod, with the config overrides the worker's environment holds now.

        Called when the task runs (and by `dry_run`), not when the DAG is parsed. Added to
        the built pod, not to `env_vars`, so building twice does not add them twice.
        """
        pod = super().build_pod_request_obj(context, dry_run=dry_run)
        container = next(c for c in pod.spec.containers if c.name == self.base_container_name)
        container.env = list(container.env or [])
        present = {e.name for e in container.env}
        for name, value in sorted(forwarded_env(os.environ).items()):
            if name not in present:  # what the operator sets explicitly wins
                container.env.append(k8s.V1EnvVar(name=name, value=value))
        return pod


class TfpipeTrainPodOperator(TfpipePodOperator):
    """The `train` pod: also links the model's TensorBoard logs."""

    operator_extra_links = (PodLogsLink(), TensorBoardLink())


class DataflowPodOperator(TfpipePodOperator):
    """A pod that launches a Dataflow job: links the job and cancels it when the task is killed."""

    template_fields: Sequence[str] = (*KubernetesPodOperator.template_fields, "dataflow_job_name")
    operator_extra_links: tuple[BaseOperatorLink, ...] = (PodLogsLink(), DataflowJobLink())

    def __init__(
        self, *, dataflow_job_name: str, dataflow_region: str, gcp_conn_id: str = "google_cloud_default", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.dataflow_job_name = dataflow_job_name
        self.dataflow_region = dataflow_region
        self.gcp_conn_id = gcp_conn_id

    @property
    def dataflow_project(self) -> str:
        return str(self.gcp_project)

    def execute(self, context: Context) -> Any:
        DataflowJobLink.persist(context, self)
        return super().execute(context)

    def on_kill(self) -> None:
        super().on_kill()  # deletes the pod: its SIGTERM makes the job cancel too
        self.cancel_dataflow_job()

    def cancel_dataflow_job(self) -> None:
        """Cancel the running job(s) of this task's name; a no-op when none is running."""
        from airflow.providers.google.cloud.hooks.dataflow import DataflowHook

        # cancel_timeout=None: request the cancel and return; on_kill must not wait minutes.
        hook = DataflowHook(gcp_conn_id=self.gcp_conn_id, cancel_timeout=None)
        self.log.info(
            "Cancelling Dataflow job %s in %s/%s", self.dataflow_job_name, self.gcp_project, self.dataflow_region
        )
        hook.cancel_job(project_id=self.gcp_project, job_name=self.dataflow_job_name, location=self.dataflow_region)


class DataflowExtractPodOperator(DataflowPodOperator):
    """The extract pod: also links the picture of the day's drift."""

    operator_extra_links: tuple[BaseOperatorLink, ...] = (PodLogsLink(), DataflowJobLink(), DriftReportLink())


def dataflow_job_name(dag_id: str, task_id: str) -> str:
    """A Dataflow job name template unique per DAG, task, day and try (lower case, digits, '-').

    The try number is zero-padded and last, so no name is a prefix of another's (the
    Google provider cancels by name prefix).
    """
    base = "".join(c if c.isalnum() else "-" for c in f"tfpipe-{dag_id}-{task_id}".lower())
    return base + "-{{ ds_nodash }}-t{{ '%02d' % ti.try_number }}"


# The operators of a step, by the extra link it shows (Step.ui_link); pods always link their logs.
_BY_LINK: dict[str | None, type[TfpipePodOperator]] = {"tensorboard": TfpipeTrainPodOperator}
_DATAFLOW_BY_LINK: dict[str | None, type[DataflowPodOperator]] = {"drift_report": DataflowExtractPodOperator}


def step_task(
    spec: PipelineSpec, profile: Profile, step: Step, arguments: list[str], gpus: int, **kwargs: Any
) -> KubernetesPodOperator:
    """The step as a pod (the `gcp` profile's side of `Profile.operators`; `operators/job.py` is the local one)."""
    common = pod_kwargs(spec, profile, step, gpus, **kwargs)
    if step.dataflow:
        job_name = dataflow_job_name(spec.dag_id, step.task_id)
        return _DATAFLOW_BY_LINK.get(step.ui_link, DataflowPodOperator)(
            # One token each: a separate `--job_name=...` after `--beam-arg` reads as an option of its own.
            arguments=[*arguments, *(f"--beam-arg={opt}" for opt in profile.dataflow_args(job_name))],
            dataflow_job_name=job_name,
            dataflow_region=profile.gcp_region,
            gcp_conn_id=profile.gcp_conn_id,
            **common,
        )
    return _BY_LINK.get(step.ui_link, TfpipePodOperator)(arguments=arguments, **common)


def trials_task(spec: PipelineSpec, profile: Profile, step: Step, trials: Any, gpus: int, **kwargs: Any) -> Any:
    """One mapped pod per trial's argument list (the tune DAG's `train`)."""
    operator = _BY_LINK.get(step.ui_link, TfpipePodOperator)
    return operator.partial(**pod_kwargs(spec, profile, step, gpus, **kwargs)).expand(arguments=trials)


def pod_kwargs(spec: PipelineSpec, profile: Profile, step: Step, gpus: int, **kwargs: Any) -> dict[str, Any]:
    """Everything but the arguments, so a mapped step (tuning trials) can `.partial(...)` it."""
    memory, scratch = step.memory, step.scratch
    limits = {"memory": memory}
    # Requested so the scheduler picks a node with that much local disk for the emptyDir.
    requests = {"cpu": step.cpu, "memory": memory, "ephemeral-storage": scratch}
    node_selector: dict[str, str] = {}
    tolerations: list[k8s.V1Toleration] = []
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
        node_selector["cloud.google.com/gke-accelerator"] = profile.gpu_accelerator
        tolerations.append(k8s.V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"))
        if profile.gpu_pool:
            kwargs.setdefault("pool", profile.gpu_pool)
    return dict(
        gcp_project=profile.gcp_project,
        name=f"{spec.pipeline}-{step.task_id}".replace("_", "-"),
        namespace=profile.k8s_namespace,
        image=profile.job_image,
        cmds=["tfpipe-job"],
        labels={"app": "tfpipe", "pipeline": spec.pipeline, "step": step.task_id.replace("_", "-")},
        service_account_name=profile.k8s_service_account,
        container_resources=k8s.V1ResourceRequirements(requests=requests, limits=limits),
        env_vars=[k8s.V1EnvVar(name=name, value=value) for name, value in SCRATCH_ENV.items()],
        # Disk-backed, not memory: a memory emptyDir would count against the memory limit.
        volumes=[k8s.V1Volume(name=SCRATCH_VOLUME, empty_dir=k8s.V1EmptyDirVolumeSource(size_limit=scratch))],
        volume_mounts=[k8s.V1VolumeMount(name=SCRATCH_VOLUME, mount_path=SCRATCH)],
        node_selector=node_selector or None,
        tolerations=tolerations or None,
        security_context=k8s.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=JOB_USER,
            run_as_group=JOB_USER,
            fs_group=JOB_USER,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        container_security_context=container_security_context(),
        xcom_sidecar_container_security_context=container_security_context(),
        kubernetes_conn_id=profile.kubernetes_conn_id,
        get_logs=True,
        log_events_on_failure=True,
        on_finish_action="delete_succeeded_pod",
        skip_on_exit_code=EXIT_SKIP,
        do_xcom_push=True,
        deferrable=True,
        **kwargs,
    )
