"""The one dispatch point of the converters: an item of the converter worker (``format``, ``precision``
and the recipe's options) to the function that writes it, or ranks its layers for a selective fallback;
and what each format's files are known to be."""

from __future__ import annotations

import hashlib
import weakref
from typing import Any

import numpy as np

from dnnkit.core.tensors import take
from dnnkit.errors import ConversionError, one_line
from dnnkit.formats import onnx as onnx_format, tflite as tflite_format
from dnnkit.formats.onnx import export_onnx, export_onnx_int8
from dnnkit.formats.saved_model import export_saved_model
from dnnkit.formats.tflite import export_tflite, share_saved_model
from dnnkit.passes.bias_correction import bias_correction
from dnnkit.passes.equalization import cross_layer_equalization

# Whether two identical runs (same spec, seed, versions and machine) write byte-identical files,
# and why not where they do not (measured; tests/test_jobs_run_kill_and_reproduce.py checks it).
REPRODUCIBLE: dict[str, tuple[bool, str | None]] = {
    "tflite": (True, None),
    "onnx": (True, None),
    "saved_model": (False, "saved_model.pb names traced functions with a per-process counter "
                           "(assignvariableop_10_... vs _12_...) and the variables file's layout follows it; "
                           "the weights are the same, as dnnkit verify checks"),
}


def convert_one(model: Any, art: dict[str, Any], path: str, rep: Any, metadata: dict[str, Any]) -> dict:
    """Convert one artifact (in this process) and return what the manifest records."""
    fmt, precision = art["format"], art["precision"]
    samples = take(rep, slice(0, art.get("samples")))
    if art.get("equalization") and art.get("task") != "rank":  # before bias correction, which measures its weights
        model, record = _equalized(model)
        return {**convert_one(model, {**art, "equalization": False}, path, rep, metadata), "equalization": record}
    if art.get("bias_correction") and art.get("task") != "rank":
        model, record = _bias_corrected(model, samples, weight_bits(art))
        return {**convert_one(model, {**art, "bias_correction": False}, path, rep, metadata),
                "bias_correction": record}
    if art.get("task") == "rank":  # the per-layer error a selective fallback starts from
        if fmt == "tflite":
            ranked = tflite_format.rank_layers(model, representative=samples, io=art["io"],
                                               static_batch=art.get("static_batch"), allow_flex=art["allow_flex"],
                                               float_fallback=art["float_fallback"], unroll=art["unroll_recurrent"])
        else:
            ranked = onnx_format.rank_layers(model, calibration=samples, opset=art["opset"],
                                             external_data=art.get("external_data", "auto"))
        return {"ranking": ranked}
    if fmt == "saved_model":
        return export_saved_model(model, path)
    if fmt == "tflite":
        if art.get("saved_model"):
            share_saved_model(model, art["saved_model"])
        return export_tflite(model, path, precision=precision, representative=samples,
                             io=art["io"], static_batch=art.get("static_batch"),
                             allow_flex=art["allow_flex"], float_fallback=art["float_fallback"],
                             unroll=art["unroll_recurrent"], float_layers=art.get("float_layers", ()),
                             activations=art.get("activations", "int8"), fp32_source=art.get("fp32_tflite"),
                             metadata=metadata)
    if precision == "int8":
        return export_onnx_int8(model if needs_model(art) else None, path, calibration=samples, opset=art["opset"],
                                metadata=metadata, external_data=art.get("external_data", "auto"),
                                float_layers=art.get("float_layers", ()), fp32_source=art.get("fp32_onnx"),
                                options=_onnx_options(art))
    return export_onnx(model, path, opset=art["opset"], metadata=metadata, check_inputs=rep,
                       external_data=art.get("external_data", "auto"))


def _onnx_options(art: dict[str, Any]) -> onnx_format.QuantOptions:
    """How an int8 ONNX item is quantized (its ladder levers)."""
    return onnx_format.QuantOptions(activations=art.get("activations", "int8"),
                                    calibration=art.get("calibration", "minmax"), graph_prep=art.get("graph_prep", False))


def weight_bits(art: dict[str, Any]) -> int:
    """The bits an int8 artifact's weights are rounded to: the ONNX quantizer's choice
    (:attr:`~dnnkit.formats.onnx.QuantOptions.weight_bits`), 8 in TFLite."""
    return _onnx_options(art).weight_bits if art["format"] == "onnx" else 8


# the bias-corrected copies of a model, by weight bits and calibration set (a digest): dropped with the model (a
# converter process outlives one job's model, and a new model may reuse a freed one's id)
_CORRECTED: "weakref.WeakKeyDictionary[Any, dict[tuple[int, str], tuple[Any, dict[str, Any]]]]" = \
    weakref.WeakKeyDictionary()


def _bias_corrected(model: Any, samples: Any, bits: int) -> tuple[Any, dict[str, Any]]:
    """The bias-corrected copy of ``model`` for ``bits``-bit weights (made once per model, bits and
    calibration set in this process)."""
    per_model = _CORRECTED.setdefault(model, {})
    arrays = samples.values() if isinstance(samples, dict) else [samples]
    key = (bits, hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest())
    if key not in per_model:
        try:
            per_model[key] = bias_correction(model, samples, bits=bits)
        except Exception as exc:  # noqa: BLE001 - a rung that cannot apply fails alone
            raise ConversionError(f"bias correction failed: {one_line(exc, 300)}") from None
    return per_model[key]


_EQUALIZED: "weakref.WeakKeyDictionary[Any, tuple[Any, dict[str, Any]]]" = weakref.WeakKeyDictionary()


def _equalized(model: Any) -> tuple[Any, dict[str, Any]]:
    """The cross-layer-equalized copy of ``model`` (made once per model in this process)."""
    if model not in _EQUALIZED:
        try:
            _EQUALIZED[model] = cross_layer_equalization(model)
        except Exception as exc:  # noqa: BLE001 - a rung that cannot apply fails alone
            raise ConversionError(one_line(exc, 300)) from None
    return _EQUALIZED[model]


def needs_model(item: dict[str, Any]) -> bool:
    """Whether the item needs the Keras model: not the int8 ONNX quantized from the job's fp32 ONNX
    file (a converter started afresh for it, after the one before was recycled, skips loading a
    large model: 3.3 s for a 224x224 ResNet50)."""
    return not (item.get("format") == "onnx" and item.get("precision") == "int8" and item.get("fp32_onnx")
                and not item.get("float_layers") and not item.get("bias_correction") and not item.get("equalization")
                and item.get("task") != "rank")
