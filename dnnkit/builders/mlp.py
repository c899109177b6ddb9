"""Multi-layer perceptron: a dense stack over flat (or flattened) features."""

from __future__ import annotations

import keras

from dnnkit.builders.common import dense_stack, head, input_layer, policy
from dnnkit.config.model import MLPConfig, Spec


def build_mlp(spec: Spec) -> keras.Model:
    """Build the MLP the spec describes.

    Args:
        spec: a spec whose ``model.family`` is ``"mlp"``.

    Returns:
        A built, named functional ``keras.Model``.
    """
    cfg = spec.model
    opts: MLPConfig = cfg.options
    dtype = policy(spec)
    inputs = input_layer(cfg)
    x = inputs
    if len(cfg.input_shape) > 1:
        x = keras.layers.Flatten(name="flatten")(x)
    x = dense_stack(x, opts.units, cfg, dtype, prefix="dense", norm=opts.norm)
    return keras.Model(inputs, head(x, cfg), name=spec.name)
