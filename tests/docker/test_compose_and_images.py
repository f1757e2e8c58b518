"""docker-compose.yaml and the Dockerfiles agree with the repository and its pins.

No Docker engine is needed: the compose file is read as YAML (anchors and merge keys
resolved) and the Dockerfiles with a small parser of their instructions. These are the
things a user would otherwise find out from a failed build or a broken container: a path
that does not exist, an image whose Airflow or TensorFlow stack differs from the pinned
environments, a service with other settings than its siblings, a job image running as root.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"
AIRFLOW_DOCKERFILE = "docker/Dockerfile.airflow"
JOBS_CPU_DOCKERFILE = "docker/Dockerfile.jobs-cpu"
JOBS_GPU_DOCKERFILE = "docker/Dockerfile.jobs-gpu"
POSTGRES_DOCKERFILE = "docker/Dockerfile.postgres"
PUBLIC_BASE = "python:3.11-slim-bookworm"  # what a user without the local base pulls
PYTHON = "3.11"
JOB_USER = "1000"  # tfpipe_operators.operators.pod.JOB_USER: the pods' runAsUser
JOB_SPECS_DIR = "/opt/tfpipe/pipelines"  # the gcp profile's TFPIPE_JOB_SPECS_DIR
# What tensorflow 2.21 is built and tested with: the wheel's build_info (cuda_version
# 12.5.1) and tensorflow.org/install/source, row tensorflow-2.21.0 (cuDNN 9.3, CUDA 12.5).
TENSORFLOW_MINOR = "2.21"
TF_CUDA = "12.5.1"
TF_CUDNN_MINOR = "9.3"
AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}


# --- a small Dockerfile reader --------------------------------------------------------------


@dataclass
class Stage:
    base: str  # resolved FROM image (or the name of an earlier stage)
    name: str | None
    args: dict[str, str]
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [self.resolve(args) for kw, args in self.instructions if kw == keyword]

    def resolve(self, text: str) -> str:
        def value(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            return self.args.get(name, match.group(0))

        return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, text)


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def lineage(self, stage: Stage) -> list[Stage]:
        """The stage and the earlier stages it builds on, nearest first."""
        chain = [stage]
        names = {s.name for s in self.stages if s.name}
        while chain[-1].base in names:
            chain.append(self.stage(chain[-1].base))
        return chain

    def effective(self, stage: Stage, keyword: str) -> str | None:
        """The last USER / ENTRYPOINT / ... in force for a stage, inherited from its parents."""
        for ancestor in self.lineage(stage):
            values = ancestor.all(keyword)
            if values:
                return values[-1]
        return None

    def env(self, stage: Stage) -> dict[str, str]:
        out: dict[str, str] = {}
        for ancestor in reversed(self.lineage(stage)):
            for args in ancestor.all("ENV"):
                for item in shlex.split(args):
                    key, _, val = item.partition("=")
                    out[key] = val
        return out

    def runs(self) -> list[str]:
        return [run for stage in self.stages for run in stage.all("RUN")]

    def text(self) -> str:
        return self.path.read_text()


def _arg(text: str) -> tuple[str, str | None]:
    name, sep, default = text.strip().partition("=")
    return name, default.strip("\"'") if sep else None


@cache
def dockerfile(relative: str) -> Dockerfile:
    """Instructions with continuations joined and comments dropped, as Docker reads them."""
    path = REPO / relative
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{relative}: ends inside a line continuation"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stages:
            name, default = _arg(args)
            global_args[name] = default or ""
        elif keyword == "FROM":
            words = args.split()
            words = [w for w in words if not w.startswith("--platform")]
            stage_name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m.group(1) or m.group(2)], words[0])
            stages.append(Stage(base=base, name=stage_name, args={}))
        elif keyword == "ARG":
            name, default = _arg(args)
            stages[-1].args[name] = default if default is not None else global_args.get(name, "")
        else:
            stages[-1].instructions.append((keyword, args))
    return Dockerfile(path, global_args, stages)


def pins(constraints: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (REPO / "constraints" / constraints).read_text().splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and not name.startswith("#"):
            out[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return out


def installs(stage_or_file: Dockerfile | Stage, constraints: str, extra: str) -> list[str]:
    """RUN lines that pip-install the project's extra constrained by constraints/<file>."""
    runs = stage_or_file.runs() if isinstance(stage_or_file, Dockerfile) else stage_or_file.all("RUN")
    pattern = re.compile(rf"pip install .*-c \S*constraints/{re.escape(constraints)} .*[\"']?\.\[{extra}\][\"']?")
    return [run for run in runs if pattern.search(run)]


# --- docker-compose.yaml --------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _airflow_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose["services"].items()
        if isinstance(svc.get("build"), dict) and svc["build"].get("dockerfile") == AIRFLOW_DOCKERFILE
    }


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def _settings(env: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in env.items() if k.startswith(("TFPIPE_", "AIRFLOW__"))}


