"""Pieces every builder shares: activations, dense stacks, heads, dtype policy."""

from __future__ import annotations

from typing import Any

import keras

from dnnkit.config.model import LOGIT_HEADS, STEP_HEADS, ModelConfig, Spec

_ACTIVATIONS: dict[str, Any] = {
    "linear": "linear", "sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu",
    "relu6": "relu6", "leaky_relu": "leaky_relu", "elu": "elu", "selu": "selu",
    "gelu_exact": "gelu", "swish": "swish", "silu": "silu", "softplus": "softplus",
    "mish": "mish",
}


def activation(name: str) -> Any:
    """Map a spec activation name to what Keras layers accept.

    ``gelu`` is the tanh approximation (exact GELU does not convert to ONNX);
    ``gelu_exact`` asks for the erf form.
    """
    if name == "gelu":
        from dnnkit.builders.layers import gelu_tanh
        return gelu_tanh
    return _ACTIVATIONS[name]


def policy(spec: Spec) -> str:
    """The Keras dtype policy for the spec's mixed-precision setting."""
    return {"none": "float32", "float16": "mixed_float16",
            "bfloat16": "mixed_bfloat16"}[spec.train.mixed_precision]


def dense_stack(x: Any, units: tuple[int, ...], cfg: ModelConfig, dtype: str,
                prefix: str = "dense", norm: str = "none") -> Any:
    """Dense -> [norm] -> activation -> [dropout], once per width in ``units``."""
    for i, width in enumerate(units):
        x = keras.layers.Dense(width, name=f"{prefix}_{i}", dtype=dtype,
                               use_bias=norm != "batch")(x)
        if norm == "batch":
            x = keras.layers.BatchNormalization(name=f"{prefix}_{i}_bn", dtype=dtype)(x)
        elif norm == "layer":
            x = keras.layers.LayerNormalization(name=f"{prefix}_{i}_ln", dtype=dtype)(x)
        x = keras.layers.Activation(activation(cfg.activation), name=f"{prefix}_{i}_act",
                                    dtype=dtype)(x)
        if cfg.dropout > 0:
            x = keras.layers.Dropout(cfg.dropout, name=f"{prefix}_{i}_dropout")(x)
    return x


def head(x: Any, cfg: ModelConfig) -> Any:
    """The output layer, always float32: logits (multiclass; per step: tagging), sigmoid (binary) or linear
    (regression; per step: sequence_regression). On a (batch, steps, width) input it acts on each step."""
    if cfg.head in LOGIT_HEADS:
        return keras.layers.Dense(cfg.num_classes, name="logits", dtype="float32")(x)
    if cfg.head == "binary":
        return keras.layers.Dense(1, activation="sigmoid", name="probability",
                                  dtype="float32")(x)
    return keras.layers.Dense(cfg.output_units, name="prediction", dtype="float32")(x)


def input_layer(cfg: ModelConfig, dtype: str = "float32") -> Any:
    """The model's named input."""
    return keras.Input(shape=cfg.input_shape, name="inputs", dtype=dtype)


def per_step(cfg: ModelConfig) -> bool:
    """Whether the head answers at every time step (no pooling over the sequence)."""
    return cfg.head in STEP_HEADS
