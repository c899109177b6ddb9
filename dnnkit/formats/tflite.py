"""TFLite (LiteRT) flatbuffers: fp32, fp16, dynamic-range int8 and full-integer int8."""

from __future__ import annotations

import os
import re
import tempfile
import weakref
from typing import Any

import numpy as np

from dnnkit.artifacts.metadata import add_tflite_metadata
from dnnkit.core.fileio import atomic_path
from dnnkit.core.tensors import Inputs, cast, rows, set_weights, take
from dnnkit.errors import ConversionError, one_line
from dnnkit.formats.common import has_recurrent_layers
from dnnkit.formats.saved_model import write_saved_model
from dnnkit.formats.tflite_fp16 import keep_small_constants_fp32
from dnnkit.formats.tflite_int16 import without_squared_difference


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
    set_weights(copy, model.get_weights())
    return copy


def _converter(model: Any, saved_model_dir: str, precision: str, representative: Inputs | None,
               batch: int | None, io: str, allow_flex: bool, float_fallback: bool) -> Any:
    """A ``TFLiteConverter`` for the SavedModel at ``saved_model_dir`` set up for ``precision``."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic_int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision in ("int8", "int16x8"):
        if representative is None or not rows(representative):
            raise ConversionError(f"{precision}: needs representative samples from the training split")
        arrays = list(representative.values()) if isinstance(representative, dict) else [representative]
        if not all(np.all(np.isfinite(a)) for a in arrays):
            # TF issue #120295: the converter segfaults on non-finite calibration data.
            raise ConversionError(f"{precision}: representative samples contain NaN or infinity")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative_dataset(model, representative, batch)
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if precision == "int8" else
               tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]  # 16x8: int16 activations
        if float_fallback:
            ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
        if io == "int8" and precision == "int8":
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
    if allow_flex:
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    conv.target_spec.supported_ops = ops
    return conv


def representative_dataset(model: Any, representative: Inputs, batch: int | None) -> Any:
    """The converter's ``representative_dataset``: samples in ``batch``-size pieces (1 when dynamic),
    a dict keyed by the signature's input names for several inputs."""
    samples = cast(representative, model)
    step = batch or 1

    def rep() -> Any:
        for i in range(0, rows(samples) - step + 1, step):
            piece = take(samples, slice(i, i + step))
            yield piece if isinstance(piece, dict) else [piece]

    return rep


def _convert(conv: Any) -> bytes:
    """``conv.convert()``, its many error types as one :class:`ConversionError`."""
    try:
        return conv.convert()
    except Exception as exc:  # noqa: BLE001 - converter errors come in many types
        text = one_line(exc, None)
        if "Flex" in text or "SELECT_TF_OPS" in text or "select TensorFlow op" in text.lower():
            raise ConversionError("needs Flex (SELECT_TF_OPS) kernels; set allow_flex = true "
                                  f"in the recipe to permit them ({text[:200]})") from None
        raise ConversionError(f"TFLite converter failed: {text[:400]}") from None


def _quantize_keeping_float(conv: Any, float_layers: tuple[str, ...] | list[str], io: str) -> bytes:
    """Full-integer quantization with the ops that produce ``float_layers`` (tensor names, as
    :func:`rank_layers` reports them) left in float: calibrate, then the MLIR quantizer with
    those nodes denylisted (what ``QuantizationDebugger.get_nondebug_quantized_model`` does)."""
    import tensorflow as tf
    from tensorflow.lite.python import convert

    conv._experimental_calibrate_only = True  # noqa: SLF001 - the documented debugger route
    calibrated = _convert(conv)
    io_type = tf.int8 if io == "int8" else tf.float32
    try:
        return convert.mlir_quantize(calibrated, disable_per_channel=False, input_data_type=io_type,
                                     output_data_type=io_type, denylisted_nodes=list(float_layers))
    except Exception as exc:  # noqa: BLE001
        raise ConversionError(f"TFLite quantizer failed with {len(float_layers)} float layers: "
                              f"{one_line(exc)}") from None


