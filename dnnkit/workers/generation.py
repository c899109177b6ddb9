"""The generation child process: ``python -m dnnkit.workers.generation``.

One item: a causal_lm or seq2seq model file, the folder for its generation artifacts, the held-out prompts with
the tokens Keras generated and the task's answers (or, for ``dnnkit verify``, the files to check again). It writes every generation artifact
(:func:`dnnkit.formats.generation.export_decoders`) and checks each in its runtime
(:func:`dnnkit.verification.generation.check_generation`); a converter or runtime that crashes or hangs takes
this process down, not the job (:mod:`dnnkit.child`).

``DNNKIT_INJECT_GENERATION_FAULT=NAME:crash|hang|error`` makes the item NAME fail that way (the tests').
"""

from __future__ import annotations

import os
import sys
from typing import Any

from dnnkit.child.serve import serve
from dnnkit.formats.generation import export_decoders
from dnnkit.sources.open import load_reference_model
from dnnkit.errors import one_line
from dnnkit.verification.generation import check_generation

CALIBRATION = 100  # prompts whose prefill and decode calls calibrate a full-int8 step file


def warm() -> None:
    """Import TensorFlow, the converters and the runtimes before the item arrives."""
    import warnings

    warnings.filterwarnings("ignore")
    import ai_edge_litert.interpreter  # noqa: F401
    import onnxruntime  # noqa: F401
    import tensorflow  # noqa: F401
    import tf2onnx  # noqa: F401


def work(item: dict[str, Any]) -> dict[str, Any]:
    """Write and check the generation artifacts of one model (or, with ``check``, check the files it names
    again); returns ``{name: result}``."""
    if "check" in item:
        written = item["check"]
    else:
        model = load_reference_model(item["model"], unsafe=bool(item.get("unsafe")))
        written = export_decoders(model, item["folder"], tuple(item["names"]), opset=int(item.get("opset", 17)),
                                  capacity=item.get("capacity"), calibration=item["prompts"][:CALIBRATION],
                                  calibration_limits=[len(r) for r in item["reference"][:CALIBRATION]])
    results: dict[str, Any] = {}
    for name, made in written.items():
        if "error" in made:
            results[name] = {**made, "verdict": "fail", "failures": [f"conversion failed: {made['error']}"]}
            continue
        try:
            checked = check_generation(made, item)
        except Exception as exc:  # noqa: BLE001 - a runtime that cannot run the file fails this artifact only
            checked = {"verdict": "fail", "failures": [f"runtime failed: {one_line(exc)}"]}
        results[name] = {**made, **checked}
    return results


def main() -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return serve(work, fault_variable="DNNKIT_INJECT_GENERATION_FAULT", what="generation", warm=warm)


if __name__ == "__main__":
    sys.exit(main())
