"""Transformer encoder over token ids (Embedding) or feature vectors (Dense projection)."""

from __future__ import annotations

from typing import Any

import keras

from dnnkit.builders.common import activation, dense_stack, head, input_layer, per_step, policy
from dnnkit.builders.layers import ClassToken, PositionEmbedding, SinePositionEncoding
from dnnkit.config.model import ModelConfig, Spec, TransformerConfig


def block(x: Any, i: int, cfg: ModelConfig, opts: TransformerConfig, dtype: str, *, prefix: str = "block",
          causal: bool = False, memory: Any = None) -> Any:
    """One Transformer block: self-attention (causal or not), cross-attention over ``memory`` (a seq2seq
    decoder's), a feed-forward pair; pre- or post-norm. Its layers are named ``{prefix}_{i}_...``."""
    pre = opts.norm == "pre"

    def norm(name: str) -> keras.layers.Layer:
        return keras.layers.LayerNormalization(epsilon=1e-6, name=f"{prefix}_{i}_{name}", dtype=dtype)

    def attend(x: Any, kind: str, value: Any, causal_mask: bool) -> Any:
        h = norm(f"{kind}_norm")(x) if pre else x
        h = keras.layers.MultiHeadAttention(opts.num_heads, opts.key_dim, dropout=cfg.dropout,
                                            name=f"{prefix}_{i}_{'attention' if kind == 'attn' else 'cross_attention'}",
                                            dtype=dtype)(h, h if value is None else value, use_causal_mask=causal_mask)
        if cfg.dropout > 0:
            h = keras.layers.Dropout(cfg.dropout, name=f"{prefix}_{i}_{kind}_dropout")(h)
        x = keras.layers.Add(name=f"{prefix}_{i}_{kind}_add")([x, h])
        return x if pre else norm(f"{kind}_norm")(x)

    x = attend(x, "attn", None, causal)
    if memory is not None:
        x = attend(x, "cross", memory, False)
    h = norm("ff_norm")(x) if pre else x
    h = keras.layers.Dense(opts.ff_dim, activation=activation(cfg.activation),
                           name=f"{prefix}_{i}_ff_in", dtype=dtype)(h)
    if cfg.dropout > 0:
        h = keras.layers.Dropout(cfg.dropout, name=f"{prefix}_{i}_ff_dropout")(h)
    h = keras.layers.Dense(opts.d_model, name=f"{prefix}_{i}_ff_out", dtype=dtype)(h)
    x = keras.layers.Add(name=f"{prefix}_{i}_ff_add")([x, h])
    if not pre:
        x = norm("ff_norm")(x)
    return x


def build_transformer(spec: Spec) -> keras.Model:
    """Build the transformer encoder the spec describes: pooled for a per-sample head, per token for a
    per-step one; ``causal = true`` lets each position attend only to itself and earlier ones.

    Args:
        spec: a spec whose ``model.family`` is ``"transformer"``.

    Returns:
        A built, named functional ``keras.Model``.
    """
    cfg = spec.model
    opts: TransformerConfig = cfg.options
    dtype = policy(spec)
    tokens = opts.input == "tokens"
    inputs = input_layer(cfg, dtype="int32" if tokens else "float32")
    if tokens:
        x = keras.layers.Embedding(opts.vocab_size, opts.d_model, name="token_embedding",
                                   dtype=dtype)(inputs)
    else:
        x = keras.layers.Dense(opts.d_model, name="projection", dtype=dtype)(inputs)
    cls = opts.pooling == "cls"
    if cls:
        x = ClassToken(name="class_token", dtype=dtype)(x)
    if opts.positional == "learned":
        x = PositionEmbedding(name="position_embedding", dtype=dtype)(x)
    else:
        x = SinePositionEncoding(name="position_encoding", dtype=dtype)(x)
    if cfg.dropout > 0:
        x = keras.layers.Dropout(cfg.dropout, name="embedding_dropout")(x)
    for i in range(opts.num_blocks):
        x = block(x, i, cfg, opts, dtype, causal=opts.causal or cfg.head == "causal_lm")
    if opts.norm == "pre":
        x = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm", dtype=dtype)(x)
    if cls:
        steps = x.shape[1]
        x = keras.layers.Cropping1D((0, steps - 1), name="class_token_select", dtype=dtype)(x)
        x = keras.layers.Flatten(name="class_token_flatten")(x)
    elif not per_step(cfg):
        x = keras.layers.GlobalAveragePooling1D(name="mean_pool", dtype=dtype)(x)
    x = dense_stack(x, opts.dense_units, cfg, dtype, prefix="dense")
    return keras.Model(inputs, head(x, cfg), name=spec.name)