def test_compose_has_the_airflow_3_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "airflow-init", "jobs", *AIRFLOW_SERVICES} <= set(services)
    assert set(_airflow_services(compose)) >= AIRFLOW_SERVICES | {"airflow-init"}
    commands = {name: services[name]["command"] for name in AIRFLOW_SERVICES}
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
    }
    for name in AIRFLOW_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["airflow-init"]["condition"] == "service_completed_successfully", name
        assert "healthcheck" in services[name], name


def test_every_path_the_compose_file_names_exists(compose: dict[str, Any]) -> None:
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        build = service.get("build")
        if isinstance(build, dict):
            context = REPO / build.get("context", ".")
            assert context.is_dir(), f"{name}: build context {context} missing"
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), f"{name}: {build} missing"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name}: bind mount {source} is not in the repository"
            else:
                assert source in declared_volumes, f"{name}: volume {source} is not declared"


def test_airflow_services_share_the_common_settings(compose: dict[str, Any]) -> None:
    common = compose["x-airflow-common"]
    expected = _settings(common["environment"])
    assert expected, "the x-airflow-common anchor has no TFPIPE_/AIRFLOW__ settings"
    for name, service in _airflow_services(compose).items():
        assert _settings(service["environment"]) == expected, name
        assert service["image"] == common["image"], name
        assert service["volumes"] == common["volumes"], name


