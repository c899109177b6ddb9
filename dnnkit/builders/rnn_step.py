"""A step of a recurrent language model (a dnnkit ``causal_lm`` RNN: an Embedding, LSTM or GRU layers, Dense
layers, the logits): the trained layers' cells run one token at a time, their states passed in and out.

States: ``h_{i}`` per recurrent layer and ``c_{i}`` for an LSTM, each (batch, units). A step over several tokens
(a prefill) runs the cell once per token, unrolled (no loop, no TensorArray: builtin ops in TFLite and ONNX);
a token whose ``input_pos`` is -1 (a padded slot) leaves every state as it was. The logits of each token are
the model's. Keras ops only.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

RECURRENT = (keras.layers.LSTM, keras.layers.GRU)
SKIPPED = (keras.layers.InputLayer, keras.layers.Dropout)  # identity at inference


def state_shapes_of(layers: list[Any], batch: int) -> dict[str, tuple[int, ...]]:
    """``h_{i}`` (and ``c_{i}`` for an LSTM) of each recurrent layer: (batch, units)."""
    out: dict[str, tuple[int, ...]] = {}
    for i, layer in enumerate(layers):
        out[f"h_{i}"] = (batch, layer.units)
        if isinstance(layer, keras.layers.LSTM):
            out[f"c_{i}"] = (batch, layer.units)
    return out


def run_cells(layer: Any, i: int, x: Any, valid: Any, inputs: dict[str, Any], out: dict[str, Any]) -> Any:
    """The recurrent ``layer`` (the ``i``-th) over ``x`` (B, L, features), one cell call per step, from the
    state ``inputs["h_{i}"]`` (and ``c_{i}``); a step where ``valid`` (B, L) is false keeps the state. Writes the
    final state into ``out``; returns the outputs (B, L, units)."""
    lstm = isinstance(layer, keras.layers.LSTM)
    state = [ops.cast(inputs[f"h_{i}"], "float32")] + ([ops.cast(inputs[f"c_{i}"], "float32")] if lstm else [])
    outputs = []
    for t in range(x.shape[1]):
        y, new = layer.cell(ops.cast(x[:, t], "float32"), state, training=False)
        new = list(new) if isinstance(new, (list, tuple)) else [new]
        keep = valid[:, t, None]
        state = [ops.where(keep, n, s) for n, s in zip(new, state)]
        outputs.append(y)
    out[f"h_{i}"] = state[0]
    if lstm:
        out[f"c_{i}"] = state[1]
    return ops.stack(outputs, axis=1)


class RecurrentDecoder(keras.Model):
    """One step of ``model`` (a dnnkit causal_lm RNN) over ``tokens`` at ``input_pos``, with its states.

    Args:
        model: the trained ``keras.Model``, a chain of single-input layers (its layers are shared, not copied).

    Raises:
        ValueError: if the model is not such a chain with at least one (unidirectional) LSTM or GRU layer.
    """

    def __init__(self, model: keras.Model, **kwargs: Any) -> None:
        super().__init__(name=f"{model.name}_decode", **kwargs)
        chain = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        recurrent = [layer for layer in chain if isinstance(layer, RECURRENT)]
        joined = [layer.name for layer in chain if isinstance(layer.input, (list, tuple, dict))
                  or isinstance(layer, keras.layers.Bidirectional)
                  or isinstance(layer, RECURRENT) and (layer.go_backwards or not layer.return_sequences)]
        if not recurrent or joined or len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ValueError(f"model {model.name!r}: expected a dnnkit causal_lm RNN (one token input, LSTM or GRU "
                             f"layers in a chain, one output){'; not a step of a causal chain: ' + str(joined) if joined else ''}")
        self.chain = chain
        self.recurrent = recurrent
        self.capacity = int(model.inputs[0].shape[1])
        self.vocab = int(model.outputs[0].shape[-1])
        self.source_model = model
        self.token_axis = 1  # a step that unrolls its tokens has a fixed number of them: ONNX decodes one at a time

    def state_shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        """Each state tensor's shape for ``batch`` sequences, by name: ``h_{i}`` (and ``c_{i}`` for an LSTM)."""
        return state_shapes_of(self.recurrent, batch)

    def empty_cache(self, batch: int) -> dict[str, np.ndarray]:
        """Zeroed states for ``batch`` sequences (what the model starts every sequence from)."""
        return {n: np.zeros(s, np.float32) for n, s in self.state_shapes(batch).items()}

    def _run(self, layer: Any, i: int, x: Any, valid: Any, inputs: dict[str, Any], out: dict[str, Any]) -> Any:
        return run_cells(layer, i, x, valid, inputs, out)

    def call(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Args: ``inputs`` with ``tokens`` (B, L) int32, ``input_pos`` (B, L) int32 and every state tensor.

        Returns: ``logits`` (B, L, vocab) and every state after the last token that is not padding.
        """
        x = ops.cast(inputs["tokens"], "int32")
        valid = ops.greater_equal(ops.cast(inputs["input_pos"], "int32"), 0)
        out: dict[str, Any] = {}
        for layer in self.chain:
            if isinstance(layer, RECURRENT):
                x = self._run(layer, self.recurrent.index(layer), x, valid, inputs, out)
            elif not isinstance(layer, SKIPPED):
                x = layer(x)
        return {"logits": x, **out}
