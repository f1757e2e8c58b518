"""The trigger form refuses what the API and the job refuse, in keywords Airflow 3.3's form acts on."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from tfpipe_operators.config import STAGES, SpecError, resolve_config, run_param_name
from tfpipe_operators.monitoring_config import NOT_OVERRIDABLE
from tfpipe_operators.spec import PipelineSpec, load_spec
from tfpipe_operators.trigger_form import FORM_KEYWORDS, SERVER_ONLY_KEYWORDS, trigger_params

# Every key a spec may make overridable (the per-feature maps of monitoring cannot be).
ALL_KEYS = [
    key
    for stage, model in STAGES.items()
    for key in (f"{stage}.{name}" for name in model.model_fields)
    if key not in NOT_OVERRIDABLE
]


@pytest.fixture
def every_key_overridable(spec_dir: Path) -> PipelineSpec:
    path = spec_dir / "pipeline.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["overridable"] = ALL_KEYS
    path.write_text(yaml.safe_dump(raw))
    return load_spec(path)


def _param_accepts(param: Any, value: Any) -> bool:
    try:
        param.resolve(value)
    except Exception:
        return False
    return True


def _job_accepts(spec: PipelineSpec, key: str, value: Any) -> bool:
    try:
        resolve_config(spec, run_params={key: value}, environ={})
    except SpecError:
        return False
    return True


def _numbers_near(schema: dict[str, Any]) -> list[float]:
    """Values on, just inside and just outside each bound, and a few ordinary ones."""
    out = [-1.0, 0.0, 0.5, 1.0, 2.0, 1e9, math.ulp(0.0), -math.ulp(0.0)]
    for bound in (schema.get("minimum"), schema.get("maximum")):
        if bound is not None:
            out += [bound, math.nextafter(bound, math.inf), math.nextafter(bound, -math.inf), bound - 1, bound + 1]
    return out


def _candidates(schema: dict[str, Any]) -> list[Any]:
    json_type = next(t for t in schema["type"] if t != "null")
    if json_type == "integer":
        return sorted({int(v) for v in _numbers_near(schema) if abs(v) < 1e12})
    if json_type == "number":
        return _numbers_near(schema)
    if json_type == "boolean":
        return [True, False]
    if json_type == "string":
        # "" and None are no override: not candidates
        return [*(v for v in schema.get("enum", []) if v is not None), "mlp", "no-such-value"]
    if json_type == "array":
        return [[], [1], [64, 32], [0]]
    raise AssertionError(f"no candidates for {schema}")


def test_every_schema_uses_only_keywords_the_form_enforces(every_key_overridable: PipelineSpec) -> None:
    """Any key a spec may make overridable: a keyword the form ignores is one the API checks
    alone (a bare "Bad Request" toast); the only such kept is said in the field's text."""
    params = trigger_params(every_key_overridable)
    for key in ALL_KEYS:
        param = params[run_param_name(key)]
        extra = set(param.schema) - FORM_KEYWORDS
        assert extra <= set(SERVER_ONLY_KEYWORDS), (key, extra)
        if extra:
            assert "checked on trigger, not in the form" in param.description, key


def test_a_value_the_job_refuses_is_refused_by_the_param(every_key_overridable: PipelineSpec) -> None:
    """For every key and values on and around its bounds: Param.resolve (what the API runs)
    accepts exactly what the job's config check accepts (exclusive bounds included)."""
    spec = every_key_overridable
    params = trigger_params(spec)
    checked = 0
    for key in ALL_KEYS:
        param = params[run_param_name(key)]
        for value in _candidates(param.schema):
            assert _param_accepts(param, value) == _job_accepts(spec, key, value), (key, value)
            checked += 1
    assert checked > 300
    # A value of the wrong type: the job may coerce it ("5" -> 5), the form and API do not.
    assert not _param_accepts(params["train_epochs"], "5")
    assert not _param_accepts(params["train_learning_rate"], True)


def test_the_form_clamps_numbers_into_what_the_api_accepts(every_key_overridable: PipelineSpec) -> None:
    """The 3.3 number field clamps to minimum/maximum on blur: whatever is typed, what it
    sends passes the API. learning_rate -1 becomes the smallest positive float, not 0."""
    params = trigger_params(every_key_overridable)
    for key in ALL_KEYS:
        param = params[run_param_name(key)]
        json_type = next(t for t in param.schema["type"] if t != "null")
        if json_type not in ("integer", "number"):
            continue
        low, high = param.schema.get("minimum", -math.inf), param.schema.get("maximum", math.inf)
        for typed in (-1e12, -1, 0, math.ulp(0.0), 1, 1e12):
            sent = min(max(typed, low), high)
            if json_type == "integer":
                sent = int(sent)
            assert _param_accepts(param, sent), (key, typed, sent)
    rate = params["train_learning_rate"].schema
    assert rate["minimum"] == math.ulp(0.0) and "exclusiveMinimum" not in rate
    assert params["train_dropout"].schema["maximum"] == math.nextafter(1.0, 0.0)


def test_the_gate_metric_offers_only_the_tasks_metrics(every_key_overridable: PipelineSpec) -> None:
    metric = trigger_params(every_key_overridable)["gate_metric"]
    assert metric.schema["enum"] == ["auc", "log_loss", "accuracy", None]  # a binary task
    assert metric.value == "auc"
    assert not _param_accepts(metric, "rmse")


def test_an_empty_field_is_no_override(every_key_overridable: PipelineSpec) -> None:
    """Emptying a field (null) passes the API; run_params then sends nothing for it."""
    params = trigger_params(every_key_overridable)
    for key in ALL_KEYS:
        assert _param_accepts(params[run_param_name(key)], None), key


def test_the_server_refuses_a_bad_value_naming_the_param(ctr_spec_path: Path) -> None:
    """What the API runs on a trigger: the serialized DAG's params merged with the run's conf,
    then validated. The form (clamping to `minimum`) never sends -1; a client that does gets
    an answer naming the field."""
    from airflow.sdk.exceptions import ParamValidationError
    from airflow.serialization.serialized_objects import DagSerialization

    from tfpipe_operators.dag_factory import build_dag
    from tfpipe_operators.profiles import Profile

    served = DagSerialization.from_dict(DagSerialization.to_dict(build_dag(load_spec(ctr_spec_path), Profile())))
    rate = served.params.get_param("train_learning_rate")
    assert rate.value == 0.003 and rate.schema["minimum"] == math.ulp(0.0)  # what the form draws
    assert served.params.get_param("variant").schema["values_display"]["null"] == "(none): the spec as written"
    with pytest.raises(ParamValidationError, match=r"^Invalid input for param train_learning_rate: -1 is less than"):
        served.params.deep_merge({"train_learning_rate": -1}).validate()
    with pytest.raises(ParamValidationError, match=r"^Invalid input for param variant: 'narrow' is not one of"):
        served.params.deep_merge({"variant": "narrow"}).validate()
    accepted = served.params.deep_merge({"train_learning_rate": 0.01, "variant": "wide"}).validate()
    assert accepted["train_learning_rate"] == 0.01 and accepted["extract_lookback_days"] == 2
