"""One dimension of a spec's `search_space`: how a tuning run draws one config key.

A module of its own below both `spec` (which checks a spec's search space when the spec is
loaded) and `tuning` (which samples trials from it), so neither needs the other to do it.
"""

from __future__ import annotations

import math
import random
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


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


def parse_dimension(raw: Any) -> Dimension:
    """A dimension from the spec's YAML; the ValueError gives every reason it is refused, in words."""
    try:
        return Dimension.model_validate(raw)
    except ValidationError as exc:
        raise ValueError("; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())) from None
