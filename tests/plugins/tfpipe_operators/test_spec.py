from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tfpipe_operators.features import FeatureKind, Task
from tfpipe_operators.spec import SpecError, load_spec, resolve_config


def _edit(spec_dir: Path, **changes: object) -> Path:
    path = spec_dir / "pipeline.yaml"
    raw = yaml.safe_load(path.read_text())
    raw.update(changes)
    path.write_text(yaml.safe_dump(raw))
    return path


def test_sample_spec_loads_with_sql_and_features(ctr_spec_path: Path) -> None:
    spec = load_spec(ctr_spec_path)
    assert spec.dag_id == "ctr_daily"
    assert spec.label.task is Task.BINARY
    assert "@ds" in spec.source_sql and "@lookback_days" in spec.source_sql
    assert "FROM candidates" in spec.scoring_sql
    kinds = {f.kind for f in spec.features}
    assert kinds == {FeatureKind.NUMERIC, FeatureKind.BUCKETIZED, FeatureKind.VOCABULARY, FeatureKind.CROSS}
    assert spec.feature_by_name["market"].crosses == ["country", "item_category"]
    assert "market" not in [f.name for f in spec.raw_features]
    assert spec.feature_by_name["user_id"].transformed_name == "user_id_xf"


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


def test_unknown_top_level_key_names_file_and_key(spec_dir: Path) -> None:
    path = _edit(spec_dir, modle={"architecture": "mlp"})
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(path) in str(err.value)
    assert "modle: Extra inputs are not permitted" in str(err.value)


