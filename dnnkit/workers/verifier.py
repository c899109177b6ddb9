"""The verification child process: ``python -m dnnkit.workers.verifier``.

It imports the runtimes, says ``ready``, then verifies the items it reads on stdin (one JSON line
each) with :func:`dnnkit.verification.artifact.verify_artifact`, or measures an artifact's latency
(``"task": "latency"``), one protocol line per event (see :mod:`dnnkit.child.serve`). The reference
outputs are read once per reference file. A runtime that crashes or hangs on a damaged or crafted
file takes down only this process; the parent fails that artifact and starts a fresh worker.

``DNNKIT_INJECT_VERIFY_FAULT=NAME:crash|hang|error`` makes verifying NAME fail that way (tests).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from dnnkit.child.serve import serve
from dnnkit.config.recipe import ArtifactConfig, Recipe, VerifyConfig
from dnnkit.verification.artifact import measure_latency, verify_artifact
from dnnkit.verification.reference import load_reference

_LOADED: dict[str, Any] = {}


def warm() -> None:
    """Import the runtimes and metrics: LiteRT and onnxruntime (under a second). TensorFlow is imported
    when a SavedModel comes: ``dnnkit verify``'s, and an export's large one taken while the converter
    still converts (:func:`dnnkit.jobs.conversions.verifier_takes_saved_models`; the others are checked by the
    converter, where TensorFlow is loaded)."""
    import warnings

    warnings.filterwarnings("ignore")
    import ai_edge_litert.interpreter  # noqa: F401
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401

    import sklearn.metrics  # noqa: F401


def prepare(item: dict[str, Any]) -> float:
    """Load the item's reference outputs, unless the last item's are the same file."""
    job = item["job"]
    key = (job["reference"], os.stat(job["reference"]).st_mtime_ns)
    if _LOADED.get("key") == key:
        return 0.0
    begin = time.perf_counter()
    _LOADED.pop("ref", None)
    _LOADED["key"] = None
    _LOADED["ref"] = load_reference(job["reference"], job["reference_meta"])
    _LOADED["key"] = key
    return time.perf_counter() - begin


def work(item: dict[str, Any]) -> dict[str, Any]:
    art = ArtifactConfig(**item["options"])
    recipe = Recipe(name="job", artifacts=(art,), verify=VerifyConfig(**item["job"]["verify"]))
    if item.get("task") == "latency":
        return measure_latency(item["path"], art, recipe, _LOADED["ref"])
    return verify_artifact(item["path"], art, recipe, _LOADED["ref"], expected_sha256=item.get("expected_sha256"),
                           fake_quant=bool(item.get("fake_quant")), latency=item.get("latency", True))


def main() -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return serve(work, fault_variable="DNNKIT_INJECT_VERIFY_FAULT", what="verification", warm=warm,
                 prepare=prepare)


if __name__ == "__main__":
    sys.exit(main())
