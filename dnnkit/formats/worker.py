"""The conversion child process: ``python -m dnnkit.formats.worker``.

It imports TensorFlow and the converters, says ``ready``, then converts the items it reads on
stdin (one JSON line each, naming the model and calibration files it loads once), printing one
protocol line per event on stdout (``@@dnnkit {json}``): ``start``, then ``done`` or ``error``.
The parent (:mod:`dnnkit.formats`) enforces time limits and survives crashes.

``DNNKIT_INJECT_FAULT=NAME:crash|hang|error`` makes the artifact NAME fail that way
(used by the tests to prove a crashing converter is contained).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from dnnkit.child import serve


def convert_one(model: Any, art: dict[str, Any], path: str, rep: Any, metadata: dict[str, Any]) -> dict:
    """Convert one artifact (in this process) and return what the manifest records."""
    from dnnkit.formats.onnx import export_onnx, export_onnx_int8
    from dnnkit.formats.saved_model import export_saved_model
    from dnnkit.formats.tflite import export_tflite

    from dnnkit.signature import take

    fmt, precision = art["format"], art["precision"]
    samples = take(rep, slice(0, art.get("samples")))
    if art.get("task") == "rank":  # the per-layer error a selective fallback starts from
        from dnnkit.formats import onnx as onnx_format, tflite as tflite_format

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
            from dnnkit.formats.tflite import share_saved_model

            share_saved_model(model, art["saved_model"])
        return export_tflite(model, path, precision=precision, representative=samples,
                             io=art["io"], static_batch=art.get("static_batch"),
                             allow_flex=art["allow_flex"], float_fallback=art["float_fallback"],
                             unroll=art["unroll_recurrent"], float_layers=art.get("float_layers", ()),
                             metadata=metadata)
    if precision == "int8":
        return export_onnx_int8(model if needs_model(art) else None, path, calibration=samples, opset=art["opset"],
                                metadata=metadata, external_data=art.get("external_data", "auto"),
                                float_layers=art.get("float_layers", ()), fp32_source=art.get("fp32_onnx"))
    return export_onnx(model, path, opset=art["opset"], metadata=metadata, check_inputs=rep,
                       external_data=art.get("external_data", "auto"))


_LOADED: dict[str, Any] = {}


def needs_model(item: dict[str, Any]) -> bool:
    """Whether the item needs the Keras model: not the int8 ONNX quantized from the job's fp32 ONNX
    file (a converter started afresh for it, after the one before was recycled, skips loading a
    large model: 3.3 s for a 224x224 ResNet50)."""
    return not (item.get("format") == "onnx" and item.get("precision") == "int8" and item.get("fp32_onnx")
                and not item.get("float_layers") and item.get("task") != "rank")


def warm() -> None:
    """Import what conversions need before any job arrives (a prestarted worker does it during training)."""
    import warnings

    warnings.filterwarnings("ignore")
    import ai_edge_litert.interpreter  # noqa: F401
    import keras  # noqa: F401
    import numpy  # noqa: F401
    import onnx  # noqa: F401
    import onnxruntime.quantization  # noqa: F401
    import tensorflow  # noqa: F401
    import tf2onnx  # noqa: F401

    import dnnkit.formats.onnx  # noqa: F401
    import dnnkit.formats.saved_model  # noqa: F401
    import dnnkit.formats.tflite  # noqa: F401
    import dnnkit.modelio  # noqa: F401


VERIFY_TASKS = ("verify", "latency")  # items this process checks or times (the job's SavedModel)


def prepare(item: dict[str, Any]) -> float:
    """Load the item's model and calibration samples, unless the last item's are the same files (a
    check's reference outputs for a check)."""
    import time

    if item.get("task") in VERIFY_TASKS:
        from dnnkit import verify_worker

        return verify_worker.prepare(item)

    import numpy as np

    from dnnkit.modelio import load_reference_model
    from dnnkit.signature import from_arrays

    job = item["job"]
    stat = os.stat(job["model"])
    model_key = (job["model"], stat.st_mtime_ns, stat.st_size, bool(job.get("unsafe")))
    begin = time.perf_counter()
    if _LOADED.get("model_key") != model_key:
        _LOADED.pop("model", None)  # the previous model goes before the next one loads
        _LOADED["model_key"] = None
        if needs_model(item):
            _LOADED["model"] = load_reference_model(job["model"], unsafe=job.get("unsafe", False))
            _LOADED["model_key"] = model_key
    rep_key = (job["representative"], os.stat(job["representative"]).st_mtime_ns)
    if _LOADED.get("rep_key") != rep_key:
        with np.load(job["representative"]) as f:
            _LOADED["rep"] = from_arrays("x", {k: f[k] for k in f.files})
        _LOADED["rep_key"] = rep_key
    return time.perf_counter() - begin


def work(art: dict[str, Any]) -> dict[str, Any]:
    if art.get("task") in VERIFY_TASKS:
        from dnnkit import verify_worker

        return verify_worker.work(art)
    job = art["job"]
    path = os.path.join(job["out_dir"], art["filename"])
    os.makedirs(os.path.dirname(path), exist_ok=True)  # a selective fallback's candidates go in sub-folders
    return convert_one(_LOADED.get("model"), art, path, _LOADED["rep"], job.get("metadata", {}))


def main() -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return serve(work, fault_variable="DNNKIT_INJECT_FAULT", what="conversion", warm=warm, prepare=prepare,
                 cleanup=cleanup)


def cleanup() -> None:
    """Remove the SavedModels the TFLite conversions shared."""
    tflite = sys.modules.get("dnnkit.formats.tflite")
    if tflite is not None:
        tflite.clear_saved_models()


if __name__ == "__main__":
    sys.exit(main())
