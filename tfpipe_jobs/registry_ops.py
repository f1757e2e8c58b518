"""What an operator does to the registry: read its history, roll back, bless by hand.

Each change is a new registry event (kind `rollback` or `manual`, with who, why and when),
written as its own record and added to `blessed.json` through the same serialised update
as publish_model's blessings (a lock file locally, a generation precondition on GCS);
nothing already recorded is edited or removed.

Which model scores a day follows from the events alone (`registry.blessed_as_of`): events
are ordered by ds, then by time, and a day is scored by the last event whose ds is on or
before it. So a rollback recorded for ds D makes every day from D on use the version it
names and leaves the days before D as they were; a later event of the same ds (another
rollback, a manual bless, a rerun of publish_model for D) wins over it; and a blessing of a
newer ds, the next nightly blessed model, supersedes it from that ds on.

Every change names the version the operator expects to score its ds now
(`--expected-current`, as `list` shows it); the registry update refuses it if another change
got there first, so two operators acting on what they saw cannot both win.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date
from typing import Any

from tfpipe_jobs import artifacts, registry
from tfpipe_jobs.artifacts import RunPaths

log = logging.getLogger(__name__)

WHO_VARIABLES = ("TFPIPE_USER", "USER", "LOGNAME")


class RegistryCommandError(ValueError):
    """An operator's registry command cannot be carried out; the message says why and what to do."""


def who(given: str, environ: Mapping[str, str]) -> str:
    """The operator a change is recorded for: `--who`, else the environment."""
    for value in (given, *(environ.get(name, "") for name in WHO_VARIABLES)):
        if value and value.strip():
            return value.strip()
    raise RegistryCommandError(
        "who makes this change is unknown: pass --who NAME (the registry DAG passes the user who triggered "
        f"the run; locally one of ${', $'.join(WHO_VARIABLES)} is used)"
    )


def _reason(reason: str) -> str:
    if not reason.strip():
        raise RegistryCommandError(
            "--reason is empty: say why (it is recorded with the change and shown by `tfpipe-job registry list`)"
        )
    return reason.strip()


def _require_registry(paths: RunPaths) -> dict[str, Any]:
    doc = registry.read_registry(paths)
    if doc is None or not doc["history"]:
        raise RegistryCommandError(
            f"{paths.blessed_file} does not exist: pipeline '{paths.pipeline}' has no blessed model yet "
            "(the first model must pass evaluate_gate, or be blessed by hand with `tfpipe-job registry bless`)"
        )
    return doc


def _expected(value: str, history: list[dict[str, Any]], ds: str) -> str | None:
    """`--expected-current`: the version the operator saw scoring `ds` (`none`: no model)."""
    value = value.strip()
    if not value:
        scoring = registry.scoring_event(history, ds)
        raise RegistryCommandError(
            f"--expected-current is empty: name the version you expect to score {ds} now (`tfpipe-job registry "
            f"list --ds {ds}` shows it; it is {scoring['model_version'] if scoring else registry.NO_MODEL}), "
            "so a change someone made since you looked is not overwritten"
        )
    return None if value == registry.NO_MODEL else value


def _is_blessing(entry: dict[str, Any]) -> bool:
    return registry.kind(entry) in (registry.NIGHTLY, registry.MANUAL)


def metrics_summary(entry: dict[str, Any], limit: int = 3) -> str:
    values = entry.get("metrics") or {}
    parts = [f"{k}={v:.4f}" if isinstance(v, int | float) else f"{k}={v}" for k, v in list(values.items())[:limit]]
    return " ".join(parts) or "-"


