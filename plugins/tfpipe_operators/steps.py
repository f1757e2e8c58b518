"""The pipeline's steps, one typed record each.

Everything known about a step is here, read by whoever needs it: the DAG factory (task id,
timeout, doc, trigger rule, the asset it updates), the pod rendering (resources, scratch
disk, GPU, Dataflow) and the job command line (the help line; the command is the task id). The jobs
environment imports this module too, so it imports nothing from Airflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class Step:
    task_id: str  # also its job command (`tfpipe-job <task_id>`) and the module that runs it
    summary: str  # the command's help line
    doc: str  # the task's doc in the Airflow UI
    timeout: timedelta
    cpu: str = "1"  # the pod's request
    memory: str = "4Gi"  # the pod's request and limit
    # The pod's one writable place (an emptyDir on the node's disk), requested so the
    # scheduler picks a node with that much free. Most steps write caches there, and the
    # Dataflow steps Beam's staging files: a few MB.
    scratch: str = "1Gi"
    gpu: bool = False  # on the GPU node pool when train.gpus > 0
    dataflow: bool = False  # in the gcp profile the pod launches a Dataflow job and waits for it
    # `none_failed`: runs after an upstream that was skipped (publish_model when the gate refused).
    trigger_rule: str = "all_success"
    outlet: str | None = None  # the asset the step updates: tfpipe://<pipeline>/<outlet>
    alert_when_skipped: bool = False  # a skip is news (the gate refused the model)
    # The extra link its task shows in the UI beside the logs: "tensorboard" (the model's
    # training curves) or "drift_report" (the day's drift picture, on the Dataflow pod).
    ui_link: str | None = None


DAILY: tuple[Step, ...] = (
    Step(
        task_id="extract_transform",
        summary="warehouse rows -> tf.Transform -> TFRecords + transform output",
        doc="Reads the day's rows (and the look-back) with the spec's SQL, validates their statistics, "
        "and writes transformed TFRecords, vocabularies and the tf.Transform graph to `<ds>/data/`.",
        timeout=timedelta(hours=4),
        scratch="2Gi",
        dataflow=True,
        ui_link="drift_report",
    ),
    Step(
        task_id="train",
        summary="train the model on the day's TFRecords",
        doc="Trains the configured architecture on `<ds>/data/`; writes the model package to `<ds>/model/`.",
        timeout=timedelta(hours=8),
        cpu="4",
        memory="16Gi",
        # train caches its parsed first epoch here (train.cache_parsed): about 75 bytes a row
        # for the sample spec (3 MB for 40K rows), so 20Gi holds a few hundred million rows.
        scratch="20Gi",
        gpu=True,
        ui_link="tensorboard",
    ),
    Step(
        task_id="export_serving_model",
        summary="freeze/optimise into the serving SavedModel and prove it equal",
        doc="Freezes the model, puts the tf.Transform graph inside one SavedModel (`<ds>/serving/`) "
        "and proves it predicts what the trained model does.",
        timeout=timedelta(hours=1),
    ),
    Step(
        task_id="evaluate_gate",
        summary="compare new, blessed and baseline models; write the verdict",
        doc="Compares the new model with the blessed model and a baseline on the day's eval rows; "
        "writes `<ds>/eval/evaluation.json`, `evaluation.png` and the verdict.",
        timeout=timedelta(hours=1),
    ),
    Step(
        task_id="publish_model",
        summary="bless the new model in the registry (skips if refused)",
        doc="Blesses the new model in `registry/blessed.json`. Skipped when the gate refused it or a "
        "model from a newer day is blessed.",
        timeout=timedelta(minutes=15),
        outlet="blessed_model",
        alert_when_skipped=True,
    ),
    Step(
        task_id="batch_score",
        summary="score the scoring query with the blessed model",
        doc="Scores every row of the scoring query with the blessed model into `<ds>/scores/`.",
        timeout=timedelta(hours=4),
        scratch="2Gi",
        dataflow=True,
        # Runs after publish_model whether it published or was skipped (gate refused):
        # scoring then uses the previously blessed model, so the table stays fresh.
        trigger_rule="none_failed",
    ),
    Step(
        task_id="publish_scores",
        summary="replace the ds partition of the score table",
        doc="Checks the day's scores (prediction gate: shift vs the previous partition, NULL/unseen "
        "features, identical scores), then replaces the day's partition of the score table and updates the "
        "latest view.",
        timeout=timedelta(hours=1),
        outlet="scores",
    ),
)

# The tune DAG's own step (its trials are `train` runs).
SELECT_TRIAL = Step(
    task_id="select_trial",
    summary="pick the best tuning trial of ds; record it as the tuned config",
    doc="Picks the trial with the best eval metric and records it (and the trial table) as the "
    "pipeline's tuned config, which the daily runs use from then on.",
    timeout=timedelta(minutes=15),
)

STEPS: dict[str, Step] = {step.task_id: step for step in (*DAILY, SELECT_TRIAL)}

# The registry DAG's one task: `tfpipe-job registry <action>` (its own arguments, not a day's step's).
REGISTRY = Step(
    task_id="registry",
    summary="the registry's history, a rollback, a manual bless (operators)",
    doc="Runs `tfpipe-job registry <action>` with the form's values.",
    timeout=timedelta(minutes=15),
)
