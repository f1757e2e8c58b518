"""The config keys of data and model monitoring: the schema, drift (extract) and skew (score).

Kept apart from `spec.py` so the stage classes there stay short: `ExtractConfig` and
`ScoreConfig` inherit these fields, so they are ordinary flat keys of their stage
(`extract.max_drift_psi`, `score.skew_thresholds`, ...) set in a spec, a variant, the
environment or a run. A per-feature override is a mapping from a raw feature's name to a
value; `check_feature_keys` refuses a name the spec does not read.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Action = Literal["warn", "stop"]


class ExtractMonitoring(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    schema_max_values: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="a categorical feature with more distinct values on the first day gets no list of allowed "
        "values in the inferred schema (an open domain, e.g. ids)",
    )
    schema_range_margin: float = Field(
        default=0.1,
        ge=0,
        description="the inferred range of a numeric feature: the observed [min, max] widened by this share of "
        "its width on each side",
    )
    max_new_value_share: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="share of the day's rows whose categorical value the schema does not list, above which "
        "it is reported",
    )
    new_values_fatal: bool = Field(
        default=False, description="new categorical values above extract.max_new_value_share stop the extraction"
    )
    accept_schema: bool = Field(
        default=False,
        description="widen the schema to the day's data and write it as the next version (instead of stopping)",
    )
    drift_buckets: int = Field(
        default=10, ge=2, le=100, description="quantile buckets of the previous day a numeric feature's PSI uses"
    )
    max_drift_psi: float = Field(
        default=0.25, ge=0, description="numeric features: largest PSI of the day vs the previous day"
    )
    max_drift_linf: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="categorical features: largest L-infinity distance of the value frequencies vs the previous day",
    )
    drift_thresholds: dict[str, float] = Field(
        default_factory=dict, description="per feature: its drift threshold (PSI or L-infinity by its kind)"
    )
    drift_action: Action = Field(default="warn", description="what drift beyond its threshold does: warn or stop")
    drift_actions: dict[str, Action] = Field(default_factory=dict, description="per feature: warn or stop")


class ScoreMonitoring(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    max_skew_psi: float = Field(
        default=0.25, ge=0, description="numeric features: largest PSI of the scoring rows vs the training rows"
    )
    max_skew_linf: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="categorical features: largest L-infinity distance of the scoring rows' value frequencies vs "
        "the training rows'",
    )
    skew_thresholds: dict[str, float] = Field(
        default_factory=dict, description="per feature: its skew threshold (PSI or L-infinity by its kind)"
    )
    skew_action: Action = Field(
        default="warn", description="what skew beyond its threshold does before publishing: warn or stop"
    )
    skew_actions: dict[str, Action] = Field(default_factory=dict, description="per feature: warn or stop")


PER_FEATURE_KEYS = {
    "extract": ("drift_thresholds", "drift_actions"),
    "score": ("skew_thresholds", "skew_actions"),
}

# Maps of feature -> value: set in the spec, a variant, the environment or `--set`; the
# trigger form has no field that could check one, so a spec cannot make them overridable.
NOT_OVERRIDABLE = frozenset(f"{stage}.{key}" for stage, keys in PER_FEATURE_KEYS.items() for key in keys)


def check_feature_keys(stages: dict[str, Any], features: Iterable[str], origin: Any) -> list[str]:
    """Problems with per-feature keys naming no raw feature, each as `<where>: <what>`.

    `origin(key)` says where a config key was set (the spec file, a run param, ...)."""
    known = sorted(features)
    problems = []
    for stage, keys in PER_FEATURE_KEYS.items():
        for key in keys:
            unknown = sorted(set(getattr(stages[stage], key)) - set(known))
            if unknown:
                problems.append(
                    f"{origin(f'{stage}.{key}')}: {', '.join(unknown)} not a raw feature of the spec "
                    f"(features: {', '.join(known)})"
                )
    return problems
