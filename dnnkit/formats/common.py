"""Helpers shared by the format exporters: atomic writes and the model's signature."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    A killed or failed export therefore never leaves a file (or SavedModel folder) at
    ``path`` that looks finished.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    tmp = tmp_dir / final.name
    try:
        yield tmp
        if final.is_dir():
            shutil.rmtree(final)
        elif final.exists():
            final.unlink()
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def io_names(model: Any) -> tuple[str, str]:
    """The model's input and output names, used for every artifact's signature."""
    inp = model.inputs[0].name if getattr(model.inputs[0], "name", None) else "inputs"
    out = model.output_names[0] if getattr(model, "output_names", None) else "outputs"
    return inp, out


def input_spec(model: Any, batch: int | None) -> Any:
    """A ``tf.TensorSpec`` for the model's single input with the given batch size."""
    import tensorflow as tf

    inp = model.inputs[0]
    return tf.TensorSpec((batch, *inp.shape[1:]), tf.as_dtype(str(inp.dtype)), name=io_names(model)[0])


def has_recurrent_layers(model: Any) -> bool:
    """Whether any layer (inside wrappers too) is an LSTM, GRU or generic RNN."""
    import keras

    def walk(layer: Any) -> bool:
        if isinstance(layer, keras.layers.RNN) or type(layer).__name__ in ("LSTM", "GRU"):
            return True
        inner = [getattr(layer, a, None) for a in ("forward_layer", "backward_layer", "layer")]
        if any(walk(i) for i in inner if i is not None):
            return True
        return any(walk(sub) for sub in getattr(layer, "layers", []) if sub is not layer)

    return any(walk(layer) for layer in model.layers)
