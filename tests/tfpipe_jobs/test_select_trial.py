"""The tune DAG's selection: which finished trial becomes the config the daily runs train with."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

import pytest

from tfpipe_jobs import artifacts, select_trial
from tfpipe_jobs.artifacts import RunPaths
from tfpipe_jobs.context import JobContext
from tfpipe_jobs.select_trial import kept_epoch
from tfpipe_operators.config import resolve_config
from tfpipe_operators.spec import load_spec
from tfpipe_operators.warehouse import open_warehouse

DS = "2026-11-21"


def _context(root: Path, spec_path: Path) -> JobContext:
    spec = load_spec(spec_path)  # ctr: binary: ranked by val_auc, higher is better
    return JobContext(
        spec=spec,
        config=resolve_config(spec, environ={}),
        ds=date.fromisoformat(DS),
        paths=RunPaths(root=str(root), pipeline=spec.pipeline, ds=DS),
        warehouse=open_warehouse(f"duckdb://{root}/warehouse.duckdb"),  # never queried here
    )


def _trial(root: Path, name: str, val_auc: list[float], overrides: dict[str, object], patience: int = 1) -> None:
    """A trial's model package as train writes it: config.json and one metrics.csv row per epoch."""
    paths = RunPaths(root=str(root), pipeline="ctr", ds=DS, trial=name)
    with artifacts.staged_output(paths.model) as out:
        config = {"train.early_stopping_patience": patience, **overrides}
        artifacts.write_json(
            artifacts.join(out, "config.json"), {"trial": name, "config": config, "overrides": overrides}
        )
        lines = io.StringIO()
        writer = csv.writer(lines)
        writer.writerow(["epoch", "loss", "val_auc"])
        writer.writerows([epoch, 0.5, auc] for epoch, auc in enumerate(val_auc))
        artifacts.write_text(artifacts.join(out, "metrics.csv"), lines.getvalue())


def test_the_best_trial_by_eval_metric_becomes_the_tuned_config(tmp_path: Path, ctr_spec_path: Path) -> None:
    _trial(tmp_path, "trial-00", [0.70, 0.74], {"train.embedding_dim": 4})
    # Early stopping keeps the best epoch's weights: 0.80, though the last epoch fell back.
    _trial(tmp_path, "trial-01", [0.72, 0.80, 0.71], {"train.embedding_dim": 16})
    # Without early stopping the model is the last epoch's: 0.65, not its best 0.90.
    _trial(tmp_path, "trial-02", [0.90, 0.65], {"train.embedding_dim": 8}, patience=0)
    ctx = _context(tmp_path, ctr_spec_path)
    result = select_trial.run(ctx)
    assert (result["trial"], result["metric"], result["value"]) == ("trial-01", "val_auc", 0.80)
    assert result["overrides"] == {"train.embedding_dim": 16}
    assert [r["trial"] for r in result["trials"]] == ["trial-01", "trial-00", "trial-02"]
    assert select_trial.read(ctx.paths) == result  # what the daily runs read
    table = (tmp_path / "ctr" / "tuning" / f"trials-{DS}.csv").read_text().splitlines()
    assert table[0] == "trial,train.embedding_dim,val_auc,epochs"
    assert table[1] == "trial-01,16,0.80000,3"


def test_an_unfinished_trial_is_left_out(tmp_path: Path, ctr_spec_path: Path) -> None:
    _trial(tmp_path, "trial-00", [0.70], {"train.embedding_dim": 4})
    unfinished = tmp_path / "ctr" / DS / "trials" / "trial-01" / "model"
    unfinished.mkdir(parents=True)  # a train task that died: no _SUCCESS
    (unfinished / "config.json").write_text('{"trial": "trial-01"}')
    result = select_trial.run(_context(tmp_path, ctr_spec_path))
    assert [r["trial"] for r in result["trials"]] == ["trial-00"]


def test_no_finished_trial_says_which_folder_and_what_must_run(tmp_path: Path, ctr_spec_path: Path) -> None:
    ctx = _context(tmp_path, ctr_spec_path)
    with pytest.raises(artifacts.MissingArtifactError, match=rf"no finished trial under {ctx.paths.trials}: the train"):
        select_trial.run(ctx)
    assert select_trial.read(ctx.paths) is None  # the daily runs keep training with the spec's config


# metrics.csv of a multiclass trial: accuracy peaks at epoch 1, the loss keeps falling.
HISTORY = [
    {"epoch": "0", "val_loss": "0.745", "val_accuracy": "0.80"},
    {"epoch": "1", "val_loss": "0.600", "val_accuracy": "0.83"},
    {"epoch": "2", "val_loss": "0.435", "val_accuracy": "0.82"},
    {"epoch": "3", "val_loss": "0.500", "val_accuracy": "0.83"},
]


def test_the_kept_epoch_is_the_best_by_the_watched_metric() -> None:
    """A trial is ranked by the metrics of the epoch its model kept."""
    patience = {"train.early_stopping_patience": 1}
    assert kept_epoch(HISTORY, {**patience, "train.early_stopping_metric": "loss"}, "val_accuracy")["epoch"] == "2"
    # accuracy ties at 0.83: Keras keeps the first
    chosen = {**patience, "train.early_stopping_metric": "accuracy"}
    assert kept_epoch(HISTORY, chosen, "val_accuracy")["epoch"] == "1"
    # a package from before the key existed watched the gate's metric
    assert kept_epoch(HISTORY, patience, "val_accuracy")["epoch"] == "1"
    assert kept_epoch(HISTORY, {"train.early_stopping_patience": 0}, "val_accuracy")["epoch"] == "3"
