"""TensorFlow imported without Keras 3: no job step uses it.

`import tensorflow` eagerly imports Keras 3's optimizers (`keras.src.optimizers`; with
TF_USE_LEGACY_KERAS set, tf_keras's), so that loading a SavedModel which holds Keras
optimizer objects finds them registered. Through them it imports all of Keras 3, and Keras 3
imports matplotlib: 1.6 s of `import tensorflow` on this project's machine
(`python -X importtime -c "import tensorflow"`; about 1 s of a job process's wall time, medians of
five interleaved imports of the extract step), for a Keras no step runs. The training
model, its checkpoints and the serving export are tf_keras (Keras 2), imported by name
where they are used; tf.Transform's Keras is tf_keras too (it sets TF_USE_LEGACY_KERAS
before it touches `tf.keras`); the scoring workers run frozen SavedModels, which hold no
Keras objects at all.

So the job command imports each step's module with Keras 3's eager import left out
(`keras_3_left_out`), and a scoring worker imports TensorFlow with tf_keras's left out too
(`import_tensorflow`). `tf.keras` still works afterwards: TensorFlow loads it (Keras 3, or
tf_keras with TF_USE_LEGACY_KERAS set) lazily on first use.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from types import ModuleType

# What tensorflow/__init__.py imports eagerly (the second with TF_USE_LEGACY_KERAS set) and
# tolerates failing to import (`except (ImportError, AttributeError): pass`).
KERAS_3_OPTIMIZERS = "keras.src.optimizers"
TF_KERAS_OPTIMIZERS = "tf_keras.src.optimizers"

_lock = threading.RLock()


@contextlib.contextmanager
def _left_out(names: tuple[str, ...]) -> Iterator[None]:
    """Within: a first `import tensorflow` skips importing `names` (no-op once TensorFlow is in)."""
    with _lock:
        blocked = []
        if "tensorflow" not in sys.modules:
            blocked = [name for name in names if name not in sys.modules]
        for name in blocked:
            # A None entry makes that one import fail at once, before its package is loaded.
            sys.modules[name] = None  # type: ignore[assignment]
        try:
            yield
        finally:
            for name in blocked:
                if sys.modules.get(name, ...) is None:
                    del sys.modules[name]


def keras_3_left_out() -> contextlib.AbstractContextManager[None]:
    """Within: TensorFlow, if imported, comes without Keras 3; tf_keras imports as usual."""
    return _left_out((KERAS_3_OPTIMIZERS,))


def import_tensorflow() -> ModuleType:
    """The `tensorflow` module, imported without any Keras if this process has not imported it yet."""
    with _left_out((KERAS_3_OPTIMIZERS, TF_KERAS_OPTIMIZERS)):
        import tensorflow as tf
    return tf
