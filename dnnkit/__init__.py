"""dnnkit: from a model spec to verified SavedModel, TFLite and ONNX artifacts.

The public face: every name in :data:`_LAZY` is taken from the module that defines it when it is first
used, so the modules behind it can move without breaking a user (``docs/architecture.md`` maps them), and
``import dnnkit`` stays light: TensorFlow and Keras load only when a function that needs them is called.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "build": ("dnnkit.builders", "build"),
    "train": ("dnnkit.training.run", "train"),
    "Run": ("dnnkit.training.run", "Run"),
    "load_spec": ("dnnkit.config.model", "load_spec"),
    "Spec": ("dnnkit.config.model", "Spec"),
    "load_data": ("dnnkit.data.load", "load_data"),
    "evaluate": ("dnnkit.jobs.evaluate", "evaluate"),
    "load_model": ("dnnkit.sources.keras_file", "load_model"),
    "run": ("dnnkit.jobs.run", "run"),
    "export": ("dnnkit.api", "export"),
    "compress": ("dnnkit.api", "compress"),
    "optimize": ("dnnkit.api", "optimize"),
    "verify": ("dnnkit.api", "verify"),
    "package": ("dnnkit.jobs.package", "package"),
    "generate": ("dnnkit.jobs.generate", "generate"),
    "load_recipe": ("dnnkit.config.recipe", "load_recipe"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dnnkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public verbs and classes (what ``dir(dnnkit)`` and tab completion show)."""
    return sorted(__all__)
