"""The conversion child process: ``python -m dnnkit.workers.converter``.

It imports TensorFlow and the converters, says ``ready``, then converts the items it reads on
stdin (one JSON line each, naming the model and calibration files it loads once), printing one
protocol line per event on stdout (``@@dnnkit {json}``): ``start``, then ``done`` or ``error``.
The parent (:mod:`dnnkit.workers.convert`) enforces time limits and survives crashes. It checks and times
SavedModels too (``task`` ``verify`` or ``latency``), as the verifier does: TensorFlow is loaded here.

``DNNKIT_INJECT_FAULT=NAME:crash|hang|error`` makes the artifact NAME fail that way
(used by the tests to prove a crashing converter is contained).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import numpy as np

from dnnkit.child.serve import serve
from dnnkit.core.tensors import from_arrays
from dnnkit.formats import tflite as tflite_format
from dnnkit.formats.convert import convert_one, needs_model
from dnnkit.sources.open import load_reference_model
from dnnkit.workers import verifier

_LOADED: dict[str, Any] = {}


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


VERIFY_TASKS = ("verify", "latency")  # items this process checks or times (the job's SavedModel)


def prepare(item: dict[str, Any]) -> float:
    """Load the item's model and calibration samples, unless the last item's are the same files (a
    check's reference outputs for a check)."""
    if item.get("task") in VERIFY_TASKS:
        return verifier.prepare(item)

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
        return verifier.work(art)
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
    tflite_format.clear_saved_models()


if __name__ == "__main__":
    sys.exit(main())
