"""The model registry: which immutable model version scores each day.

A blessed model is copied once into `<pipeline>/models/<model_version>/` and never written
again. Its `model_version` is `<ds>-<digest of its SavedModel's files>`: a rerun that trains
another model gets another version, and every reader (the gate, scoring) checks that the
files it loads still have that digest, so a name always means the same model.

`registry/blessed.json` lists every blessing (ds, version, metrics, time, the gate's rules)
under `history` and repeats the current one, the newest ds's, at its top level. The model
for a day is the one blessed from the newest ds on or before it (`blessed_as_of`): a
backfilled day is scored by its own day's model whatever runs beside it, and an older day's
blessing never displaces a newer one. Each update is one serialised read-modify-write: under
a lock file locally, with a generation precondition on GCS (two writers cannot both win).
Each blessing is also written as its own record under `registry/blessings/` first, so a
damaged `blessed.json` can be rebuilt (`tfpipe-job rebuild-registry`).

Operators add events of their own (`tfpipe_jobs/registry_ops.py`): a manual blessing of a
model the gate refused, and a rollback to an earlier blessed version from a given ds on.
Each names the version it replaces, and is written only if that version still scores its
ds when the serialised update runs: of two operators acting on the same state, one wins and
the other is told the registry changed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from tfpipe_jobs import artifacts
from tfpipe_jobs.artifacts import RunPaths

log = logging.getLogger(__name__)

DIGEST_CHARS = 16  # of the SavedModel's SHA-256 in its version name: 64 bits, no collision in practice
CAS_ATTEMPTS = 50


class NoBlessedModelError(LookupError):
    """Scoring was asked for but no model of this pipeline was blessed on or before the day."""


class RegistryCorruptError(RuntimeError):
    """`blessed.json` cannot be read; the message says how to rebuild or restore it."""


class ModelIntegrityError(RuntimeError):
    """A model's files no longer have the digest its version names."""


class StaleRegistryError(RuntimeError):
    """An operator's change expected another version to score its day than the registry now has."""


def model_version(ds: str, digest: str) -> str:
    return f"{ds}-{digest[:DIGEST_CHARS]}"


def saved_model_digest(model_dir: str) -> str:
    """The digest a version is named by: the SavedModel's files, nothing else in the folder."""
    return artifacts.tree_digest(artifacts.join(model_dir, artifacts.SAVED_MODEL_DIR))


def _repair_hint(paths: RunPaths) -> str:
    return (
        f"rebuild it from its per-blessing records in {paths.blessings} with "
        f"`tfpipe-job rebuild-registry --spec <pipeline.yaml> --artifact-root {paths.root}`, "
        "or restore the previous copy (GCS object versioning)"
    )


def _parse(text: str, paths: RunPaths) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryCorruptError(
            f"{paths.blessed_file} is not valid JSON ({exc}): the registry of pipeline '{paths.pipeline}' is "
            f"damaged; {_repair_hint(paths)}"
        ) from None
    history = doc.get("history") if isinstance(doc, dict) else None
    if not isinstance(history, list) or not all(
        isinstance(e, dict) and {"ds", "model_version", "digest"} <= e.keys() for e in history
    ):
        raise RegistryCorruptError(
            f"{paths.blessed_file} has no valid 'history' of blessings (each with ds, model_version, digest): "
            f"it was written by hand or by an older tfpipe; {_repair_hint(paths)}"
        )
    return dict(doc)


def read_registry(paths: RunPaths) -> dict[str, Any] | None:
    if not artifacts.exists(paths.blessed_file):
        return None
    return _parse(artifacts.read_text(paths.blessed_file), paths)


def read_blessed(paths: RunPaths) -> dict[str, Any] | None:
    """The current blessing (the newest ds's), or None before the first."""
    doc = read_registry(paths)
    return doc["history"][-1] if doc and doc["history"] else None


def scoring_event(history: list[dict[str, Any]], ds: str) -> dict[str, Any] | None:
    """The event of a history (in registry order) that scores `ds`: the latest one of the
    newest ds on or before it, whatever its kind (a nightly or manual blessing, a rollback)."""
    earlier = [e for e in history if e["ds"] <= ds]
    return earlier[-1] if earlier else None


