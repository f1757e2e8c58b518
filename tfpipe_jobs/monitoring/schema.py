"""The pipeline's schema of its raw features: inferred once, kept and versioned, checked daily.

Kept under `<root>/<pipeline>/schema/`: `schema.json` is the one every extraction checks
against (a data engineer may edit it), `v0001.json`, `v0002.json`, ... every version it
ever was, each written once and never replaced. The first extraction infers version 1
from its rows; a run with `extract.accept_schema` widens the current schema to the day's
data (new values allowed, ranges widened, a column with NULLs no longer required) and
writes it as the next version; a hand-edited `schema.json` is recorded as a version of
its own the next time a run reads it. Nothing replaces the schema without a new version.

Per feature it holds the column's type (from the query's result), its kind (from the
spec), whether it is required (no NULL seen), a numeric feature's allowed range and a
categorical feature's allowed values (`values: null` when there were too many to list:
an open domain such as ids). The checks use the day's statistics (`data_stats`) and the
day's value counts (`drift.profile`): no query of their own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from tfpipe_jobs import artifacts
from tfpipe_jobs.artifacts import RunPaths
from tfpipe_jobs.monitoring.distributions import NULL_VALUE
from tfpipe_jobs.monitoring.drift import NUMERIC_KINDS
from tfpipe_operators.config import ExtractConfig
from tfpipe_operators.spec import PipelineSpec

log = logging.getLogger(__name__)

FORMAT = 1
SCHEMA_FILE = "schema.json"
ACCEPT_KEY = "extract.accept_schema"
_KEPT = ("version", "created")  # written by the step; the rest is the schema itself


class SchemaViolationError(ValueError):
    """The day's rows break the pipeline's schema; extraction stops before anything is written."""


def folder(paths: RunPaths) -> str:
    return artifacts.join(paths.root, paths.pipeline, "schema")


def version_file(paths: RunPaths, version: int) -> str:
    return artifacts.join(folder(paths), f"v{version:04d}.json")


def type_name(t: pa.DataType) -> str:
    """A column's type as the schema names it (integer widths and string flavours are one type)."""
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_decimal(t):
        return "decimal"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    return str(t)


def infer(
    spec: PipelineSpec,
    stats: Mapping[str, Any],
    types: Mapping[str, str],
    values: Mapping[str, Mapping[str, int]],
    cfg: ExtractConfig,
) -> dict[str, Any]:
    """The schema of what was seen: `stats` (the rows trained on) and `values` (the day's value counts)."""
    features: dict[str, Any] = {}
    for f in spec.raw_features:
        col = stats["columns"].get(f.name, {})
        entry: dict[str, Any] = {"kind": f.kind.value, "type": types.get(f.name), "required": not col.get("nulls")}
        if f.kind in NUMERIC_KINDS:
            lo, hi = col.get("min"), col.get("max")
            margin = cfg.schema_range_margin * (hi - lo) if lo is not None and hi is not None else 0.0
            # A column never negative stays so: the margin does not invent negative prices or ages.
            entry["min"] = (max(lo - margin, 0.0) if lo >= 0 else lo - margin) if lo is not None else None
            entry["max"] = hi + margin if hi is not None else None
        else:
            seen = sorted(v for v in values.get(f.name, {}) if v != NULL_VALUE)
            entry["values"] = seen if len(seen) <= cfg.schema_max_values else None
        features[f.name] = entry
    return {"format": FORMAT, "pipeline": spec.pipeline, "features": features}


def widen(current: Mapping[str, Any], seen: Mapping[str, Any], max_values: int) -> dict[str, Any]:
    """The current schema, widened just enough to hold what was seen (edits elsewhere kept)."""
    features = {name: dict(rule) for name, rule in current["features"].items()}
    for name, now in seen["features"].items():
        rule = features.setdefault(name, dict(now))
        rule["type"] = now.get("type") or rule.get("type")
        rule["required"] = bool(rule.get("required")) and bool(now.get("required"))
        if "min" in now or "min" in rule:
            lows = [x for x in (rule.get("min"), now.get("min")) if x is not None]
            highs = [x for x in (rule.get("max"), now.get("max")) if x is not None]
            rule["min"], rule["max"] = (min(lows) if lows else None), (max(highs) if highs else None)
        if rule.get("values") is not None:
            union = sorted(set(rule["values"]) | set(now.get("values") or []))
            rule["values"] = union if now.get("values") is not None and len(union) <= max_values else None
    return {**{k: v for k, v in current.items() if k not in _KEPT}, "features": features}


@dataclass
class SchemaCheck:
    """What checking the day against the schema found."""

    version: int
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    new_values: dict[str, dict[str, Any]] = field(default_factory=dict)


