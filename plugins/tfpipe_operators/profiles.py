"""Profiles: where a pipeline runs. `local` is the embedded default, `gcp` is production.

The DAG has the same task ids in both; the profile only chooses the operator behind a
task and the places it reads and writes. Settings come from `TFPIPE_*` environment
variables of the Airflow deployment (read when DAGs are parsed), with defaults here.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator

    from tfpipe_operators.spec import PipelineSpec
    from tfpipe_operators.steps import Step

# Each profile's operators, side by side under the same names (`step_task`, `trials_task`).
_OPERATORS = {"local": "tfpipe_operators.operators.job", "gcp": "tfpipe_operators.operators.pod"}


class StepOperators(Protocol):
    """What a profile's operators module offers the DAG builders."""

    def step_task(
        self, spec: PipelineSpec, profile: Profile, step: Step, arguments: list[str], gpus: int, **kwargs: Any
    ) -> BaseOperator: ...

    def trials_task(
        self, spec: PipelineSpec, profile: Profile, step: Step, trials: Any, gpus: int, **kwargs: Any
    ) -> Any: ...


class ProfileError(ValueError):
    """A TFPIPE_* setting is missing or invalid for the selected profile."""


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["local", "gcp"] = "local"
    artifact_root: str = Field(default_factory=lambda: str(Path.home() / ".tfpipe" / "artifacts"))
    warehouse: str = Field(default_factory=lambda: "duckdb://" + str(Path.home() / ".tfpipe" / "warehouse.duckdb"))
    job_cli: str = "tfpipe-job"
    job_specs_dir: str = Field(default="", description="where the job sees the specs; empty = same path as Airflow")
    beam_runner: str = Field(default="", description="empty = the profile's: DirectRunner, DataflowRunner in gcp")
    # gcp only
    gcp_project: str = ""
    gcp_region: str = "us-central1"
    job_image: str = ""
    k8s_namespace: str = "tfpipe"
    k8s_service_account: str = "tfpipe-jobs"
    kubernetes_conn_id: str = "kubernetes_default"
    gpu_accelerator: str = "nvidia-l4"
    gpu_pool: str = ""
    gcp_conn_id: str = "google_cloud_default"
    # Dataflow (extract and score in gcp). The SDK container is its own image: Dataflow starts
    # it through Beam's boot binary, which the job image (entrypoint tfpipe-job) does not run.
    dataflow_image: str = ""
    dataflow_machine_type: str = "n2-standard-4"
    dataflow_max_workers: int = Field(default=10, ge=1, le=1000)
    dataflow_service_account: str = Field(default="", pattern=r"^$|^[^@\s]+@[^@\s]+$")
    temp_location: str = ""
    staging_location: str = ""

    @model_validator(mode="after")
    def _profile_runner(self) -> Profile:
        # extract and score run on Dataflow in gcp: their pods only launch the job.
        if not self.beam_runner:
            object.__setattr__(self, "beam_runner", "DirectRunner" if self.name == "local" else "DataflowRunner")
        return self

    @property
    def operators(self) -> StepOperators:
        """The module whose operators run this profile's job tasks: local subprocesses, or pods
        (imported when a DAG is built: the pod module loads the Kubernetes provider)."""
        return cast(StepOperators, importlib.import_module(_OPERATORS[self.name]))

    @property
    def source_poke_interval(self) -> int:
        """Seconds between the source sensor's checks: a local file answers at once, while each
        BigQuery check is a billed query."""
        return 30 if self.name == "local" else 300

    @property
    def dataflow_temp_location(self) -> str:
        return self.temp_location or f"{self.artifact_root.rstrip('/')}/_dataflow/tmp"

    @property
    def dataflow_staging_location(self) -> str:
        return self.staging_location or f"{self.artifact_root.rstrip('/')}/_dataflow/staging"

    def job_spec_path(self, spec_path: Path) -> str:
        """Where the job command sees a spec Airflow read at `spec_path`: the same file locally, the
        `<pipeline>/pipeline.yaml` under `job_specs_dir` when the jobs run elsewhere (a pod's image)."""
        if self.job_specs_dir:
            return f"{self.job_specs_dir.rstrip('/')}/{spec_path.parent.name}/{spec_path.name}"
        return str(spec_path.resolve())

    def dataflow_args(self, job_name: str) -> list[str]:
        """The DataflowRunner options of one step (the job passes them to Beam as `--beam-arg`s).

        `job_name` is unique per DAG, task, day and try, so the task can cancel its job by
        name even before the job has reported its id.
        """
        account = self.dataflow_service_account or (
            f"{self.k8s_service_account}@{self.gcp_project}.iam.gserviceaccount.com"
        )
        return [
            f"--project={self.gcp_project}",
            f"--region={self.gcp_region}",
            f"--job_name={job_name}",
            f"--sdk_container_image={self.dataflow_image}",
            f"--machine_type={self.dataflow_machine_type}",
            f"--max_num_workers={self.dataflow_max_workers}",
            f"--service_account_email={account}",
            f"--temp_location={self.dataflow_temp_location}",
            f"--staging_location={self.dataflow_staging_location}",
            "--labels=app=tfpipe",
        ]


