"""The artifact contract between steps: where each output lives and how it is published.

Every step writes into a temporary sibling folder and publishes it by renaming it into
place with `_SUCCESS` inside, so a reader never sees half an output and a rerun of the
same `ds` replaces the old output instead of adding to it. Readers insist on `_SUCCESS`.
Remote paths (`gs://`) go through `tf.io.gfile`; local paths use the standard library,
so steps that never touch TensorFlow (publishing, the registry) do not pay its import.
"""

from __future__ import annotations

import glob as globbing
import hashlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

SUCCESS = "_SUCCESS"
SAVED_MODEL_DIR = "saved_model"  # inside a serving folder and a model version's folder
# On an object store an output is published by this one small object inside its path, naming
# the version folder (a sibling `<name>.v-<owner token>`) that holds it.
CURRENT = "_CURRENT"
# A temporary output whose owner cannot be proven dead is still removed once it is this old:
# no step runs for a day (the DAG's task timeouts are hours).
STALE_AFTER_SECONDS = 24 * 3600


class _LocalFiles:
    """The part of `tf.io.gfile`'s interface the steps use, for local paths."""

    GFile = open
    exists = staticmethod(os.path.exists)
    remove = staticmethod(os.remove)
    rmtree = staticmethod(shutil.rmtree)
    walk = staticmethod(os.walk)

    @staticmethod
    def makedirs(path: str) -> None:
        os.makedirs(path, exist_ok=True)

    @staticmethod
    def rename(src: str, dst: str, overwrite: bool = False) -> None:
        if not overwrite and os.path.exists(dst):
            raise FileExistsError(dst)
        os.replace(src, dst)

    @staticmethod
    def copy(src: str, dst: str, overwrite: bool = False) -> None:
        if not overwrite and os.path.exists(dst):
            raise FileExistsError(dst)
        shutil.copyfile(src, dst)

    @staticmethod
    def glob(pattern: str) -> list[str]:
        return globbing.glob(pattern)


def _gfile(path: str = "") -> Any:
    if "://" not in path:
        return _LocalFiles
    import tensorflow as tf

    return tf.io.gfile


def join(*parts: str) -> str:
    return "/".join(p.rstrip("/") for p in parts if p)


class MissingArtifactError(FileNotFoundError):
    """A step's input is absent or incomplete (no `_SUCCESS`)."""


@dataclass(frozen=True)
class RunPaths:
    """Folders of one pipeline and day: `<root>/<pipeline>/<ds>/...`."""

    root: str
    pipeline: str
    ds: str
    trial: str = ""  # a tuning trial trains into its own folder under <ds>/trials/

    @property
    def day(self) -> str:
        return join(self.root, self.pipeline, self.ds)

    @property
    def data(self) -> str:
        return join(self.day, "data")

    @property
    def model(self) -> str:
        return join(self.trials, self.trial, "model") if self.trial else join(self.day, "model")

    @property
    def trials(self) -> str:
        return join(self.day, "trials")

    @property
    def tuned_file(self) -> str:
        """The tune DAG's best trial: the config the daily runs train with."""
        return join(self.root, self.pipeline, "tuning", "best.json")

    @property
    def serving(self) -> str:
        return join(self.day, "serving")

    @property
    def eval(self) -> str:
        return join(self.day, "eval")

    @property
    def scores(self) -> str:
        return join(self.day, "scores")

    @property
    def registry(self) -> str:
        return join(self.root, self.pipeline, "registry")

    @property
    def blessed_file(self) -> str:
        return join(self.registry, "blessed.json")

    @property
    def blessings(self) -> str:
        """One record per blessing, written before blessed.json: what a damaged registry is rebuilt from."""
        return join(self.registry, "blessings")

    def model_version_dir(self, version: str) -> str:
        """`<root>/<pipeline>/models/<model_version>/`: a blessed model, written once, never changed."""
        return join(self.root, self.pipeline, "models", version)


def exists(path: str) -> bool:
    return bool(_gfile(path).exists(path))


