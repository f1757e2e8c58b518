"""Print the requirements of setup.py (install_requires plus the named extras), one a line.

The images install these, pinned by a constraints file, in a layer of their own before the
sources are copied in: a change to the code then reuses the layer that holds TensorFlow or
Airflow instead of installing them again. Reads setup.py without setuptools or the sources.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any


def requirements(setup_py: Path, extras: list[str]) -> list[str]:
    captured: dict[str, Any] = {}
    fake = types.ModuleType("setuptools")
    fake.setup = lambda **kwargs: captured.update(kwargs)  # type: ignore[attr-defined]
    real = sys.modules.get("setuptools")
    sys.modules["setuptools"] = fake
    try:
        exec(compile(setup_py.read_text(), str(setup_py), "exec"), {"__name__": "__main__"})
    finally:
        if real is None:
            del sys.modules["setuptools"]
        else:
            sys.modules["setuptools"] = real
    out = list(captured.get("install_requires", []))
    for extra in extras:
        out += captured["extras_require"][extra]
    return out


if __name__ == "__main__":
    print("\n".join(requirements(Path(sys.argv[1]), sys.argv[2:])))