# The SavedModel each TFLite conversion starts from, written once per model and batch and shared by the
# recipe's TFLite artifacts (writing it took 0.34 s of a 0.58 s conversion of the digits CNN, most of it
# Keras's gc.collect); dropped with the model, and removed by clear_saved_models when the worker ends.
# A folder given by share_saved_model (the job's SavedModel artifact) is used as it is and never removed.
_SAVED_MODELS: "weakref.WeakKeyDictionary[Any, dict[int | None, tempfile.TemporaryDirectory | str]]" = \
    weakref.WeakKeyDictionary()


def share_saved_model(model: Any, folder: str) -> None:
    """Let the TFLite conversions of ``model`` with a dynamic batch start from ``folder``, a SavedModel
    that :func:`dnnkit.formats.saved_model.write_saved_model` wrote of this model with a dynamic batch
    (the job's SavedModel artifact) instead of writing their own."""
    per_model = _SAVED_MODELS.setdefault(model, {})
    if None not in per_model:
        per_model[None] = str(folder)


def saved_model_for(model: Any, batch: int | None) -> str:
    """The folder of a SavedModel of ``model`` with a ``batch`` signature, for the TFLite converter
    (read only: it is shared by every conversion of this model and batch in this process)."""
    per_model = _SAVED_MODELS.setdefault(model, {})
    if batch not in per_model:
        folder = tempfile.TemporaryDirectory(prefix="dnnkit-tflite-")
        try:
            write_saved_model(model, os.path.join(folder.name, "sm"), batch=batch)
        except BaseException:
            folder.cleanup()
            raise
        per_model[batch] = folder
    held = per_model[batch]
    return held if isinstance(held, str) else os.path.join(held.name, "sm")


def clear_saved_models() -> None:
    """Remove the SavedModels :func:`saved_model_for` wrote."""
    for per_model in list(_SAVED_MODELS.values()):
        for folder in per_model.values():
            if not isinstance(folder, str):
                folder.cleanup()
    _SAVED_MODELS.clear()


def _prepare(model: Any, static_batch: int | None, unroll: bool) -> tuple[Any, int | None, bool]:
    """``(model, batch, unrolled)``: recurrent models get batch 1 unless one is given, and with
    ``unroll`` their layers unrolled (:func:`unroll_recurrent`)."""
    recurrent = has_recurrent_layers(model)
    batch = static_batch if static_batch is not None else (1 if recurrent else None)
    if unroll and recurrent:
        return unroll_recurrent(model), batch, True
    return model, batch, False


