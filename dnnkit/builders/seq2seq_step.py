"""The steps of a dnnkit ``seq2seq`` model (an encoder-decoder, :mod:`dnnkit.builders.seq2seq`): ``encode`` runs
the trained encoder once over the source; the decoder then steps a few tokens at a time with its state passed in
and out, as a language model's does, reading the encoder's output (``encoder_hidden_states``, Hugging Face
Optimum's name) on every call.

- RNN: ``encode`` gives ``encoder_hidden_states`` (where the decoder attends) and the decoder's first state,
  ``h_{i}`` (and ``c_{i}``): the encoder layers' final states. A decode step runs the decoder layers' cells.
- Transformer: ``encode`` gives ``encoder_hidden_states``; the decoder's KV cache starts empty
  (:class:`dnnkit.builders.kv_cache.CachedDecoder`, which adds the cross-attention over the encoder's output).

Keras ops only.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from dnnkit.builders.kv_cache import CachedDecoder, post_layers
from dnnkit.builders.rnn_step import RECURRENT, run_cells, state_shapes_of


def is_seq2seq(model: Any) -> bool:
    """Whether ``model`` is a dnnkit encoder-decoder (its input split into source and target steps)."""
    return any(layer.name == "source_steps" for layer in model.layers)


class Seq2SeqStep(keras.Model):
    """The decode step of a dnnkit seq2seq ``model`` (``call``), with its ``encode``.

    Args:
        model: the trained ``keras.Model`` (its layers are shared, not copied).

    Raises:
        ValueError: if the model is not a dnnkit seq2seq model.
    """

    def __init__(self, model: keras.Model, **kwargs: Any) -> None:
        super().__init__(name=f"{model.name}_decode", **kwargs)
        names = {layer.name: layer for layer in model.layers}
        if not is_seq2seq(model) or "token_embedding" not in names or "logits" not in names:
            raise ValueError(f"model {model.name!r}: expected a dnnkit seq2seq model (token_embedding, source_steps, "
                             "logits layers)")
        self.layer_map = names
        self.capacity = int(model.outputs[0].shape[1])
        self.source_steps = int(model.inputs[0].shape[1]) - self.capacity
        self.vocab = int(model.outputs[0].shape[-1])
        self.source_model = model
        self.transformer = "block_0_cross_attention" in names
        self.recurrent = not self.transformer
        if self.transformer:
            self.kv = CachedDecoder(model)
            self.token_axis = None
            memory = names["encoder_norm"].output if "encoder_norm" in names else \
                names[f"encoder_block_{self.kv.blocks - 1}_ff_norm"].output
            # the trained encoder as it is (no loop in a Transformer's), fed the source and an empty target
            self.encoder = keras.Model(model.inputs, memory, name=f"{model.name}_encode")
            self.memory_shape: tuple[int, ...] | None = tuple(int(d) for d in memory.shape[1:])
        else:
            encoders = [layer for layer in model.layers
                        if layer.name.startswith("encoder_") and isinstance(layer, RECURRENT)]
            self.encoders = sorted(encoders, key=lambda layer: int(layer.name.rsplit("_", 1)[1]))
            self.decoders = [layer for layer in model.layers
                             if layer.name.startswith("decoder_") and isinstance(layer, RECURRENT)]
            self.attention = names.get("attention")
            self.post = post_layers(model)
            self.token_axis = 1
            self.memory_shape = (self.source_steps, self.encoders[-1].units) if self.attention is not None else None

    def state_shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        """The decoder's state, by name: its KV cache, or ``h_{i}`` (and ``c_{i}``)."""
        return self.kv.state_shapes(batch) if self.transformer else state_shapes_of(self.decoders, batch)

    def encoder_shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        """What the decoder reads from the encoder on every call besides its state: ``encoder_hidden_states``."""
        return {"encoder_hidden_states": (batch, *self.memory_shape)} if self.memory_shape else {}

    def empty_cache(self, batch: int) -> dict[str, np.ndarray]:
        """Zeroed decoder state for ``batch`` sequences (``encode`` gives an RNN's first state)."""
        return {n: np.zeros(s, np.float32) for n, s in self.state_shapes(batch).items()}

    def encode(self, source: Any) -> dict[str, Any]:
        """``source`` (B, source_steps) token ids -> ``encoder_hidden_states`` and, for an RNN, the decoder's
        first state (the encoder layers' final states, their cells run one step at a time: no loop op)."""
        source = ops.cast(source, "int32")
        if self.transformer:
            padded = ops.concatenate([source, ops.zeros((ops.shape(source)[0], self.capacity), "int32")], axis=1)
            return {"encoder_hidden_states": self.encoder(padded, training=False)}
        x = self.layer_map["token_embedding"](source)
        valid = ops.ones(ops.shape(source), "bool")
        zeros = {n: ops.zeros(s, "float32") for n, s in state_shapes_of(self.encoders, ops.shape(source)[0]).items()}
        out: dict[str, Any] = {}
        for i, layer in enumerate(self.encoders):
            x = run_cells(layer, i, x, valid, zeros, out)
        if self.attention is not None:
            out["encoder_hidden_states"] = x
        return out

    def call(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Args: ``tokens`` (B, L), ``input_pos`` (B, L) (-1 on a padded slot), the decoder's state and
        ``encoder_hidden_states``. Returns ``logits`` (B, L, vocab) and the decoder's new state."""
        if self.transformer:
            return self.kv(inputs)
        x = self.layer_map["token_embedding"](ops.cast(inputs["tokens"], "int32"))
        valid = ops.greater_equal(ops.cast(inputs["input_pos"], "int32"), 0)
        out: dict[str, Any] = {}
        for i, layer in enumerate(self.decoders):
            x = run_cells(layer, i, x, valid, inputs, out)
        if self.attention is not None:
            context = self.attention([x, inputs["encoder_hidden_states"]])
            x = ops.concatenate([x, context], axis=-1)
        for layer in self.post:
            x = layer(x)
        return {"logits": x, **out}
