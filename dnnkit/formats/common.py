"""Helpers shared by the format exporters: the model's signature, and atomic writes."""

from __future__ import annotations

from typing import Any

from dnnkit.fileio import atomic_path  # noqa: F401  (the exporters import it from here)


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
