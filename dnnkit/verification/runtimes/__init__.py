"""Run an artifact in its own runtime: TensorFlow (SavedModel), the LiteRT interpreter
(TFLite) and onnxruntime (ONNX), behind one small interface."""

from __future__ import annotations

import os

from dnnkit.verification.runtimes.base import Runner
from dnnkit.verification.runtimes.onnx import OnnxRunner
from dnnkit.verification.runtimes.saved_model import SavedModelRunner
from dnnkit.verification.runtimes.tflite import TFLiteRunner

RUNNERS: dict[str, type[Runner]] = {"saved_model": SavedModelRunner, "tflite": TFLiteRunner, "onnx": OnnxRunner}


def open_artifact(fmt: str, path: str | os.PathLike[str]) -> Runner:
    """Load an artifact in its runtime.

    Args:
        fmt: ``saved_model``, ``tflite`` or ``onnx``.
        path: the artifact.

    Returns:
        A :class:`Runner`.
    """
    return RUNNERS[fmt](str(path))
