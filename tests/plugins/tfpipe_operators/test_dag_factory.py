from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk.exceptions import AirflowFailException

from tfpipe_operators.config import resolve_config
from tfpipe_operators.dag_factory import build_dag, build_dags, public_url
from tfpipe_operators.profiles import Profile, ProfileError, load_profile
from tfpipe_operators.spec import load_spec
from tfpipe_operators.steps import DAILY
from tfpipe_operators.trigger_form import form_defaults, run_params, trigger_params

STEPS = [s.task_id for s in DAILY]

CHAIN = ["wait_for_source", *STEPS]


def _chain(dag) -> list[str]:
    order, task = [], dag.get_task("wait_for_source")
    while task is not None:
        order.append(task.task_id)
        downstream = list(task.downstream_list)
        assert len(downstream) <= 1, f"{task.task_id} fans out to {[t.task_id for t in downstream]}"
        task = downstream[0] if downstream else None
    return order


def test_local_dag_has_the_design_chain(ctr_spec_path: Path) -> None:
    dag = build_dag(load_spec(ctr_spec_path), Profile())
    assert dag.dag_id == "ctr_daily"
    assert _chain(dag) == CHAIN
    assert dag.max_active_runs == 2
    assert dag.catchup is False
    assert dag.get_task("batch_score").trigger_rule == "none_failed"
    assert {type(t).__name__ for t in dag.tasks if t.task_id != "wait_for_source"} == {
        "TfpipeJobOperator",
        "TfpipeTrainJobOperator",
    }
    train = dag.get_task("train")
    assert train.retries == 1
    assert train.arguments[:2] == ["train", "--spec"]
    assert "{{ ds" in " ".join(train.arguments)  # ds templated into every step


def test_every_step_gets_ds_and_the_run_params(ctr_spec_path: Path) -> None:
    dag = build_dag(load_spec(ctr_spec_path), Profile())
    for step in STEPS:
        args = dag.get_task(step).arguments
        assert args[args.index("--ds") + 1].startswith("{{ ds")
        assert "--run-params" in args


def test_schedule_is_daily_with_data_intervals(ctr_spec_path: Path) -> None:
    dag = build_dag(load_spec(ctr_spec_path), Profile())
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    assert dag.timetable.summary == "0 0 * * *"


def test_trigger_params_follow_the_spec(ctr_spec_path: Path) -> None:
    params = trigger_params(load_spec(ctr_spec_path))
    assert set(params) == {
        "variant",
        "extract_lookback_days",
        "extract_sample_fraction",
        "extract_accept_schema",
        "train_epochs",
        "train_batch_size",
        "train_learning_rate",
        "score_allow_fewer_rows",
        "score_override_prediction_gate",
    }
    assert params["score_allow_fewer_rows"].schema["type"] == ["boolean", "null"]
    assert params["score_override_prediction_gate"].schema["type"] == ["boolean", "null"]
    epochs = params["train_epochs"].schema
    assert epochs["type"] == ["integer", "null"] and epochs["minimum"] == 1
    with pytest.raises(Exception, match="0 is less than the minimum of 1"):
        params["train_epochs"].resolve(0)


def test_each_field_starts_at_the_value_the_run_uses(ctr_spec_path: Path) -> None:
    """The spec sets extract.lookback_days to 2 (the code default is 0): the form shows 2."""
    params = trigger_params(load_spec(ctr_spec_path))
    assert params["extract_lookback_days"].value == 2
    assert params["extract_lookback_days"].description == "Days before ds also read (0 = ds only). Spec: 2."
    assert params["train_epochs"].value == 3
    assert params["train_learning_rate"].value == 0.003
    assert params["train_learning_rate"].description.startswith(
        "Must be more than 0. Default: 0.003 (the spec does not set it)."
    )
    assert "ctr_tune has recorded a best trial" in params["train_learning_rate"].description  # in the search space


def test_the_variant_is_offered_by_name(ctr_spec_path: Path) -> None:
    variant = trigger_params(load_spec(ctr_spec_path))["variant"]
    assert variant.value is None
    assert variant.schema["enum"] == [None, "wide"]
    # The 3.3 dropdown labels an option by values_display[str(value)], "null" for None.
    assert variant.schema["values_display"] == {
        "null": "(none): the spec as written",
        "wide": "wide: train.hidden_units=[256, 128, 64], train.embedding_dim=16",
    }
    with pytest.raises(Exception, match="'narrow' is not one of"):
        variant.resolve("narrow")


