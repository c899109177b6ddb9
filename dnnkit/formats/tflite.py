"""TFLite (LiteRT) flatbuffers: fp32, fp16, dynamic-range int8 and full-integer int8."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

from dnnkit.errors import DnnkitError
from dnnkit.formats.common import atomic_path, has_recurrent_layers
from dnnkit.formats.saved_model import write_saved_model
from dnnkit.signature import Inputs, cast, rows, take


class ConversionError(DnnkitError):
    """A converter refused the model (reported as a failed artifact, exit 1)."""

    exit_code = 1


def unroll_recurrent(model: Any) -> Any:
    """A copy of ``model`` whose LSTM/GRU/ConvLSTM layers run with ``unroll=True`` (same weights).

    The TFLite converter crashes calibrating fused LSTM/GRU loops for full-integer
    quantization (tensorflow issues #41305, #87468); the unrolled graph quantizes.
    """
    import keras

    def clone(layer: Any) -> Any:
        cfg = layer.get_config()
        if isinstance(layer, (keras.layers.LSTM, keras.layers.GRU)):
            cfg["unroll"] = True
        elif isinstance(layer, keras.layers.Bidirectional):
            for key in ("layer", "backward_layer"):
                if cfg.get(key):
                    cfg[key]["config"]["unroll"] = True
        new = layer.__class__.from_config(cfg)
        if isinstance(layer, keras.layers.RNN):
            # ConvLSTM1D/2D/3D ignore an unroll argument but run through RNN.call, which reads the
            # attribute: unrolled, the TFLite calibrator no longer crashes (SIGSEGV) on their WHILE loop
            new.unroll = True
        return new

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def export_tflite(model: Any, path: str | os.PathLike[str], *, precision: str = "fp32",
                  representative: Inputs | None = None, io: str = "float",
                  static_batch: int | None = None, allow_flex: bool = False,
                  float_fallback: bool = False, unroll: bool = False) -> dict[str, Any]:
    """Convert a Keras model to a ``.tflite`` file, atomically.

    The model is first written as a SavedModel whose signature has the chosen batch size
    (recurrent models get a static batch: a dynamic one fails with TensorListReserve) and
    converted from there, so variables are frozen and the signature keeps its names.

    Args:
        model: a ``keras.Model`` (any number of inputs and outputs).
        path: the ``.tflite`` file to write.
        precision: ``fp32``, ``fp16``, ``dynamic_int8`` or ``int8`` (full integer).
        representative: calibration samples for ``int8`` (from the training split; a dict per
            input name for several inputs).
        io: ``float`` or ``int8`` input/output tensors for ``int8``.
        static_batch: batch size to fix; ``None`` means 1 for recurrent models, else dynamic.
        allow_flex: permit SELECT_TF_OPS (Flex) kernels.
        float_fallback: for ``int8``, let ops without an int8 kernel stay float.
        unroll: for ``int8``, unroll LSTM/GRU layers first (see :func:`unroll_recurrent`).

    Returns:
        What the manifest records: batch, fallbacks used.

    Raises:
        ConversionError: if the converter refuses the model.
    """
    import tensorflow as tf

    recurrent = has_recurrent_layers(model)
    batch = static_batch if static_batch is not None else (1 if recurrent else None)
    fallbacks: list[str] = []
    if precision == "int8" and unroll and recurrent:
        model = unroll_recurrent(model)
        fallbacks.append("unroll_recurrent")
    with tempfile.TemporaryDirectory(prefix="dnnkit-tflite-") as tmp:
        write_saved_model(model, os.path.join(tmp, "sm"), batch=batch)
        conv = tf.lite.TFLiteConverter.from_saved_model(os.path.join(tmp, "sm"))
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if precision == "fp16":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        elif precision == "dynamic_int8":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        elif precision == "int8":
            if representative is None or not rows(representative):
                raise ConversionError("int8: needs representative samples from the training split")
            arrays = list(representative.values()) if isinstance(representative, dict) else [representative]
            if not all(np.all(np.isfinite(a)) for a in arrays):
                # TF issue #120295: the converter segfaults on non-finite calibration data.
                raise ConversionError("int8: representative samples contain NaN or infinity")
            samples = cast(representative, model)
            step = batch or 1

            def rep() -> Any:
                # several inputs: a dict keyed by the signature's input names
                for i in range(0, rows(samples) - step + 1, step):
                    piece = take(samples, slice(i, i + step))
                    yield piece if isinstance(piece, dict) else [piece]

            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = rep
            ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if float_fallback:
                ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
            if io == "int8":
                conv.inference_input_type = tf.int8
                conv.inference_output_type = tf.int8
        if allow_flex:
            ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
        conv.target_spec.supported_ops = ops
        try:
            content = conv.convert()
        except Exception as exc:  # noqa: BLE001 - converter errors come in many types
            text = " ".join(str(exc).split())
            if "Flex" in text or "SELECT_TF_OPS" in text or "select TensorFlow op" in text.lower():
                raise ConversionError("needs Flex (SELECT_TF_OPS) kernels; set allow_flex = true "
                                      f"in the recipe to permit them ({text[:200]})") from None
            raise ConversionError(f"TFLite converter failed: {text[:400]}") from None
    with atomic_path(path) as tmp_file:
        tmp_file.write_bytes(content)
    if precision == "int8" and float_fallback:
        fallbacks.append("float_fallback")
    return {"batch": batch, "fallbacks": fallbacks}
