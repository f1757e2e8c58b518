"""The local folder that caches train's parsed first epoch: its owner is in its name.

The cache of a 600K-row day is 35-44 MB. `train` removes its folder on any exit it sees
(an exception, `SystemExit` or `KeyboardInterrupt` from a SIGTERM handler); a SIGKILL, an
OOM kill or a lost node leaves it. So the folder is named
`tfpipe-train-cache-<host>-<pid>-<random>`, and each training run first sweeps the temp
folder of caches that provably have no live owner: this host's whose process is gone, and
those older than a day that no live process of this host owns (another host's, on a shared
temp folder, or from before names carried the owner).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "tfpipe-train-cache-"
MAX_AGE_SECONDS = 24 * 3600
# <host>-<pid>-<random>: mkdtemp's random part has no "-", so a host name may have some.
_OWNER = re.compile(r"^(?P<host>.+)-(?P<pid>\d+)-[^-]+$")


def host() -> str:
    """This host's name as it appears in cache names (characters unsafe in a file name replaced)."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "unknown-host"


def create(root: str | None = None) -> str:
    """A new cache folder of this process under `root` (default: the temp folder)."""
    return tempfile.mkdtemp(prefix=f"{PREFIX}{host()}-{os.getpid()}-", dir=root)


def remove(path: str | None) -> None:
    """Remove a cache folder (nothing if None or already gone)."""
    if path:
        shutil.rmtree(path, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` runs on this host (a zombie, killed but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _age_seconds(path: Path, now: float) -> float:
    """Time since anything in the folder last changed (a cache being written is young)."""
    newest = path.stat().st_mtime
    for child in path.iterdir():
        with contextlib.suppress(OSError):  # removed meanwhile
            newest = max(newest, child.stat().st_mtime)
    return now - newest


def stale_reason(path: Path, now: float) -> str | None:
    """Why the cache folder `path` has no live owner, or None if it may still be in use."""
    owner = _OWNER.match(path.name[len(PREFIX) :])
    if owner and owner["host"] == host():
        pid = int(owner["pid"])
        # This process sweeps before it creates its own folder: one with its pid is a
        # previous process's (a restarted container reuses low pids).
        if pid == os.getpid() or not pid_alive(pid):
            return f"its process {pid} on this host is gone"
        return None  # a live process of this host: whatever its age, it may still read it
    age = _age_seconds(path, now)
    if age > MAX_AGE_SECONDS:
        whose = f"host {owner['host']}" if owner else "an unknown owner"
        return f"it is {age / 3600:.0f} h old ({whose})"
    return None


def sweep(root: str | None = None, now: float | None = None) -> list[str]:
    """Remove stale cache folders under `root` (default: the temp folder); returns their paths."""
    folder = Path(root or tempfile.gettempdir())
    now = time.time() if now is None else now
    swept = []
    for path in sorted(folder.glob(f"{PREFIX}*")):
        try:
            if not path.is_dir() or path.is_symlink():
                continue
            reason = stale_reason(path, now)
            if reason is None:
                continue
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            shutil.rmtree(path)
        except OSError as exc:  # e.g. removed meanwhile by another sweeping run
            log.warning("train: could not sweep the parsed-data cache %s: %s", path, exc)
            continue
        log.info("train: swept the stale parsed-data cache %s (%.1f MB): %s", path, size / 1e6, reason)
        swept.append(str(path))
    return swept