def test_a_field_a_variant_changes_says_so(spec_dir: Path) -> None:
    path = spec_dir / "pipeline.yaml"
    path.write_text(path.read_text().replace("  - train.epochs\n", "  - train.epochs\n  - train.embedding_dim\n"))
    param = trigger_params(load_spec(path))["train_embedding_dim"]
    assert param.value == 8
    assert param.description.startswith("Spec: 8. Variant wide: 16 (kept at 8, a run with that variant uses 16).")


def test_a_spec_without_variants_has_no_variant_field(spec_dir: Path) -> None:
    path = spec_dir / "pipeline.yaml"
    text = path.read_text()
    start, end = text.index("variants:"), text.index("overridable:")
    path.write_text(text[:start] + text[end:])
    assert "variant" not in trigger_params(load_spec(path))


def test_run_params_pass_only_overrides(ctr_spec_path: Path) -> None:
    spec = load_spec(ctr_spec_path)
    defaults = form_defaults(spec)
    params = {name: param.value for name, param in trigger_params(spec).items()}
    # The form untouched: nothing overrides the spec, so a variant or tuned value still applies.
    assert json.loads(run_params(params, defaults)) == {}
    changed = {**params, "variant": "wide", "train_epochs": 5, "train_learning_rate": None, "other": 1}
    assert json.loads(run_params(changed, defaults)) == {"variant": "wide", "train.epochs": 5}
    # Same value in another JSON type is still no override; a boolean is not a number.
    assert json.loads(run_params({**params, "extract_sample_fraction": 1}, defaults)) == {}
    assert json.loads(run_params({**params, "score_allow_fewer_rows": True}, defaults)) == {
        "score.allow_fewer_rows": True
    }


def test_the_job_sees_the_variant_value_when_the_form_is_left_alone(spec_dir: Path) -> None:
    """Levels: code default < spec < variant < run. A field left at the spec's value must not
    undo the variant: the config the job resolves from what the DAG renders keeps it."""
    path = spec_dir / "pipeline.yaml"
    path.write_text(path.read_text().replace("  - train.epochs\n", "  - train.epochs\n  - train.embedding_dim\n"))
    spec = load_spec(path)
    params = {name: param.value for name, param in trigger_params(spec).items()}
    rendered = json.loads(run_params({**params, "variant": "wide", "train_epochs": 7}, form_defaults(spec)))
    variant = rendered.pop("variant")
    config = resolve_config(spec, variant=variant, run_params=rendered, environ={})
    assert config.train.embedding_dim == 16  # the variant's, not the form's 8
    assert config.train.epochs == 7  # the run's override
    assert config.extract.lookback_days == 2  # the spec's


def test_the_rendered_argument_carries_only_overrides(ctr_spec_path: Path) -> None:
    dag = build_dag(load_spec(ctr_spec_path), Profile())
    flt = dag.user_defined_filters["tfpipe_run_params"]
    params = {name: param.value for name, param in dag.params.items()}
    assert json.loads(flt(params)) == {}
    assert json.loads(flt({**params, "extract_lookback_days": 0})) == {"extract.lookback_days": 0}


def test_gcp_profile_uses_pods_and_bigquery(ctr_spec_path: Path, gcp_env: dict[str, str]) -> None:
    dag = build_dag(load_spec(ctr_spec_path), load_profile(gcp_env))
    assert _chain(dag) == CHAIN  # same task ids in both profiles
    sensor = dag.get_task("wait_for_source")
    assert type(sensor).__name__ == "WarehousePartitionSensor"  # the same sensor, on the BigQuery backend
    assert sensor.warehouse == "bigquery://acme-ml/analytics" and sensor.poke_interval == 300
    assert all(isinstance(dag.get_task(s), KubernetesPodOperator) for s in STEPS)
    from tfpipe_operators.operators.pod import DataflowPodOperator

    assert {s for s in STEPS if isinstance(dag.get_task(s), DataflowPodOperator)} == {
        "extract_transform",
        "batch_score",
    }
    assert type(dag.get_task("extract_transform")).__name__ == "DataflowExtractPodOperator"  # links drift.png too
    extract = dag.get_task("extract_transform")
    assert "--runner" in extract.arguments and "/opt/tfpipe/pipelines/ctr/pipeline.yaml" in extract.arguments
    assert "--beam-arg=--sdk_container_image=europe-docker.pkg.dev/acme-ml/tfpipe/dataflow:0.1.0" in extract.arguments
    assert not any("--sdk_container_image" in a for a in dag.get_task("train").arguments)