def test_feature_errors_point_at_the_feature(spec_dir: Path) -> None:
    raw = yaml.safe_load((spec_dir / "pipeline.yaml").read_text())
    raw["features"][5] = {"name": "hour", "kind": "bucketized"}  # buckets missing
    (spec_dir / "pipeline.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match=r"features\.5: Value error, feature 'hour' of kind bucketized needs 'buckets'"):
        load_spec(spec_dir / "pipeline.yaml")


def test_duplicate_feature_and_label_as_feature_are_refused(spec_dir: Path) -> None:
    raw = yaml.safe_load((spec_dir / "pipeline.yaml").read_text())
    raw["features"].append({"name": "device", "kind": "hashed", "buckets": 8})
    (spec_dir / "pipeline.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match="features declared twice: device"):
        load_spec(spec_dir / "pipeline.yaml")


def test_missing_sql_file_is_named(spec_dir: Path) -> None:
    (spec_dir / "score.sql").unlink()
    with pytest.raises(SpecError, match=r"scoring\.sql: SQL file 'score.sql' not found"):
        load_spec(spec_dir / "pipeline.yaml")


def test_bad_variant_fails_at_load(spec_dir: Path) -> None:
    path = _edit(spec_dir, variants={"broken": {"train.dropout": 1.5}})
    with pytest.raises(SpecError, match=r"variants\.broken: .*train\.dropout: Input should be less than 1"):
        load_spec(path)


def test_gate_metric_must_fit_the_task(spec_dir: Path) -> None:
    path = _edit(spec_dir, gate={"metric": "rmse"})
    with pytest.raises(SpecError, match="gate.metric: 'rmse' does not apply to task binary"):
        load_spec(path)


def test_overridable_keys_are_checked(spec_dir: Path) -> None:
    path = _edit(spec_dir, overridable=["train.epochs", "train.nope"])
    with pytest.raises(SpecError, match="'train.nope' is not a config key"):
        load_spec(path)


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "pipeline.yaml"
    bad.write_text("pipeline: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "nope.yaml")


def _scoring(spec_dir: Path, **top_k: object) -> Path:
    raw = yaml.safe_load((spec_dir / "pipeline.yaml").read_text())
    return _edit(spec_dir, scoring={**raw["scoring"], "top_k": top_k})


def test_top_k_groups_by_some_of_the_scoring_keys(spec_dir: Path) -> None:
    spec = load_spec(_scoring(spec_dir, group_by=["user_id"], k=20))
    assert spec.scoring.top_k is not None and spec.scoring.top_k.k == 20
    with pytest.raises(
        SpecError, match=r"scoring: Value error, top_k.group_by: country not in keys \(user_id, item_id\)"
    ):
        load_spec(_scoring(spec_dir, group_by=["country"], k=20))
    with pytest.raises(SpecError, match="must leave at least one key column out"):
        load_spec(_scoring(spec_dir, group_by=["user_id", "item_id"], k=20))
    with pytest.raises(SpecError, match=r"scoring\.top_k\.k: Input should be greater than 0"):
        load_spec(_scoring(spec_dir, group_by=["user_id"], k=0))


def test_top_k_needs_one_score_column(spec_dir: Path) -> None:
    _scoring(spec_dir, group_by=["user_id"], k=5)
    path = _edit(spec_dir, label={"column": "clicked", "task": "multiclass", "num_classes": 3})
    with pytest.raises(SpecError, match="scoring.top_k ranks by one score column; task multiclass"):
        load_spec(path)


def test_each_bad_value_is_blamed_on_the_layer_that_set_it(spec_dir: Path) -> None:
    path = _edit(spec_dir, variants={"deep": {"train.dropout": 1.5}, "ok": {}})
    spec_path = str(path)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(err.value) == f"{spec_path}: variants.deep: train.dropout: Input should be less than 1 (got 1.5)"
    path = _edit(spec_dir, variants={}, train={"epochs": 0})
    with pytest.raises(
        SpecError, match=rf"^{re.escape(spec_path)}: train\.epochs: Input should be greater than or equal"
    ):
        load_spec(path)
    spec = load_spec(_edit(spec_dir, train={"epochs": 3}))
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


def test_static_sql_is_an_explicit_opt_out_per_query(spec_dir: Path) -> None:
    raw = yaml.safe_load((spec_dir / "pipeline.yaml").read_text())
    spec = load_spec(_edit(spec_dir, scoring={**raw["scoring"], "static_sql": True}))
    assert spec.scoring.static_sql and not spec.source.static_sql
    with pytest.raises(SpecError, match=r"source\.static_sql: Input should be a valid boolean"):
        load_spec(_edit(spec_dir, source={**raw["source"], "static_sql": "sometimes"}))


def test_the_sql_text_names_its_file_without_moving_a_line(ctr_spec_path: Path) -> None:
    spec = load_spec(ctr_spec_path)
    text = (ctr_spec_path.parent / "score.sql").read_text()
    assert spec.scoring_sql.endswith(text)
    assert spec.scoring_sql.count("\n") == text.count("\n")
    assert str(ctr_spec_path.parent / "score.sql") in spec.scoring_sql.splitlines()[0]


def test_early_stopping_metric_defaults_to_the_eval_loss_and_must_fit_the_task(spec_dir: Path) -> None:
    spec = load_spec(spec_dir / "pipeline.yaml")
    assert resolve_config(spec, environ={}).train.early_stopping_metric == "loss"
    assert (
        resolve_config(spec, overrides={"train.early_stopping_metric": "auc"}, environ={}).train.early_stopping_metric
        == "auc"
    )
    path = _edit(spec_dir, train={"early_stopping_metric": "rmse"})
    with pytest.raises(
        SpecError,
        match=r"pipeline\.yaml: train\.early_stopping_metric: 'rmse' is not an eval metric of task binary; "
        r"use one of loss, auc, accuracy$",
    ):
        load_spec(path)
    multiclass = _edit(
        spec_dir,
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


def test_prediction_gate_thresholds_default_and_are_checked_by_key(spec_dir: Path) -> None:
    """The gate's thresholds have defaults; a bad one names its key and where it was set."""
    spec = load_spec(spec_dir / "pipeline.yaml")
    score = resolve_config(spec, environ={}).score
    assert (score.max_score_psi, score.psi_buckets, score.max_class_share_change) == (0.25, 10, 0.2)
    assert (score.max_missing_or_unseen_share, score.min_score_std, score.override_prediction_gate) == (
        0.5,
        1e-6,
        False,
    )
    path = _edit(spec_dir, score={"max_score_psi": -0.1})
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(err.value) == f"{path}: score.max_score_psi: Input should be greater than or equal to 0 (got -0.1)"
    spec = load_spec(_edit(spec_dir, score={"psi_buckets": 20}))
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
