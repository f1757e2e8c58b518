"""One factory turns every pipeline spec into its `<pipeline>_daily` DAG.

    wait_for_source -> extract_transform -> train -> export_serving_model -> evaluate_gate
        -> publish_model (skipped unless blessed) -> batch_score -> publish_scores

Every heavy step is a `tfpipe-job` command; the profile picks what runs it (a local
subprocess, or a Kubernetes pod with a GPU for `train`). Task ids are the same in both
profiles. Nothing here imports TensorFlow, tf.Transform or Beam.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import yaml
from airflow.sdk import DAG, BaseOperator
from airflow.timetables.interval import CronDataIntervalTimetable

from tfpipe_operators import callbacks
from tfpipe_operators.config import SpecError
from tfpipe_operators.profiles import Profile, load_profile
from tfpipe_operators.registry_dag import build_registry_dag
from tfpipe_operators.spec import PipelineSpec, discover_specs, load_spec
from tfpipe_operators.step_tasks import DS, step_task
from tfpipe_operators.steps import DAILY
from tfpipe_operators.trigger_form import form_defaults, run_params, trigger_params
from tfpipe_operators.tune_dag import build_tune_dag

log = logging.getLogger(__name__)

CRON_PRESETS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *"}


def _wait_for_source(spec: PipelineSpec, profile: Profile) -> BaseOperator:
    """One sensor for both profiles: it counts the day's rows through the warehouse interface
    (a DuckDB query locally, a BigQuery query in gcp), so it works on any table whose
    partition column holds the day, partitioned or not.

    It waits TFPIPE_SOURCE_WAIT_TIMEOUT seconds (12 hours by default), in reschedule mode (no
    worker slot held between pokes); then it fails, without retries, naming the partition
    and what to do.
    """
    import os

    from tfpipe_operators.profiles import ProfileError
    from tfpipe_operators.sensors.partition import WarehousePartitionSensor

    raw = os.environ.get("TFPIPE_SOURCE_WAIT_TIMEOUT", "")
    if raw and (not raw.isdigit() or int(raw) <= 0):
        raise ProfileError(f"TFPIPE_SOURCE_WAIT_TIMEOUT must be a positive number of seconds, not {raw!r}")
    timeout = int(raw) if raw else 12 * 3600
    return WarehousePartitionSensor(
        task_id="wait_for_source",
        warehouse=profile.warehouse,
        table=spec.source.table,
        partition_column=spec.source.partition_column,
        ds=DS,
        mode="reschedule",
        timeout=timeout,
        poke_interval=min(profile.source_poke_interval, timeout),
        doc_md=f"Waits up to {timeout // 60} minutes for `{spec.source.table}` to have rows for `ds`; then fails "
        "with what to do (load the day and clear the task, or mark it skipped).",
    )


def public_url(url: str) -> str:
    """The URL without what may be secret (a password, a query string's values), for docs the UI shows."""
    parts = urlsplit(url)
    if not parts.scheme:
        return url  # a bare path
    host = parts.netloc.rpartition("@")[2]
    user = parts.username
    netloc = f"{user}:***@{host}" if user and parts.password is not None else host
    query = "&".join(f"{name}=***" for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    # Joined by hand: urlunsplit drops the empty host of duckdb:///path.
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def scores_doc(spec: PipelineSpec, profile: Profile) -> str:
    """Where the scores land, as the DAG's doc says it: the warehouse, the score table and its latest view."""
    from tfpipe_operators.warehouse import open_warehouse

    warehouse = open_warehouse(profile.warehouse)  # imports no database client
    table, view = warehouse.table_id(spec.scoring.table), warehouse.table_id(spec.scoring.latest_view)
    return (
        f"Scores land in the warehouse `{public_url(profile.warehouse)}`: table `{table}` (one partition "
        f"per `ds`) and view `{view}` (the newest day's partition)."
    )


def build_dag(spec: PipelineSpec, profile: Profile) -> DAG:
    cron = CRON_PRESETS.get(spec.schedule, spec.schedule)
    start = datetime.combine(spec.start_date, datetime.min.time(), tzinfo=UTC)
    dag = DAG(
        dag_id=spec.dag_id,
        description=spec.description.strip().splitlines()[0] if spec.description.strip() else None,
        doc_md=(
            f"### {spec.pipeline}\n\n{spec.description}\n\nSpec: `{spec.path}`\n\n"
            f"{scores_doc(spec, profile)} Artifacts: "
            f"`{profile.artifact_root}/{spec.pipeline}/<ds>/`; the blessed model: "
            f"`{profile.artifact_root}/{spec.pipeline}/registry/blessed.json`."
        ),
        schedule=CronDataIntervalTimetable(cron, timezone="UTC"),
        start_date=start,
        catchup=False,
        max_active_runs=spec.max_active_runs,
        tags=["tfpipe", spec.pipeline, profile.name],
        params=trigger_params(spec),
        user_defined_filters={"tfpipe_run_params": functools.partial(run_params, spec_values=form_defaults(spec))},
        default_args={
            "owner": spec.owner,
            "retries": spec.retries,
            "retry_delay": timedelta(minutes=2),
            "retry_exponential_backoff": True,
            "on_failure_callback": callbacks.on_failure,
        },
    )
    with dag:
        tasks = [_wait_for_source(spec, profile)]
        tasks += [step_task(step, spec, profile) for step in DAILY]
        for upstream, downstream in itertools.pairwise(tasks):
            upstream >> downstream
    return dag


def pipeline_dags(spec: PipelineSpec, profile: Profile) -> list[DAG]:
    """The DAGs one valid spec gives: `<pipeline>_daily`, `<pipeline>_registry`, and
    `<pipeline>_tune` when it has a search space."""
    dags = [build_dag(spec, profile), build_registry_dag(spec, profile)]
    if spec.search_space:
        dags.append(build_tune_dag(spec, profile))
    for dag in dags:
        dag.validate()  # what the DagBag checks (e.g. the cron): a failure here stays with this spec
    return dags


def _placeholder_id(path: Path, taken: set[str]) -> str:
    """The daily DAG id the spec was meant to have (its `pipeline`, else its folder), if free."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        raw = None
    name = raw.get("pipeline") if isinstance(raw, dict) else None
    if not (isinstance(name, str) and re.fullmatch(r"[a-z][a-z0-9_]*", name)):
        name = re.sub(r"[^A-Za-z0-9_]", "_", path.parent.name)
    dag_id = f"{name}_daily"
    return dag_id if dag_id not in taken else f"{re.sub(r'[^A-Za-z0-9_]', '_', path.parent.name)}_invalid_spec"


def invalid_spec_dag(path: Path, error: str, dag_id: str) -> DAG:
    """A DAG that stands for a spec that does not load: its doc and its one task state the error.

    Scheduled daily, so the day the pipeline should have run fails where its runs are
    watched (and its failure callback tells whoever TFPIPE_NOTIFY names) instead of the
    pipeline silently going missing.
    """
    from airflow.sdk import task
    from airflow.sdk.exceptions import AirflowFailException

    pipeline = dag_id.removesuffix("_daily")
    dag = DAG(
        dag_id=dag_id,
        description=f"INVALID SPEC: {error.splitlines()[0]}",
        doc_md=f"### {pipeline}: the spec does not load\n\n`{path}` is invalid, so this pipeline's DAGs are "
        "not built (the other pipelines are). Fix the spec (check it with `python -m tfpipe_operators.validate "
        f"{path}`); the next parse of the DAG file brings the pipeline back.\n\n```\n{error}\n```",
        schedule="@daily",
        start_date=datetime(2020, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        tags=["tfpipe", "invalid-spec"],
        default_args={"owner": "tfpipe", "retries": 0, "on_failure_callback": callbacks.on_failure},
    )
    with dag:

        @task(task_id="invalid_spec", doc_md=f"Fails with the spec's error:\n\n```\n{error}\n```")
        def invalid_spec() -> None:
            raise AirflowFailException(error)

        invalid_spec()
    return dag


def build_dags(specs_dir: str | Path, profile: Profile | None = None) -> dict[str, DAG]:
    """Every spec under `specs_dir` as its DAGs; a spec that does not load breaks only its own.

    All pipelines come from one DAG file, and Airflow 3.3 keeps import errors per file: an
    error raised here, or a DAG the DagBag refuses (DAG.validate), records an import error
    that marks every DAG of the file stale, so none is scheduled or can be triggered (and
    parse warnings only reach the processor's log). So a bad spec gets a placeholder DAG
    (`invalid_spec_dag`) under the id its daily DAG would have: the DAG list shows it in
    its usual place with the error as its description, its doc and its failing task give
    the whole message (file and key), and its daily run fails and alerts like a broken
    pipeline should, while every other pipeline keeps loading and running.
    """
    profile = profile or load_profile()
    dags: dict[str, DAG] = {}
    specs: list[PipelineSpec] = []  # the valid ones (DAGs over every pipeline are built from these)
    failed: list[tuple[Path, str]] = []
    defined_by: dict[str, Path] = {}
    for path in discover_specs(specs_dir):
        try:
            spec = load_spec(path)
            if spec.pipeline in defined_by:
                raise SpecError(
                    f"{path}: pipeline: '{spec.pipeline}' is already the pipeline of {defined_by[spec.pipeline]} "
                    "(each spec needs a name of its own)"
                )
            built = pipeline_dags(spec, profile)
        except Exception as exc:  # any failure of one spec stays with that spec
            message = str(exc) if isinstance(exc, SpecError) else f"{path}: {type(exc).__name__}: {exc}"
            log.error("invalid pipeline spec, its DAGs are replaced by a placeholder: %s", message)
            failed.append((path, message))
            continue
        defined_by[spec.pipeline] = path
        specs.append(spec)
        dags.update((dag.dag_id, dag) for dag in built)
    for path, message in failed:  # after the valid ones, so a placeholder never takes a valid DAG's id
        dag_id = _placeholder_id(path, set(dags))
        dags[dag_id] = invalid_spec_dag(path, message, dag_id)
    return dags
