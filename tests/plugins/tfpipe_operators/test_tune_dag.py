"""The tune DAG: extract once, a mapped train per sampled trial, then select_trial."""

from __future__ import annotations

from pathlib import Path

from tfpipe_operators.profiles import Profile, load_profile
from tfpipe_operators.spec import load_spec
from tfpipe_operators.step_tasks import job_arguments
from tfpipe_operators.steps import STEPS
from tfpipe_operators.tune_dag import build_tune_dag, trial_arguments
from tfpipe_operators.tuning import sample_trials


def test_tune_dag_maps_training_over_trials(ctr_spec_path: Path) -> None:
    spec = load_spec(ctr_spec_path)
    dag = build_tune_dag(spec, Profile())
    assert dag.dag_id == "ctr_tune" and dag.schedule is None
    assert {t.task_id for t in dag.tasks} == {"extract_transform", "sample_trials", "train", "select_trial"}
    assert type(dag.get_task("train")).__name__ == "MappedOperator"
    assert dag.get_task("select_trial").upstream_task_ids == {"train"}
    assert dag.params["trials"] == 4
    args = trial_arguments(str(ctr_spec_path), Profile(), "2026-11-21", sample_trials(spec, 2, seed=1))
    assert [a[a.index("--trial") + 1] for a in args] == ["trial-00", "trial-01"]
    assert all("--ignore-tuned" in a and a[a.index("--ds") + 1] == "2026-11-21" for a in args)


def test_gcp_tune_dag_maps_gpu_pods(ctr_spec_path: Path) -> None:
    env = {
        "TFPIPE_PROFILE": "gcp",
        "TFPIPE_GCP_PROJECT": "p",
        "TFPIPE_JOB_IMAGE": "img:1",
        "TFPIPE_ARTIFACT_ROOT": "gs://b/a",
        "TFPIPE_WAREHOUSE": "bigquery://p/d",
        "TFPIPE_GPU_POOL": "gpu",
        "TFPIPE_DATAFLOW_IMAGE": "dataflow:1",
    }
    dag = build_tune_dag(load_spec(ctr_spec_path), load_profile(env))
    train = dag.get_task("train")
    assert train.operator_class.__name__ == "TfpipeTrainPodOperator"
    assert train.partial_kwargs["pool"] == "gpu"
    assert train.partial_kwargs["container_resources"].limits["nvidia.com/gpu"] == "1"


def test_a_trial_is_the_train_command_of_its_day_with_its_own_values_and_no_run_params(ctr_spec_path: Path) -> None:
    profile = Profile()
    trial = {"train.learning_rate": 0.004, "train.hidden_units": [32]}
    (args,) = trial_arguments(str(ctr_spec_path), profile, "2026-11-21", [trial])
    daily = job_arguments(STEPS["train"], str(ctr_spec_path), profile, ds="2026-11-21")
    assert daily[-2:] == ["--run-params", "{{ params | tfpipe_run_params }}"]
    assert args[: len(daily) - 2] == daily[:-2]  # the daily train command, without the run's params
    assert "--run-params" not in args
    assert args[len(daily) - 2 :] == [
        "--trial",
        "trial-00",
        "--ignore-tuned",
        "--set",
        "train.learning_rate=0.004",
        "--set",
        "train.hidden_units=[32]",
    ]


def test_local_trials_are_mapped_train_subprocesses_with_the_tensorboard_link(ctr_spec_path: Path) -> None:
    train = build_tune_dag(load_spec(ctr_spec_path), Profile()).get_task("train")
    assert train.operator_class.__name__ == "TfpipeTrainJobOperator"
    assert train.partial_kwargs["doc_md"].startswith("One tuning trial: ")
