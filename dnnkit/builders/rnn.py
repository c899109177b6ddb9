"""Recurrent network: stacked LSTM or GRU layers, optionally bidirectional."""

from __future__ import annotations

import keras

from dnnkit.builders.common import dense_stack, head, input_layer, per_step, policy
from dnnkit.config.model import RNNConfig, Spec


def build_rnn(spec: Spec) -> keras.Model:
    """Build the recurrent network the spec describes.

    Every layer but the last returns sequences. If the last one does too
    (``return_sequences = true``), the sequence is reduced by ``sequence_pooling``
    (mean, max or flatten) before the head. Dropout sits between layers (not inside the
    cell, which would rule out the fused cuDNN / TFLite kernels). Recurrent layers stay
    float32 under mixed precision: the cuDNN path rejects bfloat16. Token ids (``input = "tokens"``) go
    through an Embedding first; a per-step head (tagging, sequence_regression) answers at every step, so
    every layer returns sequences and nothing pools them.

    Args:
        spec: a spec whose ``model.family`` is ``"rnn"``.

    Returns:
        A built, named functional ``keras.Model``.
    """
    cfg = spec.model
    opts: RNNConfig = cfg.options
    dtype = policy(spec)
    cell = keras.layers.LSTM if opts.cell == "lstm" else keras.layers.GRU
    tokens = opts.input == "tokens"
    inputs = input_layer(cfg, dtype="int32" if tokens else "float32")
    x = inputs
    if tokens:
        x = keras.layers.Embedding(opts.vocab_size, opts.embedding_dim, name="token_embedding", dtype=dtype)(x)
    steps = per_step(cfg)
    last = len(opts.units) - 1
    for i, units in enumerate(opts.units):
        seq = i < last or opts.return_sequences or steps
        layer = cell(units, return_sequences=seq, name=f"{opts.cell}_{i}", dtype="float32")
        if opts.bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"bi_{opts.cell}_{i}", dtype="float32")
        x = layer(x)
        if cfg.dropout > 0:
            x = keras.layers.Dropout(cfg.dropout, name=f"{opts.cell}_{i}_dropout")(x)
    if opts.return_sequences and not steps:
        if opts.sequence_pooling == "mean":
            x = keras.layers.GlobalAveragePooling1D(name="sequence_pool")(x)
        elif opts.sequence_pooling == "max":
            x = keras.layers.GlobalMaxPooling1D(name="sequence_pool")(x)
        else:
            x = keras.layers.Flatten(name="flatten")(x)
    x = dense_stack(x, opts.dense_units, cfg, dtype, prefix="dense")
    return keras.Model(inputs, head(x, cfg), name=spec.name)
