"""Config: the stages' typed defaults and the one function that resolves a run's config.

Config is flat and comes in levels, lowest first: the stage defaults in this module, the
spec (and one of its named variants), the tune DAG's best trial, environment variables
`TFPIPE_<STAGE>_<KEY>`, then the run (`--set`, the Airflow trigger params). Every key is
`<stage>.<name>`, e.g. `train.epochs`. `resolve_config` merges them and names the level
that set a bad value. The spec's own levels are resolved once, when it loads
(`PipelineSpec.config`); a job resolves its run's config once more, with the run's levels.

The spec schema (`spec.py`) imports this module, never the other way: what resolution reads
of a spec is named by its shape (`SpecSections`), so the two form no import circle.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tfpipe_operators.features import Feature, Task
from tfpipe_operators.monitoring_config import ExtractMonitoring, ScoreMonitoring, check_feature_keys
from tfpipe_operators.search_dimensions import Dimension, parse_dimension

ENV_PREFIX = "TFPIPE_"


class _TaskOf(Protocol):
    @property
    def task(self) -> Task: ...


class SpecSections(Protocol):
    """What config resolution reads of a pipeline spec (`spec.PipelineSpec` is one): its file,
    its stage sections and variants, its label's task and its warehouse features."""

    @property
    def path(self) -> Path: ...
    @property
    def variants(self) -> dict[str, dict[str, Any]]: ...
    @property
    def extract(self) -> dict[str, Any]: ...
    @property
    def train(self) -> dict[str, Any]: ...
    @property
    def export(self) -> dict[str, Any]: ...
    @property
    def gate(self) -> dict[str, Any]: ...
    @property
    def score(self) -> dict[str, Any]: ...
    @property
    def label(self) -> _TaskOf: ...
    @property
    def raw_features(self) -> list[Feature]: ...


class SpecError(ValueError):
    """A pipeline spec or a config override is invalid; the message says where and why."""


def loc_text(loc: tuple[int | str, ...]) -> str:
    """A pydantic error's location as the dotted key a spec's author knows."""
    return ".".join(str(p) for p in loc) or "<top level>"


def _read_shards_field() -> Any:
    """The same key in both Beam stages (extract and score)."""
    return Field(
        default=8,
        ge=1,
        le=256,
        description="hash ranges of the keys read in parallel on Dataflow (each is a query of its own: BigQuery "
        "bills the day's bytes once per range)",
    )


