"""The monitoring keys are flat stage keys; their per-feature maps name real features."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tfpipe_operators.config import SpecError, resolve_config
from tfpipe_operators.spec import load_spec


def test_defaults_spec_and_per_feature_overrides(ctr_spec_path: Path) -> None:
    spec = load_spec(ctr_spec_path)
    config = resolve_config(spec, environ={"TFPIPE_EXTRACT_DRIFT_THRESHOLDS": "{user_age: 0.5}"})
    assert (config.extract.max_drift_psi, config.extract.max_drift_linf, config.extract.drift_action) == (
        0.25,
        0.1,
        "warn",
    )
    assert config.extract.drift_thresholds == {"user_age": 0.5}
    assert (config.score.max_skew_psi, config.score.skew_action, config.extract.max_new_value_share) == (
        0.25,
        "warn",
        0.01,
    )
    stop = resolve_config(spec, environ={}, overrides={"score.skew_actions": {"device": "stop"}})
    assert stop.score.skew_actions == {"device": "stop"}


def test_a_per_feature_key_naming_no_feature_or_a_bad_action_is_refused(ctr_spec_path: Path) -> None:
    spec = load_spec(ctr_spec_path)
    with pytest.raises(SpecError, match=r"--set extract.drift_thresholds: agee not a raw feature of the spec"):
        resolve_config(
            spec, environ={}, overrides={"extract.drift_thresholds": {"agee": 0.5}}, overrides_source="--set"
        )
    with pytest.raises(SpecError, match=r"score.skew_actions.device: Input should be 'warn' or 'stop'"):
        resolve_config(spec, environ={}, overrides={"score.skew_actions": {"device": "halt"}})


def test_the_maps_cannot_be_made_overridable(spec_dir: Path) -> None:
    path = spec_dir / "pipeline.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["overridable"] = [*raw["overridable"], "extract.drift_actions"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match=r"overridable: 'extract.drift_actions' maps features to values"):
        load_spec(path)
