"""Quantization-aware training for Keras 3, native (tfmot's QAT accepts only tf_keras).

Weights and activations pass through ``keras.quantizers.fake_quant_with_min_max_vars``
during fine-tuning, so the model learns around int8 rounding. The scheme follows tfmot's
default: weights symmetric 8-bit, per-channel for convolutions and per-tensor for Dense
(per-channel Dense kernels fail TFLite conversion); activations asymmetric 8-bit with
moving-average ranges. Batch normalization is folded into the preceding convolution or
Dense first, so the converted integer model computes what the QAT model computed.

On the TensorFlow backend the fake-quant ops are TensorFlow's FakeQuantWithMinMaxVars*,
whose ranges the TFLite converter uses for the int8 model.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

QUANTIZABLE = ("Dense", "Conv1D", "Conv2D")


def _fq_weight(kernel: Any, per_channel: bool) -> Any:
    if per_channel:
        axes = tuple(range(len(kernel.shape) - 1))
        bound = ops.maximum(ops.max(ops.abs(kernel), axis=axes), 1e-8)
        return keras.quantizers.fake_quant_with_min_max_vars(
            kernel, -bound, bound, num_bits=8, narrow_range=True, axis=-1)
    bound = ops.maximum(ops.max(ops.abs(kernel)), 1e-8)
    return keras.quantizers.fake_quant_with_min_max_vars(kernel, -bound, bound, num_bits=8, narrow_range=True)


class _RangeTracker:
    """Moving-average min/max of a tensor (first batch sets them), always including 0.

    Mixed in before a Keras layer class: adds the output range (and, for the first layer,
    the input range) to the layer's weights and config. Dense/Conv save only kernel and
    bias, so saving falls back to Keras's generic per-variable store.
    """

    def __init__(self, *args: Any, quantize_input: bool = False, quantize_output: bool = True,
                 decay: float = 0.99, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.quantize_input, self.quantize_output, self.decay = quantize_input, quantize_output, decay

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        self._add_range(self, "out")
        if self.quantize_input:
            self._add_range(self, "in")

    def get_config(self) -> dict:
        return {**super().get_config(), "quantize_input": self.quantize_input,
                "quantize_output": self.quantize_output, "decay": self.decay}

    def save_own_variables(self, store: Any) -> None:
        keras.layers.Layer.save_own_variables(self, store)

    def load_own_variables(self, store: Any) -> None:
        keras.layers.Layer.load_own_variables(self, store)

    def _add_range(self, layer: keras.layers.Layer, prefix: str) -> None:
        setattr(layer, f"{prefix}_min", layer.add_weight(name=f"{prefix}_min", shape=(), initializer="zeros",
                                                        trainable=False))
        setattr(layer, f"{prefix}_max", layer.add_weight(name=f"{prefix}_max", shape=(), initializer="zeros",
                                                        trainable=False))
        setattr(layer, f"{prefix}_seen", layer.add_weight(name=f"{prefix}_seen", shape=(), initializer="zeros",
                                                         trainable=False))

    def _fq_output(self, y: Any, training: Any) -> Any:
        return self._fq_activation(self, y, "out", training, self.decay) if self.quantize_output else y

    @staticmethod
    def _fq_activation(layer: Any, x: Any, prefix: str, training: Any, decay: float) -> Any:
        lo, hi, seen = (getattr(layer, f"{prefix}_{k}") for k in ("min", "max", "seen"))
        if training:
            xf = ops.cast(x, "float32")
            batch_lo = ops.minimum(ops.min(xf), 0.0)
            batch_hi = ops.maximum(ops.max(xf), 0.0)
            first = ops.equal(seen, 0.0)
            new_lo = ops.where(first, batch_lo, decay * lo + (1.0 - decay) * batch_lo)
            new_hi = ops.where(first, batch_hi, decay * hi + (1.0 - decay) * batch_hi)
            lo.assign(new_lo)
            hi.assign(new_hi)
            seen.assign(1.0)
            lo_v, hi_v = new_lo, new_hi
        else:
            lo_v, hi_v = lo, hi
        hi_v = ops.maximum(hi_v, lo_v + 1e-6)
        return keras.quantizers.fake_quant_with_min_max_vars(x, lo_v, hi_v, num_bits=8, narrow_range=False)


@keras.saving.register_keras_serializable(package="dnnkit")
class QuantDense(_RangeTracker, keras.layers.Dense):
    """Dense with a fake-quantized (per-tensor, symmetric) kernel and fake-quantized output."""

    def call(self, inputs: Any, training: Any = None) -> Any:
        if self.quantize_input:
            inputs = self._fq_activation(self, inputs, "in", training, self.decay)
        y = ops.matmul(inputs, _fq_weight(self.kernel, per_channel=False))
        if self.use_bias:
            y = ops.add(y, self.bias)
        if self.activation is not None:
            y = self.activation(y)
        return self._fq_output(y, training)


def _conv_class(base: type) -> type:
    class QuantConv(_RangeTracker, base):
        """Convolution with per-channel fake-quantized kernel and fake-quantized output."""

        def convolution_op(self, inputs: Any, kernel: Any) -> Any:
            return super().convolution_op(inputs, _fq_weight(kernel, per_channel=True))

        def call(self, inputs: Any, training: Any = None) -> Any:
            if self.quantize_input:
                inputs = self._fq_activation(self, inputs, "in", training, self.decay)
            return self._fq_output(super().call(inputs), training)

    QuantConv.__name__ = QuantConv.__qualname__ = f"Quant{base.__name__}"
    return keras.saving.register_keras_serializable(package="dnnkit")(QuantConv)


QuantConv1D = _conv_class(keras.layers.Conv1D)
QuantConv2D = _conv_class(keras.layers.Conv2D)


@keras.saving.register_keras_serializable(package="dnnkit")
class QuantActivation(_RangeTracker, keras.layers.Activation):
    """Activation whose output is fake-quantized with a moving-average range."""

    def call(self, inputs: Any, training: Any = None) -> Any:
        return self._fq_output(super().call(inputs), training)


@keras.saving.register_keras_serializable(package="dnnkit")
class FoldedBatchNorm(keras.layers.Layer):
    """Identity left where a BatchNormalization was folded into the layer before it."""

    def call(self, inputs: Any, training: Any = None, mask: Any = None) -> Any:
        return inputs


# layer class -> its fake-quantized twin (the tfmot engine maps tfmot's QAT layers onto these too)
QUANT_LAYERS = {"Dense": QuantDense, "Conv1D": QuantConv1D, "Conv2D": QuantConv2D}


def _parent(layer: Any) -> Any:
    nodes = layer._inbound_nodes
    if len(nodes) != 1 or len(nodes[0].parent_nodes) != 1:
        return None
    return nodes[0].parent_nodes[0].operation


def fold_batch_norm(model: keras.Model) -> tuple[keras.Model, list[str]]:
    """Fold every BatchNormalization that directly follows a Conv/Dense into its weights.

    Returns:
        The folded model (BN layers replaced by identities) and the folded BNs' names.
    """
    folds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    folded_bn: list[str] = []
    for layer in model.layers:
        if type(layer).__name__ != "BatchNormalization":
            continue
        prev = _parent(layer)
        if prev is None or type(prev).__name__ not in QUANTIZABLE or len(prev._outbound_nodes) != 1:
            continue
        if prev.activation is not None and prev.activation.__name__ != "linear":
            continue
        gamma = layer.gamma.numpy() if layer.scale else 1.0
        beta = layer.beta.numpy() if layer.center else 0.0
        scale = gamma / np.sqrt(layer.moving_variance.numpy() + layer.epsilon)
        kernel = prev.kernel.numpy() * scale
        bias = prev.bias.numpy() if prev.use_bias else 0.0
        folds[prev.name] = (kernel, (bias - layer.moving_mean.numpy()) * scale + beta)
        folded_bn.append(layer.name)
    if not folds:
        return model, []

    def clone(layer: Any) -> Any:
        if layer.name in folded_bn:
            return FoldedBatchNorm(name=layer.name)
        cfg = layer.get_config()
        if layer.name in folds:
            cfg["use_bias"] = True
        return layer.__class__.from_config(cfg)

    new = keras.models.clone_model(model, clone_function=clone)
    for layer in new.layers:
        if layer.name in folds:
            layer.set_weights(list(folds[layer.name]))
        elif layer.name not in folded_bn:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return new, folded_bn


_RELU = ("relu", "relu6")


def _relu_follows(layer: Any) -> bool:
    """Whether the only consumer of ``layer`` (through folded BNs) is a ReLU activation."""
    while True:
        nodes = layer._outbound_nodes
        if len(nodes) != 1:
            return False
        layer = nodes[0].operation
        if type(layer).__name__ != "FoldedBatchNorm":
            break
    return type(layer).__name__ == "Activation" and layer.get_config().get("activation") in _RELU


def quantize_model(model: keras.Model) -> tuple[keras.Model, dict[str, Any]]:
    """A QAT copy of ``model``: BN folded, Dense/Conv/Activation layers fake-quantized.

    A Dense/Conv whose output goes straight into a ReLU gets no output quantizer of its own:
    the integer model fuses the ReLU into it and quantizes only after the ReLU (tfmot's
    Default8Bit scheme does the same).

    Returns:
        The QAT model (same weights) and a report: quantized, folded and float-left layers.
    """
    folded, folded_bn = fold_batch_norm(model)
    first = {layer.name for layer in folded.layers
             if type(layer).__name__ in QUANTIZABLE and type(_parent(layer)).__name__ == "InputLayer"}
    before_relu = {layer.name for layer in folded.layers
                   if type(layer).__name__ in QUANTIZABLE and _relu_follows(layer)}
    quantized: list[str] = []

    def clone(layer: Any) -> Any:
        kind = type(layer).__name__
        cfg = layer.get_config()
        if kind in QUANT_LAYERS:
            quantized.append(layer.name)
            return QUANT_LAYERS[kind].from_config({**cfg, "quantize_input": layer.name in first,
                                                   "quantize_output": layer.name not in before_relu})
        if kind == "Activation" and cfg.get("activation") != "linear":
            quantized.append(layer.name)
            return QuantActivation.from_config(cfg)
        return layer.__class__.from_config(cfg)

    qat = keras.models.clone_model(folded, clone_function=clone)
    for layer in qat.layers:
        src = folded.get_layer(layer.name).get_weights()
        if src:
            weights = layer.get_weights()
            layer.set_weights(src + weights[len(src):])
    others = [layer.name for layer in qat.layers if layer.name not in quantized and layer.weights
              and type(layer).__name__ not in ("InputLayer",)]
    return qat, {"quantized_layers": quantized, "folded_batch_norm": folded_bn,
                 "output_quantized_after_relu": sorted(before_relu),
                 "calibrated_at_conversion": others}
