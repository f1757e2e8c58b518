"""Random search over a spec's `search_space`: which trials a tuning run trains.

Pure Python (the tune DAG samples on the Airflow side): every dimension names a flat
config key and how to draw it; each sampled trial is validated by resolving the config,
so a search space that can produce an invalid value fails before any training starts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tfpipe_operators.spec import PipelineSpec, SpecError, _split_key, resolve_config


class Dimension(BaseModel):
    """One searched key: `{uniform: [lo, hi]}`, `{log_uniform: [lo, hi]}`, `{int: [lo, hi]}` or `{choice: [...]}`."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["uniform", "log_uniform", "int", "choice"]
    values: list[Any] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _one_key(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and "kind" not in raw:
            if len(raw) != 1:
                raise ValueError(f"a dimension has exactly one of uniform, log_uniform, int, choice; got {sorted(raw)}")
            ((kind, values),) = raw.items()
            return {"kind": kind, "values": values}
        return raw

    @model_validator(mode="after")
    def _bounds(self) -> Dimension:
        if self.kind != "choice":
            if len(self.values) != 2 or not all(isinstance(v, int | float) for v in self.values):
                raise ValueError(f"{self.kind} takes [low, high], got {self.values}")
            lo, hi = self.values
            if lo > hi or (self.kind == "log_uniform" and lo <= 0):
                raise ValueError(f"{self.kind} bounds {self.values} are not a valid range")
        return self

    def draw(self, rng: random.Random) -> Any:
        if self.kind == "choice":
            return rng.choice(self.values)
        lo, hi = self.values
        if self.kind == "int":
            return rng.randint(int(lo), int(hi))
        if self.kind == "log_uniform":
            return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        return rng.uniform(lo, hi)


def search_space(spec: PipelineSpec, override: Mapping[str, Any] | None = None) -> dict[str, Dimension]:
    """The spec's search space, with a run's override replacing it key by key."""
    raw = {**spec.search_space, **(override or {})}
    if not raw:
        raise SpecError(f"{spec.path}: search_space is empty; a tuning run needs at least one dimension")
    space = {}
    for key, dim in raw.items():
        _split_key(key, where=f"{spec.path}: search_space")
        try:
            space[key] = Dimension.model_validate(dim)
        except ValidationError as exc:
            reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
            raise SpecError(f"{spec.path}: search_space.{key}: {reasons}") from None
    return space


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
