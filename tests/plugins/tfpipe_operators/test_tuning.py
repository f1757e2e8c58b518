from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tfpipe_operators.config import SpecError
from tfpipe_operators.spec import load_spec
from tfpipe_operators.tuning import sample_trials


def test_trials_are_drawn_from_the_space_and_repeatable(ctr_spec_path: Path) -> None:
    spec = load_spec(ctr_spec_path)
    trials = sample_trials(spec, 5, seed=3)
    assert trials == sample_trials(spec, 5, seed=3)
    assert trials != sample_trials(spec, 5, seed=4)
    for t in trials:
        assert set(t) == {"train.learning_rate", "train.embedding_dim", "train.hidden_units"}
        assert 0.0005 <= t["train.learning_rate"] <= 0.02
        assert t["train.embedding_dim"] in (4, 8, 16)


def test_override_replaces_keys_and_bad_values_are_refused(ctr_spec_path: Path) -> None:
    spec = load_spec(ctr_spec_path)
    trials = sample_trials(spec, 3, seed=0, override={"train.embedding_dim": {"int": [2, 3]}})
    assert all(t["train.embedding_dim"] in (2, 3) for t in trials)
    with pytest.raises(SpecError, match=r"train\.dropout: Input should be less than 1"):
        sample_trials(spec, 2, seed=0, override={"train.dropout": {"choice": [1.5]}})
    with pytest.raises(SpecError, match=r"search_space.train.learning_rate: .*log_uniform bounds \[0, 1\]"):
        sample_trials(spec, 2, seed=0, override={"train.learning_rate": {"log_uniform": [0, 1]}})


def test_bad_search_space_fails_at_load(spec_dir: Path) -> None:
    raw = yaml.safe_load((spec_dir / "pipeline.yaml").read_text())
    raw["search_space"] = {"train.nope": {"uniform": [0, 1]}}
    (spec_dir / "pipeline.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match="'train.nope' is not a config key"):
        load_spec(spec_dir / "pipeline.yaml")
    raw["search_space"] = {"train.learning_rate": {"log_uniform": [0, 0.1]}}
    (spec_dir / "pipeline.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match=r"yaml: search_space.train.learning_rate: log_uniform bounds \[0, 0.1\]"):
        load_spec(spec_dir / "pipeline.yaml")
