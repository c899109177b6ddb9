"""Encoder-decoder models (a ``seq2seq`` head): one token input whose first ``source_steps`` steps are the
source and whose other steps are the decoder's input (the target shifted right behind a start token, teacher
forcing), and the next target token's logits at every target step.

- ``rnn``: LSTM or GRU encoder layers hand their final states to the decoder layers of the same widths;
  ``attention = true`` adds Luong (dot-product) attention of each decoder step over the encoder's states.
- ``transformer``: encoder blocks (self-attention) over the source; decoder blocks with causal self-attention
  and cross-attention over the encoder's output.

One Embedding (``token_embedding``) serves source and target. Keras ops only.
"""

from __future__ import annotations

from typing import Any

import keras

from dnnkit.builders.common import dense_stack, head, input_layer, policy
from dnnkit.builders.layers import PositionEmbedding, SinePositionEncoding
from dnnkit.builders.transformer import block
from dnnkit.config.model import RNNConfig, Spec, TransformerConfig


def _split(cfg: Any, x: Any, dtype: str) -> tuple[Any, Any]:
    """The embedded input's source steps and target steps."""
    target = cfg.output_steps
    source = keras.layers.Cropping1D((0, target), name="source_steps", dtype=dtype)(x)
    return source, keras.layers.Cropping1D((cfg.source_steps, 0), name="target_steps", dtype=dtype)(x)


def build_seq2seq(spec: Spec) -> keras.Model:
    """Build the encoder-decoder the spec describes (family ``rnn`` or ``transformer``, head ``seq2seq``).

    Returns:
        A built, named functional ``keras.Model``: (batch, source_steps + target steps) token ids in, (batch,
        target steps, vocab_size) logits out.
    """
    return (_rnn if spec.model.family == "rnn" else _transformer)(spec)


def _rnn(spec: Spec) -> keras.Model:
    cfg = spec.model
    opts: RNNConfig = cfg.options
    dtype = policy(spec)
    cell = keras.layers.LSTM if opts.cell == "lstm" else keras.layers.GRU
    inputs = input_layer(cfg, dtype="int32")
    embedded = keras.layers.Embedding(opts.vocab_size, opts.embedding_dim, name="token_embedding", dtype=dtype)(inputs)
    x, y = _split(cfg, embedded, dtype)
    states = []
    for i, units in enumerate(opts.units):
        x, *state = cell(units, return_sequences=True, return_state=True, name=f"encoder_{opts.cell}_{i}",
                         dtype="float32")(x)
        states.append(state)
        if cfg.dropout > 0:
            x = keras.layers.Dropout(cfg.dropout, name=f"encoder_{opts.cell}_{i}_dropout")(x)
    for i, units in enumerate(opts.units):
        y = cell(units, return_sequences=True, name=f"decoder_{opts.cell}_{i}", dtype="float32")(
            y, initial_state=states[i])
        if cfg.dropout > 0:
            y = keras.layers.Dropout(cfg.dropout, name=f"decoder_{opts.cell}_{i}_dropout")(y)
    if opts.attention:
        context = keras.layers.Attention(name="attention", dtype="float32")([y, x])
        y = keras.layers.Concatenate(name="attention_concat", dtype="float32")([y, context])
        y = keras.layers.Dense(opts.units[-1], activation="tanh", name="attention_out", dtype=dtype)(y)
    y = dense_stack(y, opts.dense_units, cfg, dtype, prefix="dense")
    return keras.Model(inputs, head(y, cfg), name=spec.name)


def _transformer(spec: Spec) -> keras.Model:
    cfg = spec.model
    opts: TransformerConfig = cfg.options
    dtype = policy(spec)
    inputs = input_layer(cfg, dtype="int32")
    embedded = keras.layers.Embedding(opts.vocab_size, opts.d_model, name="token_embedding", dtype=dtype)(inputs)
    x, y = _split(cfg, embedded, dtype)
    if opts.positional == "learned":
        x = PositionEmbedding(name="source_position_embedding", dtype=dtype)(x)
        y = PositionEmbedding(name="position_embedding", dtype=dtype)(y)
    else:
        x = SinePositionEncoding(name="source_position_encoding", dtype=dtype)(x)
        y = SinePositionEncoding(name="position_encoding", dtype=dtype)(y)
    for i in range(opts.num_blocks):
        x = block(x, i, cfg, opts, dtype, prefix="encoder_block")
    if opts.norm == "pre":
        x = keras.layers.LayerNormalization(epsilon=1e-6, name="encoder_norm", dtype=dtype)(x)
    for i in range(opts.num_blocks):
        y = block(y, i, cfg, opts, dtype, causal=True, memory=x)
    if opts.norm == "pre":
        y = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm", dtype=dtype)(y)
    y = dense_stack(y, opts.dense_units, cfg, dtype, prefix="dense")
    return keras.Model(inputs, head(y, cfg), name=spec.name)
