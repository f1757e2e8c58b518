"""What every job command knows about its run: spec, resolved config, day, places."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from tfpipe_jobs.artifacts import RunPaths
from tfpipe_operators.config import PipelineConfig
from tfpipe_operators.spec import PipelineSpec
from tfpipe_operators.warehouse import Warehouse


class SkipStep(Exception):
    """The step has nothing to do for this run; the task is marked skipped, not failed."""


@dataclass(frozen=True)
class JobContext:
    spec: PipelineSpec
    config: PipelineConfig
    ds: date
    paths: RunPaths
    warehouse: Warehouse
    runner: str = "DirectRunner"
    beam_args: tuple[str, ...] = ()
    tuned: dict[str, Any] | None = None  # the tune DAG's best trial, when the config uses it
    overrides: dict[str, Any] | None = None  # what this run set on top (--set, run params)

    @property
    def query_params(self) -> dict[str, Any]:
        """The only values SQL ever sees, bound as parameters."""
        return {"ds": self.ds, "lookback_days": self.config.extract.lookback_days}

    def provenance(self) -> dict[str, Any]:
        return {
            "pipeline": self.spec.pipeline,
            "ds": self.ds.isoformat(),
            "variant": self.config.variant,
            "config_hash": self.config.digest(),
            "spec": str(self.spec.path),
            "trial": self.paths.trial or None,
            "tuned_from": {k: self.tuned[k] for k in ("ds", "trial")} if self.tuned else None,
        }
