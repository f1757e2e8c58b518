"""Keep TensorFlow's CUDA start-up noise out of a CPU machine's job logs.

TensorFlow's Linux wheel carries CUDA support and probes for a driver when it first lists
its devices. Without a GPU it logs `E ... cuda_platform.cc:..] failed call to cuInit` at
error level, even with CUDA_VISIBLE_DEVICES="" or TF_CPP_MIN_LOG_LEVEL=2 (the message comes
before TensorFlow's logging is set up; only TF_CPP_MIN_LOG_LEVEL=3 hides it, and that hides
every real error too). The line is written by native code straight to file descriptor 2,
so it can only be removed there: when the machine has no /dev/nvidia*, the job's fd 2
becomes a pipe into a small filter process that drops exactly the known lines and passes
everything else through unchanged, line by line.

A process, not a thread: it outlives the job's own exit (a traceback printed at shutdown
still gets through), serves the job's worker processes, which inherit fd 2, and ends when
the last of them closes the pipe.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import re
import signal
import subprocess
import sys
from typing import BinaryIO

# The lines a machine without a GPU always gets; anything else CUDA says is kept.
KNOWN_NOISE = (
    re.compile(rb"^E\d{4} [\d:. ]+\d+ cuda_platform\.cc:\d+\] failed call to cuInit: "),
    re.compile(rb"^I\d{4} [\d:. ]+\d+ cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine"),
)


def has_gpu(device_glob: str = "/dev/nvidia*") -> bool:
    """Whether an NVIDIA device node exists (what the CUDA driver would open)."""
    return bool(glob.glob(device_glob))


def is_noise(line: bytes) -> bool:
    return any(pattern.match(line) for pattern in KNOWN_NOISE)


def relay(source: BinaryIO, target: BinaryIO) -> int:
    """Copy `source` to `target` line by line, without the known noise; lines dropped."""
    dropped = 0
    for line in iter(source.readline, b""):
        if is_noise(line):
            dropped += 1
            continue
        target.write(line)
        target.flush()  # one line at a time, so the task log follows the job as it runs
    return dropped


def install() -> subprocess.Popen[bytes] | None:
    """On a machine without a GPU, route this process's fd 2 through the filter process."""
    if has_gpu():
        return None
    sys.stderr.flush()
    # The filter writes to the stderr this process was given; it is the pipe's only reader.
    process = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, close_fds=True)
    assert process.stdin is not None
    original = os.dup(2)
    os.dup2(process.stdin.fileno(), 2)
    process.stdin.close()  # fd 2 now holds the write end; the filter ends when every copy is closed
    atexit.register(drain, process, original)
    return process


def drain(process: subprocess.Popen[bytes], original: int, timeout: float = 5.0) -> None:
    """At exit (after Python printed any traceback): give fd 2 back and wait for the filter
    to pass the last lines, since a pod stops every process when its main one ends."""
    sys.stderr.flush()
    os.dup2(original, 2)  # closes this process's write end of the pipe
    os.close(original)
    # A worker still holding the pipe past the timeout: the filter goes on serving it.
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout)


def main() -> int:
    # Ignore SIGTERM sent to the job's process group: the job's own last lines (it logs why
    # it stopped) still have to get through; the filter ends at end of input.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    relay(sys.stdin.buffer, sys.stderr.buffer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