def export_tflite(model: Any, path: str | os.PathLike[str], *, precision: str = "fp32",
                  representative: Inputs | None = None, io: str = "float",
                  static_batch: int | None = None, allow_flex: bool = False,
                  float_fallback: bool = False, unroll: bool = False,
                  float_layers: tuple[str, ...] | list[str] = (), activations: str = "int8",
                  fp32_source: str | None = None, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Convert a Keras model to a ``.tflite`` file, atomically.

    The model is first written as a SavedModel whose signature has the chosen batch size
    (recurrent models get a static batch: a dynamic one fails with TensorListReserve) and
    converted from there, so variables are frozen and the signature keeps its names.

    Args:
        model: a ``keras.Model`` (any number of inputs and outputs).
        path: the ``.tflite`` file to write.
        precision: ``fp32``, ``fp16``, ``dynamic_int8``, ``int8`` (full integer) or ``int16x8`` (int16
            activations, int8 weights: TFLite's 16x8 mode; float I/O).
        representative: calibration samples for ``int8`` (from the training split; a dict per
            input name for several inputs).
        io: ``float`` or ``int8`` input/output tensors for ``int8``.
        static_batch: batch size to fix; ``None`` means 1 for recurrent models, else dynamic.
        allow_flex: permit SELECT_TF_OPS (Flex) kernels.
        float_fallback: for ``int8``, let ops without an int8 kernel stay float.
        unroll: for ``int8``, unroll LSTM/GRU layers first (see :func:`unroll_recurrent`).
        float_layers: for ``int8``, output tensor names whose ops stay float (selective fallback).
        activations: for ``int8``, ``int16`` converts with TFLite's 16x8 kernels (int8 weights, int16
            activations, float I/O): the quantization ladder's rung for activations int8 cannot hold.
        fp32_source: for ``fp16``, an fp32 ``.tflite`` of this model and batch (the job's fp32 artifact);
            its constants are the exact values of the small constants kept in fp32
            (:mod:`dnnkit.formats.tflite_fp16`). Without one, an fp32 conversion runs for them.
        metadata: fields stored as the file's JSON metadata (:mod:`dnnkit.artifacts.metadata`), with
            ``precision`` added.

    Returns:
        What the manifest records: batch, fallbacks used.

    Raises:
        ConversionError: if the converter refuses the model.
    """
    full = precision in ("int8", "int16x8")
    if precision == "int8" and activations == "int16":
        if float_layers or io != "float":
            raise ConversionError("activations = 'int16' takes float I/O and no float_layers")
        kind = "int16x8"
    else:
        kind = precision
    rewritten = 0
    if kind == "int16x8":  # LayerNorm's SQUARED_DIFFERENCE has no int16 kernel in LiteRT
        model, rewritten = without_squared_difference(model)
    model, batch, unrolled = _prepare(model, static_batch, full and unroll)
    fallbacks = ["unroll_recurrent"] if unrolled else []
    conv = _converter(model, saved_model_for(model, batch), kind, representative, batch, io, allow_flex,
                      float_fallback)
    if precision == "int8" and float_layers:
        content = _quantize_keeping_float(conv, float_layers, io)
    else:
        content = _convert(conv)
    restored = None
    if precision == "fp16":
        if fp32_source and os.path.isfile(fp32_source):
            with open(fp32_source, "rb") as handle:
                fp32 = handle.read()
        else:
            fp32 = _convert(_converter(model, saved_model_for(model, batch), "fp32", None, batch, io, allow_flex,
                                       False))
        content, restored = keep_small_constants_fp32(content, fp32)
    if metadata:
        content = add_tflite_metadata(content, {**metadata, "precision": precision})
    with atomic_path(path) as tmp_file:
        tmp_file.write_bytes(content)
    if full and float_fallback:
        fallbacks.append("float_fallback")
    if precision == "int8" and float_layers:
        fallbacks.append("selective_float")
    shared = _SAVED_MODELS.get(model, {}).get(batch)
    return {"batch": batch, "fallbacks": fallbacks,
            **({"activations": activations} if precision == "int8" else {}),
            **({"fp32_constants": restored} if restored is not None else {}),
            **({"layer_norms_without_squared_difference": rewritten} if rewritten else {}),
            **({"converted_from": os.path.basename(shared)} if isinstance(shared, str) else {})}


def rank_layers(model: Any, *, representative: Inputs, io: str = "float", static_batch: int | None = None,
                allow_flex: bool = False, float_fallback: bool = False, unroll: bool = False,
                samples: int = 32) -> list[dict[str, Any]]:
    """Per-layer quantization error of full-integer TFLite, worst first, from TensorFlow's
    ``tf.lite.experimental.QuantizationDebugger``: each quantized op runs on the same (dequantized)
    input as its float twin, and the error of its output is its own.

    Returns:
        ``[{"name": output tensor name, "op": TFLite op, "sqnr_db": float, "rmse_over_scale": float,
        "nodes": the op names to keep float so that the tensor is float (it and its readers: a
        denylisted op's float output would be quantized again at a quantized reader's input)}]``,
        lowest SQNR first. SQNR is ``10 log10(E[f^2] / E[(f - q)^2])``
        over the debug samples; rounding alone gives an RMSE of 0.29 quantization steps.

    Raises:
        ConversionError: if calibration or the debugger fails.
    """
    import tensorflow as tf

    model, batch, _ = _prepare(model, static_batch, unroll)

    def noise(f: np.ndarray, q: np.ndarray, scale: float, zero: int) -> float:
        return float(np.mean(np.square(f - (q.astype(np.float32) - zero) * scale, dtype=np.float64)))

    options = tf.lite.experimental.QuantizationDebugOptions(layer_direct_compare_metrics={
        "signal": lambda f, q, s, z: float(np.mean(np.square(f, dtype=np.float64))),
        "noise": noise,
        "rmse_over_scale": lambda f, q, s, z: float(np.sqrt(noise(f, q, s, z))) / s if s else 0.0})
    order: list[str] = []  # the debugger feeds lists in its interpreter's input order
    pieces = representative_dataset(model, take(representative, slice(0, samples)), batch)

    def debug_data() -> Any:
        for piece in pieces():
            yield [piece[n] for n in order] if isinstance(piece, dict) else piece

    conv = _converter(model, saved_model_for(model, batch), "int8", representative, batch, io, allow_flex,
                      float_fallback)
    try:
        debugger = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=debug_data,
                                                             debug_options=options)
        # built from a converter, the debugger's interpreter does not preserve intermediate tensors,
        # and the float outputs the direct-compare metrics read are then overwritten arena memory
        # (measured: 1.7e38 and non-finite values in EfficientNetB0's stem); the same model,
        # preserving them, gives the metrics their real inputs
        quant = debugger._quant_interpreter = tf.lite.Interpreter(  # noqa: SLF001
            model_content=debugger.quant_model, experimental_preserve_all_tensors=True)
        order[:] = [re.sub(r"^serving_default_|:\d+$", "", d["name"]) for d in quant.get_input_details()]
        debugger.run()
    except ConversionError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ConversionError(f"TFLite QuantizationDebugger failed: {one_line(exc)}") from None
    consumers = _consumers(tf.lite.Interpreter(model_content=debugger.calibrated_model))
    details = debugger._numeric_verify_op_details  # noqa: SLF001 - its op per verified tensor
    ranked = []
    for key, stats in debugger.layer_statistics.items():
        name, _ = debugger._get_operand_name_and_index(key)  # noqa: SLF001
        op_index = debugger._defining_op.get(details[key]["inputs"][0])  # noqa: SLF001
        op = quant._get_op_details(op_index)["op_name"] if op_index is not None else "?"  # noqa: SLF001
        # a tensor is float only when the op making it and the ops reading it all are
        ranked.append({"name": name, "op": op, "sqnr_db": _sqnr_db(stats["signal"], stats["noise"]),
                       "rmse_over_scale": round(float(stats["rmse_over_scale"]), 4),
                       "nodes": _float_nodes(name, consumers)})
    return sorted(ranked, key=lambda r: r["sqnr_db"])


# ops whose int8 kernels give the output the input's scale: a tensor kept float must keep the
# tensors these ops derive from it float too, or its range comes back one op later (measured: the
# masked attention logits of BERT, MatMul -> TRANSPOSE -> SELECT_V2 -> SOFTMAX, all on the scale
# -1e9 sets)
SCALE_TIED_OPS = frozenset({"TRANSPOSE", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "SELECT", "SELECT_V2", "GATHER",
                            "CONCATENATION", "PAD", "PADV2", "MAX_POOL_2D", "SLICE", "STRIDED_SLICE", "SPLIT",
                            "SPLIT_V", "BROADCAST_TO", "TILE", "PACK", "UNPACK", "DEPTH_TO_SPACE",
                            "SPACE_TO_DEPTH", "MAXIMUM", "MINIMUM"})


def _consumers(interpreter: Any) -> dict[str, list[tuple[str, str]]]:
    """Tensor name -> ``(op type, name of the op's first output)`` of the ops that read it: those
    names are what ``denylisted_nodes`` takes."""
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    out: dict[str, list[tuple[str, str]]] = {}
    for op in interpreter._get_ops_details():  # noqa: SLF001 - no public op graph in LiteRT's Python API
        produced = [names[i] for i in op["outputs"] if i in names]
        for i in op["inputs"]:
            if i in names and produced:
                out.setdefault(names[i], []).append((op["op_name"], produced[0]))
    return out


def _float_nodes(tensor: str, consumers: dict[str, list[tuple[str, str]]]) -> list[str]:
    """The op names to denylist so that ``tensor`` is float: the op making it, the ops reading it,
    and, through scale-tied readers (:data:`SCALE_TIED_OPS`), what they derive from it."""
    nodes, todo = [tensor], [tensor]
    while todo:
        for op_type, out in consumers.get(todo.pop(), []):
            if out not in nodes:
                nodes.append(out)
                if op_type in SCALE_TIED_OPS:
                    todo.append(out)
    return nodes


def _sqnr_db(signal: float, noise: float) -> float:
    """``10 log10(signal / noise)``, capped at +-200 dB (rounded to 0.01); a non-finite
    quantized output (overflow) counts as the worst."""
    if not np.isfinite(noise) or not np.isfinite(signal):
        return -200.0
    if noise <= 0:
        return 200.0
    if signal <= 0:
        return -200.0
    return round(min(200.0, 10.0 * float(np.log10(signal / noise))), 2)
