"""A KV-cached step of a keras-hub causal LM a user brings: the same layers as the trained model, with the
fixed-capacity one-hot cache of :mod:`dnnkit.builders.kv_cache` in place of keras-hub's ``call_with_cache`` (whose
``slice_update`` becomes ``XlaDynamicUpdateSlice``, which neither tf2onnx nor a builtin-only TFLite file can hold).

Two families, read by their parts (no keras-hub import): ``model.backbone.token_embedding`` (its ``reverse`` call
gives the logits), ``transformer_layers`` and ``layer_norm``, and

- GPT-2-style (``learned``): a ``position_embedding`` table and pre-norm ``TransformerDecoder`` layers;
- Llama-style (``rotary``: Llama, Llama 3, Mistral whose sliding window is no shorter than the cache): rotary
  positions applied to queries and keys at each token's position, grouped key/value heads (the cache keeps the
  key/value heads, repeated for the queries), RMS norms, a gated (SiLU) feed-forward.

- Gemma (1 and 2): embeddings scaled by the square root of the width, rotary positions in Gemma's layout, the
  query scaled as the layer says, attention logits soft-capped where the model does, post-norms where it has them,
  a GELU-gated feed-forward (the final soft cap is the reversed embedding's own).

Others (encoder-decoders, a sliding window shorter than the cache) are refused with the reason.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from dnnkit.builders.kv_cache import NEG, attend_cached, slots, write_kv


GEMMA_PARTS = ("pre_attention_norm", "attention", "pre_ffw_norm", "gating_ffw", "gating_ffw_2", "ffw_linear")
ROTARY_PARTS = ("_self_attention_layernorm", "_feedforward_layernorm", "_feedforward_gate_dense",
                "_feedforward_intermediate_dense", "_feedforward_output_dense", "activation")


def hub_kind(model: Any) -> tuple[str | None, str | None]:
    """``("learned" | "rotary" | "gemma", None)`` for a keras-hub causal LM this step can run, else ``(None, why
    not)``."""
    backbone = getattr(model, "backbone", None)
    name = type(model).__name__
    if backbone is None or not hasattr(backbone, "transformer_layers") or not hasattr(model, "call_with_cache"):
        return None, "not a keras-hub CausalLM (a task with a backbone and call_with_cache)"
    if not hasattr(backbone, "token_embedding") or not hasattr(backbone, "layer_norm"):
        return None, f"{name}: its backbone has no token_embedding and layer_norm as GPT-2's and Llama's do"
    layer = backbone.transformer_layers[0]
    if all(hasattr(layer, p) for p in GEMMA_PARTS) and hasattr(layer.attention, "_apply_rope"):
        return "gemma", None
    attention = getattr(layer, "_self_attention_layer", None)
    if attention is None:
        return None, f"{name}: its decoder layers have no self-attention layer dnnkit knows"
    if hasattr(backbone, "position_embedding"):
        if not getattr(layer, "normalize_first", False) or getattr(layer, "_cross_attention_layer", None) is not None:
            return None, f"{name}: its decoder layers are not pre-norm keras-hub TransformerDecoders without cross-attention"
        return "learned", None
    if hasattr(attention, "rotary_embedding_layer") and all(hasattr(layer, p) for p in ROTARY_PARTS):
        return "rotary", None
    return None, f"{name}: neither a learned position embedding (GPT-2) nor Llama-style rotary decoder layers"


def hub_refusal(model: Any) -> str | None:
    """Why ``model`` is not a keras-hub causal LM this step can run (``None`` if it is one)."""
    return hub_kind(model)[1]


def is_hub_causal_lm(model: Any) -> bool:
    """Whether ``model`` is a keras-hub causal LM :class:`HubDecoder` runs."""
    return hub_refusal(model) is None


class HubDecoder(keras.Model):
    """One step of a keras-hub causal LM over ``tokens`` at ``input_pos``, with a cache of ``capacity`` positions.

    Args:
        model: the keras-hub ``CausalLM`` (its layers are shared, not copied).
        capacity: the cache's positions (at most the position embedding's length; default all of it).

    Raises:
        ValueError: naming why the model cannot be run step by step here.
    """

    def __init__(self, model: Any, capacity: int | None = None, **kwargs: Any) -> None:
        super().__init__(name=f"{model.name}_decode", **kwargs)
        why = hub_refusal(model)
        if why is not None:
            raise ValueError(f"model {model.name!r}: {why}")
        backbone = model.backbone
        self.backbone = backbone
        self.kind = hub_kind(model)[0]
        self.layers_ = list(backbone.transformer_layers)
        self.blocks = len(self.layers_)
        layer0 = self.layers_[0]
        attention = layer0.attention if self.kind == "gemma" else layer0._self_attention_layer
        if self.kind == "gemma":
            self.heads, self.head_dim = int(attention.num_key_value_heads), int(attention.head_dim)
            longest = int(capacity or 2048)
        elif self.kind == "learned":
            self.heads, self.head_dim = attention.num_heads, attention.key_dim
            longest = int(backbone.position_embedding.position_embeddings.shape[0])
        else:  # the cache keeps the key/value heads (fewer than the query heads where grouped)
            self.heads = int(attention._key_dense.compute_output_shape((1, 1, backbone.hidden_dim))[-2])
            self.head_dim = int(attention._key_dense.compute_output_shape((1, 1, backbone.hidden_dim))[-1])
            longest = int(capacity or getattr(backbone, "max_sequence_length", 0) or 2048)
        self.capacity = min(int(capacity or longest), longest)
        window = getattr(attention, "_sliding_window", None) or getattr(attention, "sliding_window", None) or (
            getattr(attention, "sliding_window_size", None) if getattr(attention, "use_sliding_window_attention", False)
            else None)
        if window and int(window) < self.capacity:  # within the window, sliding attention is full attention
            raise ValueError(f"model {model.name!r}: its sliding attention window ({window}) is shorter than the cache's "
                             f"capacity ({self.capacity}), which is not supported yet")
        self.vocab = int(backbone.token_embedding.input_dim)
        self.source_model = model
        self.token_axis = None

    def state_shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        """Each cache tensor's shape for ``batch`` sequences, by name (``kv_cache_k_{i}``, ``kv_cache_v_{i}``)."""
        shape = (batch, self.heads, self.capacity, self.head_dim)
        return {f"kv_cache_{kind}_{i}": shape for i in range(self.blocks) for kind in ("k", "v")}

    def empty_cache(self, batch: int) -> dict[str, np.ndarray]:
        """Zeroed caches for ``batch`` sequences."""
        return {n: np.zeros(s, np.float32) for n, s in self.state_shapes(batch).items()}

    def call(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Args: ``tokens`` (B, L), ``input_pos`` (B, L) (-1 on a padded slot) and every cache tensor.

        Returns: ``logits`` (B, L, vocab) and every cache tensor with this step's keys and values written.
        """
        backbone = self.backbone
        tokens = ops.cast(inputs["tokens"], "int32")
        pos = ops.cast(inputs["input_pos"], "int32")
        onehot, allowed = slots(pos, self.capacity)
        if self.kind != "learned":
            return self._rotary(inputs, tokens, pos, onehot, allowed)
        x = backbone.token_embedding(tokens)
        table = backbone.position_embedding.position_embeddings[:self.capacity]
        at = ops.cast(slots(ops.maximum(pos, 0), self.capacity)[0], x.dtype)  # a padded slot reads row 0
        x = x + ops.einsum("blc,cd->bld", at, ops.cast(table, x.dtype))
        out: dict[str, Any] = {}
        for i, layer in enumerate(self.layers_):
            h = layer._self_attention_layer_norm(x)
            h, out[f"kv_cache_k_{i}"], out[f"kv_cache_v_{i}"] = attend_cached(
                layer._self_attention_layer, h, onehot, allowed, inputs[f"kv_cache_k_{i}"], inputs[f"kv_cache_v_{i}"])
            x = x + h
            h = layer._feedforward_layer_norm(x)
            x = x + layer._feedforward_output_dense(layer._feedforward_intermediate_dense(h))
        x = backbone.layer_norm(x)
        return {"logits": backbone.token_embedding(x, reverse=True), **out}

    def _rotary(self, inputs: dict[str, Any], tokens: Any, pos: Any, onehot: Any, allowed: Any) -> dict[str, Any]:
        """A Llama-style or Gemma step: normed attention with rotary positions over grouped key/value heads, then
        the gated feed-forward, as keras-hub's decoder layers compute them."""
        backbone = self.backbone
        gemma = self.kind == "gemma"
        positions = ops.cast(ops.maximum(pos, 0), "float32")  # a padded slot's output is never read
        x = backbone.token_embedding(tokens)
        if gemma:
            x = x * ops.cast(ops.sqrt(float(backbone.hidden_dim)), x.dtype)
        out: dict[str, Any] = {}
        for i, layer in enumerate(self.layers_):
            if gemma:
                attention = layer.attention
                h = layer.pre_attention_norm(x)
                q = attention._apply_rope(attention.query_dense(h), 0, positions=positions)
                k = attention._apply_rope(attention.key_dense(h), 0, positions=positions)
                v = attention.value_dense(h)
                q = q * ops.cast(1.0 / math.sqrt(attention.head_dim if attention.query_head_dim_normalize else
                                                 attention.hidden_dim // attention.num_query_heads), q.dtype)
            else:
                attention = layer._self_attention_layer
                h = layer._self_attention_layernorm(x)
                rotary = attention.rotary_embedding_layer
                q = rotary(attention._query_dense(h), positions=positions) * attention._inv_norm_factor
                k = rotary(attention._key_dense(h), positions=positions)  # (B, L, KV, D)
                v = attention._value_dense(h)
            cache_k, cache_v = write_kv(inputs[f"kv_cache_k_{i}"], inputs[f"kv_cache_v_{i}"], k, v, onehot)
            out[f"kv_cache_k_{i}"], out[f"kv_cache_v_{i}"] = cache_k, cache_v
            groups = int(q.shape[2]) // self.heads
            keys = ops.repeat(cache_k, groups, axis=1) if groups > 1 else cache_k
            values = ops.repeat(cache_v, groups, axis=1) if groups > 1 else cache_v
            scores = ops.cast(ops.einsum("blhd,bhcd->bhlc", q, keys), "float32")
            cap = getattr(attention, "logit_soft_cap", None)
            if cap:
                scores = ops.tanh(scores / cap) * cap
            weights = ops.softmax(ops.where(allowed[:, None, :, :], scores, NEG), axis=-1)
            attended = ops.einsum("bhlc,bhcd->blhd", ops.cast(weights, values.dtype), values)
            if gemma:
                attended = attention.output_dense(attended)
                if layer.use_post_attention_norm:
                    attended = layer.post_attention_norm(attended)
                x = x + attended
                h = layer.pre_ffw_norm(x)
                f = layer.ffw_linear(keras.activations.gelu(layer.gating_ffw(h), approximate=True) * layer.gating_ffw_2(h))
                x = x + (layer.post_ffw_norm(f) if layer.use_post_ffw_norm else f)
                continue
            x = x + attention._output_dense(attended)
            h = layer._feedforward_layernorm(x)
            gate = layer.activation(ops.cast(layer._feedforward_gate_dense(h), "float32"))
            x = x + layer._feedforward_output_dense(layer._feedforward_intermediate_dense(h) * gate)
        x = backbone.layer_norm(x)
        return {"logits": backbone.token_embedding(x, reverse=True), **out}