_ENV = {
    "TFPIPE_PROFILE": "name",
    "TFPIPE_ARTIFACT_ROOT": "artifact_root",
    "TFPIPE_WAREHOUSE": "warehouse",
    "TFPIPE_JOB_CLI": "job_cli",
    "TFPIPE_JOB_SPECS_DIR": "job_specs_dir",
    "TFPIPE_BEAM_RUNNER": "beam_runner",
    "TFPIPE_GCP_PROJECT": "gcp_project",
    "TFPIPE_GCP_REGION": "gcp_region",
    "TFPIPE_JOB_IMAGE": "job_image",
    "TFPIPE_K8S_NAMESPACE": "k8s_namespace",
    "TFPIPE_K8S_SERVICE_ACCOUNT": "k8s_service_account",
    "TFPIPE_KUBERNETES_CONN_ID": "kubernetes_conn_id",
    "TFPIPE_GPU_ACCELERATOR": "gpu_accelerator",
    "TFPIPE_GPU_POOL": "gpu_pool",
    "TFPIPE_GCP_CONN_ID": "gcp_conn_id",
    "TFPIPE_DATAFLOW_IMAGE": "dataflow_image",
    "TFPIPE_DATAFLOW_MACHINE_TYPE": "dataflow_machine_type",
    "TFPIPE_DATAFLOW_MAX_WORKERS": "dataflow_max_workers",
    "TFPIPE_DATAFLOW_SERVICE_ACCOUNT": "dataflow_service_account",
    "TFPIPE_TEMP_LOCATION": "temp_location",
    "TFPIPE_STAGING_LOCATION": "staging_location",
}


def load_profile(environ: Mapping[str, str] | None = None) -> Profile:
    env = os.environ if environ is None else environ
    values = {field: env[var] for var, field in _ENV.items() if env.get(var)}
    try:
        profile = Profile.model_validate(values)
    except ValidationError as exc:
        names = {v: k for k, v in _ENV.items()}
        # Each setting is one variable's text: name it and show what it held.
        msgs = [f"{names.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']} (got {e['input']!r})" for e in exc.errors()]
        raise ProfileError("invalid tfpipe profile settings: " + "; ".join(msgs)) from None
    if profile.name == "gcp":
        missing = [
            var
            for var, field in _ENV.items()
            if field in ("gcp_project", "job_image", "dataflow_image") and not getattr(profile, field)
        ]
        if not profile.artifact_root.startswith("gs://"):
            missing.append("TFPIPE_ARTIFACT_ROOT (a gs:// prefix)")
        if not profile.warehouse.startswith("bigquery://"):
            missing.append("TFPIPE_WAREHOUSE (bigquery://project/dataset)")
        for var, location in (
            ("TFPIPE_TEMP_LOCATION", profile.temp_location),
            ("TFPIPE_STAGING_LOCATION", profile.staging_location),
        ):
            if location and not location.startswith("gs://"):
                missing.append(f"{var} (a gs:// prefix, got {location!r})")
        if missing:
            raise ProfileError("profile gcp needs: " + ", ".join(missing))
    return profile
