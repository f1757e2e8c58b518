"""Pipeline specs: one YAML file (plus its SQL files) per pipeline, typed and validated.

This module is the spec's schema and its loading; the stages' config and how a run's config
is resolved are `config.py`. Errors name the file, the key and what is wrong, so a data
engineer can fix a spec without reading code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from tfpipe_operators.config import (
    PipelineConfig,
    SpecError,
    loc_text,
    parse_search_space,
    resolve_config,
    split_key,
)
from tfpipe_operators.features import CROSSABLE_KINDS, Feature, Task
from tfpipe_operators.monitoring_config import NOT_OVERRIDABLE

# libyaml's loader where PyYAML was built with it: the DAG file re-reads every spec at each
# refresh, and the pure-Python loader is most of that time.
SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

SPEC_FILENAME = "pipeline.yaml"
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sql: str = Field(description="file beside the spec, BigQuery Standard SQL with @ds and @lookback_days")
    table: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$", description="table whose ds partition must exist first")
    partition_column: Identifier = "event_date"
    static_sql: bool = Field(
        default=False, description="the query deliberately ignores @ds (same rows every day); else it must use @ds"
    )


class Label(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: Identifier
    task: Task
    num_classes: int | None = Field(default=None, ge=2)

    @model_validator(mode="after")
    def _classes(self) -> Label:
        if self.task is Task.MULTICLASS and self.num_classes is None:
            raise ValueError("task multiclass needs num_classes")
        return self


class TopK(BaseModel):
    """Keep only the best `k` rows per group in the published partition (e.g. 20 items per user)."""

    model_config = ConfigDict(extra="forbid")

    group_by: list[Identifier] = Field(min_length=1, description="key columns that form a group")
    k: int = Field(gt=0, le=100_000)


class Scoring(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sql: str = Field(description="file beside the spec; one row per key; @ds is a parameter")
    keys: list[Identifier] = Field(min_length=1)
    table: Identifier
    top_k: TopK | None = Field(default=None, description="publish only the top k scores per group")
    static_sql: bool = Field(
        default=False, description="the query deliberately ignores @ds (same rows every day); else it must use @ds"
    )

    @property
    def latest_view(self) -> str:
        """The view analysts read for the newest partition: named after the table it shows."""
        return f"{self.table}_latest"

    @model_validator(mode="after")
    def _groups_are_keys(self) -> Scoring:
        if self.top_k is not None:
            unknown = [c for c in self.top_k.group_by if c not in self.keys]
            if unknown:
                raise ValueError(f"top_k.group_by: {', '.join(unknown)} not in keys ({', '.join(self.keys)})")
            if len(self.top_k.group_by) == len(self.keys):
                raise ValueError("top_k.group_by: must leave at least one key column out (the ranked one)")
        return self


class PipelineSpec(BaseModel):
    """The validated contents of `pipeline.yaml`; SQL is read from the files it names."""

    model_config = ConfigDict(extra="forbid")

    pipeline: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    owner: str = "tfpipe"
    start_date: date
    schedule: str = "@daily"
    max_active_runs: int = Field(default=1, ge=1, le=32)
    retries: int = Field(default=1, ge=0, le=10)
    source: Source
    keys: list[Identifier] = Field(min_length=1, description="columns whose hash splits train/eval")
    label: Label
    features: list[Feature] = Field(min_length=1)
    scoring: Scoring
    extract: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    export: dict[str, Any] = Field(default_factory=dict)
    gate: dict[str, Any] = Field(default_factory=dict)
    score: dict[str, Any] = Field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)
    overridable: list[str] = Field(default_factory=list)
    search_space: dict[str, dict[str, Any]] = Field(default_factory=dict, description="for the tune DAG")

    # Filled by load_spec, not by the YAML. The SQL is the file's text with a comment naming
    # the file at the start of line 1 (tfpipe_operators.sql_files.tag), so an error in any
    # query built from it names the file and its own line.
    path: Path = Path()
    source_sql: str = ""
    scoring_sql: str = ""
    _config: PipelineConfig | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _consistent(self) -> PipelineSpec:
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"features declared twice: {', '.join(dupes)}")
        if self.label.column in names:
            raise ValueError(f"label column '{self.label.column}' is also listed as a feature")
        by_name = {f.name: f for f in self.features}
        for cross in (f for f in self.features if not f.is_raw):
            for name in cross.crosses or []:
                crossed = by_name.get(name)
                if crossed is None:
                    raise ValueError(f"feature '{cross.name}': crosses '{name}', which is not a declared feature")
                if crossed.kind not in CROSSABLE_KINDS:
                    raise ValueError(
                        f"feature '{cross.name}': cannot cross '{name}' of kind {crossed.kind.value}; crosses take "
                        f"{', '.join(sorted(k.value for k in CROSSABLE_KINDS))} features (bucketize a numeric one)"
                    )
        if self.scoring.top_k is not None and self.label.task is Task.MULTICLASS:
            raise ValueError("scoring.top_k ranks by one score column; task multiclass has one per class")
        return self

    @property
    def config(self) -> PipelineConfig:
        """The spec's own config (code defaults and the spec, no variant or run levels), resolved
        once: load_spec resolves it to check it, and the DAG factory reads it from here."""
        if self._config is None:
            self._config = resolve_config(self, environ={})
        return self._config

    @property
    def dag_id(self) -> str:
        return f"{self.pipeline}_daily"

    @property
    def directory(self) -> Path:
        return self.path.parent

    @property
    def raw_features(self) -> list[Feature]:
        """The features read from the warehouse (every feature but the crosses built from them)."""
        return [f for f in self.features if f.is_raw]

    @property
    def feature_by_name(self) -> dict[str, Feature]:
        return {f.name: f for f in self.features}


def _format_errors(where: str, err: ValidationError) -> SpecError:
    lines = [f"{where}: {loc_text(e['loc'])}: {e['msg']}" for e in err.errors()]
    return SpecError("\n".join(lines))


def load_spec(path: str | Path) -> PipelineSpec:
    """Read and validate a spec and its SQL files; raise SpecError naming file and key."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=SAFE_LOADER)
    except FileNotFoundError:
        raise SpecError(f"{path}: spec file not found") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        spec = PipelineSpec.model_validate(raw)
    except ValidationError as exc:
        raise _format_errors(str(path), exc) from None
    spec.path = path
    spec.source_sql = _read_sql(path, "source.sql", spec.source.sql)
    spec.scoring_sql = _read_sql(path, "scoring.sql", spec.scoring.sql)
    # Validate every level of config now, so a bad default or variant fails at parse time.
    spec._config = resolve_config(spec, environ={})
    for variant in spec.variants:
        resolve_config(spec, variant=variant, environ={})  # errors name variants.<name>
    for key in spec.overridable:
        split_key(key, where=f"{path}: overridable")
        if key in NOT_OVERRIDABLE:
            raise SpecError(
                f"{path}: overridable: '{key}' maps features to values, which the trigger form cannot check; "
                "set it in the spec, a variant, the environment or --set"
            )
    parse_search_space(spec.search_space, where=f"{path}: search_space")
    return spec


