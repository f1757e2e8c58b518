"""The `ctr_daily` chain in the gcp profile, each pod step run as its pod would run it.

The DAG is rendered in the gcp profile by the project's factory (in the Airflow env) with the
warehouse on the BigQuery stand-in and the artifact root on the GCS stand-in. For every pod
step in DAG order, the container's arguments and environment are taken from the built pod
and `tfpipe-job <args>` runs as a local process with that environment plus the stand-ins'.

Substituted, because it cannot run here: the Beam runner. The pods of extract_transform and
batch_score launch Dataflow jobs; here they run `--runner DirectRunner` and the rendered
Dataflow-only `--beam-arg=` options are dropped. Everything else (the spec path, the
warehouse URL, the gs:// root, the run params, the pod's env with its config overrides) is
the pod's own. GKE and the Dataflow service are not exercised.

The export step is first SIGKILLed mid-publish (its new version has objects on gs://, its
pointer is not written), as a lost node or an OOM kill would stop it: the test checks a reader
finds nothing it takes for complete, then the rerun (the task's retry) publishes and sweeps it.
Validate and the source sensor's hook are run against the same stand-in warehouse.

publish_scores loads into `ctr_scores$YYYYMMDD` from gs://, which the BigQuery stand-in
refuses (see test_bigquery_standin.py): the step runs, and its failure is checked to be that
documented limit of the stand-in. That is not proof of how BigQuery behaves.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tfpipe_operators.contract import RESULT_PREFIX
from tfpipe_operators.steps import DAILY

pytestmark = pytest.mark.gcp_emulated

Client = Callable[..., dict[str, Any]]

DS = "2026-11-21"
DAYS = 3  # the sample spec's extract.lookback_days is 2: the day and the two before it
ROWS_PER_DAY = 2000
CANDIDATES_PER_DAY = 500
POD_STEPS = tuple(s.task_id for s in DAILY)
STEP_TIMEOUT_S = 900.0
REPO = Path(__file__).resolve().parents[2]
SPECS_DIR = REPO / "dags" / "pipelines"
AIRFLOW_PYTHON = REPO / ".venv-airflow" / "bin" / "python"
JOB_CLI = Path(sys.executable).parent / "tfpipe-job"
# A deployment's config override, set in the Airflow worker's environment: it must reach the pods.
EPOCHS_OVERRIDE = "2"

LOAD_TABLES = """
from google.cloud import bigquery

client = bigquery.Client(project=PARAMS["project"])
dataset = f"{PARAMS['project']}.{PARAMS['dataset']}"
counts = {}
for name, spec in PARAMS["tables"].items():
    table = bigquery.Table(f"{dataset}.{name}", schema=[bigquery.SchemaField(n, t) for n, t in spec["schema"]])
    table.time_partitioning = bigquery.TimePartitioning(
        type_=bigquery.TimePartitioningType.DAY, field=spec["partition"]
    )
    client.create_table(table)
    config = bigquery.LoadJobConfig(source_format="PARQUET", write_disposition="WRITE_APPEND")
    with open(spec["file"], "rb") as handle:
        client.load_table_from_file(handle, f"{dataset}.{name}", job_config=config).result()
    rows = client.query(
        f"SELECT {spec['partition']} AS d, COUNT(*) AS n FROM `{dataset}.{name}` GROUP BY 1 ORDER BY 1"
    ).result()
    counts[name] = {str(r["d"]): r["n"] for r in rows}
print(json.dumps(counts))
"""

RENDER_PODS = """
import json
import sys
from types import SimpleNamespace

from tfpipe_operators.dag_factory import build_dag
from tfpipe_operators.profiles import load_profile
from tfpipe_operators.spec import load_spec

spec_path, ds, steps = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
dag = build_dag(load_spec(spec_path), load_profile())
pods = {}
for task_id in steps:
    op = dag.get_task(task_id)
    ti = SimpleNamespace(dag_id=dag.dag_id, task_id=task_id, map_index=-1, try_number=1)
    context = {
        "ds": ds, "ds_nodash": ds.replace("-", ""), "ti": ti, "params": {},
        "run_id": f"scheduled__{ds}", "dag": dag,
    }
    op.render_template_fields(context)
    pod = op.build_pod_request_obj(context)
    container = next(c for c in pod.spec.containers if c.name == op.base_container_name)
    pods[task_id] = {
        "command": container.command,
        "args": container.args,
        "env": {e.name: e.value for e in container.env or []},
        "upstream": sorted(op.upstream_task_ids),
    }
