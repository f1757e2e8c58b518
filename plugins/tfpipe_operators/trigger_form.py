"""The daily DAG's trigger form: one field per overridable key, and the run params it sends.

Each field is the key's JSON schema from its stage model, cut to what Airflow's form acts
on, with the spec's value as default and a description of where else the key is set (a
variant, the tuned config). `run_params` turns a run's params back into the JSON the job
command reads (`--run-params`), keeping only what differs from the spec.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import Param

from tfpipe_operators.config import EARLY_STOPPING_METRICS, STAGES, gate_metrics, resolve_config, run_param_name
from tfpipe_operators.spec import PipelineSpec


def flat_key(param: str) -> str:
    stage, _, name = param.partition("_")
    return f"{stage}.{name}"


# The JSON-schema keywords Airflow 3.3's trigger form acts on (airflow/ui FlexibleForm):
# `type` picks the field, and a type without "null" makes it required; `enum` makes a
# dropdown labelled by `values_display`; `minimum`/`maximum` bound a number field, which
# clamps a value outside them when it loses focus; `items.type` picks the array editor.
# The form ignores every other keyword (exclusiveMinimum, pattern, minItems, ...): a value
# only those refuse reaches the API, which answers with a bare "Bad Request".
FORM_KEYWORDS = frozenset({"type", "enum", "values_display", "minimum", "maximum", "items", "description"})
# Checks the form cannot make: kept for the API, and said in the field's description.
SERVER_ONLY_KEYWORDS = {"minItems": "at least {} item"}


def _show(value: Any) -> str:
    return json.dumps(value)


def _sentence(text: str) -> str:
    text = text.strip().rstrip(".")
    return f"{text[:1].upper()}{text[1:]}."


def _form_schema(
    key: str, schema: Mapping[str, Any], allowed: Sequence[str] | None = None
) -> tuple[dict[str, Any], list[str], list[str]]:
    """A stage field's JSON schema in the keywords the form enforces, what only the API checks,
    and the exclusive bounds in words (the form's number field shows neither).

    `exclusiveMinimum`/`exclusiveMaximum` become the nearest `minimum`/`maximum` that refuses
    exactly the same values: the next integer, or the next float (no float lies between 0
    and the smallest positive one), so the API's check stays exact. Every field may be
    emptied: empty is no override.
    """
    rest = {k: v for k, v in schema.items() if k not in ("default", "title", "description")}
    for option in rest.pop("anyOf", []):  # `T | None`: null is allowed anyway
        if option.get("type") != "null":
            rest.update(option)
    json_type = rest.pop("type")
    out: dict[str, Any] = {"type": [json_type, "null"]}
    if "enum" in rest or allowed is not None:  # a plain string the task limits becomes a dropdown too
        values = [v for v in rest.pop("enum", allowed) if allowed is None or v in allowed]
        out["enum"] = [*values, None]
        out["values_display"] = {"null": "(empty: the spec's value)"}
    exclusive: list[str] = []
    for keyword, target, direction in (
        ("minimum", "minimum", 0),
        ("exclusiveMinimum", "minimum", 1),
        ("maximum", "maximum", 0),
        ("exclusiveMaximum", "maximum", -1),
    ):
        if keyword not in rest:
            continue
        bound = rest.pop(keyword)
        if direction:  # exclusive: the first value past the bound
            exclusive.append(f"{'more' if direction > 0 else 'less'} than {_show(bound)}")
            bound = bound + direction if json_type == "integer" else math.nextafter(bound, direction * math.inf)
        if target in out:
            bound = max(out[target], bound) if target == "minimum" else min(out[target], bound)
        out[target] = bound
    if "items" in rest:
        items = rest.pop("items")
        if set(items) - {"type"}:
            raise ValueError(f"trigger param for {key}: the form cannot check the items' schema {items}")
        out["items"] = items
    notes = []
    for keyword, text in SERVER_ONLY_KEYWORDS.items():
        if keyword in rest:
            out[keyword] = rest.pop(keyword)
            notes.append(text.format(out[keyword]))
    if rest:
        raise ValueError(f"trigger param for {key}: the form cannot check {', '.join(sorted(rest))}")
    return out, notes, exclusive


def form_defaults(spec: PipelineSpec) -> dict[str, Any]:
    """Trigger param -> the value a run uses unless something overrides it: the spec's (or the code default)."""
    flat = spec.config.flat()
    return {run_param_name(key): flat[key] for key in spec.overridable}


def _variant_changes(spec: PipelineSpec) -> dict[str, dict[str, Any]]:
    """Variant -> the config keys whose value it changes, with the value it sets."""
    base = spec.config.flat()
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(spec.variants):
        flat = resolve_config(spec, variant=name, environ={}).flat()
        out[name] = {key: value for key, value in flat.items() if not _same(value, base[key])}
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal as config values: 1 and 1.0 are, True and 1 are not."""
    return bool(a == b) and isinstance(a, bool) == isinstance(b, bool)


def run_params(params: Mapping[str, Any], spec_values: Mapping[str, Any] | None = None) -> str:
    """The run's overrides as one JSON argument for the job: tfpipe's own params that change something.

    A field emptied, or left at the value the form started with (`spec_values`, the spec's),
    is no override: sending it would replace the chosen variant's or the tuned value.
    """
    spec_values = spec_values or {}
    out: dict[str, Any] = {}
    for name, value in dict(params).items():
        if value is None or value == "":
            continue
        if name == "variant":
            out["variant"] = value
        elif name.partition("_")[0] in STAGES:
            if name in spec_values and _same(value, spec_values[name]):
                continue
            out[flat_key(name)] = value
    return json.dumps(out, sort_keys=True)


def _allowed_values(spec: PipelineSpec, key: str) -> list[str] | None:
    """The values a key takes for this spec's task, where the config check limits them by task."""
    if key == "gate.metric":
        return sorted(gate_metrics(spec))
    if key == "train.early_stopping_metric":
        return list(EARLY_STOPPING_METRICS[spec.label.task.value])
    return None


@functools.cache
def _stage_fields(stage: str) -> dict[str, Any]:
    """A stage's JSON schema properties: the same for every spec, and pydantic takes
    milliseconds to build one, once per key and spec without this (the DAG file re-parses
    every spec every refresh interval)."""
    return dict(STAGES[stage].model_json_schema()["properties"])


def trigger_params(spec: PipelineSpec) -> dict[str, Param]:
    """Params (JSON schema) for the trigger form: the variant and every overridable key.

    Each field starts at the value the run uses unless it is changed: the spec's (or the
    code default). The form is drawn before a variant is picked, so a field a variant
    changes names the variant's value too; left as it is, the variant's value applies.
    """
    variants = _variant_changes(spec)
    params: dict[str, Param] = {}
    if variants:
        display = {"null": "(none): the spec as written"}
        for name, changes in variants.items():
            changed = ", ".join(f"{key}={_show(value)}" for key, value in changes.items()) or "no changes"
            display[name] = f"{name}: {changed}"
        params["variant"] = Param(
            None,
            type=["null", "string"],
            enum=[None, *variants],
            values_display=display,
            description="A variant of the spec: its values replace the spec's. The fields below start at the "
            "spec's values; left as they are, the variant's values apply.",
        )
    defaults = form_defaults(spec)
    for key in spec.overridable:
        stage, _, name = key.partition(".")
        field = copy.deepcopy(_stage_fields(stage)[name])  # the cached schema stays as pydantic made it
        allowed = _allowed_values(spec, key)
        schema, server_only, exclusive = _form_schema(key, field, allowed)
        value = defaults[run_param_name(key)]
        text = [_sentence(field["description"]) if field.get("description") else ""]
        if exclusive:  # the number field clamps to the nearest allowed value; say what that is
            text.append(_sentence("must be " + " and ".join(exclusive)))
        if name in getattr(spec, stage):
            text.append(f"Spec: {_show(value)}.")
        else:
            text.append(f"Default: {_show(value)} (the spec does not set it).")
        changing = [v for v, changes in variants.items() if key in changes]
        by_variant = [f"variant {v}: {_show(variants[v][key])}" for v in changing]
        if by_variant:
            uses = f"uses {_show(variants[changing[0]][key])}" if len(changing) == 1 else "uses the variant's"
            text.append(
                f"{_sentence('; '.join(by_variant))[:-1]} (kept at {_show(value)}, a run with that variant {uses})."
            )
        if key in spec.search_space:
            text.append(f"Once {spec.pipeline}_tune has recorded a best trial, its value applies unless changed here.")
        text += [f"Needs {note} (checked on trigger, not in the form)." for note in server_only]
        params[run_param_name(key)] = Param(value, description=" ".join(filter(None, text)), **schema)
    return params
