"""A KV-cached step of a keras-hub causal LM a user brings (GPT-2-style: a ``CausalLM`` whose backbone has a token
embedding, a learned position embedding, pre-norm ``TransformerDecoder`` layers and a final LayerNorm): the same
layers as the trained model, with the fixed-capacity one-hot cache of :mod:`dnnkit.builders.kv_cache` in place of
keras-hub's ``call_with_cache`` (whose ``slice_update`` becomes ``XlaDynamicUpdateSlice``, which neither tf2onnx
nor a builtin-only TFLite file can hold).

The model is read by its parts (no keras-hub import): ``model.backbone.token_embedding`` (its ``reverse`` call
gives the logits), ``position_embedding.position_embeddings``, ``transformer_layers`` and ``layer_norm``. Rotary
positions (Llama, Gemma, Mistral backbones have no position embedding) are refused with that reason.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from dnnkit.builders.kv_cache import attend_cached, slots


def hub_refusal(model: Any) -> str | None:
    """Why ``model`` is not a keras-hub causal LM this step can run (``None`` if it is one)."""
    backbone = getattr(model, "backbone", None)
    if backbone is None or not hasattr(backbone, "transformer_layers") or not hasattr(model, "call_with_cache"):
        return "not a keras-hub CausalLM (a task with a backbone and call_with_cache)"
    if not hasattr(backbone, "position_embedding") or not hasattr(backbone, "token_embedding"):
        return (f"{type(model).__name__}: its backbone has no learned position embedding (rotary positions are not "
                "supported yet)")
    layer = backbone.transformer_layers[0]
    if not getattr(layer, "normalize_first", False) or not hasattr(layer, "_self_attention_layer"):
        return f"{type(model).__name__}: its decoder layers are not pre-norm keras-hub TransformerDecoders"
    if getattr(layer, "_cross_attention_layer", None) is not None:
        return f"{type(model).__name__}: its decoder layers attend over an encoder"
    return None


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
        self.layers_ = list(backbone.transformer_layers)
        self.blocks = len(self.layers_)
        attention = self.layers_[0]._self_attention_layer
        self.heads, self.head_dim = attention.num_heads, attention.key_dim
        longest = int(backbone.position_embedding.position_embeddings.shape[0])
        self.capacity = min(int(capacity or longest), longest)
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
