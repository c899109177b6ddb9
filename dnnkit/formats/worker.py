"""The conversion child process: ``python -m dnnkit.formats.worker JOB.json``.

It loads the Keras model once and converts the job's artifacts in order, printing one
protocol line per event on stdout (``@@dnnkit {json}``): ``start``, then ``done`` or
``error``. The parent (:mod:`dnnkit.formats`) enforces time limits and survives crashes.

``DNNKIT_INJECT_FAULT=NAME:crash|hang|error`` makes the artifact NAME fail that way
(used by the tests to prove a crashing converter is contained).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from dnnkit.child import serve_items


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
        return export_tflite(model, path, precision=precision, representative=samples,
                             io=art["io"], static_batch=art.get("static_batch"),
                             allow_flex=art["allow_flex"], float_fallback=art["float_fallback"],
                             unroll=art["unroll_recurrent"], float_layers=art.get("float_layers", ()),
                             metadata=metadata)
    if precision == "int8":
        return export_onnx_int8(model, path, calibration=samples, opset=art["opset"],
                                metadata=metadata, external_data=art.get("external_data", "auto"),
                                float_layers=art.get("float_layers", ()))
    return export_onnx(model, path, opset=art["opset"], metadata=metadata, check_inputs=rep,
                       external_data=art.get("external_data", "auto"))


def main(job_path: str) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import warnings

    warnings.filterwarnings("ignore")
    import numpy as np

    job = json.loads(open(job_path, encoding="utf-8").read())
    from dnnkit.modelio import load_reference_model

    model = load_reference_model(job["model"], unsafe=job.get("unsafe", False))
    from dnnkit.signature import from_arrays

    with np.load(job["representative"]) as f:
        rep = from_arrays("x", {k: f[k] for k in f.files})

    def work(art: dict[str, Any]) -> dict[str, Any]:
        path = os.path.join(job["out_dir"], art["filename"])
        os.makedirs(os.path.dirname(path), exist_ok=True)  # a selective fallback's candidates go in sub-folders
        return convert_one(model, art, path, rep, job.get("metadata", {}))

    return serve_items(job["artifacts"], work,
                       fault_variable="DNNKIT_INJECT_FAULT", what="conversion")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
