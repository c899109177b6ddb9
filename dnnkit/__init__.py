"""dnnkit: from a model spec to verified SavedModel, TFLite and ONNX artifacts.

``import dnnkit`` stays light: TensorFlow and Keras load only when a function that needs
them is called.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "build": ("dnnkit.builders", "build"),
    "train": ("dnnkit.training", "train"),
    "Run": ("dnnkit.training", "Run"),
    "load_spec": ("dnnkit.config", "load_spec"),
    "Spec": ("dnnkit.config", "Spec"),
    "load_data": ("dnnkit.data", "load_data"),
    "evaluate": ("dnnkit.evaluation", "evaluate"),
    "load_model": ("dnnkit.modelio", "load_model"),
    "run": ("dnnkit.pipeline", "run"),
    "export": ("dnnkit.api", "export"),
    "compress": ("dnnkit.api", "compress"),
    "optimize": ("dnnkit.api", "optimize"),
    "verify": ("dnnkit.api", "verify"),
    "load_recipe": ("dnnkit.recipe", "load_recipe"),
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