print(json.dumps(pods))
"""

CHECK_ARTIFACTS = """
import io

import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf

from tfpipe_jobs import artifacts
from tfpipe_jobs.artifacts import RunPaths

paths = RunPaths(PARAMS["root"], "ctr", PARAMS["ds"])
data = artifacts.require_complete(paths.data, "extract_transform")
tfrecords = {
    split: sum(1 for f in artifacts.glob(data + f"/{split}/part-*") for _ in tf.data.TFRecordDataset(f, "GZIP"))
    for split in ("train", "eval")
}
model = artifacts.require_complete(paths.model, "train")
serving = artifacts.require_complete(paths.serving, "export_serving_model")
evaluation = artifacts.read_json(artifacts.require_complete(paths.eval, "evaluate_gate") + "/evaluation.json")
verdict = artifacts.read_text(artifacts.require_complete(paths.eval, "evaluate_gate") + "/verdict").strip()
blessed = artifacts.read_json(paths.blessed_file)
version_dir = artifacts.require_complete(paths.model_version_dir(blessed["model_version"]), "publish_model")
scores = artifacts.require_complete(paths.scores, "batch_score")
table = pa.concat_tables(
    pq.read_table(io.BytesIO(artifacts.read_bytes(f))) for f in sorted(artifacts.glob(scores + "/*.parquet"))
)
print(json.dumps({
    "data": data,
    "tfrecords": tfrecords,
    "transform_fn": tf.io.gfile.exists(data + "/transform_fn/saved_model.pb"),
    "vocabularies": sorted(tf.io.gfile.listdir(data + "/transform_fn/assets")),
    "splits": artifacts.read_json(data + "/stats.json")["splits"],
    "config": artifacts.read_json(model + "/config.json"),
    "serving": serving,
    "serving_versions": sorted(v.rstrip("/") for v in tf.io.gfile.glob(paths.serving + ".v-*")),
    "serving_saved_model": tf.io.gfile.exists(serving + "/" + artifacts.SAVED_MODEL_DIR + "/saved_model.pb"),
    "loaded_signatures": sorted(tf.saved_model.load(serving + "/" + artifacts.SAVED_MODEL_DIR).signatures),
    "verdict": verdict,
    "candidate": evaluation["candidate"],
    "blessed": blessed,
    "version_dir": version_dir,
    "version_files": sorted(tf.io.gfile.listdir(version_dir)),
    "version_saved_model": tf.io.gfile.exists(version_dir + "/" + artifacts.SAVED_MODEL_DIR + "/saved_model.pb"),
    "scores": {
        "rows": table.num_rows,
        "columns": table.column_names,
        "model_versions": sorted(set(table.column("model_version").to_pylist())),
        "ds": sorted({str(d) for d in table.column("ds").to_pylist()}),
        "pairs": len(set(zip(table.column("user_id").to_pylist(), table.column("item_id").to_pylist()))),
    },
    "summary": artifacts.read_json(scores + "/summary.json"),
}))
"""


@dataclass(frozen=True)
class StepRun:
    task_id: str
    argv: list[str]
    returncode: int
    result: dict[str, Any] | None
    stderr: str
    seconds: float


def _bigquery_type(arrow_type: Any) -> str:
    import pyarrow as pa

    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "STRING"
    if pa.types.is_date(arrow_type):
        return "DATE"
    if pa.types.is_integer(arrow_type):
        return "INT64"
    if pa.types.is_floating(arrow_type):
        return "FLOAT64"
    raise AssertionError(f"no BigQuery type for the sample column type {arrow_type}")


@pytest.fixture(scope="module")
def sample_in_bigquery(
    gcp_standins: Any, client_process: Client, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The sample `events` and `candidates` tables, day-partitioned, in the stand-in's dataset."""
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tfpipe_jobs.tools import sample_data

    folder = tmp_path_factory.mktemp("sample")
    warehouse = folder / "warehouse.duckdb"
    sample_data.generate(
        str(warehouse),
        date.fromisoformat(DS),
        days=DAYS,
        rows_per_day=ROWS_PER_DAY,
        candidates_per_day=CANDIDATES_PER_DAY,
        seed=7,
    )
    tables: dict[str, Any] = {}
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        for name in ("events", "candidates"):
            rows = con.sql(f"SELECT * FROM {name}").to_arrow_table()
            # INT64 in BigQuery: write the Parquet with 64-bit integers too.
            rows = rows.cast(
                pa.schema([pa.field(f.name, pa.int64()) if pa.types.is_integer(f.type) else f for f in rows.schema])
            )
            path = folder / f"{name}.parquet"
            pq.write_table(rows, path)
            tables[name] = {
                "schema": [[f.name, _bigquery_type(f.type)] for f in rows.schema],
                "partition": "event_date",
                "file": str(path),
            }
        expected = {
            name: {str(d): n for d, n in con.sql(f"SELECT event_date, COUNT(*) FROM {name} GROUP BY 1").fetchall()}
            for name in tables
        }
    finally:
        con.close()
    bq = gcp_standins.bigquery
    loaded = client_process(LOAD_TABLES, project=bq.project, dataset=bq.dataset, tables=tables)
    assert loaded == expected, "every sample row is in the stand-in, in its day's partition"
    return loaded


