"""Feature kinds as a spec declares them: crosses and the names derived from features."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tfpipe_operators.config import SpecError
from tfpipe_operators.features import FeatureKind
from tfpipe_operators.spec import load_spec


def _with_features(spec_dir: Path, *extra: dict) -> Path:
    path = spec_dir / "pipeline.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["features"] += list(extra)
    path.write_text(yaml.safe_dump(raw))
    return path


CROSS = {"name": "country_x_category", "kind": "cross", "crosses": ["country", "item_category"], "buckets": 1000}


def test_a_cross_is_a_categorical_model_input_but_not_a_warehouse_column(spec_dir: Path) -> None:
    spec = load_spec(_with_features(spec_dir, CROSS))
    cross = spec.feature_by_name["country_x_category"]
    assert cross.kind is FeatureKind.CROSS and cross.is_categorical and not cross.is_raw
    assert cross.transformed_name == "country_x_category_xf"
    assert "country_x_category" in [f.name for f in spec.features]
    raw = [f.name for f in spec.raw_features]
    assert "country_x_category" not in raw
    assert raw == [f.name for f in spec.features if f.kind is not FeatureKind.CROSS]


@pytest.mark.parametrize(
    ("cross", "message"),
    [
        (
            {**CROSS, "crosses": ["country", "colour"]},
            "feature 'country_x_category': crosses 'colour', which is not a declared feature",
        ),
        ({**CROSS, "crosses": ["country"]}, "feature 'country_x_category' of kind cross needs 'crosses': at least two"),
        (
            {**CROSS, "crosses": ["country", "country"]},
            "feature 'country_x_category' of kind cross needs 'crosses': at least two different",
        ),
        ({k: v for k, v in CROSS.items() if k != "crosses"}, "needs 'crosses'"),
        (
            {k: v for k, v in CROSS.items() if k != "buckets"},
            "feature 'country_x_category' of kind cross needs 'buckets'",
        ),
        (
            {**CROSS, "crosses": ["country", "item_price"]},
            "feature 'country_x_category': cannot cross 'item_price' of kind numeric",
        ),
        (
            {"name": "other", "kind": "cross", "crosses": ["country_x_category", "device"], "buckets": 10},
            "feature 'other': cannot cross 'country_x_category' of kind cross",
        ),
        ({"name": "colour", "kind": "hashed", "buckets": 8, "crosses": ["a", "b"]}, "'colour': crosses only applies"),
    ],
)
def test_bad_crosses_are_named(spec_dir: Path, cross: dict, message: str) -> None:
    extra = [CROSS, cross] if cross.get("name") == "other" else [cross]
    with pytest.raises(SpecError, match=message):
        load_spec(_with_features(spec_dir, *extra))


def test_a_bucketized_feature_can_be_crossed(spec_dir: Path) -> None:
    spec = load_spec(_with_features(spec_dir, {**CROSS, "crosses": ["device", "hour"], "buckets": 50}))
    assert spec.feature_by_name["country_x_category"].crosses == ["device", "hour"]


def test_vocabulary_files_are_named_after_the_feature(ctr_spec_path: Path) -> None:
    user = load_spec(ctr_spec_path).feature_by_name["user_id"]
    assert (user.vocabulary_file, user.counts_file) == ("vocab_user_id", "vocab_user_id_counts")