def test_gcp_profile_without_settings_is_refused(gcp_env: dict[str, str]) -> None:
    with pytest.raises(
        ProfileError, match="profile gcp needs: TFPIPE_GCP_PROJECT, TFPIPE_JOB_IMAGE, TFPIPE_DATAFLOW_IMAGE"
    ):
        load_profile({"TFPIPE_PROFILE": "gcp"})
    with pytest.raises(ProfileError, match="TFPIPE_PROFILE"):
        load_profile({"TFPIPE_PROFILE": "aws"})
    with pytest.raises(ProfileError, match="TFPIPE_DATAFLOW_MAX_WORKERS: Input should be greater than or equal to 1"):
        load_profile({**gcp_env, "TFPIPE_DATAFLOW_MAX_WORKERS": "0"})
    with pytest.raises(ProfileError, match="TFPIPE_DATAFLOW_SERVICE_ACCOUNT"):
        load_profile({**gcp_env, "TFPIPE_DATAFLOW_SERVICE_ACCOUNT": "not an email"})
    with pytest.raises(ProfileError, match=r"TFPIPE_STAGING_LOCATION \(a gs:// prefix, got '/tmp/staging'\)"):
        load_profile({**gcp_env, "TFPIPE_STAGING_LOCATION": "/tmp/staging"})


def test_a_broken_spec_breaks_only_its_own_dags(spec_dir: Path) -> None:
    import shutil

    bad = spec_dir.parent / "ads"
    shutil.copytree(spec_dir, bad)
    text = (bad / "pipeline.yaml").read_text().replace("pipeline: ctr", "pipeline: ads")
    (bad / "pipeline.yaml").write_text(text.replace("task: binary", "task: binery"))
    dags = build_dags(spec_dir.parent, Profile())
    assert set(dags) == {"ctr_daily", "ctr_registry", "ctr_tune", "ads_daily"}
    assert _chain(dags["ctr_daily"]) == CHAIN
    placeholder = dags["ads_daily"]
    error = "label.task: Input should be 'binary', 'multiclass' or 'regression'"
    assert f"{bad / 'pipeline.yaml'}: {error}" in (placeholder.doc_md or "")
    assert (placeholder.description or "").startswith(f"INVALID SPEC: {bad / 'pipeline.yaml'}: label.task")
    assert [t.task_id for t in placeholder.tasks] == ["invalid_spec"]
    assert "invalid-spec" in placeholder.tags and placeholder.schedule == "@daily"
    with pytest.raises(AirflowFailException, match=error):
        placeholder.get_task("invalid_spec").python_callable()


def test_a_spec_that_fails_to_build_and_a_duplicate_name_get_placeholders(spec_dir: Path) -> None:
    import shutil

    twin = spec_dir.parent / "ctr_copy"
    shutil.copytree(spec_dir, twin)
    cron = spec_dir.parent / "weird"
    shutil.copytree(spec_dir, cron)
    text = (cron / "pipeline.yaml").read_text().replace("pipeline: ctr", "pipeline: weird")
    (cron / "pipeline.yaml").write_text(text.replace('schedule: "@daily"', 'schedule: "0 25 * * *"'))
    dags = build_dags(spec_dir.parent, Profile())
    assert set(dags) == {"ctr_daily", "ctr_registry", "ctr_tune", "ctr_copy_invalid_spec", "weird_daily"}
    assert f"{twin / 'pipeline.yaml'}: pipeline: 'ctr' is already the pipeline of {spec_dir / 'pipeline.yaml'}" in (
        dags["ctr_copy_invalid_spec"].doc_md or ""
    )
    assert f"{cron / 'pipeline.yaml'}: AirflowTimetableInvalid: [0 25 * * *] is not acceptable" in (
        dags["weird_daily"].doc_md or ""
    )
    assert dags["ctr_daily"].doc_md and "INVALID" not in (dags["ctr_daily"].description or "")