def published(path: str) -> str | None:
    """The folder holding `path`'s published output, or None when there is none.

    Locally that is `path` itself once `_SUCCESS` is in it. On an object store it is the
    version that `path/_CURRENT` names, once that version holds `_SUCCESS`.
    """
    gfile = _gfile(path)
    if not _on_object_store(path):
        return path if gfile.exists(join(path, SUCCESS)) else None
    pointer = join(path, CURRENT)
    if not gfile.exists(pointer):
        return None
    version = join(path.rstrip("/").rsplit("/", 1)[0], read_text(pointer).strip())
    return version if gfile.exists(join(version, SUCCESS)) else None


def is_complete(path: str) -> bool:
    return published(path) is not None


def require_complete(path: str, step: str) -> str:
    """The folder to read `path`'s output from, if its step finished; otherwise say which step has to run first."""
    folder = published(path)
    if folder is None:
        raise MissingArtifactError(
            f"{path} is missing or incomplete (no {SUCCESS}): the '{step}' step must succeed for this ds first"
        )
    return folder


def owner_token() -> str:
    """`<host>-<pid>-<random>`: names a temporary output so a later run can tell whether its
    owner still lives (same host, pid gone) without trusting clocks alone."""
    host = socket.gethostname().replace("-", "_") or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def owner_is_dead(token: str, age_seconds: float | None) -> bool:
    """True when a temporary output named by `owner_token` can no longer be written to:
    its process on this host has exited, or it is older than `STALE_AFTER_SECONDS`."""
    host, _, rest = token.partition("-")
    pid_text = rest.partition("-")[0]
    if host == socket.gethostname().replace("-", "_") and pid_text.isdigit():
        return int(pid_text) != os.getpid() and not _pid_alive(int(pid_text))
    return age_seconds is not None and age_seconds > STALE_AFTER_SECONDS


def _age_seconds(path: str) -> float | None:
    if "://" in path:
        return None  # an object store's "folder" has no time of its own; owner or nothing
    try:
        return time.time() - os.stat(path).st_mtime
    except OSError:
        return None


def sweep_stale(final: str) -> list[str]:
    """Remove the temporary siblings (`<final>.tmp-*`, `<final>.old-*`) of killed writers."""
    gfile = _gfile(final)
    removed = []
    for suffix in ("tmp", "old"):
        for path in gfile.glob(f"{final.rstrip('/')}.{suffix}-*"):
            token = path.rsplit(f".{suffix}-", 1)[1]
            if owner_is_dead(token, _age_seconds(path)):
                gfile.rmtree(path)
                removed.append(path)
    for path in removed:
        log.info("removed %s: left by a writer that was killed", path)
    return removed


def _on_object_store(path: str) -> bool:
    return "://" in path


@contextmanager
def staged_output(final: str) -> Iterator[str]:
    """Yield a folder to write an output into; on success publish it as `final`.

    Locally the folder is a temporary sibling renamed into place with `_SUCCESS` inside:
    one atomic rename. An object store has no atomic rename (a folder "rename" copies and
    deletes object by object, so a marker could land before the data), so there the folder
    is a version of its own, `<final>.v-<owner token>`, published by writing the one small
    object `<final>/_CURRENT` that names it, after everything else; readers resolve it
    (`published`, `require_complete`) and see the old version or the new, never a mix.
    Any exit but success (an error, or the SIGTERM the job command turns into one) removes
    the unpublished folder; what a SIGKILL leaves behind the next writer of `final` sweeps.
    """
    if _on_object_store(final):
        yield from _publish_by_pointer(final)
        return
    gfile = _gfile(final)
    sweep_stale(final)
    token = owner_token()
    tmp = f"{final.rstrip('/')}.tmp-{token}"
    gfile.makedirs(tmp)
    try:
        yield tmp
    except BaseException:
        gfile.rmtree(tmp)
        raise
    write_text(join(tmp, SUCCESS), "")
    old = f"{final.rstrip('/')}.old-{token}"
    if gfile.exists(final):
        gfile.rename(final, old)
    gfile.rename(tmp, final)
    if gfile.exists(old):
        gfile.rmtree(old)
    log.info("published %s", final)


