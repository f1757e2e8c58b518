from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tfpipe_operators.config import SpecError
from tfpipe_operators.features import FeatureKind, Task
from tfpipe_operators.spec import load_spec


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


def test_unknown_top_level_key_names_file_and_key(spec_dir: Path, edit_spec: Callable[..., Path]) -> None:
    path = edit_spec(modle={"architecture": "mlp"})
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


def test_bad_variant_fails_at_load(spec_dir: Path, edit_spec: Callable[..., Path]) -> None:
    path = edit_spec(variants={"broken": {"train.dropout": 1.5}})
    with pytest.raises(SpecError, match=r"variants\.broken: .*train\.dropout: Input should be less than 1"):
        load_spec(path)


def test_gate_metric_must_fit_the_task(spec_dir: Path, edit_spec: Callable[..., Path]) -> None:
    path = edit_spec(gate={"metric": "rmse"})
    with pytest.raises(SpecError, match="gate.metric: 'rmse' does not apply to task binary"):
        load_spec(path)


def test_overridable_keys_are_checked(spec_dir: Path, edit_spec: Callable[..., Path]) -> None:
    path = edit_spec(overridable=["train.epochs", "train.nope"])
    with pytest.raises(SpecError, match="'train.nope' is not a config key"):
        load_spec(path)


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "pipeline.yaml"
    bad.write_text("pipeline: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "nope.yaml")


def _scoring(spec_dir: Path, edit_spec: Callable[..., Path], **top_k: object) -> Path:
    raw = yaml.safe_load((spec_dir / "pipeline.yaml").read_text())
    return edit_spec(scoring={**raw["scoring"], "top_k": top_k})


def test_top_k_groups_by_some_of_the_scoring_keys(spec_dir: Path, edit_spec: Callable[..., Path]) -> None:
    spec = load_spec(_scoring(spec_dir, edit_spec, group_by=["user_id"], k=20))
    assert spec.scoring.top_k is not None and spec.scoring.top_k.k == 20
    with pytest.raises(
        SpecError, match=r"scoring: Value error, top_k.group_by: country not in keys \(user_id, item_id\)"
    ):
        load_spec(_scoring(spec_dir, edit_spec, group_by=["country"], k=20))
    with pytest.raises(SpecError, match="must leave at least one key column out"):
        load_spec(_scoring(spec_dir, edit_spec, group_by=["user_id", "item_id"], k=20))
    with pytest.raises(SpecError, match=r"scoring\.top_k\.k: Input should be greater than 0"):
        load_spec(_scoring(spec_dir, edit_spec, group_by=["user_id"], k=0))


def test_top_k_needs_one_score_column(spec_dir: Path, edit_spec: Callable[..., Path]) -> None:
    _scoring(spec_dir, edit_spec, group_by=["user_id"], k=5)
    path = edit_spec(label={"column": "clicked", "task": "multiclass", "num_classes": 3})
    with pytest.raises(SpecError, match="scoring.top_k ranks by one score column; task multiclass"):
        load_spec(path)


def test_static_sql_is_an_explicit_opt_out_per_query(spec_dir: Path, edit_spec: Callable[..., Path]) -> None:
    raw = yaml.safe_load((spec_dir / "pipeline.yaml").read_text())
    spec = load_spec(edit_spec(scoring={**raw["scoring"], "static_sql": True}))
    assert spec.scoring.static_sql and not spec.source.static_sql
    with pytest.raises(SpecError, match=r"source\.static_sql: Input should be a valid boolean"):
        load_spec(edit_spec(source={**raw["source"], "static_sql": "sometimes"}))


def test_the_sql_text_names_its_file_without_moving_a_line(ctr_spec_path: Path) -> None:
    spec = load_spec(ctr_spec_path)
    text = (ctr_spec_path.parent / "score.sql").read_text()
    assert spec.scoring_sql.endswith(text)
    assert spec.scoring_sql.count("\n") == text.count("\n")
    assert str(ctr_spec_path.parent / "score.sql") in spec.scoring_sql.splitlines()[0]
