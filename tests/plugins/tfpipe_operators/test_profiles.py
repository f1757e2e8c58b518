"""Profiles: what a deployment's TFPIPE_* settings give, and how bad settings are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tfpipe_operators.profiles import Profile, ProfileError, load_profile


def test_no_settings_give_the_local_profile_under_home() -> None:
    profile = load_profile({})
    assert profile.name == "local" and profile.source_poke_interval == 30
    assert profile.beam_runner == "DirectRunner"
    assert profile.artifact_root == str(Path.home() / ".tfpipe" / "artifacts")
    assert profile.warehouse == "duckdb://" + str(Path.home() / ".tfpipe" / "warehouse.duckdb")
    assert profile.job_cli == "tfpipe-job"


def test_empty_variables_count_as_unset() -> None:
    # A compose file's `TFPIPE_WAREHOUSE=` must not make the warehouse URL empty.
    assert load_profile({"TFPIPE_PROFILE": "", "TFPIPE_WAREHOUSE": ""}) == load_profile({})


def test_settings_are_read_from_their_variables(tmp_path: Path) -> None:
    profile = load_profile(
        {
            "TFPIPE_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
            "TFPIPE_WAREHOUSE": f"duckdb://{tmp_path}/w.duckdb",
            "TFPIPE_JOB_CLI": "/opt/jobs/bin/tfpipe-job",
            "TFPIPE_BEAM_RUNNER": "PrismRunner",
            "TFPIPE_DATAFLOW_MAX_WORKERS": "25",
            "UNRELATED": "ignored",
        }
    )
    assert profile.artifact_root == str(tmp_path / "artifacts")
    assert profile.warehouse == f"duckdb://{tmp_path}/w.duckdb"
    assert profile.job_cli == "/opt/jobs/bin/tfpipe-job"
    assert profile.beam_runner == "PrismRunner"  # a runner that is set wins over the profile's
    assert profile.dataflow_max_workers == 25


def test_gcp_profile_runs_beam_on_dataflow_and_stages_under_the_artifact_root(gcp_env: dict[str, str]) -> None:
    profile = load_profile(gcp_env)
    assert profile.name == "gcp" and profile.source_poke_interval == 300
    assert profile.beam_runner == "DataflowRunner"
    assert profile.dataflow_temp_location == "gs://acme-ml-tfpipe/artifacts/_dataflow/tmp"
    assert profile.dataflow_staging_location == "gs://acme-ml-tfpipe/artifacts/_dataflow/staging"
    own = load_profile({**gcp_env, "TFPIPE_TEMP_LOCATION": "gs://scratch/tmp"})
    assert own.dataflow_temp_location == "gs://scratch/tmp"


def test_dataflow_args_name_the_job_and_default_to_the_jobs_service_account(gcp_env: dict[str, str]) -> None:
    args = load_profile(gcp_env).dataflow_args("tfpipe-ctr-daily-extract-transform-20261121-t01")
    assert "--job_name=tfpipe-ctr-daily-extract-transform-20261121-t01" in args
    assert "--project=acme-ml" in args and "--region=europe-west4" in args
    assert "--sdk_container_image=europe-docker.pkg.dev/acme-ml/tfpipe/dataflow:0.1.0" in args
    assert "--service_account_email=tfpipe-jobs@acme-ml.iam.gserviceaccount.com" in args
    own = load_profile({**gcp_env, "TFPIPE_DATAFLOW_SERVICE_ACCOUNT": "df@acme-ml.iam.gserviceaccount.com"})
    assert "--service_account_email=df@acme-ml.iam.gserviceaccount.com" in own.dataflow_args("j")


def test_job_spec_path_is_the_same_file_locally_and_under_the_jobs_dir_elsewhere(tmp_path: Path) -> None:
    spec_path = tmp_path / "pipelines" / "ctr" / "pipeline.yaml"
    assert Profile().job_spec_path(spec_path) == str(spec_path.resolve())
    remote = Profile(job_specs_dir="/opt/tfpipe/pipelines/")
    assert remote.job_spec_path(spec_path) == "/opt/tfpipe/pipelines/ctr/pipeline.yaml"


def test_invalid_values_name_the_variable_and_what_it_held() -> None:
    with pytest.raises(ProfileError, match=r"TFPIPE_PROFILE: Input should be 'local' or 'gcp' \(got 'aws'\)"):
        load_profile({"TFPIPE_PROFILE": "aws"})
    with pytest.raises(ProfileError, match=r"TFPIPE_DATAFLOW_MAX_WORKERS: Input should be a valid integer.*'ten'"):
        load_profile({"TFPIPE_DATAFLOW_MAX_WORKERS": "ten"})
    with pytest.raises(ProfileError) as both:
        load_profile({"TFPIPE_PROFILE": "aws", "TFPIPE_DATAFLOW_MAX_WORKERS": "0"})
    # Every bad setting at once, so a deployment is fixed in one go.
    assert "TFPIPE_PROFILE" in str(both.value) and "TFPIPE_DATAFLOW_MAX_WORKERS" in str(both.value)


def test_gcp_profile_refuses_local_places(gcp_env: dict[str, str]) -> None:
    local_places = {**gcp_env, "TFPIPE_ARTIFACT_ROOT": "/var/tfpipe/artifacts", "TFPIPE_WAREHOUSE": "duckdb:///w.db"}
    with pytest.raises(ProfileError) as refused:
        load_profile(local_places)
    assert str(refused.value) == (
        "profile gcp needs: TFPIPE_ARTIFACT_ROOT (a gs:// prefix), TFPIPE_WAREHOUSE (bigquery://project/dataset)"
    )
    with pytest.raises(ProfileError, match=r"TFPIPE_TEMP_LOCATION \(a gs:// prefix, got '/tmp/t'\)"):
        load_profile({**gcp_env, "TFPIPE_TEMP_LOCATION": "/tmp/t"})


def test_a_profile_cannot_be_changed_after_loading() -> None:
    # DAGs built from one profile share it: none of them may change it for the others.
    with pytest.raises(ValidationError, match="frozen"):
        load_profile({}).warehouse = "duckdb:///other.duckdb"  # type: ignore[misc]
