"""TensorFlow for a process that only runs frozen SavedModels (the batch-scoring workers).

`import tensorflow` eagerly imports Keras's optimizers, so that loading a SavedModel which
holds Keras optimizer objects finds them registered. Through them it imports all of
Keras 3, and Keras imports matplotlib: measured on this project's machine, about 1 s of
the 3 s that `import tensorflow` takes (`python -X importtime -c "import tensorflow"`),
paid by every scoring worker at start-up. The serving SavedModel is frozen (no variables, no optimizer, no
Keras objects), so a scoring worker imports TensorFlow without that eager import.
`tf.keras` still works afterwards: TensorFlow loads it (Keras 3, or tf_keras with
TF_USE_LEGACY_KERAS set) lazily on first use.
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType

# What tensorflow/__init__.py imports eagerly (the second with TF_USE_LEGACY_KERAS set) and
# tolerates failing to import (`except (ImportError, AttributeError): pass`).
EAGER_KERAS_MODULES = ("keras.src.optimizers", "tf_keras.src.optimizers")

_lock = threading.Lock()


def import_tensorflow() -> ModuleType:
    """The `tensorflow` module, imported without Keras if this process has not imported it yet."""
    with _lock:
        blocked = []
        if "tensorflow" not in sys.modules:
            blocked = [name for name in EAGER_KERAS_MODULES if name not in sys.modules]
        for name in blocked:
            # A None entry makes that one import fail at once, before Keras's package is loaded.
            sys.modules[name] = None  # type: ignore[assignment]
        try:
            import tensorflow as tf
        finally:
            for name in blocked:
                if sys.modules.get(name, ...) is None:
                    del sys.modules[name]
        return tf
