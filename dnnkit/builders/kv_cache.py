"""A KV-cached step of a decoder-only Transformer (a dnnkit ``causal_lm`` Transformer): the same weights as the
trained model, run a few tokens at a time with an explicit fixed-capacity KV cache passed in and out.

The cache has LiteRT-LM's layout and names: ``kv_cache_k_{i}`` / ``kv_cache_v_{i}`` of shape (batch, heads,
capacity, head_dim) per block, ``tokens`` and ``input_pos`` (each token's position; -1 on a padded slot) in,
``logits`` out. A token's key and value are written at its position with a one-hot mask (multiply and add, no
scatter, no dynamic slice: builtin ops in TFLite and ONNX), and each query attends to the cached positions at
or before its own. Prefill is the same step over the whole (right-padded) prompt; decode is one token. Keras
ops only.
"""

from __future__ import annotations

import math
import re
from typing import Any

import keras
import numpy as np
from keras import ops

NEG = -1e9  # the score of a position a query may not see


def write_kv(cache_k: Any, cache_v: Any, k: Any, v: Any, onehot: Any) -> tuple[Any, Any]:
    """Both caches (B, heads, C, head_dim) with this step's keys and values ``k``, ``v`` (B, L, heads, head_dim)
    written where ``onehot`` (B, L, C) says, the other slots kept."""
    written = ops.sum(onehot, axis=1)[:, None, :, None]  # (B, 1, C, 1): the positions written now
    return (cache_k * (1.0 - written) + ops.einsum("blc,blhd->bhcd", onehot, k),
            cache_v * (1.0 - written) + ops.einsum("blc,blhd->bhcd", onehot, v))


def attend_cached(mha: Any, h: Any, onehot: Any, allowed: Any, cache_k: Any, cache_v: Any) -> tuple[Any, Any, Any]:
    """Self-attention of a Keras ``MultiHeadAttention`` layer (or keras-hub's ``CachedMultiHeadAttention``, the
    same projections) over a fixed-capacity cache: ``h`` (B, L, d)'s keys and values written where ``onehot``
    (B, L, C) says, each query attending where ``allowed`` (B, L, C) says. Returns the attention output and both
    caches (B, heads, C, head_dim)."""
    q = mha._query_dense(h)  # (B, L, H, D)
    cache_k, cache_v = write_kv(cache_k, cache_v, mha._key_dense(h), mha._value_dense(h), onehot)
    scores = ops.einsum("blhd,bhcd->bhlc", q, cache_k) / math.sqrt(int(q.shape[-1]))
    scores = ops.where(allowed[:, None, :, :], scores, NEG)
    weights = ops.softmax(scores, axis=-1)
    out = ops.einsum("bhlc,bhcd->blhd", weights, cache_v)
    return mha._output_dense(out), cache_k, cache_v


def slots(pos: Any, capacity: int) -> tuple[Any, Any]:
    """Where each token at ``pos`` (B, L) writes, one-hot over the cache's slots (B, L, C), and which slots its
    query may read (B, L, C): those at or before its position (none for a padded slot, position -1)."""
    slot = ops.arange(capacity, dtype="int32")
    onehot = ops.cast(ops.equal(pos[..., None], slot), "float32")
    return onehot, ops.less_equal(slot[None, None, :], pos[..., None])


def post_layers(model: Any) -> list[Any]:
    """The layers after the last block or recurrent layer, in order: the spec's dense stack and the logits
    (dropout left out: identity at inference)."""
    return [layer for layer in model.layers
            if re.fullmatch(r"dense_\d+(_bn|_ln|_act)?|logits|attention_out", layer.name)]


def cache_names(blocks: int) -> list[str]:
    """The cache tensors' names, in order: ``kv_cache_k_0, kv_cache_v_0, kv_cache_k_1, ...``."""
    return [f"kv_cache_{kind}_{i}" for i in range(blocks) for kind in ("k", "v")]


