"""`<pipeline>_tune`: a random search whose trials are `train` runs, mapped in parallel.

extract_transform once, then `sample_trials` draws the configurations (`tuning.py`), one
mapped `train` task per trial writes its model under `<ds>/trials/<name>/`, and
`select_trial` records the best as the tuned config the daily runs train with.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param

from tfpipe_operators import callbacks
from tfpipe_operators.profiles import Profile
from tfpipe_operators.spec import PipelineSpec, load_spec
from tfpipe_operators.step_tasks import job_arguments, step_task, task_kwargs
from tfpipe_operators.steps import STEPS
from tfpipe_operators.trigger_form import run_params


def trial_arguments(spec_path: str, profile: Profile, ds: str, trials: list[dict[str, Any]]) -> list[list[str]]:
    """One `train` command per trial: its own model folder, its sampled values, no tuned config."""
    # No run params: a trial's values are exactly the sampled ones.
    base = job_arguments(STEPS["train"], spec_path, profile, ds=ds, run_params=None)
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
        extract = step_task(STEPS["extract_transform"], spec, profile)

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
        train_step = STEPS["train"]
        train_common = {**task_kwargs(train_step, spec), "doc_md": "One tuning trial: " + train_step.doc}
        gpus = spec.config.train.gpus if train_step.gpu else 0
        train = profile.operators.trials_task(spec, profile, train_step, trials, gpus, **train_common)
        select = step_task(STEPS["select_trial"], spec, profile)
        extract >> trials >> train >> select
    return dag