def _render_pods(gcp_standins: Any, root: str, airflow_home: Path) -> dict[str, dict[str, Any]]:
    """The built pod of every step, rendered by the project's DAG factory in the gcp profile."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TFPIPE_", "AIRFLOW"))},
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "TFPIPE_PROFILE": "gcp",
        "TFPIPE_GCP_PROJECT": gcp_standins.bigquery.project,
        "TFPIPE_JOB_IMAGE": "europe-docker.pkg.dev/tfpipe-standin/tfpipe/jobs-cpu:test",
        "TFPIPE_DATAFLOW_IMAGE": "europe-docker.pkg.dev/tfpipe-standin/tfpipe/dataflow:test",
        "TFPIPE_ARTIFACT_ROOT": root,
        "TFPIPE_WAREHOUSE": gcp_standins.warehouse,
        "TFPIPE_JOB_SPECS_DIR": str(SPECS_DIR),
        "TFPIPE_TRAIN_EPOCHS": EPOCHS_OVERRIDE,
    }
    # A cluster config the built pod reads its labels from; no cluster is contacted.
    kube_config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    (airflow_home / "kube.json").write_text(json.dumps(kube_config))
    connection = {"conn_type": "kubernetes", "extra": {"kube_config_path": str(airflow_home / "kube.json")}}
    env["AIRFLOW_CONN_KUBERNETES_DEFAULT"] = json.dumps(connection)
    spec = SPECS_DIR / "ctr" / "pipeline.yaml"
    out = subprocess.run(
        [str(AIRFLOW_PYTHON), "-c", RENDER_PODS, str(spec), DS, json.dumps(POD_STEPS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, f"rendering the gcp DAG failed:\n{out.stderr[-6000:]}"
    pods: dict[str, dict[str, Any]] = json.loads(out.stdout.strip().splitlines()[-1])
    return pods


def runnable_here(args: list[str]) -> list[str]:
    """The pod's arguments with the Beam runner swapped for one that runs here (see the module doc)."""
    out: list[str] = []
    rest = iter(args)
    for arg in rest:
        if arg.startswith("--beam-arg="):
            continue  # Dataflow-only options (project, region, images, staging): no Dataflow here
        if arg == "--runner":
            next(rest)
            out += ["--runner", "DirectRunner"]
            continue
        out.append(arg)
    return out


def _run_step(gcp_standins: Any, task_id: str, pod: dict[str, Any]) -> StepRun:
    assert pod["command"] == ["tfpipe-job"], task_id
    argv = [str(JOB_CLI), *runnable_here(pod["args"])]
    env = gcp_standins.process_env(**pod["env"], TF_CPP_MIN_LOG_LEVEL="2")
    started = time.monotonic()
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S)
    lines = [x for x in out.stdout.splitlines() if x.startswith(RESULT_PREFIX)]
    result = json.loads(lines[-1][len(RESULT_PREFIX) :]) if lines else None
    return StepRun(task_id, argv, out.returncode, result, out.stderr, time.monotonic() - started)