class CachedDecoder(keras.Model):
    """One step of ``model`` (a dnnkit causal_lm Transformer) over ``tokens`` at ``input_pos``, with its cache.

    Args:
        model: the trained ``keras.Model`` (its layers are shared, not copied).

    Raises:
        ValueError: if the model is not a dnnkit decoder-only Transformer.
    """

    def __init__(self, model: keras.Model, **kwargs: Any) -> None:
        super().__init__(name=f"{model.name}_decode", **kwargs)
        names = {layer.name: layer for layer in model.layers}
        if "token_embedding" not in names or "logits" not in names or "block_0_attention" not in names:
            raise ValueError(f"model {model.name!r}: expected a dnnkit causal_lm Transformer (token_embedding, "
                             "block_0_attention, logits layers)")
        self.blocks = sum(1 for n in names if re.fullmatch(r"block_\d+_attention", n))
        self.layer_map = names
        attention = names["block_0_attention"]
        self.heads, self.head_dim = attention.num_heads, attention.key_dim
        self.capacity = int(model.outputs[0].shape[1])  # the positions the decoder answers at
        self.cross = "block_0_cross_attention" in names  # a seq2seq decoder: attends over the encoder's output
        self.post = post_layers(model)
        self.vocab = int(model.outputs[0].shape[-1])
        self.pre_norm = "final_norm" in names
        self.learned_positions = "position_embedding" in names
        self.source_model = model
        self.token_axis = None  # prefill and decode are one graph in ONNX: any number of tokens

    def cache_shape(self, batch: int) -> tuple[int, int, int, int]:
        """The shape of one cache tensor for ``batch`` sequences."""
        return (batch, self.heads, self.capacity, self.head_dim)

    def state_shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        """Each cache tensor's shape for ``batch`` sequences, by name."""
        return {n: self.cache_shape(batch) for n in cache_names(self.blocks)}

    def empty_cache(self, batch: int) -> dict[str, np.ndarray]:
        """Zeroed caches for ``batch`` sequences."""
        return {n: np.zeros(s, np.float32) for n, s in self.state_shapes(batch).items()}

    def _positions(self, x: Any, pos: Any) -> Any:
        if self.learned_positions:
            # A padded slot (position -1) reads row 0: its output is never used, and the converters turn this
            # one-hot product into an embedding lookup, which an index outside the table would break.
            onehot = ops.cast(slots(ops.maximum(pos, 0), self.capacity)[0], x.dtype)
            table = self.layer_map["position_embedding"].embeddings
            return x + ops.einsum("blc,cd->bld", onehot, ops.cast(table, x.dtype))
        dim = x.shape[-1]
        index = ops.arange(dim, dtype="float32")
        rate = ops.exp(-(2.0 * ops.floor(index / 2.0) / dim) * math.log(10000.0))
        angle = ops.cast(pos, "float32")[..., None] * rate
        even = ops.cast(ops.equal(ops.mod(ops.arange(dim), 2), 0), "float32")
        return x + even * ops.sin(angle) + (1.0 - even) * ops.cos(angle)

    def _attend(self, i: int, h: Any, onehot: Any, allowed: Any, cache_k: Any, cache_v: Any) -> tuple:
        return attend_cached(self.layer_map[f"block_{i}_attention"], h, onehot, allowed, cache_k, cache_v)

    def call(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Args: ``inputs`` with ``tokens`` (B, L) int32, ``input_pos`` (B, L) int32 and every cache tensor.

        Returns: ``logits`` (B, L, vocab) and every cache tensor with this step's keys and values written.
        """
        layers = self.layer_map
        tokens = ops.cast(inputs["tokens"], "int32")
        pos = ops.cast(inputs["input_pos"], "int32")
        onehot, allowed = slots(pos, self.capacity)
        x = self._positions(layers["token_embedding"](tokens), pos)
        out: dict[str, Any] = {}
        for i in range(self.blocks):
            norm1, norm2 = layers[f"block_{i}_attn_norm"], layers[f"block_{i}_ff_norm"]
            h = norm1(x) if self.pre_norm else x
            h, out[f"kv_cache_k_{i}"], out[f"kv_cache_v_{i}"] = self._attend(
                i, h, onehot, allowed, inputs[f"kv_cache_k_{i}"], inputs[f"kv_cache_v_{i}"])
            x = x + h
            if not self.pre_norm:
                x = norm1(x)
            if self.cross:
                norm = layers[f"block_{i}_cross_norm"]
                h = norm(x) if self.pre_norm else x
                x = x + layers[f"block_{i}_cross_attention"](h, inputs["encoder_hidden_states"])
                if not self.pre_norm:
                    x = norm(x)
            h = norm2(x) if self.pre_norm else x
            x = x + layers[f"block_{i}_ff_out"](layers[f"block_{i}_ff_in"](h))
            if not self.pre_norm:
                x = norm2(x)
        if self.pre_norm:
            x = layers["final_norm"](x)
        for layer in self.post:
            x = layer(x)
        return {"logits": x, **out}
