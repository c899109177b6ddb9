"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization", section 4.1), on a copy of a Keras model.

Two layers joined by a positively homogeneous activation (``f(x / s) = f(x) / s`` for ``s > 0``: identity, ReLU,
leaky ReLU) compute the same function when the first one's output channel ``c`` is divided by ``s_c`` and the
second one's input channel ``c`` multiplied by it. With ``s_c = sqrt(r1_c / r2_c)`` (``r1_c``: the range of the
first layer's weights for output channel ``c``, BatchNormalization folded in; ``r2_c``: the second one's for input
channel ``c``) both become ``sqrt(r1_c r2_c)``: channels whose ranges were orders of magnitude apart share one int8
grid, in the weights and in the activation between the layers. Depthwise triplets (conv -> depthwise -> conv)
are two pairs sharing a layer; sweeps over all pairs repeat until the scales settle.

Not applied across ReLU6 (its clip would move to ``6 / s_c``), swish, GELU, sigmoid or anything else that is not
homogeneous, nor where the first layer's output has another reader (a residual branch) — the function must stay
the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dnnkit.core.tensors import set_weights
from dnnkit.passes.bias_correction import channel_axis, channel_ranges

LAYERS = ("Conv1D", "Conv2D", "DepthwiseConv2D", "Dense")
HOMOGENEOUS = ("linear", "relu", "leaky_relu")
PASS_THROUGH = ("ZeroPadding1D", "ZeroPadding2D", "Dropout", "SpatialDropout1D", "SpatialDropout2D")
MAX_SWEEPS = 50


def _activation_name(fn: Any) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def _homogeneous(layer: Any) -> bool:
    """Whether ``layer`` is an activation with ``f(x / s) = f(x) / s`` for ``s > 0``."""
    kind = type(layer).__name__
    if kind == "ReLU":
        return layer.max_value is None and float(layer.threshold) == 0.0
    if kind == "LeakyReLU":
        return True
    if kind == "Activation":
        return _activation_name(layer.activation) in HOMOGENEOUS
    return False


def _equalizable(layer: Any) -> bool:
    return (type(layer).__name__ in LAYERS and getattr(layer, "groups", 1) == 1
            and getattr(layer, "depth_multiplier", 1) == 1
            and getattr(layer, "data_format", "channels_last") == "channels_last")


def _only_reader(layer: Any) -> Any:
    nodes = layer._outbound_nodes  # noqa: SLF001 - the functional graph's edges
    return nodes[0].operation if len(nodes) == 1 else None


def equalizable_pairs(model: Any) -> list[tuple[Any, Any, Any]]:
    """``(first, batch_norm or None, second)``: layers whose channels can be rescaled against each other.

    ``first`` is a Conv/Depthwise/Dense layer with a linear or ReLU activation, read only through an optional
    BatchNormalization (when its own activation is linear), homogeneous activations, zero padding or dropout,
    by ``second``, another such layer."""
    import keras

    pairs = []
    for first in model.layers:
        if not _equalizable(first) or _activation_name(first.activation) not in HOMOGENEOUS:
            continue
        bn, node, linear = None, first, _activation_name(first.activation) == "linear"
        while True:
            node = _only_reader(node)
            if node is None:
                break
            if isinstance(node, keras.layers.BatchNormalization):
                rank = len(node.input.shape)
                if bn is not None or not linear or not node.scale or node.axis % rank != rank - 1:
                    break
                bn = node
                continue
            if _homogeneous(node):
                linear = linear and _activation_name(getattr(node, "activation", None)) == "linear"
                continue
            if type(node).__name__ in PASS_THROUGH:
                continue
            if _equalizable(node):
                pairs.append((first, bn, node))
            break
    return pairs


def _bn_factor(weights: dict[str, np.ndarray], bn: Any) -> np.ndarray:
    return np.abs(weights["gamma"]) / np.sqrt(weights["moving_variance"] + bn.epsilon)


def _named(layer: Any) -> dict[str, np.ndarray]:
    return {w.path.split("/")[-1]: np.asarray(v, np.float64) for w, v in zip(layer.weights, layer.get_weights())}


def _store(layer: Any, values: dict[str, np.ndarray]) -> None:
    layer.set_weights([values[w.path.split("/")[-1]].astype(v.dtype) for w, v in zip(layer.weights,
                                                                                    layer.get_weights())])


def cross_layer_equalization(model: Any) -> tuple[Any, dict[str, Any]]:
    """A copy of ``model`` with every :func:`equalizable_pairs` pair's channel ranges equalized.

    Args:
        model: a functional or sequential ``keras.Model``.

    Returns:
        ``(equalized copy, record)``: pairs, sweeps, and the worst channel-range spread (largest over smallest
        non-zero range of a pair's first layer, BatchNormalization folded) before and after.

    Raises:
        ValueError: if no pair of layers is joined by a homogeneous activation (nothing to equalize).
    """
    import keras

    found = equalizable_pairs(model)
    if not found:
        raise ValueError("cross-layer equalization: no two Conv/Dense layers joined by an identity, ReLU or "
                         "leaky ReLU activation alone (ReLU6, swish, GELU and residual branches do not keep the "
                         "function when channels are rescaled)")
    copy = keras.models.clone_model(model)
    set_weights(copy, model.get_weights())
    pairs = [(copy.get_layer(a.name), copy.get_layer(b.name) if b is not None else None, copy.get_layer(c.name))
             for a, b, c in found]

    def first_ranges(first: Any, bn: Any) -> np.ndarray:
        w = _named(first)
        r = channel_ranges(w["kernel"], channel_axis(first))
        return r * _bn_factor(_named(bn), bn) if bn is not None else r

    def spread() -> float:
        worst = 1.0
        for first, bn, _ in pairs:
            r = first_ranges(first, bn)
            r = r[r > 0]
            worst = max(worst, float(r.max() / r.min()) if r.size else 1.0)
        return worst

    before, sweeps = spread(), 0
    for sweeps in range(1, MAX_SWEEPS + 1):
        largest = 0.0
        for first, bn, second in pairs:
            r1 = first_ranges(first, bn)
            w2 = _named(second)
            r2 = channel_ranges(w2["kernel"], -2)  # the input-channel axis of Conv, Dense and Depthwise kernels
            s = np.where((r1 > 0) & (r2 > 0), np.sqrt(r1 / np.where(r2 > 0, r2, 1.0)), 1.0)
            largest = max(largest, float(np.max(np.abs(np.log(s)))))
            shape = [1] * w2["kernel"].ndim
            shape[-2] = -1
            w2["kernel"] = w2["kernel"] * s.reshape(shape)
            _store(second, w2)
            target = bn if bn is not None else first
            w1 = _named(target)
            if bn is not None:
                w1["gamma"] = w1["gamma"] / s
                if "beta" in w1:
                    w1["beta"] = w1["beta"] / s
            else:
                shape = [1] * w1["kernel"].ndim
                shape[channel_axis(first)] = -1
                w1["kernel"] = w1["kernel"] / s.reshape(shape)
                if "bias" in w1:
                    w1["bias"] = w1["bias"] / s
            _store(target, w1)
        if largest < 1e-4:
            break
    return copy, {"pairs": len(pairs), "sweeps": sweeps, "spread_before": round(before, 2),
                  "spread_after": round(spread(), 2)}