def _read_sql(spec_path: Path, key: str, relative: str) -> str:
    from tfpipe_operators.sql_files import tag

    sql_path = spec_path.parent / relative
    if not sql_path.is_file():
        raise SpecError(f"{spec_path}: {key}: SQL file '{relative}' not found next to the spec ({sql_path})")
    return tag(sql_path, sql_path.read_text())


@dataclass(frozen=True)
class SpecQuery:
    """One of a spec's queries and what the jobs read from its result."""

    key: str  # the spec key naming the file: source.sql or scoring.sql
    path: Path
    sql: str  # tagged text (see PipelineSpec.source_sql)
    columns: dict[str, str]  # result column -> the spec key that asks for it
    static: bool  # the spec says the query ignores @ds on purpose


def spec_queries(spec: PipelineSpec) -> dict[str, SpecQuery]:
    """The training query must give keys, label and raw features; the scoring query the
    scoring keys and raw features (a cross is computed in the transform, not selected)."""
    source: dict[str, str] = {key: "keys" for key in spec.keys}
    source[spec.label.column] = "label.column"
    scoring: dict[str, str] = {key: "scoring.keys" for key in spec.scoring.keys}
    for feature in spec.raw_features:
        source.setdefault(feature.name, "features")
        scoring.setdefault(feature.name, "features")
    return {
        "source": SpecQuery(
            "source.sql", spec.directory / spec.source.sql, spec.source_sql, source, spec.source.static_sql
        ),
        "scoring": SpecQuery(
            "scoring.sql", spec.directory / spec.scoring.sql, spec.scoring_sql, scoring, spec.scoring.static_sql
        ),
    }


def discover_specs(specs_dir: str | Path) -> list[Path]:
    """Every `<specs_dir>/<pipeline>/pipeline.yaml`, sorted for stable DAG order."""
    return sorted(Path(specs_dir).glob(f"*/{SPEC_FILENAME}"))