READ_KILLED_EXPORT = """
import tensorflow as tf

from tfpipe_jobs import artifacts
from tfpipe_jobs.artifacts import RunPaths

paths = RunPaths(PARAMS["root"], "ctr", PARAMS["ds"])
versions = sorted(v.rstrip("/") for v in tf.io.gfile.glob(paths.serving + ".v-*"))
try:
    artifacts.require_complete(paths.serving, "export_serving_model")
    refused = None
except Exception as exc:  # what the evaluate step would meet
    refused = f"{type(exc).__name__}: {exc}"
print(json.dumps({
    "versions": versions,
    "complete": [artifacts.is_complete(v) for v in versions],
    "published": artifacts.published(paths.serving),
    "refused": refused,
}))
"""


def _gcs_objects(gcp_standins: Any, prefix: str) -> list[str]:
    """Object names under `prefix` (a gs:// path), listed by the GCS stand-in's JSON API."""
    bucket, _, key = prefix.removeprefix("gs://").partition("/")
    url = f"{gcp_standins.gcs.url}/storage/v1/b/{bucket}/o?prefix={urllib.parse.quote(key)}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return [item["name"] for item in json.load(response).get("items", [])]


def _kill_mid_publish(gcp_standins: Any, pod: dict[str, Any], root: str) -> dict[str, Any]:
    """Start the export step as its pod would and SIGKILL it once its new version has objects
    on gs:// but before its pointer: a node lost, an OOM kill (no SIGTERM, no cleanup)."""
    argv = [str(JOB_CLI), *runnable_here(pod["args"])]
    env = gcp_standins.process_env(**pod["env"], TF_CPP_MIN_LOG_LEVEL="2")
    serving = f"{root}/ctr/{DS}/serving"
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + STEP_TIMEOUT_S
    try:
        while not _gcs_objects(gcp_standins, serving + ".v-"):
            assert proc.poll() is None, f"export ended before writing anything:\n{proc.stderr.read()[-4000:]}"
            assert time.monotonic() < deadline, "export wrote nothing on gs:// in time"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.stderr is not None
    proc.stderr.close()
    return {"returncode": proc.returncode, "pointer": _gcs_objects(gcp_standins, serving + "/_CURRENT")}


@pytest.fixture(scope="module")
def chain(
    gcp_standins: Any,
    client_process: Client,
    sample_in_bigquery: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, dict[str, dict[str, Any]], dict[str, StepRun]]]:
    root = f"{gcp_standins.artifact_root}/chain-{uuid.uuid4().hex[:8]}"
    pods = _render_pods(gcp_standins, root, tmp_path_factory.mktemp("airflow-home"))
    runs: dict[str, StepRun] = {}
    killed: dict[str, Any] = {}
    for task_id in POD_STEPS:
        if task_id == "export_serving_model":
            killed = _kill_mid_publish(gcp_standins, pods[task_id], root)
            killed["seen"] = client_process(READ_KILLED_EXPORT, root=root, ds=DS)
        runs[task_id] = run = _run_step(gcp_standins, task_id, pods[task_id])
        if task_id != "publish_scores":
            assert run.returncode == 0, f"{task_id} exited {run.returncode}:\n{run.stderr[-6000:]}"
        if task_id == "publish_model":
            # A retry of the task (or a cleared run): the model's folder on gs:// is already there.
            runs["publish_model_again"] = _run_step(gcp_standins, task_id, pods[task_id])
    runs["killed_export"] = StepRun("export_serving_model", [], killed["returncode"], killed, "", 0.0)
    yield root, pods, runs


