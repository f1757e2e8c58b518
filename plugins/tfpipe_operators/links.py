"""UI links for steps that run elsewhere: the Dataflow job, the pod's logs, TensorBoard, the drift picture.

Airflow 3 computes a link on the worker when the task ends (and stores it in XCom for the
UI); `persist` stores a first version while the task is still running. Links read the
step's own XComs: the job result (`return_value`: Dataflow job id, model folder) and the
pod operator's `pod_name` / `pod_namespace`. A link that has nothing to point at yet is
empty, which the UI shows as a disabled button.
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink, Context

CONSOLE = "https://console.cloud.google.com"
# The local TensorBoard (`make airflow` serves it; TFPIPE_TENSORBOARD_URL names another). The UI
# shows only http(s) links, so the local link is to this server rather than a file:// path.
TENSORBOARD_SERVER = "http://127.0.0.1:6006"


def dataflow_job_url(project: str, region: str, job_id: str) -> str:
    return f"{CONSOLE}/dataflow/jobs/{region}/{job_id}?project={project}"


def dataflow_jobs_url(project: str) -> str:
    """The project's Dataflow job list (until the step has reported its job id)."""
    return f"{CONSOLE}/dataflow/jobs?project={project}"


def pod_logs_url(project: str, namespace: str, pod_name: str) -> str:
    """Cloud Logging, filtered to the pod's container logs (GKE ships them there)."""
    query = (
        'resource.type="k8s_container"\n'
        f'resource.labels.project_id="{project}"\n'
        f'resource.labels.namespace_name="{namespace}"\n'
        f'resource.labels.pod_name="{pod_name}"'
    )
    return f"{CONSOLE}/logs/query;query={quote(query, safe='')}?project={project}"


def tensorboard_url(model_dir: str, project: str = "", server: str = "") -> str:
    """The model package's TensorBoard logs: the bucket browser in gcp, the local TensorBoard server locally.

    The local server reads the whole artifact root (`make airflow` starts it); its runs are
    named by their folder (`ctr/2026-11-21/model/logs/train`), so the link filters the runs
    to this model's (TensorBoard keeps the run filter in the `runFilter` query parameter).
    """
    logs = f"{model_dir.rstrip('/')}/logs"
    if logs.startswith("gs://"):
        return f"{CONSOLE}/storage/browser/{logs.removeprefix('gs://')}" + (f"?project={project}" if project else "")
    # <artifact root>/<pipeline>/<ds>/model: the run names start after the artifact root.
    run = "/".join(PurePosixPath(model_dir.rstrip("/")).parts[-3:])
    base = (server or TENSORBOARD_SERVER).rstrip("/")
    return f"{base}/?runFilter={quote(f'^{run}/', safe='')}#timeseries"


def storage_object_url(path: str, project: str = "") -> str:
    """A gs:// object in the Cloud Storage browser (its details page previews an image)."""
    return f"{CONSOLE}/storage/browser/_details/{path.removeprefix('gs://')}" + (
        f"?project={project}" if project else ""
    )


def _xcom(ti_key: Any, key: str) -> Any:
    # The configured XCom backend, resolved when a link is rendered rather than at DAG parse.
    from airflow.sdk.execution_time.xcom import XCom

    return XCom.get_value(ti_key=ti_key, key=key)


def _result(ti_key: Any) -> dict[str, Any]:
    value = _xcom(ti_key, "return_value")
    return value if isinstance(value, dict) else {}


class DataflowJobLink(BaseOperatorLink):  # type: ignore[misc]
    """The Dataflow job of an extract or score step (gcp)."""

    name = "Dataflow job"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        result = _result(ti_key)
        if result.get("dataflow_job_id"):
            return dataflow_job_url(
                result.get("dataflow_project") or operator.dataflow_project,
                result.get("dataflow_region") or operator.dataflow_region,
                str(result["dataflow_job_id"]),
            )
        return dataflow_jobs_url(operator.dataflow_project)

    @classmethod
    def persist(cls, context: Context, operator: Any) -> None:
        """While the job runs (its id is reported at the end): the project's job list."""
        context["ti"].xcom_push(key=cls().xcom_key, value=dataflow_jobs_url(operator.dataflow_project))


class PodLogsLink(BaseOperatorLink):  # type: ignore[misc]
    """The step pod's logs in Cloud Logging (they outlive the pod, which is deleted on success)."""

    name = "Pod logs"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        pod_name = _xcom(ti_key, "pod_name")
        if not pod_name:
            return ""
        namespace = _xcom(ti_key, "pod_namespace") or operator.namespace
        return pod_logs_url(operator.gcp_project, str(namespace), str(pod_name))


class TensorBoardLink(BaseOperatorLink):  # type: ignore[misc]
    """The trained model's TensorBoard logs (`<ds>/model/logs`)."""

    name = "TensorBoard"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        model = _result(ti_key).get("model")
        if not model:
            return ""
        # Rendered on the worker, whose environment is the deployment's.
        return tensorboard_url(
            str(model), getattr(operator, "gcp_project", ""), os.environ.get("TFPIPE_TENSORBOARD_URL", "")
        )


class DriftReportLink(BaseOperatorLink):  # type: ignore[misc]
    """The extract step's picture of each feature's drift (`<ds>/data/drift.png`, gcp: in the bucket)."""

    name = "Drift report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        picture = str(_result(ti_key).get("drift_report") or "")
        # A local file is not a link the UI shows (http(s) only): the picture is beside stats.json.
        return storage_object_url(picture, getattr(operator, "gcp_project", "")) if picture.startswith("gs://") else ""
