"""Helpers shared by the format exporters: the model's signature, and atomic writes."""

from __future__ import annotations

from typing import Any

from dnnkit.fileio import atomic_path  # noqa: F401  (the exporters import it from here)
from dnnkit.signature import input_names, inputs_info, output_names


def io_names(model: Any) -> tuple[list[str], list[str]]:
    """The model's input and output names, used for every artifact's signature."""
    return input_names(model), output_names(model)


def input_specs(model: Any, batch: int | None) -> list[Any]:
    """One ``tf.TensorSpec`` per model input, named as the input, with the given batch size."""
    import tensorflow as tf

    return [tf.TensorSpec((batch, *info.shape), tf.as_dtype(info.dtype), name=info.name)
            for info in inputs_info(model)]


def serving_fn(model: Any) -> Any:
    """``f(*inputs) -> [outputs]``: the model in inference mode, inputs in :func:`input_names` order."""
    from dnnkit.signature import call

    names = input_names(model)

    def fn(*args: Any) -> list[Any]:
        return call(model, dict(zip(names, args)) if len(names) > 1 else args[0])

    return fn


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