def test_ctr_daily_runs_in_the_gcp_profile_against_the_standins(
    gcp_standins: Any,
    client_process: Client,
    sample_in_bigquery: dict[str, Any],
    chain: tuple[str, dict[str, dict[str, Any]], dict[str, StepRun]],
) -> None:
    root, pods, runs = chain
    # The DAG order the steps ran in is the rendered DAG's.
    for before, after in itertools.pairwise(POD_STEPS):
        assert before in pods[after]["upstream"], (before, after)
    # What reached the pods: the gcp places, and the worker's config override.
    for task_id, pod in pods.items():
        args = pod["args"]
        assert args[args.index("--warehouse") + 1] == gcp_standins.warehouse, task_id
        assert args[args.index("--artifact-root") + 1] == root, task_id
        assert args[args.index("--spec") + 1] == str(SPECS_DIR / "ctr" / "pipeline.yaml"), task_id
        assert pod["env"]["TFPIPE_TRAIN_EPOCHS"] == EPOCHS_OVERRIDE, task_id
    for task_id in ("extract_transform", "batch_score"):  # what runnable_here() replaces
        args = pods[task_id]["args"]
        assert args[args.index("--runner") + 1] == "DataflowRunner", task_id
        assert any(a.startswith("--beam-arg=--job_name=") for a in args), task_id

    state = client_process(CHECK_ARTIFACTS, root=root, ds=DS)
    # extract: TFRecords and the tf.Transform output, published on gs:// by the pointer
    assert state["data"].startswith(f"{root}/ctr/{DS}/data.v-")
    events = sum(sample_in_bigquery["events"].values())
    assert state["tfrecords"]["train"] > 0 and state["tfrecords"]["eval"] > 0
    # every row of the window read from BigQuery and written (records pack several rows each)
    assert state["splits"]["rows_read"] == events
    assert state["splits"]["train_rows"] + state["splits"]["eval_rows"] == events
    assert state["splits"]["train_rows"] > state["splits"]["eval_rows"] > 0
    assert state["transform_fn"]
    assert any(v.startswith("vocab_user_id") for v in state["vocabularies"])
    # train: the override set on the Airflow worker reached the train pod
    assert state["config"]["config"]["train.epochs"] == int(EPOCHS_OVERRIDE)
    # export killed mid-publish (before its pointer): a reader finds nothing complete and says so
    killed = runs["killed_export"]
    assert killed.returncode == -signal.SIGKILL and killed.result is not None
    seen = killed.result["seen"]
    assert killed.result["pointer"] == [] and seen["published"] is None
    assert seen["versions"] and seen["complete"] == [False] * len(seen["versions"])
    assert seen["refused"] is not None and f"{root}/ctr/{DS}/serving" in seen["refused"], seen
    # ... and the rerun (the task's retry) published its own version and swept the killed one
    assert state["serving"] not in seen["versions"]
    assert state["serving_versions"] == [state["serving"]]
    # export: the serving SavedModel, loadable from gs://
    assert state["serving"].startswith(f"{root}/ctr/{DS}/serving.v-") and state["serving_saved_model"]
    assert "serving_default" in state["loaded_signatures"]
    # evaluate + publish_model: a first run is blessed and the judged model is copied to models/<version>
    assert runs["publish_model"].returncode == 0, "the first run's gate blesses: publish_model is not skipped"
    assert state["verdict"] == "blessed"
    version = state["candidate"]["model_version"]
    assert state["blessed"]["model_version"] == version and state["blessed"]["ds"] == DS
    assert version.startswith(f"{DS}-")
    assert state["version_dir"].startswith(f"{root}/ctr/models/{version}.v-") and state["version_saved_model"]
    # batch_score: one row per candidate pair of the day, all scored by the blessed model
    candidates = sample_in_bigquery["candidates"][DS]
    assert state["scores"]["rows"] == candidates == state["summary"]["rows"]
    assert state["scores"]["pairs"] == candidates
    assert state["scores"]["model_versions"] == [version]
    assert state["scores"]["ds"] == [DS]

    # publish_scores: the stand-in's documented limit, not BigQuery's behaviour
    publish = runs["publish_scores"]
    assert publish.returncode != 0, "bqemulator cannot load into ctr_scores$20261121: the step cannot succeed here"
    failure = publish.stderr.strip().splitlines()[-1]
    assert failure.startswith("google.api_core.exceptions.BadRequest: 400"), publish.stderr[-6000:]
    assert "Invalid table id" in failure and f"ctr_scores${DS.replace('-', '')}" in failure, failure
    assert "load_table_from_uri(write.files, partition" in publish.stderr, "refused at the load, not before it"
    timings = {task_id: round(run.seconds, 1) for task_id, run in runs.items()}
    print("step seconds:", timings)