def check(
    schema: Mapping[str, Any],
    spec: PipelineSpec,
    stats: Mapping[str, Any],
    types: Mapping[str, str],
    values: Mapping[str, Mapping[str, int]],
    cfg: ExtractConfig,
) -> SchemaCheck:
    """Every rule of the schema on the day: each failure names the column, the value and the rule."""
    version = int(schema.get("version") or 0)
    found = SchemaCheck(version)
    where = f"schema v{version:04d}"
    for name, rule in schema.get("features", {}).items():
        if name not in types:
            problem = f"column '{name}': missing from the source query's result ({where} lists it"
            if rule.get("required"):
                found.failures.append(problem + ", required: true)")
            else:
                found.warnings.append(problem + ")")
            continue
        if rule.get("type") and types[name] != rule["type"]:
            found.failures.append(f"column '{name}': type {types[name]}, {where} says type: {rule['type']}")
        col = stats["columns"].get(name, {})
        nulls = int(col.get("nulls") or 0)
        if rule.get("required") and nulls:
            found.failures.append(
                f"column '{name}': {nulls} NULL value(s) (null rate {col.get('null_rate') or 0:.4f}) in a column "
                f"{where} marks required: true"
            )
        if rule.get("min") is not None and col.get("min") is not None and col["min"] < rule["min"]:
            found.failures.append(f"column '{name}': value {col['min']:g} is below {where}'s min: {rule['min']:g}")
        if rule.get("max") is not None and col.get("max") is not None and col["max"] > rule["max"]:
            found.failures.append(f"column '{name}': value {col['max']:g} is above {where}'s max: {rule['max']:g}")
        if rule.get("values") is not None and name in values:
            _new_values(name, rule["values"], values[name], cfg, where, found)
    for f in spec.raw_features:
        if f.name not in schema.get("features", {}):
            found.warnings.append(
                f"feature '{f.name}' is not in {where}: nothing is checked for it (run with {ACCEPT_KEY}=true to "
                "add it)"
            )
    return found


def _new_values(
    name: str, allowed: list[str], counts: Mapping[str, int], cfg: ExtractConfig, where: str, found: SchemaCheck
) -> None:
    known = set(allowed)
    rows = max(sum(counts.values()), 1)
    new = {v: n for v, n in counts.items() if v != NULL_VALUE and v not in known}
    if not new:
        return
    share = sum(new.values()) / rows
    top = sorted(new, key=lambda v: (-new[v], v))
    found.new_values[name] = {"values": len(new), "share": share, "most_frequent": top[:10]}
    if share <= cfg.max_new_value_share:
        return
    shown = ", ".join(repr(v) for v in top[:5]) + (", ..." if len(top) > 5 else "")
    message = (
        f"column '{name}': {len(new)} value(s) not in {where}'s values ({shown}) in {share:.2%} of the day's rows "
        f"> extract.max_new_value_share {cfg.max_new_value_share:g}"
    )
    (found.failures if cfg.new_values_fatal else found.warnings).append(message)


def current(paths: RunPaths) -> dict[str, Any] | None:
    """The schema every extraction checks against; a hand edit is recorded as a version first."""
    path = artifacts.join(folder(paths), SCHEMA_FILE)
    if not artifacts.exists(path):
        return None
    schema = dict(artifacts.read_json(path))
    version = int(schema.get("version") or 0)
    recorded = version_file(paths, version)
    if version and artifacts.exists(recorded) and artifacts.read_json(recorded) == schema:
        return schema
    log.warning("schema: %s differs from its recorded version v%04d: recording it as a new version", path, version)
    return write_version(paths, schema, "edited by hand")


def write_version(paths: RunPaths, schema: Mapping[str, Any], how: str) -> dict[str, Any]:
    """Write `schema` as the next version (`vNNNN.json`, never replaced) and make it the current one."""
    existing = [int(p.rsplit("/v", 1)[1][:4]) for p in artifacts.glob(artifacts.join(folder(paths), "v[0-9]*.json"))]
    version = max(existing, default=0) + 1
    record = {
        **{k: v for k, v in schema.items() if k not in _KEPT},
        "version": version,
        "created": {"ds": paths.ds, "how": how},
    }
    try:
        artifacts.create_json(version_file(paths, version), record)
    except FileExistsError:
        raise SchemaViolationError(
            f"{version_file(paths, version)} was written by another run at the same time; rerun this day"
        ) from None
    artifacts.atomic_write_json(artifacts.join(folder(paths), SCHEMA_FILE), record)
    log.info("schema: v%04d written (%s) to %s", version, how, folder(paths))
    return record
