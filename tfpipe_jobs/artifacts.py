"""The artifact contract between steps: where each output lives and how it is published.

Every step writes into a temporary sibling folder and publishes it by renaming it into
place with `_SUCCESS` inside, so a reader never sees half an output and a rerun of the
same `ds` replaces the old output instead of adding to it. Readers insist on `_SUCCESS`.
Remote paths (`gs://`) go through `tf.io.gfile`; local paths use the standard library,
so steps that never touch TensorFlow (publishing, the registry) do not pay its import.
"""

from __future__ import annotations

import glob as globbing
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

SUCCESS = "_SUCCESS"


class _LocalFiles:
    """The part of `tf.io.gfile`'s interface the steps use, for local paths."""

    GFile = open
    exists = staticmethod(os.path.exists)
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


def exists(path: str) -> bool:
    return bool(_gfile(path).exists(path))


def is_complete(path: str) -> bool:
    return bool(_gfile(path).exists(join(path, SUCCESS)))


def require_complete(path: str, step: str) -> str:
    """Return `path` if its step finished; otherwise say which step has to run first."""
    if not is_complete(path):
        raise MissingArtifactError(
            f"{path} is missing or incomplete (no {SUCCESS}): the '{step}' step must succeed for this ds first"
        )
    return path


@contextmanager
def staged_output(final: str) -> Iterator[str]:
    """Yield a temporary folder; on success publish it as `final` with `_SUCCESS`."""
    gfile = _gfile(final)
    token = uuid.uuid4().hex[:8]
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


def write_text(path: str, text: str) -> None:
    with _gfile(path).GFile(path, "w") as f:
        f.write(text)


def read_text(path: str) -> str:
    with _gfile(path).GFile(path, "r") as f:
        return str(f.read())


def read_bytes(path: str) -> bytes:
    with _gfile(path).GFile(path, "rb") as f:
        return bytes(f.read())


def write_json(path: str, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str) -> Any:
    return json.loads(read_text(path))


def atomic_write_json(path: str, obj: Any) -> None:
    """Replace one small file in one step (write aside, then rename over)."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    gfile = _gfile(path)
    gfile.makedirs(path.rsplit("/", 1)[0])
    write_json(tmp, obj)
    gfile.rename(tmp, path, overwrite=True)


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


def remove_tree(path: str) -> None:
    _gfile(path).rmtree(path)