def blessed_as_of(paths: RunPaths, ds: str) -> dict[str, Any] | None:
    """The event that scores `ds` (see `scoring_event`); what scoring and the gate load."""
    doc = read_registry(paths)
    return scoring_event((doc or {}).get("history", []), ds)


def require_blessed_as_of(paths: RunPaths, ds: str) -> dict[str, Any]:
    entry = blessed_as_of(paths, ds)
    if entry is None:
        doc = read_registry(paths)
        first = doc["history"][0]["ds"] if doc else None
        why = (
            f" (its first blessing is of {first}: a newer day's model never scores an older day)"
            if first
            else " does not exist"
        )
        raise NoBlessedModelError(
            f"no model of pipeline '{paths.pipeline}' was blessed on or before {ds} "
            f"({paths.blessed_file}{why}): the first model must pass "
            "evaluate_gate before anything can be scored"
        )
    return entry


def file_digest(path: str) -> str:
    """Short SHA-256 of one file (the data's stats.json: which extraction a model was judged on)."""
    return hashlib.sha256(artifacts.read_bytes(path)).hexdigest()[:DIGEST_CHARS]


def verified_model_dir(paths: RunPaths, entry: dict[str, Any]) -> str:
    """The folder of a blessed version, after checking its SavedModel's files are that version's."""
    folder = paths.model_version_dir(entry["model_version"])
    published = artifacts.published(folder)  # on an object store: the version folder its pointer names
    if published is None:
        raise artifacts.MissingArtifactError(
            f"{folder} is missing or incomplete (no {artifacts.SUCCESS}), but {paths.blessed_file} names model "
            f"version {entry['model_version']}: restore the folder, or rerun publish_model for ds "
            f"{entry.get('origin_ds', entry['ds'])}"
        )
    digest = saved_model_digest(published)
    if digest != entry["digest"]:
        raise ModelIntegrityError(
            f"{folder} no longer holds model version {entry['model_version']}: its files have digest "
            f"{digest[:DIGEST_CHARS]}, the registry names {entry['digest'][:DIGEST_CHARS]}. Something rewrote a "
            "published model; restore the folder, or bless a new model (rerun the day's export_serving_model, "
            "evaluate_gate and publish_model)"
        )
    return published


