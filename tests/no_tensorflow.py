"""Run a script as ``__main__`` in a Python where TensorFlow cannot be imported.

    KERAS_BACKEND=jax python tests/no_tensorflow.py script.py

A machine with JAX and no TensorFlow (a GPU machine set up for JAX) is reproduced
here, in a virtual environment that does have TensorFlow, by refusing the import.
"""

from __future__ import annotations

import importlib.abc
import runpy
import sys

BLOCKED = {"tensorflow", "tensorflow_datasets"}


class NoTensorFlow(importlib.abc.MetaPathFinder):
    """Answer every import of a blocked package as if it were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: no TensorFlow here)", name=name)
        return None


if __name__ == "__main__":
    sys.meta_path.insert(0, NoTensorFlow())
    script, *arguments = sys.argv[1:]
    sys.argv = [script, *arguments]
    runpy.run_path(script, run_name="__main__")
    leaked = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
    if leaked:
        raise SystemExit(f"TensorFlow modules were imported after all: {leaked}")
