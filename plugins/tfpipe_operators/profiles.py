"""Profiles: where a pipeline runs. `local` is the embedded default, `gcp` is production.

The DAG has the same task ids in both; the profile only chooses the operator behind a
task and the places it reads and writes. Settings come from `TFPIPE_*` environment
variables of the Airflow deployment (read when DAGs are parsed), with defaults here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ProfileError(ValueError):
    """A TFPIPE_* setting is missing or invalid for the selected profile."""


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["local", "gcp"] = "local"
    artifact_root: str = Field(default_factory=lambda: str(Path.home() / ".tfpipe" / "artifacts"))
    warehouse: str = Field(default_factory=lambda: "duckdb://" + str(Path.home() / ".tfpipe" / "warehouse.duckdb"))
    job_cli: str = "tfpipe-job"
    job_specs_dir: str = Field(default="", description="where the job sees the specs; empty = same path as Airflow")
    beam_runner: str = "DirectRunner"
    # gcp only
    gcp_project: str = ""
    gcp_region: str = "us-central1"
    job_image: str = ""
    k8s_namespace: str = "tfpipe"
    k8s_service_account: str = "tfpipe-jobs"
    kubernetes_conn_id: str = "kubernetes_default"
    gpu_accelerator: str = "nvidia-l4"
    gpu_pool: str = ""
    temp_location: str = ""

    @property
    def is_local(self) -> bool:
        return self.name == "local"


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
    "TFPIPE_TEMP_LOCATION": "temp_location",
}


def load_profile(environ: Mapping[str, str] | None = None) -> Profile:
    env = os.environ if environ is None else environ
    values = {field: env[var] for var, field in _ENV.items() if env.get(var)}
    try:
        profile = Profile.model_validate(values)
    except ValidationError as exc:
        names = {v: k for k, v in _ENV.items()}
        msgs = [f"{names.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']}" for e in exc.errors()]
        raise ProfileError("invalid tfpipe profile settings: " + "; ".join(msgs)) from None
    if profile.name == "gcp":
        missing = [
            var for var, field in _ENV.items() if field in ("gcp_project", "job_image") and not getattr(profile, field)
        ]
        if not profile.artifact_root.startswith("gs://"):
            missing.append("TFPIPE_ARTIFACT_ROOT (a gs:// prefix)")
        if not profile.warehouse.startswith("bigquery://"):
            missing.append("TFPIPE_WAREHOUSE (bigquery://project/dataset)")
        if missing:
            raise ProfileError("profile gcp needs: " + ", ".join(missing))
    return profile