def test_assets_callbacks_and_docs(ctr_spec_path: Path) -> None:
    dag = build_dag(load_spec(ctr_spec_path), Profile())
    assert [a.uri for a in dag.get_task("publish_scores").outlets] == ["tfpipe://ctr/ctr_scores"]
    assert [a.uri for a in dag.get_task("publish_model").outlets] == ["tfpipe://ctr/blessed_model"]
    assert dag.get_task("publish_model").on_skipped_callback
    assert all(t.on_failure_callback for t in dag.tasks)
    assert all(t.retry_exponential_backoff for t in dag.tasks)
    assert all(t.doc_md for t in dag.tasks)
    assert dag.get_task("train").execution_timeout.total_seconds() == 8 * 3600


def test_the_dag_doc_says_where_the_scores_land(ctr_spec_path: Path) -> None:
    profile = Profile(warehouse="duckdb:///srv/warehouse.duckdb", artifact_root="/srv/artifacts")
    doc = build_dag(load_spec(ctr_spec_path), profile).doc_md or ""
    assert "warehouse `duckdb:///srv/warehouse.duckdb`" in doc
    assert "table `ctr_scores`" in doc and "view `ctr_scores_latest`" in doc
    assert "`/srv/artifacts/ctr/registry/blessed.json`" in doc


def test_the_dag_doc_names_bigquery_tables_in_full(ctr_spec_path: Path, gcp_env: dict[str, str]) -> None:
    doc = build_dag(load_spec(ctr_spec_path), load_profile(gcp_env)).doc_md or ""
    assert "warehouse `bigquery://acme-ml/analytics`" in doc
    assert "table `acme-ml.analytics.ctr_scores`" in doc and "view `acme-ml.analytics.ctr_scores_latest`" in doc


def test_the_dag_doc_shows_no_secret_of_the_warehouse_url(ctr_spec_path: Path) -> None:
    url = "duckdb://reader:s3cret@db.internal/warehouse.duckdb?token=abc123&mode=ro"
    doc = build_dag(load_spec(ctr_spec_path), Profile(warehouse=url)).doc_md or ""
    assert "warehouse `duckdb://reader:***@db.internal/warehouse.duckdb?token=***&mode=***`" in doc
    assert "s3cret" not in doc and "abc123" not in doc
    assert public_url("/srv/warehouse.duckdb") == "/srv/warehouse.duckdb"
    assert public_url("bigquery://acme-ml/analytics") == "bigquery://acme-ml/analytics"


def test_gcp_profile_runs_beam_on_dataflow(ctr_spec_path: Path, gcp_env: dict[str, str]) -> None:
    """The Dataflow steps' pods launch a Dataflow job: the runner they are given is DataflowRunner
    (not the local default, which would run the whole day inside the pod)."""
    for profile, runner in (
        (load_profile(gcp_env), "DataflowRunner"),
        (load_profile({**gcp_env, "TFPIPE_BEAM_RUNNER": "DirectRunner"}), "DirectRunner"),
        (Profile(), "DirectRunner"),
        (load_profile({}), "DirectRunner"),
    ):
        dag = build_dag(load_spec(ctr_spec_path), profile)
        for step in ("extract_transform", "batch_score"):
            arguments = dag.get_task(step).arguments
            assert arguments[arguments.index("--runner") + 1] == runner, (profile.name, step)


def test_the_source_wait_is_12_hours_unless_the_deployment_says(
    ctr_spec_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TFPIPE_SOURCE_WAIT_TIMEOUT", raising=False)
    wait = build_dag(load_spec(ctr_spec_path), Profile()).get_task("wait_for_source")
    assert (wait.timeout, wait.mode, wait.poke_interval) == (12 * 3600, "reschedule", 30)
    monkeypatch.setenv("TFPIPE_SOURCE_WAIT_TIMEOUT", "20")
    wait = build_dag(load_spec(ctr_spec_path), Profile()).get_task("wait_for_source")
    assert (wait.timeout, wait.poke_interval) == (20, 20)
    monkeypatch.setenv("TFPIPE_SOURCE_WAIT_TIMEOUT", "2h")
    with pytest.raises(ProfileError, match="TFPIPE_SOURCE_WAIT_TIMEOUT must be a positive number of seconds"):
        build_dag(load_spec(ctr_spec_path), Profile())
