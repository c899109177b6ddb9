"""A model made ready for TFLite's 16x8 mode (int16 activations, int8 weights).

Keras's LayerNormalization computes its variance with ``tf.nn.moments``, which the converter emits as
SQUARED_DIFFERENCE; in 16x8 mode the converter quantizes that op to int16, but LiteRT 2.3 has no int16 kernel
for it ("SquaredDifference only supports FLOAT32 and INT32"), so every 16x8 file of a model with LayerNorm
fails at its first invoke (ConvNeXtTiny, measured). The same variance written as ``mean((x - m) * (x - m))``
becomes SUB, MUL and MEAN, which have int16 kernels: ConvNeXtTiny's 16x8 file then runs, all integer.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from dnnkit.core.tensors import set_weights


@lru_cache(maxsize=1)
def _product_layer_norm() -> type:
    """LayerNormalization over the last axis, its variance as a mean of products (defined on first use: keras
    is imported lazily)."""
    import keras
    from keras import ops

    class ProductVarianceLayerNorm(keras.layers.LayerNormalization):
        def call(self, inputs: Any) -> Any:
            x = ops.cast(inputs, self.compute_dtype)
            centred = x - ops.mean(x, axis=-1, keepdims=True)
            variance = ops.mean(centred * centred, axis=-1, keepdims=True)
            y = centred * ops.rsqrt(variance + self.epsilon)
            if self.scale:
                y = y * ops.cast(self.gamma, y.dtype)
            if self.center:
                y = y + ops.cast(self.beta, y.dtype)
            return y

    return ProductVarianceLayerNorm


def _last_axis_only(layer: Any) -> bool:
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    rank = len(layer.input.shape)
    return [a % rank for a in axis] == [rank - 1] and not getattr(layer, "rms_scaling", False)


def without_squared_difference(model: Any) -> tuple[Any, int]:
    """A copy of ``model`` whose last-axis LayerNormalization layers (nested models too) compute their variance
    without SQUARED_DIFFERENCE; the same function, same weights.

    Returns:
        ``(model, layers rewritten)``: the model itself and 0 when none applies or the model cannot be cloned
        (a subclassed model: its 16x8 conversion then meets the missing kernel as before).
    """
    import keras

    def plain_layer_norms(m: Any) -> list[Any]:
        found = []
        for layer in m.layers:
            if type(layer) is keras.layers.LayerNormalization and _last_axis_only(layer):
                found.append(layer)
            elif isinstance(layer, keras.Model):
                found.extend(plain_layer_norms(layer))
        return found

    try:
        count = len(plain_layer_norms(model))
    except (AttributeError, ValueError):  # a layer never called (no input shape): leave the model as it is
        return model, 0
    if not count:
        return model, 0
    product = _product_layer_norm()

    def clone(layer: Any) -> Any:
        if type(layer) is keras.layers.LayerNormalization and _last_axis_only(layer):
            return product.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    try:
        copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
        set_weights(copy, model.get_weights())
    except Exception:  # noqa: BLE001 - a model clone_model cannot rebuild keeps its own layers
        return model, 0
    return copy, count
