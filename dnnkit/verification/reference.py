"""The reference: the Keras model's outputs on every input an artifact is run on, and the file that
carries them to the verifier process."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from dnnkit.core.tensors import Inputs, from_arrays, to_arrays


@dataclass
class Reference:
    """The Keras model's outputs on every input artifacts are run on.

    ``x`` (one array, or a dict per input name) holds the labelled test split first
    (``n_test`` rows), then the other inputs available (train, validation): agreement needs no
    labels, so it uses them all. ``outputs``, ``heads`` and ``labels`` have one entry per model
    output, in ``output_names`` order; ``labels[k]`` is the test split's labels for output
    ``k`` (``None`` where the data has none).
    """

    x: Inputs
    outputs: list[np.ndarray]
    heads: list[str]
    labels: list[np.ndarray | None]
    input_names: list[str]
    output_names: list[str]
    metrics: dict[str, float]
    n_test: int
    fp16_weight_error: float | list[float | None] | None = None

    @property
    def multi_output(self) -> bool:
        return len(self.outputs) > 1

    @property
    def head(self) -> str:
        """The task of a single-output model (``multi`` when there are several outputs)."""
        return self.heads[0] if not self.multi_output else "multi"


def save_reference(path: str | os.PathLike[str], ref: Reference) -> None:
    """The reference's arrays as one ``.npz`` (inputs, then per output its values and labels)."""
    arrays = to_arrays("x", ref.x)
    for k, (out, y) in enumerate(zip(ref.outputs, ref.labels)):
        arrays[f"out/{k}"] = out
        if y is not None:
            arrays[f"y/{k}"] = y
    np.savez(path, **arrays)


def load_reference(path: str | os.PathLike[str], meta: dict[str, Any]) -> Reference:
    """The inverse of :func:`save_reference`, with the fields in ``meta``."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    count = len(meta["output_names"])
    return Reference(x=from_arrays("x", arrays), outputs=[arrays[f"out/{k}"] for k in range(count)],
                     heads=meta["heads"], labels=[arrays.get(f"y/{k}") for k in range(count)],
                     input_names=meta["input_names"], output_names=meta["output_names"], metrics=meta["metrics"],
                     n_test=meta["n_test"], fp16_weight_error=meta.get("fp16_weight_error"))