@contextmanager
def _locked(paths: RunPaths) -> Iterator[None]:
    os.makedirs(paths.registry, exist_ok=True)
    with open(os.path.join(paths.registry, ".lock"), "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, also if the process dies
        yield


def _write_locked(paths: RunPaths, change: Callable[[dict[str, Any] | None], dict[str, Any]]) -> dict[str, Any]:
    with _locked(paths):
        doc = change(read_registry(paths))
        artifacts.atomic_write_json(paths.blessed_file, doc)
    return doc


def _write_generation_matched(
    paths: RunPaths, change: Callable[[dict[str, Any] | None], dict[str, Any]]
) -> dict[str, Any]:
    """Compare-and-swap on the object's generation: a write based on a stale read is refused."""
    from google.api_core import exceptions
    from google.cloud import storage  # type: ignore[attr-defined]

    bucket_name, _, name = paths.blessed_file.removeprefix("gs://").partition("/")
    bucket = storage.Client().bucket(bucket_name)
    for _ in range(CAS_ATTEMPTS):
        found = bucket.get_blob(name)
        generation = int(found.generation) if found is not None else 0  # 0: only if it still does not exist
        # A blob without a generation of its own: reading a replaced generation would be a 404,
        # not the 412 that says "read again".
        blob = bucket.blob(name)
        try:
            current = _parse(blob.download_as_text(if_generation_match=generation), paths) if generation else None
        except (exceptions.PreconditionFailed, exceptions.NotFound):
            continue  # replaced (or deleted) since the generation was read
        doc = change(current)
        text = json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n"
        try:
            blob.upload_from_string(text, content_type="application/json", if_generation_match=generation)
            return doc
        except exceptions.PreconditionFailed:
            time.sleep(random.uniform(0.05, 0.5))
    raise RuntimeError(f"{paths.blessed_file}: {CAS_ATTEMPTS} concurrent updates in a row won over this one")


def _update(paths: RunPaths, change: Callable[[dict[str, Any] | None], dict[str, Any]]) -> dict[str, Any]:
    if paths.blessed_file.startswith("gs://"):
        return _write_generation_matched(paths, change)
    if "://" in paths.blessed_file:
        raise ValueError(f"{paths.blessed_file}: the registry lives on a local folder or gs://, not elsewhere")
    return _write_locked(paths, change)


NIGHTLY = "bless"  # publish_model after the gate blessed the model
MANUAL = "manual"  # an operator blessed a model the gate refused (`tfpipe-job registry bless`)
ROLLBACK = "rollback"  # an operator pointed scoring back at an earlier version (`tfpipe-job registry rollback`)
NO_MODEL = "none"  # how an operator says "no model scores that day yet" (--expected-current none)


def kind(entry: dict[str, Any]) -> str:
    """What made a registry event; records older than event kinds are nightly blessings."""
    return str(entry.get("kind") or NIGHTLY)


def _order(entry: dict[str, Any]) -> tuple[str, str]:
    return entry["ds"], entry.get("blessed_at", "")


def _document(paths: RunPaths, blessings: list[dict[str, Any]]) -> dict[str, Any]:
    """The registry file: events in (ds, time) order, the current one repeated at the top level.

    The same version blessed again for the same day by publish_model (a rerun) is kept once,
    its latest; an operator's events (manual blessings, rollbacks) are all kept, since each
    says who did what and why.
    """
    latest: dict[tuple[str, ...], dict[str, Any]] = {}
    for entry in sorted(blessings, key=_order):
        key: tuple[str, ...] = (entry["ds"], entry["model_version"])
        if kind(entry) != NIGHTLY:
            key = (*key, kind(entry), entry.get("blessed_at", ""))
        latest.pop(key, None)
        latest[key] = entry
    history = sorted(latest.values(), key=_order)
    return {**history[-1], "pipeline": paths.pipeline, "history": history}


def record_event(
    paths: RunPaths, entry: dict[str, Any], guarded: bool = False
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Add one event: its own record first, then blessed.json in one serialised update.

    `guarded` (an operator's change): the update is refused with StaleRegistryError unless
    the version scoring the entry's ds is still `entry["replaces"]` (None: no model), checked
    on the state the update writes over, so of two changes made on the same state one wins.
    Returns the current event before the update and the registry after it.
    """
    # The record first: whatever happens to blessed.json, every event can be rebuilt from these.
    record = hashlib.sha256(json.dumps(entry, sort_keys=True, default=str).encode()).hexdigest()[:8]
    record_file = artifacts.join(paths.blessings, f"{entry['model_version']}-{record}.json")
    artifacts.make_dirs(paths.blessings)
    artifacts.write_json(record_file, entry)
    before: dict[str, Any] = {}

    def add(doc: dict[str, Any] | None) -> dict[str, Any]:
        history = list((doc or {}).get("history", []))
        if guarded:
            check_scoring(paths, history, entry["ds"], entry["replaces"])
        before["current"] = history[-1] if history else None
        return _document(paths, [*history, entry])

    try:
        doc = _update(paths, add)
    except StaleRegistryError:
        # Refused: its record must not come back with a rebuild.
        artifacts.remove_file(record_file)
        raise
    return before["current"], doc


def check_scoring(paths: RunPaths, history: list[dict[str, Any]], ds: str, expected: str | None) -> None:
    """Raise StaleRegistryError unless `expected` (None: no model) is what scores `ds`."""
    scoring = scoring_event(history, ds)
    found = scoring["model_version"] if scoring else None
    if found == expected:
        return
    if scoring is None:
        now_text = "no model does now"
    else:
        by = f" by {scoring['who']}" if scoring.get("who") else ""
        now_text = f"{found} does now ({kind(scoring)} event of {scoring['ds']}{by}, {scoring.get('blessed_at')})"
    raise StaleRegistryError(
        f"stale expected version: --expected-current {expected or NO_MODEL} was to score {ds}, but {now_text} in "
        f"{paths.blessed_file}. The registry changed since it was read; check `tfpipe-job registry list --ds {ds}` "
        f"and, if the change still makes sense, repeat it with --expected-current {found or NO_MODEL}"
    )


def now() -> str:
    """An event's time: microseconds, so two events of one ds keep the order they were made in."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _store_version(serving_dir: str, target: str, version: str, digest: str) -> None:
    """Copy the judged serving model into its immutable folder, proving it is what was judged."""
    published = artifacts.published(target)
    if published is not None:
        if saved_model_digest(published) == digest:
            return
        raise ModelIntegrityError(
            f"{target} exists but does not hold model version {version}: a published model was rewritten; "
            "restore or remove that folder, then rerun publish_model"
        )
    with artifacts.staged_output(target) as out:
        artifacts.copy_tree(serving_dir, out)
        copied = saved_model_digest(out)
        if copied != digest:
            raise ModelIntegrityError(
                f"{serving_dir} changed after evaluate_gate judged it (digest {copied[:DIGEST_CHARS]}, the gate "
                f"judged {digest[:DIGEST_CHARS]}): a rerun of export_serving_model replaced it; rerun evaluate_gate "
                "for this ds, then publish_model"
            )


def bless_candidate(
    paths: RunPaths,
    ds: str,
    eval_dir: str,
    evaluation: dict[str, Any],
    event: dict[str, Any],
    guarded: bool = False,
) -> dict[str, Any]:
    """Bless the model the gate judged for `ds`: copied into its immutable version folder once
    its files are proven to be the judged ones, then recorded (publish_model and a manual bless;
    `guarded` as in `record_event`)."""
    candidate = evaluation.get("candidate") or {}
    if not {"model_version", "digest"} <= candidate.keys():
        raise artifacts.MissingArtifactError(
            f"{eval_dir}/evaluation.json names no candidate model version (written by an older tfpipe): "
            "rerun evaluate_gate for this ds"
        )
    version, digest = candidate["model_version"], candidate["digest"]
    model_dir = paths.model_version_dir(version)
    # The day's serving output as it is now (not the path the gate recorded, which a moved
    # artifact root would leave stale): its digest must still be the judged one.
    serving_dir = artifacts.require_complete(paths.serving, "export_serving_model")
    _store_version(serving_dir, model_dir, version, digest)
    entry = {
        "pipeline": paths.pipeline,
        "ds": ds,
        "model_version": version,
        "digest": digest,
        "serving": model_dir,
        "metrics": evaluation["metrics"]["new"],
        "rules": evaluation["rules"],
        "config_hash": evaluation["config_hash"],
        "variant": evaluation.get("variant"),
        "trial": evaluation.get("trial"),
        "data_fingerprint": candidate.get("data_fingerprint"),
        **event,
        "blessed_at": now(),
    }
    before, doc = record_event(paths, entry, guarded=guarded)
    previous = before["model_version"] if before else None
    current = doc["history"][-1]
    if current["model_version"] == version:
        log.info("registry: %s is now the blessed model of %s (was %s)", version, paths.pipeline, previous)
    else:
        log.info(
            "registry: %s is blessed for %s and scores it; the current model stays %s (from the newer ds %s)",
            version,
            ds,
            current["model_version"],
            current["ds"],
        )
    return {**entry, "current": current["model_version"]}


def rebuild(paths: RunPaths) -> dict[str, Any]:
    """Write blessed.json anew from the per-blessing records (the repair for a damaged file).

    The old file is never parsed, so its damage cannot stop the repair.
    """
    records = [artifacts.read_json(p) for p in artifacts.glob(artifacts.join(paths.blessings, "*.json"))]
    if not records:
        raise NoBlessedModelError(f"{paths.blessings} holds no blessing records: nothing to rebuild the registry from")
    doc = _document(paths, records)
    if paths.blessed_file.startswith("gs://"):
        from google.cloud import storage  # type: ignore[attr-defined]

        bucket, _, name = paths.blessed_file.removeprefix("gs://").partition("/")
        text = json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n"
        storage.Client().bucket(bucket).blob(name).upload_from_string(text, content_type="application/json")
    else:
        with _locked(paths):
            artifacts.atomic_write_json(paths.blessed_file, doc)
    log.info("registry: rebuilt %s from %d blessing records", paths.blessed_file, len(records))
    return {"registry": paths.blessed_file, "blessings": len(records), "current": doc["model_version"]}