class _Stage(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ExtractConfig(_Stage, ExtractMonitoring):
    """Extraction, the day's checks, and the schema and drift keys (monitoring_config.py)."""

    lookback_days: int = Field(default=0, ge=0, le=366, description="days before ds also read (0 = ds only)")
    eval_percent: int = Field(default=20, ge=1, le=50, description="share of keys held out for evaluation")
    sample_fraction: float = Field(default=1.0, gt=0, le=1, description="deterministic sample of keys")
    # 65,536 rather than 8,192: the transform graph runs once per batch and split, and at 1M rows
    # the larger batches made the step 12-18% faster for about 100 MB more (bench/extract.py).
    batch_rows: int = Field(default=65536, ge=64, description="rows per Arrow record batch")
    direct_num_workers: int = Field(default=1, ge=1, le=64, description="local Beam worker processes")
    distributed_read_shards: int = _read_shards_field()
    rows_per_shard: int = Field(
        default=100_000, ge=1000, description="train/eval TFRecord files hold at most this many rows each"
    )
    rows_per_record: int = Field(
        default=64, ge=1, le=4096, description="rows packed in each transformed tf.Example (1 = one row per record)"
    )
    max_null_rate: float = Field(default=0.5, ge=0, le=1, description="a feature NULL in more rows fails the day")
    max_null_rate_increase: float = Field(default=0.2, ge=0, le=1, description="vs the previous day, absolute")
    max_label_rate_change: float = Field(default=0.5, ge=0, description="binary label rate vs previous day, relative")
    min_distinct_ratio: float = Field(default=0.5, ge=0, le=1, description="vocabulary size vs previous day")


class TrainConfig(_Stage):
    architecture: str = "mlp"
    epochs: int = Field(default=3, ge=1, le=1000)
    batch_size: int = Field(default=256, ge=1, le=1 << 20)
    learning_rate: float = Field(default=0.003, gt=0, le=10)
    hidden_units: list[int] = Field(default_factory=lambda: [64, 32], min_length=1)
    embedding_dim: int = Field(default=8, ge=1, le=1024)
    dropout: float = Field(default=0.2, ge=0, lt=1)
    seed: int = 42
    shuffle_buffer: int = Field(default=65_536, ge=1, description="rows mixed together when shuffling")
    early_stopping_patience: int = Field(
        default=1,
        ge=0,
        description="epochs without eval improvement before stopping (the best epoch's weights are kept); 0 = off",
    )
    early_stopping_metric: str = Field(
        default="loss",
        description="the eval metric early stopping watches (per task: binary loss/auc/accuracy, multiclass "
        "loss/accuracy, regression loss/rmse/mae); the default, the eval loss, still moves when accuracy ties",
    )
    cache_parsed: bool = Field(
        default=True, description="keep the parsed first epoch in a local file; later epochs read it"
    )
    gpus: int = Field(default=1, ge=0, le=16, description="GPUs the training pod asks for (gcp profile)")


class GateConfig(_Stage):
    metric: Literal["auc", "log_loss", "accuracy", "macro_auc", "rmse", "mae"] = "auc"
    min_lift_over_baseline: float = Field(default=0.0, ge=0, description="new must beat the baseline by this")
    max_regression: float = Field(default=0.01, ge=0, description="new may be at most this much worse than blessed")
    min_value: float | None = Field(default=None, description="absolute threshold on the metric")


class ScoreConfig(_Stage, ScoreMonitoring):
    """Scoring, publishing, the prediction gate, and the skew keys (monitoring_config.py)."""

    # Large batches: per-batch costs (a Parquet row group, a signature call, the OOV
    # counts) made 4096-row batches take 39 s for 10M rows where 65536 took 20 s.
    batch_rows: int = Field(default=65536, ge=1, le=1 << 20, description="rows per model call")
    direct_num_workers: int = Field(
        default=1, ge=1, le=64, description="local Beam worker processes, each loading the model once"
    )
    distributed_read_shards: int = _read_shards_field()
    min_rows_vs_previous: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="publish_scores refuses a partition with fewer rows than this share of the partition it "
        "replaces (or of the previous day's)",
    )
    allow_fewer_rows: bool = Field(
        default=False, description="publish an empty or shrunken partition anyway (a day that really is empty)"
    )
    # The prediction gate (tfpipe_jobs/publish_scores/prediction_gate.py): publish_scores refuses scores
    # beyond one of these and keeps the previous partition, unless the run overrides it.
    max_score_psi: float = Field(
        default=0.25,
        ge=0,
        description="largest population stability index of the scores (binary, regression) vs the previous "
        "published partition, over that partition's quantile buckets",
    )
    psi_buckets: int = Field(
        default=10, ge=2, le=100, description="quantile buckets of the previous partition the PSI is computed over"
    )
    max_class_share_change: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="largest change of a predicted class's share of the rows vs the previous published "
        "partition (multiclass; the L-infinity distance of the class frequencies)",
    )
    max_missing_or_unseen_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="largest share of rows scored with a NULL feature or a value outside the vocabulary",
    )
    min_score_std: float = Field(
        default=1e-6,
        ge=0,
        description="smallest standard deviation of the scores (multiclass: the largest of the classes' "
        "probabilities'); below it every row got about the same score",
    )
    override_prediction_gate: bool = Field(
        default=False, description="publish scores the prediction gate refuses (the override is recorded)"
    )


class ExportConfig(_Stage):
    optimize: bool = Field(default=True, description="Grappler passes over the whole frozen serving graph")
    xla: bool = Field(
        default=False, description="XLA-compile the model's dense part (compiles once per new batch size)"
    )
    xla_tolerance: float = Field(default=1e-4, gt=0, le=1, description="max |diff| allowed when export.xla is on")
    eigen_matmul: bool = Field(
        default=True,
        description="the dense layers' products on Eigen's kernel, not oneDNN's (faster at small batches on CPU; "
        "the op has no GPU kernel: turn off for a GPU server)",
    )


