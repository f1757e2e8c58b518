"""One factory turns every pipeline spec into its `<pipeline>_daily` DAG.

    wait_for_source -> extract_transform -> train -> export_serving_model -> evaluate_gate
        -> publish_model (skipped unless blessed) -> batch_score -> publish_scores

Every heavy step is a `tfpipe-job` command; the profile picks what runs it (a local
subprocess, or a Kubernetes pod with a GPU for `train`). Task ids are the same in both
profiles. Nothing here imports TensorFlow, tf.Transform or Beam.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml
from airflow.sdk import DAG, Asset, BaseOperator, Param
from airflow.timetables.interval import CronDataIntervalTimetable

from tfpipe_operators import callbacks
from tfpipe_operators.profiles import Profile, load_profile
from tfpipe_operators.registry_dag import build_registry_dag
from tfpipe_operators.spec import (
    EARLY_STOPPING_METRICS,
    STAGES,
    PipelineSpec,
    SpecError,
    discover_specs,
    gate_metrics,
    load_spec,
    resolve_config,
)
from tfpipe_operators.steps import DAILY, STEPS, Step

log = logging.getLogger(__name__)

# `ds` is the day whose data the run processes (the start of its data interval). A run
# created without a logical date falls back to the day it was asked to run.
DS = "{{ ds if ds is defined else (dag_run.run_after | ds) }}"
RUN_PARAMS = "{{ params | tfpipe_run_params }}"

CRON_PRESETS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *"}


def param_name(flat_key: str) -> str:
    """`train.epochs` -> `train_epochs` (the trigger form's field name)."""
    return flat_key.replace(".", "_", 1)


def flat_key(param: str) -> str:
    stage, _, name = param.partition("_")
    return f"{stage}.{name}"


# The JSON-schema keywords Airflow 3.3's trigger form acts on (airflow/ui FlexibleForm):
# `type` picks the field, and a type without "null" makes it required; `enum` makes a
# dropdown labelled by `values_display`; `minimum`/`maximum` bound a number field, which
# clamps a value outside them when it loses focus; `items.type` picks the array editor.
# The form ignores every other keyword (exclusiveMinimum, pattern, minItems, ...): a value
# only those refuse reaches the API, which answers with a bare "Bad Request".
FORM_KEYWORDS = frozenset({"type", "enum", "values_display", "minimum", "maximum", "items", "description"})
# Checks the form cannot make: kept for the API, and said in the field's description.
SERVER_ONLY_KEYWORDS = {"minItems": "at least {} item"}


def _show(value: Any) -> str:
    return json.dumps(value)


def _sentence(text: str) -> str:
    text = text.strip().rstrip(".")
    return f"{text[:1].upper()}{text[1:]}."


def _form_schema(
    key: str, schema: Mapping[str, Any], allowed: Sequence[str] | None = None
) -> tuple[dict[str, Any], list[str], list[str]]:
    """A stage field's JSON schema in the keywords the form enforces, what only the API checks,
    and the exclusive bounds in words (the form's number field shows neither).

    `exclusiveMinimum`/`exclusiveMaximum` become the nearest `minimum`/`maximum` that refuses
    exactly the same values: the next integer, or the next float (no float lies between 0
    and the smallest positive one), so the API's check stays exact. Every field may be
    emptied: empty is no override.
    """
    rest = {k: v for k, v in schema.items() if k not in ("default", "title", "description")}
    for option in rest.pop("anyOf", []):  # `T | None`: null is allowed anyway
        if option.get("type") != "null":
            rest.update(option)
    json_type = rest.pop("type")
    out: dict[str, Any] = {"type": [json_type, "null"]}
    if "enum" in rest or allowed is not None:  # a plain string the task limits becomes a dropdown too
        values = [v for v in rest.pop("enum", allowed) if allowed is None or v in allowed]
        out["enum"] = [*values, None]
        out["values_display"] = {"null": "(empty: the spec's value)"}
    exclusive: list[str] = []
    for keyword, target, direction in (
        ("minimum", "minimum", 0),
        ("exclusiveMinimum", "minimum", 1),
        ("maximum", "maximum", 0),
        ("exclusiveMaximum", "maximum", -1),
    ):
        if keyword not in rest:
            continue
        bound = rest.pop(keyword)
        if direction:  # exclusive: the first value past the bound
            exclusive.append(f"{'more' if direction > 0 else 'less'} than {_show(bound)}")
            bound = bound + direction if json_type == "integer" else math.nextafter(bound, direction * math.inf)
        if target in out:
            bound = max(out[target], bound) if target == "minimum" else min(out[target], bound)
        out[target] = bound
    if "items" in rest:
        items = rest.pop("items")
        if set(items) - {"type"}:
            raise ValueError(f"trigger param for {key}: the form cannot check the items' schema {items}")
        out["items"] = items
    notes = []
    for keyword, text in SERVER_ONLY_KEYWORDS.items():
        if keyword in rest:
            out[keyword] = rest.pop(keyword)
            notes.append(text.format(out[keyword]))
    if rest:
        raise ValueError(f"trigger param for {key}: the form cannot check {', '.join(sorted(rest))}")
    return out, notes, exclusive


def form_defaults(spec: PipelineSpec) -> dict[str, Any]:
    """Trigger param -> the value a run uses unless something overrides it: the spec's (or the code default)."""
    flat = resolve_config(spec, environ={}).flat()
    return {param_name(key): flat[key] for key in spec.overridable}


def _variant_changes(spec: PipelineSpec) -> dict[str, dict[str, Any]]:
    """Variant -> the config keys whose value it changes, with the value it sets."""
    base = resolve_config(spec, environ={}).flat()
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(spec.variants):
        flat = resolve_config(spec, variant=name, environ={}).flat()
        out[name] = {key: value for key, value in flat.items() if not _same(value, base[key])}
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal as config values: 1 and 1.0 are, True and 1 are not."""
    return bool(a == b) and isinstance(a, bool) == isinstance(b, bool)


def run_params(params: Mapping[str, Any], spec_values: Mapping[str, Any] | None = None) -> str:
    """The run's overrides as one JSON argument for the job: tfpipe's own params that change something.

    A field emptied, or left at the value the form started with (`spec_values`, the spec's),
    is no override: sending it would replace the chosen variant's or the tuned value.
    """
    spec_values = spec_values or {}
    out: dict[str, Any] = {}
    for name, value in dict(params).items():
        if value is None or value == "":
            continue
        if name == "variant":
            out["variant"] = value
        elif name.partition("_")[0] in STAGES:
            if name in spec_values and _same(value, spec_values[name]):
                continue
            out[flat_key(name)] = value
    return json.dumps(out, sort_keys=True)


def _allowed_values(spec: PipelineSpec, key: str) -> list[str] | None:
    """The values a key takes for this spec's task, where the config check limits them by task."""
    if key == "gate.metric":
        return sorted(gate_metrics(spec))
    if key == "train.early_stopping_metric":
        return list(EARLY_STOPPING_METRICS[spec.label.task.value])
    return None


@functools.cache
def _stage_fields(stage: str) -> dict[str, Any]:
    """A stage's JSON schema properties: the same for every spec, and pydantic takes
    milliseconds to build one, once per key and spec without this (the DAG file re-parses
    every spec every refresh interval)."""
    return dict(STAGES[stage].model_json_schema()["properties"])


def trigger_params(spec: PipelineSpec) -> dict[str, Param]:
    """Params (JSON schema) for the trigger form: the variant and every overridable key.

    Each field starts at the value the run uses unless it is changed: the spec's (or the
    code default). The form is drawn before a variant is picked, so a field a variant
    changes names the variant's value too; left as it is, the variant's value applies.
    """
    variants = _variant_changes(spec)
    params: dict[str, Param] = {}
    if variants:
        display = {"null": "(none): the spec as written"}
        for name, changes in variants.items():
            changed = ", ".join(f"{key}={_show(value)}" for key, value in changes.items()) or "no changes"
            display[name] = f"{name}: {changed}"
        params["variant"] = Param(
            None,
            type=["null", "string"],
            enum=[None, *variants],
            values_display=display,
            description="A variant of the spec: its values replace the spec's. The fields below start at the "
            "spec's values; left as they are, the variant's values apply.",
        )
    defaults = form_defaults(spec)
    for key in spec.overridable:
        stage, _, name = key.partition(".")
        field = copy.deepcopy(_stage_fields(stage)[name])  # the cached schema stays as pydantic made it
        allowed = _allowed_values(spec, key)
        schema, server_only, exclusive = _form_schema(key, field, allowed)
        value = defaults[param_name(key)]
        text = [_sentence(field["description"]) if field.get("description") else ""]
        if exclusive:  # the number field clamps to the nearest allowed value; say what that is
            text.append(_sentence("must be " + " and ".join(exclusive)))
        if name in getattr(spec, stage):
            text.append(f"Spec: {_show(value)}.")
        else:
            text.append(f"Default: {_show(value)} (the spec does not set it).")
        changing = [v for v, changes in variants.items() if key in changes]
        by_variant = [f"variant {v}: {_show(variants[v][key])}" for v in changing]
        if by_variant:
            uses = f"uses {_show(variants[changing[0]][key])}" if len(changing) == 1 else "uses the variant's"
            text.append(
                f"{_sentence('; '.join(by_variant))[:-1]} (kept at {_show(value)}, a run with that variant {uses})."
            )
        if key in spec.search_space:
            text.append(f"Once {spec.pipeline}_tune has recorded a best trial, its value applies unless changed here.")
        text += [f"Needs {note} (checked on trigger, not in the form)." for note in server_only]
        params[param_name(key)] = Param(value, description=" ".join(filter(None, text)), **schema)
    return params


def _job_arguments(step: str, spec_path: str, profile: Profile) -> list[str]:
    return [
        STEPS[step].task_id,
        "--spec",
        spec_path,
        "--ds",
        DS,
        "--artifact-root",
        profile.artifact_root,
        "--warehouse",
        profile.warehouse,
        "--runner",
        profile.beam_runner,
        "--run-params",
        RUN_PARAMS,
    ]


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
        poke_interval=min(30 if profile.is_local else 300, timeout),
        doc_md=f"Waits up to {timeout // 60} minutes for `{spec.source.table}` to have rows for `ds`; then fails "
        "with what to do (load the day and clear the task, or mark it skipped).",
    )


def asset(spec: PipelineSpec, outlet: str) -> Asset:
    """What other DAGs can be scheduled on: the blessed model, the score table (a step's `outlet`)."""
    uri = spec.scoring.table if outlet == "scores" else outlet
    return Asset(name=f"tfpipe.{spec.pipeline}.{outlet}", uri=f"tfpipe://{spec.pipeline}/{uri}")


def _step(step: Step, spec: PipelineSpec, profile: Profile, gpus: int) -> BaseOperator:
    arguments = _job_arguments(step.task_id, profile.job_spec_path(spec.path), profile)
    common: dict[str, Any] = {
        "task_id": step.task_id,
        "execution_timeout": step.timeout,
        "doc_md": step.doc,
        "trigger_rule": step.trigger_rule,
    }
    if step.outlet:
        common["outlets"] = [asset(spec, step.outlet)]
    if step.alert_when_skipped:
        common["on_skipped_callback"] = callbacks.on_gate_refused
    if profile.is_local:
        from tfpipe_operators.operators.job import TfpipeJobOperator, TfpipeTrainJobOperator

        operator = TfpipeTrainJobOperator if step.task_id == "train" else TfpipeJobOperator
        return operator(job_cli=profile.job_cli, arguments=arguments, **common)
    from tfpipe_operators.operators.pod import job_pod

    return job_pod(spec, profile, step, arguments, gpus=gpus if step.gpu else 0, **common)


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
    config = resolve_config(spec, environ={})
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
        tasks += [_step(step, spec, profile, config.train.gpus) for step in DAILY]
        for upstream, downstream in itertools.pairwise(tasks):
            upstream >> downstream
    return dag


def trial_arguments(spec_path: str, profile: Profile, ds: str, trials: list[dict[str, Any]]) -> list[list[str]]:
    """One `train` command per trial: its own model folder, its sampled values, no tuned config."""
    base = _job_arguments("train", spec_path, profile)
    base[base.index("--ds") + 1] = ds
    base = base[: base.index("--run-params")]  # a trial's values are exactly the sampled ones
    out = []
    for i, trial in enumerate(trials):
        sets = [x for key, value in trial.items() for x in ("--set", f"{key}={json.dumps(value)}")]
        out.append([*base, "--trial", f"trial-{i:02d}", "--ignore-tuned", *sets])
    return out


def build_tune_dag(spec: PipelineSpec, profile: Profile) -> DAG:
    """`<pipeline>_tune`: random search over the spec's search space, trials trained in parallel."""
    from airflow.sdk import get_current_context, task

    from tfpipe_operators import tuning

    spec_path = profile.job_spec_path(spec.path)
    local_spec_path = str(spec.path)
    dag = DAG(
        dag_id=f"{spec.pipeline}_tune",
        description=f"Hyperparameter search for {spec.pipeline} (random search, trials in parallel)",
        doc_md=f"### {spec.pipeline}: tuning\n\nSamples `trials` configurations from the spec's `search_space` "
        "(or the `search_space` param), trains each on the day's data as a mapped task, and records the best "
        "as the tuned config the daily DAG trains with next.",
        schedule=None,
        start_date=datetime.combine(spec.start_date, datetime.min.time(), tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        tags=["tfpipe", spec.pipeline, profile.name, "tuning"],
        params={
            "trials": Param(4, type="integer", minimum=1, maximum=50, description="number of trials"),
            "seed": Param(0, type="integer", description="random search seed"),
            "search_space": Param(
                None,
                type=["null", "object"],
                description="replaces the spec's search_space key by key, e.g. "
                '{"train.learning_rate": {"log_uniform": [0.001, 0.01]}}',
            ),
        },
        user_defined_filters={"tfpipe_run_params": run_params},
        default_args={
            "owner": spec.owner,
            "retries": spec.retries,
            "retry_delay": timedelta(minutes=2),
            "on_failure_callback": callbacks.on_failure,
        },
    )
    with dag:
        extract = _step(STEPS["extract_transform"], spec, profile, gpus=0)

        @task(task_id="sample_trials")
        def sample_trials() -> list[list[str]]:
            context = get_current_context()
            params = context["params"]
            ds = str(context.get("ds") or context["dag_run"].run_after.date().isoformat())
            trials = tuning.sample_trials(
                load_spec(local_spec_path), int(params["trials"]), int(params["seed"]), params.get("search_space")
            )
            return trial_arguments(spec_path, profile, ds, trials)

        trials = sample_trials()
        train_common: dict[str, Any] = {
            "task_id": "train",
            "execution_timeout": STEPS["train"].timeout,
            "doc_md": "One tuning trial: " + STEPS["train"].doc,
        }
        if profile.is_local:
            from tfpipe_operators.operators.job import TfpipeTrainJobOperator

            train = TfpipeTrainJobOperator.partial(job_cli=profile.job_cli, **train_common).expand(arguments=trials)
        else:
            from tfpipe_operators.operators.pod import TfpipeTrainPodOperator, pod_kwargs

            gpus = resolve_config(spec, environ={}).train.gpus
            train = TfpipeTrainPodOperator.partial(
                **pod_kwargs(spec, profile, STEPS["train"], gpus, **train_common)
            ).expand(arguments=trials)
        select = _step(STEPS["select_trial"], spec, profile, gpus=0)
        extract >> trials >> train >> select
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
