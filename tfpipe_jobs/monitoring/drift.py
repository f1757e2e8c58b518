"""Per-feature distributions of a query's rows, and their distance to a reference, thresholded.

A profile is what the warehouse returns about a query's rows: per numeric feature a
histogram over its own quantile buckets (and over a reference's, when one is given), per
categorical feature its value counts. The extract step keeps the day's profile in
`drift.json`, so the next day is compared with it without reading the previous day
again; publish_scores compares the scoring rows with the training day's profile (skew).
Each feature's distance gets its threshold and action (warn or stop) from the config:
a default per measure and per-feature overrides.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tfpipe_jobs.monitoring import distributions as dist
from tfpipe_operators.features import FeatureKind
from tfpipe_operators.spec import PipelineSpec
from tfpipe_operators.warehouse import Warehouse

NUMERIC_KINDS = (FeatureKind.NUMERIC, FeatureKind.BUCKETIZED)


def feature_columns(spec: PipelineSpec) -> tuple[list[str], list[str]]:
    """The raw features, numeric ones and categorical ones."""
    numeric = [f.name for f in spec.raw_features if f.kind in NUMERIC_KINDS]
    return numeric, [f.name for f in spec.raw_features if f.kind not in NUMERIC_KINDS]


@dataclass
class Profile:
    """A query's rows, summarised: histograms (NULLs last) and value counts (all values)."""

    rows: int
    edges: dict[str, list[float]] = field(default_factory=dict)
    counts: dict[str, list[int]] = field(default_factory=dict)
    values: dict[str, dict[str, int]] = field(default_factory=dict)
    against: dict[str, np.ndarray] = field(default_factory=dict)  # counts in the reference's buckets

    def to_json(self, keep_values: int) -> dict[str, Any]:
        """What drift.json keeps: the histograms, and each column's `keep_values` most frequent values."""
        values = {}
        for column, counts in self.values.items():
            top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            values[column] = {"counts": dict(top[:keep_values]), "complete": len(top) <= keep_values}
        return {
            "rows": self.rows,
            "numeric": {c: {"edges": self.edges[c], "counts": self.counts[c]} for c in self.edges},
            "categorical": values,
        }


def profile(
    warehouse: Warehouse,
    spec: PipelineSpec,
    sql: str,
    params: Mapping[str, Any],
    buckets: int,
    reference: Mapping[str, Any] | None = None,
    own_buckets: bool = True,
) -> Profile:
    """Summarise the rows of `sql` (two scans for the numeric features, one for the categorical ones).

    `reference`: a profile's JSON whose buckets the numeric features are counted in too.
    Without `own_buckets` (skew: only the reference's buckets matter) the quantiles are not computed."""
    numeric, categorical = feature_columns(spec)
    ref_edges = {c: h["edges"] for c, h in (reference or {}).get("numeric", {}).items() if c in numeric}
    out = Profile(rows=0)
    if numeric:
        own: dict[str, list[float]] = {}
        if own_buckets:
            quantiles = warehouse.table(dist.quantiles_sql(sql, numeric, buckets), params).to_pylist()[0]
            own = {c: dist.inner_edges(quantiles[c]) for c in numeric}
        edge_sets: dict[str, dict[str, list[float]]] = {}
        for c in numeric:
            edge_sets[c] = {}
            if c in own:
                edge_sets[c]["own"] = own[c]
            if c in ref_edges:
                edge_sets[c]["ref"] = ref_edges[c]
        text, bound = dist.bucket_counts_sql(sql, edge_sets)
        row = warehouse.table(text, {**params, **bound}).to_pylist()[0]
        out.rows = int(row["n"] or 0)
        for c in numeric:
            if c in own:
                out.edges[c] = own[c]
                out.counts[c] = [int(x) for x in dist.counts_from_row(row, c, "own", own[c])]
            if c in ref_edges:
                out.against[c] = dist.counts_from_row(row, c, "ref", ref_edges[c])
    if categorical:
        rows = warehouse.table(dist.value_counts_sql(sql, categorical), params).to_pylist()
        out.values = dist.counts_from_rows(rows, categorical)
        if not numeric:
            out.rows = sum(out.values[categorical[0]].values())
    return out


def distances(now: Profile, reference: Mapping[str, Any], spec: PipelineSpec) -> dict[str, dist.Distance]:
    """Each feature's distance to the reference profile (a feature it lacks is left out)."""
    numeric, categorical = feature_columns(spec)
    out: dict[str, dist.Distance] = {}
    for c in numeric:
        ref = reference.get("numeric", {}).get(c)
        if ref is not None and c in now.against:
            out[c] = dist.histogram_psi(
                now.against[c], np.asarray(ref["counts"], dtype=np.int64), len(ref["edges"]) + 1
            )
    for c in categorical:
        ref = reference.get("categorical", {}).get(c)
        if ref is not None and c in now.values:
            out[c] = dist.linf(now.values[c], ref["counts"], int(reference.get("rows") or 0))
    return out


@dataclass
class FeatureCheck:
    """One feature's distance, its threshold (and the config key that sets it) and action."""

    feature: str
    measure: str
    value: float
    threshold: float
    key: str
    action: str  # "warn" or "stop"
    detail: str

    @property
    def exceeded(self) -> bool:
        return self.value > self.threshold

    def describe(self, what: str) -> str:
        return (
            f"feature '{self.feature}': {what} {self.measure} {self.value:.4g} > {self.key} {self.threshold:g} "
            f"({self.detail})"
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "exceeded": self.exceeded}


@dataclass(frozen=True)
class Thresholds:
    """The config keys of one kind of comparison (drift in extract, skew in score)."""

    stage: str
    psi_key: str
    linf_key: str
    per_feature_key: str
    action_key: str
    actions_key: str


DRIFT = Thresholds("extract", "max_drift_psi", "max_drift_linf", "drift_thresholds", "drift_action", "drift_actions")
SKEW = Thresholds("score", "max_skew_psi", "max_skew_linf", "skew_thresholds", "skew_action", "skew_actions")


def judge(found: Mapping[str, dist.Distance], stage_config: Any, keys: Thresholds) -> list[FeatureCheck]:
    """Each distance against its threshold: the feature's own, else the measure's default."""
    per_feature: dict[str, float] = getattr(stage_config, keys.per_feature_key)
    actions: dict[str, str] = getattr(stage_config, keys.actions_key)
    checks = []
    for feature, d in found.items():
        if feature in per_feature:
            threshold, key = per_feature[feature], f"{keys.stage}.{keys.per_feature_key}.{feature}"
        else:
            name = keys.psi_key if d.measure == "psi" else keys.linf_key
            threshold, key = getattr(stage_config, name), f"{keys.stage}.{name}"
        action = actions.get(feature, getattr(stage_config, keys.action_key))
        checks.append(FeatureCheck(feature, d.measure, d.value, float(threshold), key, action, d.detail))
    return checks


def warn_and_stops(checks: list[FeatureCheck], what: str, notes: list[str], log: logging.Logger) -> list[FeatureCheck]:
    """Log the notes and every exceeded threshold (`what`: "drift" or "skew"); return the ones that stop."""
    for note in notes:
        log.info("%s: %s", "monitoring" if what == "drift" else what, note)
    for c in checks:
        if c.exceeded:
            log.warning("%s: %s%s", what, c.describe(what), " (stops)" if c.action == "stop" else "")
    return [c for c in checks if c.exceeded and c.action == "stop"]