def test_airflow_settings_are_the_local_profile_on_airflow_3(compose: dict[str, Any]) -> None:
    env = compose["x-airflow-common"]["environment"]
    assert env["TFPIPE_PROFILE"] == "local"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres/airflow")
    # Task processes reach the API server by its service name and container port.
    url = urlparse(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    apiserver = compose["services"][url.hostname]
    assert apiserver["command"] == "api-server"
    assert any(port.endswith(f":{url.port}") for port in apiserver["ports"])
    assert url.path == "/execution/"
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"]  # one secret for every component


def test_warehouse_and_artifacts_live_on_one_volume_the_jobs_share(compose: dict[str, Any]) -> None:
    env = compose["x-airflow-common"]["environment"]
    warehouse = env["TFPIPE_WAREHOUSE"]
    assert warehouse.startswith("duckdb:///")
    artifacts = env["TFPIPE_ARTIFACT_ROOT"]
    mounts = {
        target: source
        for source, target in (v.split(":")[:2] for v in compose["x-airflow-common"]["volumes"])
        if not source.startswith((".", "/"))
    }
    shared = [t for t in mounts if warehouse.removeprefix("duckdb://").startswith(t + "/")]
    assert shared and artifacts.startswith(shared[0] + "/"), (warehouse, artifacts, mounts)
    volume = mounts[shared[0]]

    jobs = compose["services"]["jobs"]
    assert jobs["build"]["dockerfile"] == JOBS_CPU_DOCKERFILE
    assert f"{volume}:{shared[0]}" in jobs["volumes"]
    assert jobs["environment"]["TFPIPE_WAREHOUSE"] == warehouse
    assert jobs["environment"]["TFPIPE_ARTIFACT_ROOT"] == artifacts
    # Both sides write the shared volume as the same user.
    assert jobs["user"] == compose["x-airflow-common"]["user"]


def test_dags_and_plugins_are_mounted_where_airflow_and_python_look(compose: dict[str, Any]) -> None:
    common = compose["x-airflow-common"]
    mounts = dict(_bind_mounts(common))
    assert mounts["./dags"] == "/opt/airflow/dags"  # the image's default dags folder
    assert mounts["./plugins"] in common["environment"]["PYTHONPATH"].split(":")
    jobs_mounts = dict(_bind_mounts(compose["services"]["jobs"]))
    assert jobs_mounts["./dags/pipelines"] == JOB_SPECS_DIR


def test_the_worker_runs_the_job_command_of_the_images_jobs_environment(compose: dict[str, Any]) -> None:
    job_cli = compose["x-airflow-common"]["environment"]["TFPIPE_JOB_CLI"]
    image = dockerfile(AIRFLOW_DOCKERFILE)
    assert image.env(image.final)["TFPIPE_JOB_CLI"] == job_cli
    venvs = [m.group(1) for run in image.runs() for m in re.finditer(r"-m venv (\S+)", run)]
    assert venvs and job_cli == f"{venvs[0]}/bin/tfpipe-job"
    assert any(f"COPY --from=jobs-deps {venvs[0]} {venvs[0]}" in f"COPY {c}" for c in image.final.all("COPY"))


# --- Dockerfiles ------------------------------------------------------------------------------


def _stage_text(relative: str, name: str) -> list[tuple[str, str]]:
    return dockerfile(relative).stage(name).instructions


@pytest.mark.parametrize(
    "relative", [AIRFLOW_DOCKERFILE, JOBS_CPU_DOCKERFILE, JOBS_GPU_DOCKERFILE, POSTGRES_DOCKERFILE]
)
def test_every_image_takes_its_base_as_an_argument_defaulting_to_a_public_image(relative: str) -> None:
    image = dockerfile(relative)
    base = image.global_args["BASE_IMAGE"]
    assert base == (PUBLIC_BASE if relative != POSTGRES_DOCKERFILE else "debian:bookworm-slim")
    raw = [line.split()[1] for line in image.text().splitlines() if line.startswith("FROM ")]
    own = [b for b in raw if not b.startswith("apache/beam")]  # Dataflow's boot binary source
    assert own and all(b in ("${BASE_IMAGE}", *[s.name for s in image.stages]) for b in own), raw


def test_airflow_image_matches_the_airflow_constraints() -> None:
    image = dockerfile(AIRFLOW_DOCKERFILE)
    assert pins("airflow.txt")["apache-airflow"].startswith("3.3.")
    assert image.final.name == "airflow" and image.final.base == PUBLIC_BASE
    assert len(installs(image.stage("airflow-build"), "airflow.txt", "airflow")) == 1
    assert len(installs(image.stage("jobs-build"), "jobs.txt", "jobs")) == 1
    # The metadata database's drivers, pinned by the same constraints as the environment.
    deps = [r for r in image.stage("airflow-deps").all("RUN") if "-r requirements.txt" in r]
    assert len(deps) == 1 and "psycopg2-binary asyncpg" in deps[0]
    assert {"psycopg2-binary", "asyncpg"} <= set(pins("airflow.txt"))


def test_the_airflow_images_jobs_environment_is_built_as_the_job_images() -> None:
    """Instruction for instruction, so BuildKit builds the TensorFlow environment once for all."""
    cpu_deps = _stage_text(JOBS_CPU_DOCKERFILE, "deps")
    assert _stage_text(AIRFLOW_DOCKERFILE, "jobs-deps") == cpu_deps
    assert _stage_text(AIRFLOW_DOCKERFILE, "jobs-build") == _stage_text(JOBS_CPU_DOCKERFILE, "build")
    assert _stage_text(JOBS_GPU_DOCKERFILE, "deps") == cpu_deps


@pytest.mark.parametrize("relative", [AIRFLOW_DOCKERFILE, JOBS_CPU_DOCKERFILE, JOBS_GPU_DOCKERFILE])
def test_a_code_change_reinstalls_no_dependency(relative: str) -> None:
    """Dependencies install in stages that never see the sources; final stages copy those
    environments whole and add only tfpipe's wheel, so a code change rebuilds a small layer."""
    image = dockerfile(relative)
    for stage in image.stages:
        instructions = stage.instructions
        sources = [args for kw, args in instructions if kw == "COPY" and "plugins/" in args]
        deps = [args for kw, args in instructions if kw == "RUN" and "-r requirements.txt" in args]
        assert not (sources and deps), f"{relative} {stage.name}: dependencies and sources in one stage"
        if sources:  # a build stage: built on a dependency stage, and it makes the wheel
            parents = image.lineage(stage)[1:]
            assert any("-r requirements.txt" in r for parent in parents for r in parent.all("RUN")), stage.name
            assert any("pip wheel --no-deps --wheel-dir /wheels ." in r for r in stage.all("RUN")), stage.name
    final = image.final
    for copy in (c for stage in image.lineage(final) for c in stage.all("COPY") if c.startswith("--from=")):
        source = copy.split()[0].removeprefix("--from=")
        if source in {s.name for s in image.stages}:
            assert not any(kw == "COPY" and "plugins/" in a for kw, a in image.stage(source).instructions), copy
    wheel_installs = [
        r for stage in image.lineage(final) for r in stage.all("RUN") if "--no-deps --no-index" in r and ".whl" in r
    ]
    assert wheel_installs and all("--no-cache-dir" in r for r in wheel_installs)


@pytest.mark.parametrize("relative", [JOBS_CPU_DOCKERFILE, JOBS_GPU_DOCKERFILE])
def test_job_images_install_the_jobs_extra_with_its_constraints(relative: str) -> None:
    image = dockerfile(relative)
    assert len(installs(image, "jobs.txt", "jobs")) == 1
    assert image.global_args["PYTHON_VERSION"] == PYTHON
    assert image.global_args["BEAM_VERSION"] == pins("jobs.txt")["apache-beam"]
    copies = [c.split() for stage in image.lineage(image.final) for c in stage.all("COPY")]
    assert ["dags/pipelines/", f"{JOB_SPECS_DIR}/"] in copies


@pytest.mark.parametrize("relative", [JOBS_CPU_DOCKERFILE, JOBS_GPU_DOCKERFILE])
def test_job_images_run_tfpipe_job_as_uid_1000(relative: str) -> None:
    image = dockerfile(relative)
    user = image.effective(image.final, "USER")
    assert user is not None and user.split(":")[0] == JOB_USER  # numeric: runAsNonRoot can check it
    assert any(f"--uid {JOB_USER}" in run for run in image.runs())
    entrypoint = image.effective(image.final, "ENTRYPOINT")
    assert entrypoint is not None and json.loads(entrypoint) == ["tfpipe-job"]
    assert "/opt/tfpipe-venv/bin" in image.env(image.final)["PATH"].split(":")


@pytest.mark.parametrize(
    "relative", [AIRFLOW_DOCKERFILE, JOBS_CPU_DOCKERFILE, JOBS_GPU_DOCKERFILE, POSTGRES_DOCKERFILE]
)
def test_final_stages_are_labelled_non_root_and_copy_no_build_stage_but_its_venv(relative: str) -> None:
    image = dockerfile(relative)
    final = image.final
    labels = " ".join(s for stage in image.lineage(final) for s in stage.all("LABEL"))
    assert "org.opencontainers.image.title=" in labels
    user = image.effective(final, "USER")
    assert user is not None and user.split(":")[0] not in ("0", "root")
    assert user.split(":")[0].isdigit()
    assert image.effective(final, "HEALTHCHECK") is not None  # a probe, or NONE with the reason beside it
    for stage in image.lineage(final):
        for copy in stage.all("COPY"):
            if copy.startswith("--from="):
                assert copy.split()[1].startswith("/opt/"), copy  # a virtualenv or the Beam SDK, no caches


def test_cpu_job_image_is_python_311_slim_and_its_beam_sdk_matches() -> None:
    image = dockerfile(JOBS_CPU_DOCKERFILE)
    assert image.stage("deps").base == image.stage("runtime").base == PUBLIC_BASE
    beam = pins("jobs.txt")["apache-beam"]
    assert image.stage("beam-sdk").base == f"apache/beam_python{PYTHON}_sdk:{beam}"
    assert json.loads(image.effective(image.stage("dataflow"), "ENTRYPOINT") or "[]") == ["/opt/apache/beam/boot"]
    assert image.final.name == "jobs"


def test_gpu_job_image_pins_the_cuda_wheels_tensorflow_221_is_built_with() -> None:
    assert pins("jobs.txt")["tensorflow"].startswith(TENSORFLOW_MINOR + "."), (
        "tensorflow moved: look up its tested CUDA/cuDNN and update docker/constraints-gpu.txt and this test"
    )
    gpu = pins("../docker/constraints-gpu.txt")
    assert gpu["nvidia-cuda-runtime-cu12"].startswith(TF_CUDA.rpartition(".")[0] + ".")
    assert gpu["nvidia-cudnn-cu12"].startswith(TF_CUDNN_MINOR + ".")
    assert all(name.startswith("nvidia-") and name.endswith("-cu12") for name in gpu)
    image = dockerfile(JOBS_GPU_DOCKERFILE)
    runs = image.stage("cuda").all("RUN")
    assert any('"tensorflow[and-cuda]"' in r and "-c constraints/jobs.txt -c constraints/gpu.txt" in r for r in runs)
    assert ["docker/constraints-gpu.txt", "constraints/gpu.txt"] in [c.split() for c in image.stage("cuda").all("COPY")]
    text = (REPO / "docker" / "constraints-gpu.txt").read_text()
    assert "tensorflow.org/install/source" in text and "build_info" in text


def _dockerignore_allows(path: str) -> bool:
    allowed = False
    for line in (REPO / ".dockerignore").read_text().splitlines():
        rule = line.strip()
        if not rule or rule.startswith("#"):
            continue
        negated = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        if pattern in ("*", path) or path.startswith(pattern + "/"):
            allowed = negated
    return allowed


@pytest.mark.parametrize(
    "relative", [AIRFLOW_DOCKERFILE, JOBS_CPU_DOCKERFILE, JOBS_GPU_DOCKERFILE, POSTGRES_DOCKERFILE]
)
def test_dockerignore_sends_every_file_the_dockerfiles_copy(relative: str) -> None:
    image = dockerfile(relative)
    for stage in image.stages:
        for copy in stage.all("COPY"):
            words = [w for w in copy.split() if not w.startswith("--")]
            if copy.startswith("--from="):
                continue
            for source in words[:-1]:
                assert (REPO / source).exists(), (relative, source)
                assert _dockerignore_allows(source.rstrip("/")), f".dockerignore drops {source} ({relative})"
    assert not _dockerignore_allows(".venv-jobs") and not _dockerignore_allows(".git")
    assert not _dockerignore_allows("tests") and not _dockerignore_allows(".tfpipe")
