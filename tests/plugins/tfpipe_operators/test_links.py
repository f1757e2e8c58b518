"""UI links rendered for a task instance, from the XComs the supervisor would serve."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from airflow.models.taskinstancekey import TaskInstanceKey
from airflow.sdk.execution_time import task_runner
from airflow.sdk.execution_time.comms import GetXCom, XComResult
from airflow.sdk.serde import serialize

from tfpipe_operators.dag_factory import build_dag
from tfpipe_operators.profiles import Profile, load_profile
from tfpipe_operators.spec import load_spec

RUN_ID = "scheduled__2026-11-22T00:00:00+00:00"


class Supervisor:
    """Answers the task runtime's GetXCom requests from a dict, as the supervisor process would."""

    def __init__(self, xcoms: dict[tuple[str, str], Any]) -> None:
        self.xcoms = xcoms
        self.asked: list[GetXCom] = []

    def send(self, msg: Any) -> XComResult:
        assert isinstance(msg, GetXCom)
        self.asked.append(msg)
        value = self.xcoms.get((msg.task_id, msg.key))
        return XComResult(key=msg.key, value=None if value is None else serialize(value))


@pytest.fixture
def supervisor(monkeypatch: pytest.MonkeyPatch) -> Supervisor:
    sup = Supervisor({})
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", sup, raising=False)
    return sup


def _links(dag: Any, task_id: str) -> dict[str, str]:
    task = dag.get_task(task_id)
    key = TaskInstanceKey(dag_id=dag.dag_id, task_id=task_id, run_id=RUN_ID, try_number=1, map_index=-1)
    return {link.name: link.get_link(task, ti_key=key) for link in task.operator_extra_links}


def test_gcp_extract_links_the_dataflow_job_and_the_pod_logs(
    ctr_spec_path: Path, supervisor: Supervisor, gcp_env: dict[str, str]
) -> None:
    dag = build_dag(load_spec(ctr_spec_path), load_profile(gcp_env))
    supervisor.xcoms = {
        ("extract_transform", "return_value"): {
            "rows": 2000,
            "dataflow_job_id": "2026-11-22_01_02_03-42",
            "dataflow_project": "acme-ml",
            "dataflow_region": "europe-west4",
        },
        ("extract_transform", "pod_name"): "ctr-extract-transform-x7k2",
        ("extract_transform", "pod_namespace"): "tfpipe",
    }
    links = _links(dag, "extract_transform")
    assert links["Dataflow job"] == (
        "https://console.cloud.google.com/dataflow/jobs/europe-west4/2026-11-22_01_02_03-42?project=acme-ml"
    )
    logs = unquote(links["Pod logs"])
    assert logs.startswith("https://console.cloud.google.com/logs/query;query=")
    assert 'resource.labels.pod_name="ctr-extract-transform-x7k2"' in logs
    assert 'resource.labels.namespace_name="tfpipe"' in logs and logs.endswith("?project=acme-ml")
    assert {(m.dag_id, m.task_id, m.run_id) for m in supervisor.asked} == {("ctr_daily", "extract_transform", RUN_ID)}


def test_links_before_the_step_reported_anything(
    ctr_spec_path: Path, supervisor: Supervisor, gcp_env: dict[str, str]
) -> None:
    dag = build_dag(load_spec(ctr_spec_path), load_profile(gcp_env))
    links = _links(dag, "batch_score")
    assert links == {"Pod logs": "", "Dataflow job": "https://console.cloud.google.com/dataflow/jobs?project=acme-ml"}
    assert _links(dag, "train") == {"Pod logs": "", "TensorBoard": ""}
    assert "Dataflow job" not in _links(dag, "export_serving_model")


def test_train_links_tensorboard_in_the_bucket_and_locally(
    ctr_spec_path: Path, supervisor: Supervisor, gcp_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    gcp = build_dag(load_spec(ctr_spec_path), load_profile(gcp_env))
    supervisor.xcoms = {("train", "return_value"): {"model": "gs://acme-ml-tfpipe/artifacts/ctr/2026-11-21/model"}}
    assert _links(gcp, "train")["TensorBoard"] == (
        "https://console.cloud.google.com/storage/browser/acme-ml-tfpipe/artifacts/ctr/2026-11-21/model/logs"
        "?project=acme-ml"
    )
    local = build_dag(load_spec(ctr_spec_path), Profile(artifact_root="/srv/tfpipe artifacts"))
    supervisor.xcoms = {("train", "return_value"): {"model": "/srv/tfpipe artifacts/ctr/2026-11-21/model"}}
    # The UI drops links that are not http(s): locally the link is the TensorBoard server that
    # `make airflow` starts, filtered to this model's runs (`ctr/2026-11-21/model/logs/...`).
    monkeypatch.delenv("TFPIPE_TENSORBOARD_URL", raising=False)
    link = _links(local, "train")["TensorBoard"]
    assert link == "http://127.0.0.1:6006/?runFilter=%5Ectr%2F2026-11-21%2Fmodel%2F#timeseries"
    assert unquote(urlsplit(link).query) == "runFilter=^ctr/2026-11-21/model/"
    monkeypatch.setenv("TFPIPE_TENSORBOARD_URL", "http://127.0.0.1:7007/")
    assert _links(local, "train")["TensorBoard"].startswith("http://127.0.0.1:7007/?runFilter=")
    assert list(local.get_task("extract_transform").operator_extra_links) == []


def test_gcp_extract_links_the_drift_picture_in_the_bucket(
    ctr_spec_path: Path, supervisor: Supervisor, gcp_env: dict[str, str]
) -> None:
    dag = build_dag(load_spec(ctr_spec_path), load_profile(gcp_env))
    assert _links(dag, "extract_transform")["Drift report"] == ""  # before the step reported its picture
    picture = "gs://acme-ml-tfpipe/artifacts/ctr/2026-11-21/data.v-abc/drift.png"
    supervisor.xcoms = {("extract_transform", "return_value"): {"rows": 2000, "drift_report": picture}}
    assert _links(dag, "extract_transform")["Drift report"] == (
        "https://console.cloud.google.com/storage/browser/_details/acme-ml-tfpipe/artifacts/ctr/2026-11-21/"
        "data.v-abc/drift.png?project=acme-ml"
    )
    assert "Drift report" not in _links(dag, "batch_score")


def test_provider_registers_the_links() -> None:
    import importlib

    from tfpipe_operators.provider_info import get_provider_info

    for path in get_provider_info()["extra-links"]:
        module, _, name = path.rpartition(".")
        assert getattr(importlib.import_module(module), name)().name