STAGES: dict[str, type[_Stage]] = {
    "extract": ExtractConfig,
    "train": TrainConfig,
    "export": ExportConfig,
    "gate": GateConfig,
    "score": ScoreConfig,
}
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})


class PipelineConfig(BaseModel):
    """All stages' config as one run uses it (defaults, spec, variant, run overrides)."""

    model_config = ConfigDict(extra="forbid")

    extract: ExtractConfig
    train: TrainConfig
    export: ExportConfig
    gate: GateConfig
    score: ScoreConfig
    variant: str | None = None

    def flat(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for stage in STAGES:
            for key, value in getattr(self, stage).model_dump().items():
                out[f"{stage}.{key}"] = value
        return out

    def digest(self) -> str:
        """Short stable hash: which config produced a model."""
        return hashlib.sha256(json.dumps(self.flat(), sort_keys=True).encode()).hexdigest()[:12]


_KEY = re.compile(r"^([a-z]+)\.([a-z_][a-z0-9_]*)$")


def split_key(key: str, where: str) -> tuple[str, str]:
    """`train.epochs` -> ('train', 'epochs'), or a SpecError at `where` saying which keys there are."""
    match = _KEY.match(key)
    if not match or match.group(1) not in STAGES:
        raise SpecError(
            f"{where}: '{key}' is not a config key; use <stage>.<name> with stage one of {', '.join(STAGES)}"
        )
    stage, name = match.groups()
    if name not in STAGES[stage].model_fields:
        known = ", ".join(sorted(STAGES[stage].model_fields))
        raise SpecError(f"{where}: '{key}' is not a config key; {stage} has: {known}")
    return stage, name


def parse_search_space(raw: Mapping[str, Any], where: str) -> dict[str, Dimension]:
    """Every searched key a config key, every dimension valid: checked when the spec loads, so a
    tuning run never starts on a space it cannot sample."""
    space = {}
    for key, dim in raw.items():
        split_key(key, where=where)
        try:
            space[key] = parse_dimension(dim)
        except ValueError as exc:
            raise SpecError(f"{where}.{key}: {exc}") from None
    return space


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """`TFPIPE_TRAIN_EPOCHS=5` -> {'train.epochs': 5}; values are parsed as YAML scalars/lists."""
    return {key: value for key, (_, value) in _env_layer(environ).items()}


def _env_layer(environ: Mapping[str, str]) -> dict[str, tuple[str, Any]]:
    """Config key -> (the variable that set it, its parsed value)."""
    out: dict[str, tuple[str, Any]] = {}
    for var, text in environ.items():
        if not var.startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        stage, _, name = rest.partition("_")
        if stage in STAGES and name in STAGES[stage].model_fields:
            try:
                out[f"{stage}.{name}"] = (var, yaml.safe_load(text))
            except yaml.YAMLError:
                raise SpecError(f"environment variable {var}: cannot parse value {text!r}") from None
    return out


def run_param_name(key: str) -> str:
    """`train.epochs` -> `train_epochs`: the name of a config key in the Airflow trigger form."""
    return key.replace(".", "_", 1)


@dataclass(frozen=True)
class _Layer:
    """Values one source of config sets, and how an error names that source."""

    name: str  # where an unknown key is reported
    values: Mapping[str, Any]
    describe: Callable[[str], str]  # config key -> where it was set, e.g. "environment variable X (key)"


def resolve_config(
    spec: SpecSections,
    variant: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    tuned: Mapping[str, Any] | None = None,
    run_params: Mapping[str, Any] | None = None,
    overrides_source: str = "override",
    tuned_source: str = "tuned config",
) -> PipelineConfig:
    """Merge code defaults, spec, variant, tuned values, environment and run overrides; validate.

    `tuned` is what the tune DAG found best for the pipeline: it sits with the spec (the
    daily runs use it) and below anything a run says. `overrides` (e.g. `--set`, named
    `overrides_source` in errors) and then `run_params` (the Airflow run's params, by
    config key) come last. An invalid value is reported with the layer that set it, so a
    bad run param is not blamed on the spec file.
    """
    where = str(spec.path)
    env = _env_layer(os.environ if environ is None else environ)
    layers: list[_Layer] = []
    if variant:
        if variant not in spec.variants:
            known = ", ".join(sorted(spec.variants)) or "none"
            raise SpecError(f"{where}: unknown variant '{variant}' (spec defines: {known})")
        in_variant = f"{where}: variants.{variant}"
        layers.append(_Layer(in_variant, spec.variants[variant], lambda key: f"{in_variant}: {key}"))
    layers.append(_Layer(tuned_source, tuned or {}, lambda key: f"{tuned_source}: {key}"))
    layers.append(
        _Layer(
            "environment",
            {key: value for key, (_, value) in env.items()},
            lambda key: f"environment variable {env[key][0]} ({key})",
        )
    )
    layers.append(_Layer(overrides_source, overrides or {}, lambda key: f"{overrides_source} {key}"))
    layers.append(_Layer("run params", run_params or {}, lambda key: f"run param {run_param_name(key)} ({key})"))

    merged: dict[str, dict[str, Any]] = {stage: dict(getattr(spec, stage)) for stage in STAGES}
    merged["gate"].setdefault("metric", _DEFAULT_GATE_METRIC[spec.label.task.value])
    # Who set each key last; keys no layer sets come from the spec file (or the code default).
    set_by: dict[str, Callable[[str], str]] = {}
    for layer in layers:
        for key, value in layer.values.items():
            stage, name = split_key(key, where=layer.name)
            merged[stage][name] = value
            set_by[key] = layer.describe

    def origin(key: str) -> str:
        return set_by[key](key) if key in set_by else f"{where}: {key}"

    stages: dict[str, Any] = {}
    for stage, model in STAGES.items():
        try:
            stages[stage] = model.model_validate(merged[stage])
        except ValidationError as exc:
            lines = []
            for error in exc.errors():
                key = f"{stage}.{error['loc'][0]}" if error["loc"] else stage
                rest = loc_text(error["loc"][1:])
                got = f" (got {error['input']!r})" if error["loc"] and not isinstance(error.get("input"), dict) else ""
                lines.append(f"{origin(key)}{'.' + rest if error['loc'][1:] else ''}: {error['msg']}{got}")
            raise SpecError("\n".join(lines)) from None
    problems = check_feature_keys(stages, (f.name for f in spec.raw_features), origin)
    if problems:
        raise SpecError("\n".join(problems))
    config = PipelineConfig(variant=variant, **stages)
    _check_gate_metric(spec, config, origin("gate.metric"))
    _check_early_stopping_metric(spec, config, origin("train.early_stopping_metric"))
    return config


_DEFAULT_GATE_METRIC = {"binary": "auc", "multiclass": "accuracy", "regression": "rmse"}
_TASK_METRICS = {
    "binary": {"auc", "log_loss", "accuracy"},
    "multiclass": {"accuracy", "log_loss", "macro_auc"},
    "regression": {"rmse", "mae"},
}


def gate_metrics(spec: SpecSections) -> frozenset[str]:
    """The gate metrics that apply to the spec's task (the trigger form offers only these)."""
    return frozenset(_TASK_METRICS[spec.label.task.value])


# The eval metrics training compiles per task (training/models.py), which early stopping can watch.
EARLY_STOPPING_METRICS = {
    "binary": ("loss", "auc", "accuracy"),
    "multiclass": ("loss", "accuracy"),
    "regression": ("loss", "rmse", "mae"),
}

# Where a higher value is better; every other watched metric is a loss or an error.
HIGHER_IS_BETTER = frozenset({"auc", "accuracy"})


def _check_early_stopping_metric(spec: SpecSections, config: PipelineConfig, origin: str) -> None:
    allowed = EARLY_STOPPING_METRICS[spec.label.task.value]
    if config.train.early_stopping_metric not in allowed:
        raise SpecError(
            f"{origin}: '{config.train.early_stopping_metric}' is not an eval metric of task "
            f"{spec.label.task.value}; use one of {', '.join(allowed)}"
        )


def _check_gate_metric(spec: SpecSections, config: PipelineConfig, origin: str) -> None:
    allowed = gate_metrics(spec)
    if config.gate.metric not in allowed:
        raise SpecError(
            f"{origin}: '{config.gate.metric}' does not apply to task "
            f"{spec.label.task.value}; use one of {', '.join(sorted(allowed))}"
        )
