"""What every format's exporter shares: the model's signature (names, inputs, a serving function), and
whether it holds recurrent layers."""

from __future__ import annotations

from typing import Any

from dnnkit.core.tensors import call, input_names, output_names


def io_names(model: Any) -> tuple[list[str], list[str]]:
    """The model's input and output names, used for every artifact's signature."""
    return input_names(model), output_names(model)


def serving_fn(model: Any) -> Any:
    """``f(*inputs) -> [outputs]``: the model in inference mode, inputs in :func:`input_names` order."""
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
