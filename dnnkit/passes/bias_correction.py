"""Empirical bias correction (Nagel et al. 2019, "Data-Free Quantization", section 4.2, with data): the mean
output error that rounding a layer's weights to int8 causes, measured on calibration inputs, is taken out of the
layer's bias (or of the BatchNormalization that follows a bias-free layer), on a copy of the Keras model, so
every format converted from it gains.

For a linear layer ``y = W * x`` the error ``(Wq - W) * x`` has the mean ``(Wq - W) * E[x]``: the layer's own
operation applied to its mean input with the weight error as kernel, averaged over positions. ``Wq`` replays
the converters' weight quantizer: symmetric, per output channel, ``2^(bits-1) - 1`` levels (TFLite int8 and
onnxruntime's 8-bit weights; its default int8 ONNX artifact rounds to 7 bits). Keras ops only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dnnkit.core.tensors import rows, set_weights, take

CORRECTED = ("Conv1D", "Conv2D", "DepthwiseConv2D", "Dense")


def channel_ranges(kernel: np.ndarray, axis: int = -1) -> np.ndarray:
    """The largest magnitude of ``kernel`` per channel along ``axis`` (float64): a symmetric quantizer's range."""
    moved = np.moveaxis(np.abs(np.asarray(kernel, np.float64)), axis, -1)
    return moved.reshape(-1, moved.shape[-1]).max(0)


def quantize_per_channel(kernel: np.ndarray, bits: int = 8, axis: int = -1) -> np.ndarray:
    """``kernel`` rounded as a symmetric per-channel int quantizer does (channels along ``axis``), dequantized.

    Args:
        kernel: float weights.
        bits: 8 (127 levels each side) or 7 (63).
        axis: the output-channel axis.

    Returns:
        The dequantized weights, same shape and dtype.
    """
    levels = 2 ** (bits - 1) - 1
    moved = np.moveaxis(np.asarray(kernel, np.float64), axis, -1)
    scale = channel_ranges(kernel, axis) / levels
    scale[scale == 0] = 1.0
    return np.moveaxis(np.round(moved / scale) * scale, -1, axis).astype(kernel.dtype)


def channel_axis(layer: Any) -> int:
    """The kernel axis the converters quantize per channel: the layer's outputs (depthwise: its input
    channels times the multiplier, stored as the last two axes; TFLite quantizes along the channel, dnnkit
    folds the multiplier-1 case only)."""
    return -2 if type(layer).__name__ == "DepthwiseConv2D" else -1


def _mean_output_error(layer: Any, mean_input: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """The layer's operation on its mean input with ``delta`` as kernel, no bias or activation, averaged over
    every axis but the channels: the mean output error per channel."""
    from keras import ops

    x = ops.convert_to_tensor(mean_input[None].astype("float32"))
    kind = type(layer).__name__
    if kind == "Dense":
        y = ops.matmul(x, delta)
    elif kind == "DepthwiseConv2D":
        y = ops.depthwise_conv(x, delta, strides=layer.strides, padding=layer.padding,
                               data_format=layer.data_format, dilation_rate=layer.dilation_rate)
    else:
        y = ops.conv(x, delta, strides=layer.strides, padding=layer.padding, data_format=layer.data_format,
                     dilation_rate=layer.dilation_rate)
    y = ops.convert_to_numpy(y).astype(np.float64)
    channels_first = getattr(layer, "data_format", "channels_last") == "channels_first" and kind != "Dense"
    return (np.moveaxis(y, 1, -1) if channels_first else y).reshape(-1, y.shape[1 if channels_first else -1]).mean(0)


def correctable_layers(model: Any) -> list[tuple[Any, Any]]:
    """``(layer, target)`` for each Conv/Dense layer whose bias, or the BatchNormalization reading only its output,
    can absorb a shift (``target`` is that BatchNormalization, or ``None`` for the layer's own bias, added before
    the activation as the error is); grouped convolutions, depth multipliers, layers with neither and a bias-free
    layer whose activation lies between it and the BatchNormalization are left out."""
    import keras

    out = []
    for layer in model.layers:
        if type(layer).__name__ not in CORRECTED or getattr(layer, "groups", 1) != 1:
            continue
        if getattr(layer, "depth_multiplier", 1) != 1:
            continue
        if layer.use_bias:
            out.append((layer, None))
            continue
        if getattr(layer.activation, "__name__", "linear") != "linear":
            continue  # the error is before the activation: a BatchNormalization after it sees it bent
        readers = [node.operation for node in layer._outbound_nodes]  # noqa: SLF001 - the functional graph's edges
        if len(readers) == 1 and isinstance(readers[0], keras.layers.BatchNormalization) and readers[0].center:
            out.append((layer, readers[0]))
    return out


def bias_correction(model: Any, samples: np.ndarray | dict[str, np.ndarray], *, bits: int = 8,
                    batch: int = 32) -> tuple[Any, dict[str, Any]]:
    """A copy of ``model`` whose biases absorb the mean error of its weights rounded to ``bits``.

    Args:
        model: a functional or sequential ``keras.Model``.
        samples: calibration inputs (the training split's).
        bits: the weight quantizer's bits (8, or 7 for onnxruntime's ``reduce_range``).
        batch: inputs per forward pass while the layers' mean inputs are gathered.

    Returns:
        ``(corrected copy, record)``: the record says how many layers were corrected and the largest
        correction relative to each layer's output scale.

    Raises:
        ValueError: if the model has no layer bias correction applies to.
    """
    import keras

    pairs = correctable_layers(model)
    if not pairs:
        raise ValueError("bias correction: no Conv/Dense layer with a bias or a BatchNormalization after it")
    probe = keras.Model(model.inputs, [layer.input for layer, _ in pairs])
    sums: list[np.ndarray] = []
    n = rows(samples)
    for start in range(0, n, batch):
        got = probe(take(samples, slice(start, start + batch)), training=False)
        got = got if isinstance(got, (list, tuple)) else [got]
        for i, value in enumerate(got):
            total = keras.ops.convert_to_numpy(value).astype(np.float64).sum(0)
            if len(sums) <= i:
                sums.append(total)
            else:
                sums[i] += total
    copy = keras.models.clone_model(model)
    set_weights(copy, model.get_weights())
    shifts = []
    for (layer, bn), total in zip(pairs, sums):
        kernel = layer.kernel.numpy() if hasattr(layer.kernel, "numpy") else keras.ops.convert_to_numpy(layer.kernel)
        delta = quantize_per_channel(kernel, bits, channel_axis(layer)) - kernel
        error = _mean_output_error(layer, total / n, delta)
        if bn is None:
            target = copy.get_layer(layer.name)
            weights = target.get_weights()
            weights[1] = (weights[1] - error).astype(weights[1].dtype)
        else:
            # BatchNormalization subtracts its moving mean: adding the error there takes it out
            target = copy.get_layer(bn.name)
            weights = target.get_weights()
            names = [w.path.split("/")[-1] for w in target.weights]
            i = names.index("moving_mean")
            weights[i] = (weights[i] + error).astype(weights[i].dtype)
        target.set_weights(weights)
        shifts.append(float(np.abs(error).max()))
    return copy, {"layers": len(pairs), "bits": bits, "max_shift": round(max(shifts), 6),
                  "calibration_samples": int(n)}