def test_steps_read_the_published_versions_on_gcs(
    chain: tuple[str, dict[str, dict[str, Any]], dict[str, StepRun]],
) -> None:
    """On gs:// an output lives in the version folder its `_CURRENT` pointer names: export names its
    model from there, publish_model finds an already stored version there, and batch_score verifies
    the blessed model there (each read the bare output path, which holds only the pointer)."""
    _, _, runs = chain
    export, publish, again, score = (
        runs[t] for t in ("export_serving_model", "publish_model", "publish_model_again", "batch_score")
    )
    assert export.result is not None and publish.result is not None and score.result is not None
    version = export.result["model_version"]
    assert publish.result["model_version"] == version and publish.result["current"] == version
    assert again.returncode == 0, again.stderr[-6000:]
    assert again.result is not None and again.result["current"] == version
    assert score.result["model_version"] == version


SENSOR_POKES = """
import json
import sys
from datetime import date

from tfpipe_operators.hooks.warehouse import WarehouseHook

hook = WarehouseHook(sys.argv[1])
days = {d: hook.partition_rows("events", "event_date", date.fromisoformat(d)) for d in sys.argv[2:]}
days["missing table"] = hook.partition_rows("no_such_table", "event_date", date.fromisoformat(sys.argv[2]))
print(json.dumps(days))
"""


def _airflow_env(gcp_standins: Any) -> dict[str, str]:
    return gcp_standins.process_env(
        {k: v for k, v in os.environ.items() if not k.startswith(("TFPIPE_", "AIRFLOW"))},
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
    )


def test_validate_checks_the_sql_on_the_bigquery_standin(
    gcp_standins: Any, sample_in_bigquery: dict[str, Any], tmp_path: Path
) -> None:
    """`validate --warehouse bigquery://...` as a data engineer runs it: the dry run gives each
    query's columns and types, and the rows of the day are counted on the stand-in."""
    spec = str(SPECS_DIR / "ctr" / "pipeline.yaml")
    argv = [str(AIRFLOW_PYTHON), "-m", "tfpipe_operators.validate", spec, "--warehouse", gcp_standins.warehouse]
    out = subprocess.run(
        [*argv, "--ds", DS], env=_airflow_env(gcp_standins), capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr[-4000:]
    lines = out.stdout.splitlines()
    events = sum(sample_in_bigquery["events"].values())  # the day and its 2-day look-back: every sample day
    candidates = sample_in_bigquery["candidates"][DS]
    assert any(line.startswith("OK   warehouse: BigQuery dataset") for line in lines), lines
    assert any(line.startswith("OK   source sql") and "runs on bigquery" in line for line in lines), lines
    assert any(line.startswith("OK   source sql") and f"returns {events:,} rows for ds {DS}" in line for line in lines)
    assert any(
        line.startswith("OK   scoring sql") and f"returns {candidates:,} rows for ds {DS}" in line for line in lines
    )

    # A feature the SQL no longer returns is caught by the dry run, before any step runs.
    copy = tmp_path / "ctr"
    shutil.copytree(SPECS_DIR / "ctr", copy)
    train_sql = copy / "train.sql"
    assert "  user_age,\n" in train_sql.read_text()
    train_sql.write_text(train_sql.read_text().replace("  user_age,\n", "", 1))
    argv[3] = str(copy / "pipeline.yaml")
    out = subprocess.run(
        [*argv, "--ds", DS], env=_airflow_env(gcp_standins), capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 1, out.stdout
    [fail] = [line for line in out.stdout.splitlines() if line.startswith("FAIL")]
    assert fail.startswith(f"FAIL source sql: {train_sql}: result has no column 'user_age' (features in pipeline.yaml)")


def test_the_source_sensor_counts_the_days_rows_on_the_bigquery_standin(
    gcp_standins: Any, sample_in_bigquery: dict[str, Any]
) -> None:
    later = "2026-11-22"  # no rows yet: the sensor keeps waiting
    out = subprocess.run(
        [str(AIRFLOW_PYTHON), "-c", SENSOR_POKES, gcp_standins.warehouse, DS, later],
        env=_airflow_env(gcp_standins),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    assert counts == {DS: sample_in_bigquery["events"][DS], later: 0, "missing table": 0}