def _publish_by_pointer(final: str) -> Iterator[str]:
    gfile = _gfile(final)
    base = final.rstrip("/")
    version = f"{base}.v-{owner_token()}"
    try:
        yield version
    except BaseException:
        if gfile.exists(version):
            gfile.rmtree(version)
        raise
    write_text(join(version, SUCCESS), "")
    previous = published(final)
    write_text(join(base, CURRENT), version.rsplit("/", 1)[1] + "\n")  # the one write that publishes
    log.info("published %s as %s", final, version)
    _drop_superseded(base, keep={version, previous})


def _drop_superseded(base: str, keep: set[str | None]) -> None:
    """Remove versions nobody reads: finished ones older than the previous (which a reader that
    resolved the pointer just before the switch may still be reading), and unfinished ones
    whose writer is provably gone."""
    gfile = _gfile(base)
    for found in gfile.glob(f"{base}.v-*"):
        version = found.rstrip("/")
        if version in keep:
            continue
        token = version.rsplit(".v-", 1)[1]
        if gfile.exists(join(version, SUCCESS)) or owner_is_dead(token, None):
            gfile.rmtree(version)
            log.info("removed %s: superseded or left by a writer that was killed", version)


def write_text(path: str, text: str) -> None:
    with _gfile(path).GFile(path, "w") as f:
        f.write(text)


def read_text(path: str) -> str:
    with _gfile(path).GFile(path, "r") as f:
        return str(f.read())


def read_bytes(path: str) -> bytes:
    with _gfile(path).GFile(path, "rb") as f:
        return bytes(f.read())


def write_bytes(path: str, data: bytes) -> None:
    with _gfile(path).GFile(path, "wb") as f:
        f.write(data)


def write_json(path: str, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str) -> Any:
    return json.loads(read_text(path))


def atomic_write_json(path: str, obj: Any) -> None:
    """Replace one small file in one step (write aside, then rename over)."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    gfile = _gfile(path)
    gfile.makedirs(path.rsplit("/", 1)[0])
    try:
        write_json(tmp, obj)
        gfile.rename(tmp, path, overwrite=True)
    finally:
        if gfile.exists(tmp):
            gfile.remove(tmp)


def create_json(path: str, obj: Any) -> None:
    """Write a small file that must never be replaced (a numbered version): whole or not at all,
    and a FileExistsError when it exists already (e.g. another run wrote it first)."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    gfile = _gfile(path)
    gfile.makedirs(path.rsplit("/", 1)[0])
    if gfile.exists(path):
        raise FileExistsError(path)
    try:
        write_json(tmp, obj)
        try:
            gfile.rename(tmp, path, overwrite=False)
        except FileExistsError:
            raise
        except Exception as exc:  # tf.io.gfile's AlreadyExistsError
            if gfile.exists(path):
                raise FileExistsError(path) from exc
            raise
    finally:
        if gfile.exists(tmp):
            gfile.remove(tmp)


def tree_digest(folder: str) -> str:
    """SHA-256 of a folder's files (relative paths and bytes, in path order): what a model
    version is named by, so the same name always means the same files."""
    gfile = _gfile(folder)
    base = folder.rstrip("/")
    files = sorted(join(here, name)[len(base) :].lstrip("/") for here, _, names in gfile.walk(folder) for name in names)
    if not files:
        raise MissingArtifactError(f"{folder} holds no files: there is no model to name")
    digest = hashlib.sha256()
    for rel in files:  # one line per file, "<sha256 of its bytes> <relative path>"
        content = hashlib.sha256()
        with gfile.GFile(join(base, rel), "rb") as f:
            while chunk := f.read(1 << 20):
                content.update(chunk)
        digest.update(f"{content.hexdigest()} {rel}\n".encode())
    return digest.hexdigest()


def copy_tree(src: str, dst: str) -> None:
    """Copy a folder (local or gs://), file by file."""
    gfile = _gfile(src)
    for folder, _, files in gfile.walk(src):
        target = join(dst, folder[len(src.rstrip("/")) :].lstrip("/"))
        gfile.makedirs(target)
        for name in files:
            gfile.copy(join(folder, name), join(target, name), overwrite=True)


def glob(pattern: str) -> list[str]:
    return sorted(_gfile(pattern).glob(pattern))


def make_dirs(path: str) -> None:
    _gfile(path).makedirs(path)


def remove_tree(path: str) -> None:
    _gfile(path).rmtree(path)


def remove_file(path: str) -> None:
    _gfile(path).remove(path)
