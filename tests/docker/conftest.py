"""The container tier's engine and images: started and built by the tier itself.

The engine is the project's own (scripts/docker_engine.sh: a socket and data root of its
own, no bridge, host networking): started here if it is not running, and then stopped when
the session ends, whatever the tests did. The images are built once per session through
scripts/build_images.sh; its layer cache makes that a few seconds when nothing changed.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENGINE = REPO / "scripts" / "docker_engine.sh"
BUILD = REPO / "scripts" / "build_images.sh"
TAG = os.environ.get("TFPIPE_IMAGE_TAG", "0.1.0")


@dataclass(frozen=True)
class Docker:
    """A client of the project's engine: the docker binary and the environment naming its socket."""

    binary: str
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([self.binary, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check:
            assert out.returncode == 0, (
                f"docker {' '.join(args[:3])} ... failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
            )
        return out

    def lines(self, *args: str) -> list[str]:
        return [line for line in self.run(*args).stdout.splitlines() if line.strip()]


@dataclass(frozen=True)
class Images:
    jobs_cpu: str
    airflow: str
    postgres: str
    build_seconds: float


def _engine_env() -> tuple[str, dict[str, str]]:
    """DOCKER_HOST and the client binary, as scripts/docker_env.sh sets them."""
    out = subprocess.run(
        ["bash", "-c", f'. "{REPO}/scripts/docker_env.sh" && echo "$DOCKER" && echo "$DOCKER_HOST"'],
        capture_output=True,
        text=True,
        check=True,
    )
    binary, host = out.stdout.split()
    return binary, {**os.environ, "DOCKER_HOST": host, "DOCKER_BUILDKIT": "1"}


@pytest.fixture(scope="session")
def docker() -> Iterator[Docker]:
    binary, env = _engine_env()
    running = subprocess.run(["bash", str(ENGINE), "status"], capture_output=True, text=True).returncode == 0
    if not running:
        out = subprocess.run(["bash", str(ENGINE), "start"], capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, f"the Docker engine did not start:\n{out.stdout}\n{out.stderr}"
    try:
        yield Docker(binary, env)
    finally:
        if not running:  # only what this session started
            subprocess.run(["bash", str(ENGINE), "stop"], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def images(docker: Docker) -> Images:
    start = time.monotonic()
    out = subprocess.run(
        ["bash", str(BUILD), "jobs-cpu", "airflow", "postgres"],
        env=docker.env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert out.returncode == 0, f"image build failed:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    print(out.stdout)  # build times and sizes, shown with -s
    return Images(
        jobs_cpu=f"tfpipe-jobs-cpu:{TAG}",
        airflow=f"tfpipe-airflow:{TAG}",
        postgres="tfpipe-postgres:15-bookworm",
        build_seconds=time.monotonic() - start,
    )
