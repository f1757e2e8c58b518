"""Random search over a spec's `search_space`: which trials a tuning run trains.

Pure Python (the tune DAG samples on the Airflow side): every dimension names a flat
config key and how to draw it; each sampled trial is validated by resolving the config,
so a search space that can produce an invalid value fails before any training starts.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from tfpipe_operators.config import SpecError, parse_search_space, resolve_config
from tfpipe_operators.search_dimensions import Dimension
from tfpipe_operators.spec import PipelineSpec


def search_space(spec: PipelineSpec, override: Mapping[str, Any] | None = None) -> dict[str, Dimension]:
    """The spec's search space, with a run's override replacing it key by key."""
    raw = {**spec.search_space, **(override or {})}
    if not raw:
        raise SpecError(f"{spec.path}: search_space is empty; a tuning run needs at least one dimension")
    return parse_search_space(raw, where=f"{spec.path}: search_space")


def sample_trials(
    spec: PipelineSpec, n: int, seed: int, override: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """`n` distinct-by-construction trials: flat overrides, each a valid config."""
    space = search_space(spec, override)
    rng = random.Random(seed)
    trials = []
    for _ in range(n):
        trial = {key: dim.draw(rng) for key, dim in sorted(space.items())}
        resolve_config(spec, overrides=trial, environ={})  # refuse values the config would refuse
        trials.append(trial)
    return trials
