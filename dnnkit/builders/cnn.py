"""Convolutional network: Conv2D blocks over images or Conv1D blocks over sequences."""

from __future__ import annotations

import keras

from dnnkit.builders.common import activation, dense_stack, head, input_layer, policy
from dnnkit.config.model import CNNConfig, Spec


def build_cnn(spec: Spec) -> keras.Model:
    """Build the CNN the spec describes.

    Each block is conv -> [batch norm] -> activation -> [pool] -> [dropout]; then the
    feature map is flattened (or globally average-pooled) into the dense head.

    Args:
        spec: a spec whose ``model.family`` is ``"cnn"``.

    Returns:
        A built, named functional ``keras.Model``.
    """
    cfg = spec.model
    opts: CNNConfig = cfg.options
    dtype = policy(spec)
    two_d = opts.conv == "2d"
    conv = keras.layers.Conv2D if two_d else keras.layers.Conv1D
    pools = {"max": keras.layers.MaxPooling2D if two_d else keras.layers.MaxPooling1D,
             "avg": keras.layers.AveragePooling2D if two_d else keras.layers.AveragePooling1D}
    inputs = input_layer(cfg)
    x = inputs
    for i, (filters, kernel, stride) in enumerate(zip(opts.filters, opts.kernel_size, opts.strides)):
        x = conv(filters, kernel, strides=stride, padding=opts.padding,
                 use_bias=not opts.batch_norm, name=f"conv_{i}", dtype=dtype)(x)
        if opts.batch_norm:
            x = keras.layers.BatchNormalization(name=f"conv_{i}_bn", dtype=dtype)(x)
        x = keras.layers.Activation(activation(cfg.activation), name=f"conv_{i}_act",
                                    dtype=dtype)(x)
        if opts.pool != "none":
            x = pools[opts.pool](opts.pool_size, padding="same", name=f"conv_{i}_pool",
                                 dtype=dtype)(x)
        if cfg.dropout > 0:
            x = keras.layers.Dropout(cfg.dropout, name=f"conv_{i}_dropout")(x)
    if opts.global_pool:
        pool = keras.layers.GlobalAveragePooling2D if two_d else keras.layers.GlobalAveragePooling1D
        x = pool(name="global_pool", dtype=dtype)(x)
    else:
        x = keras.layers.Flatten(name="flatten")(x)
    x = dense_stack(x, opts.dense_units, cfg, dtype, prefix="dense")
    return keras.Model(inputs, head(x, cfg), name=spec.name)
