"""Config resolution: the levels, which level a bad value is blamed on, and one resolution per spec."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tfpipe_operators import config as config_module
from tfpipe_operators.config import SpecError, resolve_config
from tfpipe_operators.spec import load_spec


def test_config_levels_defaults_spec_variant_env_run(ctr_spec_path: Path) -> None:
    spec = load_spec(ctr_spec_path)
    base = resolve_config(spec, environ={})
    assert base.train.epochs == 3  # from the spec
    assert base.train.learning_rate == 0.003  # code default
    assert base.extract.lookback_days == 2
    wide = resolve_config(spec, variant="wide", environ={})
    assert wide.train.hidden_units == [256, 128, 64]
    env = resolve_config(spec, variant="wide", environ={"TFPIPE_TRAIN_EPOCHS": "7", "TFPIPE_TRAIN_HIDDEN_UNITS": "[8]"})
    assert env.train.epochs == 7 and env.train.hidden_units == [8]
    run = resolve_config(spec, environ={"TFPIPE_TRAIN_EPOCHS": "7"}, overrides={"train.epochs": 2})
    assert run.train.epochs == 2  # run params win over the environment
    assert base.digest() != run.digest()


def test_bad_override_names_the_key_and_the_problem(ctr_spec_path: Path) -> None:
    spec = load_spec(ctr_spec_path)
    with pytest.raises(SpecError, match=r"train\.epochs: Input should be greater than or equal to 1"):
        resolve_config(spec, overrides={"train.epochs": 0}, environ={})
    with pytest.raises(SpecError, match=r"'train.epoch' is not a config key; train has: .*epochs"):
        resolve_config(spec, overrides={"train.epoch": 3}, environ={})
    with pytest.raises(SpecError, match=r"unknown variant 'huge' \(spec defines: wide\)"):
        resolve_config(spec, variant="huge", environ={})


def test_each_bad_value_is_blamed_on_the_layer_that_set_it(spec_dir: Path, edit_spec: Callable[..., Path]) -> None:
    path = edit_spec(variants={"deep": {"train.dropout": 1.5}, "ok": {}})
    spec_path = str(path)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(err.value) == f"{spec_path}: variants.deep: train.dropout: Input should be less than 1 (got 1.5)"
    path = edit_spec(variants={}, train={"epochs": 0})
    with pytest.raises(
        SpecError, match=rf"^{re.escape(spec_path)}: train\.epochs: Input should be greater than or equal"
    ):
        load_spec(path)
    spec = load_spec(edit_spec(train={"epochs": 3}))
    cases = [
        ({"environ": {"TFPIPE_TRAIN_EPOCHS": "0"}}, "environment variable TFPIPE_TRAIN_EPOCHS (train.epochs)"),
        (
            {"tuned": {"train.epochs": 0}, "tuned_source": "tuned config best.json"},
            "tuned config best.json: train.epochs",
        ),
        ({"run_params": {"train.epochs": 0}}, "run param train_epochs (train.epochs)"),
        ({"overrides": {"train.epochs": 0}, "overrides_source": "--set"}, "--set train.epochs"),
    ]
    for kwargs, origin in cases:
        with pytest.raises(SpecError) as err:
            resolve_config(spec, **{"environ": {}, **kwargs})  # type: ignore[arg-type]
        assert str(err.value) == f"{origin}: Input should be greater than or equal to 1 (got 0)", kwargs
    with pytest.raises(
        SpecError, match=r"^run param gate_metric \(gate\.metric\): 'rmse' does not apply to task binary"
    ):
        resolve_config(spec, run_params={"gate.metric": "rmse"}, environ={})
    # The last layer to set a key is the one named.
    with pytest.raises(SpecError, match=r"^run param train_epochs"):
        resolve_config(spec, environ={"TFPIPE_TRAIN_EPOCHS": "0"}, run_params={"train.epochs": -1})


def test_early_stopping_metric_defaults_to_the_eval_loss_and_must_fit_the_task(
    spec_dir: Path, edit_spec: Callable[..., Path]
) -> None:
    spec = load_spec(spec_dir / "pipeline.yaml")
    assert resolve_config(spec, environ={}).train.early_stopping_metric == "loss"
    assert (
        resolve_config(spec, overrides={"train.early_stopping_metric": "auc"}, environ={}).train.early_stopping_metric
        == "auc"
    )
    path = edit_spec(train={"early_stopping_metric": "rmse"})
    with pytest.raises(
        SpecError,
        match=r"pipeline\.yaml: train\.early_stopping_metric: 'rmse' is not an eval metric of task binary; "
        r"use one of loss, auc, accuracy$",
    ):
        load_spec(path)
    multiclass = edit_spec(
        label={"column": "clicked", "task": "multiclass", "num_classes": 3},
        train={},
        gate={"metric": "accuracy"},
    )
    with pytest.raises(
        SpecError,
        match=r"^--set train\.early_stopping_metric: 'auc' is not an eval metric of task "
        r"multiclass; use one of loss, accuracy$",
    ):
        resolve_config(
            load_spec(multiclass),
            overrides={"train.early_stopping_metric": "auc"},
            overrides_source="--set",
            environ={},
        )


def test_prediction_gate_thresholds_default_and_are_checked_by_key(
    spec_dir: Path, edit_spec: Callable[..., Path]
) -> None:
    """The gate's thresholds have defaults; a bad one names its key and where it was set."""
    spec = load_spec(spec_dir / "pipeline.yaml")
    score = resolve_config(spec, environ={}).score
    assert (score.max_score_psi, score.psi_buckets, score.max_class_share_change) == (0.25, 10, 0.2)
    assert (score.max_missing_or_unseen_share, score.min_score_std, score.override_prediction_gate) == (
        0.5,
        1e-6,
        False,
    )
    path = edit_spec(score={"max_score_psi": -0.1})
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(err.value) == f"{path}: score.max_score_psi: Input should be greater than or equal to 0 (got -0.1)"
    spec = load_spec(edit_spec(score={"psi_buckets": 20}))
    assert resolve_config(spec, environ={}).score.psi_buckets == 20
    cases = [
        (
            {"environ": {"TFPIPE_SCORE_MAX_MISSING_OR_UNSEEN_SHARE": "1.5"}},
            "environment variable TFPIPE_SCORE_MAX_MISSING_OR_UNSEEN_SHARE (score.max_missing_or_unseen_share): "
            "Input should be less than or equal to 1 (got 1.5)",
        ),
        (
            {"run_params": {"score.psi_buckets": 1}},
            "run param score_psi_buckets (score.psi_buckets): Input should be greater than or equal to 2 (got 1)",
        ),
        (
            {"overrides": {"score.max_class_share_change": 2}, "overrides_source": "--set"},
            "--set score.max_class_share_change: Input should be less than or equal to 1 (got 2)",
        ),
        (
            {"run_params": {"score.override_prediction_gate": "perhaps"}},
            "run param score_override_prediction_gate (score.override_prediction_gate): Input should be a valid "
            "boolean, unable to interpret input (got 'perhaps')",
        ),
    ]
    for kwargs, message in cases:
        with pytest.raises(SpecError) as err:
            resolve_config(spec, **{"environ": {}, **kwargs})  # type: ignore[arg-type]
        assert str(err.value) == message, kwargs
    overridden = resolve_config(spec, environ={}, run_params={"score.override_prediction_gate": True})
    assert overridden.score.override_prediction_gate is True


def test_the_specs_config_is_resolved_once_and_the_dag_builders_reuse_it(ctr_spec_path: Path, monkeypatch) -> None:
    from tfpipe_operators.dag_factory import pipeline_dags
    from tfpipe_operators.profiles import Profile

    calls: list[str | None] = []
    real = config_module.resolve_config

    def counted(spec, variant=None, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(variant)
        return real(spec, variant=variant, **kwargs)

    for module in ("tfpipe_operators.config", "tfpipe_operators.spec", "tfpipe_operators.trigger_form"):
        monkeypatch.setattr(f"{module}.resolve_config", counted)
    spec = load_spec(ctr_spec_path)
    assert calls == [None, "wide"]  # the spec's own config (kept) and its variant's (checked)
    assert spec.config == real(spec, environ={})
    calls.clear()
    pipeline_dags(spec, Profile())  # the daily, registry and tune DAGs
    assert None not in calls  # the spec's config came from spec.config; only the form's variant resolves