def _rows(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every event with the days it scores: from its ds up to the next ds's first event, unless a
    later event of the same ds replaced it."""
    rows = []
    for i, entry in enumerate(history):
        later = history[i + 1 :]
        if later and later[0]["ds"] == entry["ds"]:
            scores = "none (replaced by a later event of the same ds)"
        elif later:
            scores = f"{entry['ds']} .. before {later[0]['ds']}"
        else:
            scores = f"{entry['ds']} on"
        rows.append(
            {
                "ds": entry["ds"],
                "model_version": entry["model_version"],
                "kind": registry.kind(entry),
                "when": entry.get("blessed_at", ""),
                "who": entry.get("who") or ("evaluate_gate" if registry.kind(entry) == registry.NIGHTLY else "?"),
                "why": entry.get("why") or ("; ".join(entry.get("rules") or []) or "-"),
                "metrics": metrics_summary(entry),
                "scores": scores,
                **({"origin_ds": entry["origin_ds"]} if "origin_ds" in entry else {}),
                **({"replaces": entry["replaces"]} if "replaces" in entry else {}),
            }
        )
    return rows[::-1]  # newest first


def format_rows(rows: list[dict[str, Any]]) -> str:
    """The history as text a person reads in a terminal or a task log."""
    lines = []
    for row in rows:
        lines.append(f"{row['ds']}  {row['kind']:<8}  {row['model_version']}")
        lines.append(f"    when {row['when']}  who {row['who']}  scores {row['scores']}")
        replaced = row.get("replaces") or "no model"
        if row["kind"] == registry.ROLLBACK:
            lines.append(f"    rolled back from {replaced} to the model blessed for {row.get('origin_ds')}")
        elif row["kind"] == registry.MANUAL:
            lines.append(f"    blessed by hand over the gate's refusal, replacing {replaced}")
        lines.append(f"    metrics {row['metrics']}")
        lines.append(f"    why {row['why']}")
    return "\n".join(lines)


def history(paths: RunPaths, ds: str) -> dict[str, Any]:
    """The events, newest first, and the version that scores `ds`."""
    doc = _require_registry(paths)
    rows = _rows(doc["history"])
    scoring = registry.scoring_event(doc["history"], ds)
    if scoring is None:
        line = f"scoring {ds}: no model (the first blessing is of {doc['history'][0]['ds']})"
    else:
        line = f"scoring {ds}: {scoring['model_version']} ({registry.kind(scoring)} event of {scoring['ds']})"
    print(f"registry of pipeline '{paths.pipeline}' ({paths.blessed_file}), {len(rows)} events, newest first:")
    print(format_rows(rows))
    print(line, flush=True)
    return {
        "pipeline": paths.pipeline,
        "registry": paths.blessed_file,
        "ds": ds,
        "scores": scoring["model_version"] if scoring else None,
        "current": doc["history"][-1]["model_version"],
        "events": rows,
    }


def rollback(
    paths: RunPaths, to: str, from_ds: str | None, reason: str, by: str, today: date, expected_current: str
) -> dict[str, Any]:
    """From `from_ds` on (default: the current event's ds), score with the earlier blessed version `to`,
    if `expected_current` still scores `from_ds` (`none`: no model)."""
    why = _reason(reason)
    if not to.strip():
        raise RegistryCommandError("--to is empty: name the blessed version to roll back to (see `registry list`)")
    doc = _require_registry(paths)
    events = doc["history"]
    blessings = [e for e in events if _is_blessing(e)]
    matches = [e for e in blessings if e["model_version"] == to.strip()]
    if not matches:
        known = ", ".join(dict.fromkeys(e["model_version"] for e in reversed(blessings)))
        raise RegistryCommandError(
            f"unknown version {to!r}: pipeline '{paths.pipeline}' never blessed it ({paths.blessed_file} has "
            f"blessed {known}); `tfpipe-job registry list` shows them"
        )
    target = matches[-1]
    start = from_ds or events[-1]["ds"]
    if start > today.isoformat():
        raise RegistryCommandError(
            f"--from-ds {start} is in the future (today is {today}): a rollback takes effect from a day already due"
        )
    if target["ds"] > start:
        raise RegistryCommandError(
            f"version {target['model_version']} was blessed for {target['ds']}, after {start}: a newer day's model "
            f"never scores an older day; roll back from {target['ds']} or later, or to a version blessed by {start}"
        )
    scoring = registry.scoring_event(events, start)
    if scoring is not None and scoring["model_version"] == target["model_version"]:
        raise RegistryCommandError(
            f"version {target['model_version']} already scores {start} ({registry.kind(scoring)} event of "
            f"{scoring['ds']}): nothing to roll back"
        )
    expected = _expected(expected_current, events, start)
    try:
        registry.check_scoring(paths, events, start, expected)  # early; checked again when written
    except registry.StaleRegistryError as exc:
        raise RegistryCommandError(str(exc)) from None
    # Scoring must be able to load it: the version's folder is still there, with its files.
    try:
        registry.verified_model_dir(paths, target)
    except (artifacts.MissingArtifactError, registry.ModelIntegrityError) as exc:
        raise RegistryCommandError(f"cannot roll back to {target['model_version']}: {exc}") from None
    lineage = {k: v for k, v in target.items() if k not in ("kind", "who", "why", "blessed_at", "gate_verdict")}
    entry = {
        **lineage,
        "ds": start,
        "kind": registry.ROLLBACK,
        "origin_ds": target["ds"],
        "replaces": expected,
        "who": by,
        "why": why,
        "blessed_at": registry.now(),
    }
    try:
        _, doc = registry.record_event(paths, entry, guarded=True)
    except registry.StaleRegistryError as exc:
        raise RegistryCommandError(str(exc)) from None
    after = [e["ds"] for e in doc["history"] if e["ds"] > start]
    until = after[0] if after else None
    log.info(
        "registry: %s rolled %s back to %s from %s on%s (was %s): %s",
        by,
        paths.pipeline,
        target["model_version"],
        start,
        f" until {until}, whose own event then scores" if until else "",
        entry["replaces"],
        why,
    )
    if until:
        log.warning(
            "registry: from %s on, the event of that day (%s) scores again, not %s",
            until,
            registry.scoring_event(doc["history"], until)["model_version"],  # type: ignore[index]
            target["model_version"],
        )
    return {
        "kind": registry.ROLLBACK,
        "model_version": target["model_version"],
        "from_ds": start,
        "until_ds": until,
        "replaces": entry["replaces"],
        "who": by,
        "why": why,
        "current": doc["history"][-1]["model_version"],
    }


def bless_refused(paths: RunPaths, reason: str, by: str, expected_current: str, version: str = "") -> dict[str, Any]:
    """Bless the model the gate refused for `paths.ds`, recording the gate's refusal and the reason.

    `expected_current` must still score that ds when the registry is written (`none`: no
    model): of two operators blessing on the same state, one wins. `version`, when given,
    must be the refused candidate's: the operator blesses the model they looked at, not one
    a rerun of the day put there since.
    """
    why = _reason(reason)
    ds = paths.ds
    eval_dir = artifacts.published(paths.eval)
    if eval_dir is None:
        raise RegistryCommandError(
            f"{paths.eval} is missing or incomplete: the gate has not judged a model of {ds}, so there is no "
            "refused model to bless (run the day's evaluate_gate first)"
        )
    evaluation = artifacts.read_json(artifacts.join(eval_dir, "evaluation.json"))
    verdict = artifacts.read_text(artifacts.join(eval_dir, "verdict")).strip()
    candidate = (evaluation.get("candidate") or {}).get("model_version", "?")
    if verdict != "refused":
        raise RegistryCommandError(
            f"the gate did not refuse the model of {ds} ({candidate}, verdict {verdict!r} in {eval_dir}): "
            "publish_model blesses it; rerun that day's publish_model instead of blessing by hand"
        )
    if version and version != candidate:
        raise RegistryCommandError(
            f"--version {version} is not the model the gate refused for {ds}: that is {candidate} "
            f"({eval_dir}/evaluation.json)"
        )
    if artifacts.published(paths.serving) is None:
        raise RegistryCommandError(
            f"the refused model of {ds} ({candidate}) is missing: {paths.serving} is gone or incomplete, so the "
            "model the gate judged cannot be blessed (rerun the day's export_serving_model and evaluate_gate)"
        )
    doc = registry.read_registry(paths)
    history = (doc or {}).get("history", [])
    for entry in history:
        if entry["ds"] == ds and entry["model_version"] == candidate and _is_blessing(entry):
            raise RegistryCommandError(
                f"{candidate} is already blessed for {ds} ({registry.kind(entry)} event of {entry.get('blessed_at')}"
                f"{', by ' + entry['who'] if entry.get('who') else ''}): nothing to bless"
            )
    expected = _expected(expected_current, history, ds)
    event = {"kind": registry.MANUAL, "gate_verdict": verdict, "replaces": expected, "who": by, "why": why}
    try:
        registry.check_scoring(paths, history, ds, expected)  # before copying the model; checked again when written
        entry = registry.bless_candidate(paths, ds, eval_dir, evaluation, event, guarded=True)
    except registry.ModelIntegrityError as exc:
        raise RegistryCommandError(f"cannot bless {candidate}, the refused model of {ds}: {exc}") from None
    except registry.StaleRegistryError as exc:
        raise RegistryCommandError(str(exc)) from None
    log.info(
        "registry: %s blessed %s for %s by hand, over the gate's refusal (%s): %s",
        by,
        candidate,
        ds,
        "; ".join(evaluation["rules"]),
        why,
    )
    return entry
