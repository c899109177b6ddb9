"""Artifact conversion seen from the parent: each artifact converted by the converter worker
(``python -m dnnkit.workers.converter``; a prestarted one inside :func:`dnnkit.child.pool.warm_workers`), with
a time limit. A converter that crashes the process (the TFLite converter has died with SIGSEGV), hangs past
its time limit or raises marks only that artifact failed; a fresh worker converts the rest."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dnnkit.child.items import run_job
from dnnkit.core.tensors import Inputs, to_arrays
from dnnkit.config.recipe import ArtifactConfig

CONVERTER = "dnnkit.workers.converter"
STARTUP_TIMEOUT_S = 240.0  # importing TensorFlow and loading the model in the child


def convert_artifacts(model_path: str | os.PathLike[str], artifacts: list[ArtifactConfig],
                      out_dir: str | os.PathLike[str], representative: Inputs, *,
                      timeouts: dict[str, float], metadata: dict[str, Any] | None = None,
                      unsafe: bool = False, log_path: str | os.PathLike[str] | None = None,
                      attempt: int | str = 1, item_extra: dict[str, dict[str, Any]] | None = None,
                      on_settled: Callable[[str, dict[str, Any]], None] | None = None,
                      stats: list[dict[str, Any]] | None = None,
                      cancelled: threading.Event | None = None) -> dict[str, dict[str, Any]]:
    """Convert ``artifacts`` of the model at ``model_path`` into ``out_dir``.

    Args:
        model_path: the ``.keras`` model to convert.
        artifacts: what to produce, in order.
        out_dir: folder for the artifact files.
        representative: calibration samples (training split) for int8 artifacts.
        timeouts: seconds allowed per artifact, by name.
        metadata: stored in ONNX metadata_props.
        unsafe: load the model without Keras safe mode.
        log_path: where the children's stderr goes (default: discarded).
        attempt: 2 for a retry with fallbacks, ``rank`` for a selective fallback's ranking (tests
            inject faults per attempt: ``NAME@2``).
        item_extra: per artifact name, fields that change its job item: ``filename`` (a path under
            ``out_dir``), ``task`` (``"rank"``: the per-layer quantization error instead of a file).
        on_settled: called with each artifact's name and result as soon as it is settled.
        stats: filled with the worker processes' start-up figures (see :func:`dnnkit.child.items.run_items`).
        cancelled: once set, no further artifact is started (the rest are left out of the results).

    Returns:
        Per artifact name: ``{"status": "done"|"failed", "reason": str|None,
        "info": dict, "seconds": float, "peak_rss_mb": float|None, "prepare_seconds": float|None}``.
    """
    by_name = {a.name: a for a in artifacts}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dnnkit-job-") as tmp:
        rep_path = os.path.join(tmp, "representative.npz")
        np.savez(rep_path, **to_arrays("x", representative))
        job = {"model": str(Path(model_path).resolve()), "representative": rep_path,
               "out_dir": str(Path(out_dir).resolve()), "metadata": metadata or {}, "unsafe": unsafe}
        fp32_onnx: dict[int, dict[str, Any]] = {}  # by opset: an fp32 ONNX file converted by this call
        saved_model: list[str] = []  # a SavedModel artifact converted by this call
        fp32_tflite: dict[int | None, str] = {}  # by static batch: an fp32 TFLite file converted by this call

        def settled(name: str, result: dict[str, Any]) -> None:
            art, extra = by_name[name], (item_extra or {}).get(name, {})
            if art.format == "saved_model" and result["status"] == "done" and not extra and not saved_model:
                saved_model.append(str(Path(out_dir, art.filename).resolve()))
            if (art.format == "onnx" and art.precision == "fp32" and result["status"] == "done"
                    and not extra and result["info"].get("opset") == art.opset):
                fp32_onnx.setdefault(art.opset, {"path": str(Path(out_dir, art.filename).resolve()),
                                                 "transforms": result["info"].get("transforms"),
                                                 "external_data": result["info"].get("external_data")})
            if art.format == "tflite" and art.precision == "fp32" and result["status"] == "done" and not extra:
                fp32_tflite.setdefault(art.static_batch, str(Path(out_dir, art.filename).resolve()))
            if on_settled is not None:
                on_settled(name, result)

        def item_for(name: str) -> dict[str, Any]:
            art, extra = by_name[name], (item_extra or {}).get(name, {})
            item = {**art.to_dict(), "name": name, "filename": art.filename, "attempt": attempt, **extra, "job": job}
            if (art.format == "onnx" and art.precision == "int8" and art.opset in fp32_onnx and not extra
                    and not art.float_layers):  # node names are tf2onnx's per process: exclusions need their own
                item["fp32_onnx"] = fp32_onnx[art.opset]  # quantized from it: tf2onnx does not run again
            if art.format == "tflite" and art.precision == "fp16" and art.static_batch in fp32_tflite:
                item["fp32_tflite"] = fp32_tflite[art.static_batch]  # the exact values of its small constants
            if art.format == "tflite" and saved_model and not extra:
                item["saved_model"] = saved_model[0]  # converted from it where the batch is dynamic
            return item

        names = (n for n in by_name if cancelled is None or not cancelled.is_set())
        return run_job(CONVERTER, names, timeouts, item_for, log_path=log_path,
                       startup_timeout=STARTUP_TIMEOUT_S, action="layer ranking" if attempt == "rank" else "conversion",
                       process="converter process", on_settled=settled, stats=stats, recycle=True)
