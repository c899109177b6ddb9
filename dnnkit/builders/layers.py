"""Small custom layers and activations the builders need, written with Keras ops only.

They are registered as Keras serializables (package ``dnnkit``) so a saved ``.keras``
model loads again in safe mode once :mod:`dnnkit` is imported.
"""

from __future__ import annotations

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="dnnkit")
def gelu_tanh(x):
    """GELU with the tanh approximation (exact GELU's Erf does not convert to ONNX)."""
    return keras.activations.gelu(x, approximate=True)


@keras.saving.register_keras_serializable(package="dnnkit")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned position vector to each step of a (batch, steps, dim) input."""

    def __init__(self, initializer: str = "glorot_uniform", **kwargs) -> None:
        super().__init__(**kwargs)
        self.initializer = initializer

    def build(self, input_shape) -> None:
        self.embeddings = self.add_weight(
            name="embeddings", shape=(input_shape[-2], input_shape[-1]),
            initializer=self.initializer, trainable=True)

    def call(self, inputs):
        return inputs + ops.cast(self.embeddings, inputs.dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "initializer": self.initializer}


@keras.saving.register_keras_serializable(package="dnnkit")
class SinePositionEncoding(keras.layers.Layer):
    """Adds the fixed sinusoidal position encoding of "Attention Is All You Need"."""

    def __init__(self, max_wavelength: float = 10000.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_wavelength = max_wavelength

    def call(self, inputs):
        steps, dim = inputs.shape[-2], inputs.shape[-1]
        position = ops.arange(steps, dtype="float32")[:, None]
        index = ops.arange(dim, dtype="float32")[None, :]
        rate = ops.exp(-(2.0 * ops.floor(index / 2.0) / dim) * math.log(self.max_wavelength))
        angle = position * rate
        even = ops.cast(ops.equal(ops.mod(ops.arange(dim), 2), 0), "float32")[None, :]
        encoding = even * ops.sin(angle) + (1.0 - even) * ops.cos(angle)
        return inputs + ops.cast(encoding, inputs.dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "max_wavelength": self.max_wavelength}


@keras.saving.register_keras_serializable(package="dnnkit")
class ClassToken(keras.layers.Layer):
    """Prepends one learned token to a (batch, steps, dim) sequence."""

    def build(self, input_shape) -> None:
        self.token = self.add_weight(name="token", shape=(1, 1, input_shape[-1]),
                                     initializer="zeros", trainable=True)

    def call(self, inputs):
        batch = ops.shape(inputs)[0]
        token = ops.broadcast_to(ops.cast(self.token, inputs.dtype), (batch, 1, inputs.shape[-1]))
        return ops.concatenate([token, inputs], axis=1)

    def compute_output_shape(self, input_shape):
        steps = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], steps, input_shape[2])
