"""Verification: every artifact run in its runtime and compared with the Keras reference.

Checks go names → shapes → values, and every failure is collected before the verdict
(as Hugging Face Optimum's ``validate_model_outputs`` does). Float artifacts must match
within ``atol``; quantized ones must agree on the top-1 class and not lose more than
``max_degradation`` of the task metric (accuracy; RMSE ratio for regression).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dnnkit.metrics import predicted_classes, task_metrics
from dnnkit.recipe import ArtifactConfig, Recipe


@dataclass
class Reference:
    """The Keras model's outputs on the test split, and what they are checked against."""

    x: np.ndarray
    y: np.ndarray
    outputs: np.ndarray
    head: str
    input_name: str
    output_name: str
    metrics: dict[str, float]


def file_digest(path: str | os.PathLike[str]) -> tuple[str, int]:
    """sha256 and size in bytes of a file, or of a folder's files (names and contents)."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        total = 0
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(str(f.relative_to(p)).encode())
            data = f.read_bytes()
            h.update(data)
            total += len(data)
        return h.hexdigest(), total
    data = p.read_bytes()
    h.update(data)
    return h.hexdigest(), len(data)


def gzip_size(path: str | os.PathLike[str]) -> int:
    """Bytes after gzip (level 9) of a file, or of a folder's files concatenated."""
    import gzip

    p = Path(path)
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    return len(gzip.compress(b"".join(f.read_bytes() for f in files), compresslevel=9))


def weight_sparsity(weights: dict[str, np.ndarray]) -> dict[str, Any]:
    """Fraction of exact zeros per kernel tensor and over all of them (size-weighted)."""
    per = {name: float(np.mean(w == 0)) for name, w in weights.items()}
    total = sum(w.size for w in weights.values())
    overall = sum(float(np.sum(w == 0)) for w in weights.values()) / total if total else 0.0
    return {"overall": overall, "tensors": per}


def _quality(ref: Reference, outputs: np.ndarray) -> tuple[dict[str, float], dict[str, Any]]:
    metrics = task_metrics(ref.head, ref.y, outputs)
    parity: dict[str, Any] = {"max_abs_diff": float(np.max(np.abs(outputs - ref.outputs)))}
    if ref.head == "regression":
        parity["top1_agreement"] = None
    else:
        parity["top1_agreement"] = float(np.mean(predicted_classes(ref.head, outputs)
                                                 == predicted_classes(ref.head, ref.outputs)))
    return metrics, parity


def verify_artifact(path: str | os.PathLike[str], art: ArtifactConfig, recipe: Recipe,
                    ref: Reference, *, expected_sha256: str | None = None,
                    fake_quant: bool = False) -> dict[str, Any]:
    """Load one artifact in its runtime and check it against the Keras reference.

    Args:
        path: the artifact file (or SavedModel folder).
        art: its recipe entry (format, precision, per-artifact tolerances).
        recipe: the recipe (default tolerances, latency settings).
        ref: the reference outputs on the test split.
        expected_sha256: the digest recorded at export; a mismatch fails the artifact.
        fake_quant: the reference is a QAT model; its "fp32" exports carry the fake-quant
            (QDQ) nodes and are checked like quantized artifacts.

    Returns:
        Manifest fields: status, failures, failure_reason, sha256, bytes, parity, metrics,
        latency_ms, and for TFLite ops / flex_ops / float_ops.
    """
    from dnnkit.runtimes import open_artifact

    failures: list[str] = []
    entry: dict[str, Any] = {"status": "failed", "failures": failures, "failure_reason": None}
    p = Path(path)
    if not p.exists():
        failures.append(f"artifact missing: {p}")
        entry["failure_reason"] = failures[0]
        return entry
    entry["sha256"], entry["bytes"] = file_digest(p)
    if expected_sha256 and entry["sha256"] != expected_sha256:
        failures.append("sha256 mismatch: the file changed after export")
    try:
        runner = open_artifact(art.format, p)
    except Exception as exc:  # noqa: BLE001 - any loader error fails the artifact
        failures.append(f"cannot load in its runtime: {' '.join(str(exc).split())[:300]}")
        entry["failure_reason"] = "; ".join(failures)
        return entry

    # 1. names
    if runner.input_names != [ref.input_name]:
        failures.append(f"input names {runner.input_names}, expected [{ref.input_name!r}]")
    if runner.output_names != [ref.output_name]:
        failures.append(f"output names {runner.output_names}, expected [{ref.output_name!r}]")
    try:
        outputs = runner.run(ref.x)
    except Exception as exc:  # noqa: BLE001
        failures.append(f"inference failed: {' '.join(str(exc).split())[:300]}")
        entry["failure_reason"] = "; ".join(failures)
        return entry
    # 2. shapes
    if len(outputs) != 1:
        failures.append(f"{len(outputs)} outputs, expected 1")
    out = outputs[0]
    entry["batch"] = runner.batch
    if out.shape != ref.outputs.shape:
        failures.append(f"output shape {list(out.shape)}, expected {list(ref.outputs.shape)}")
        entry["failure_reason"] = "; ".join(failures)
        return entry
    # 3. values
    metrics, parity = _quality(ref, out)
    entry["metrics"], entry["parity"] = metrics, parity
    quantized = art.quantized or fake_quant
    entry["checked_as"] = "quantized" if quantized else "float"
    if quantized:
        floor = recipe.min_agreement(art)
        drop = recipe.max_degradation(art)
        if ref.head != "regression":
            if parity["top1_agreement"] < floor:
                failures.append(f"top-1 agreement {parity['top1_agreement']:.4f} < {floor:g}")
            lost = ref.metrics["accuracy"] - metrics["accuracy"]
            if lost > drop + 1e-12:
                failures.append(f"accuracy dropped {lost:.4f} > max_degradation {drop:g}")
        else:
            ratio = metrics["rmse"] / max(ref.metrics["rmse"], 1e-12)
            parity["rmse_ratio"] = ratio
            if ratio > 1.0 + drop:
                failures.append(f"RMSE ratio {ratio:.4f} > 1 + max_degradation {drop:g}")
        entry["tolerance"] = {"min_agreement": floor, "max_degradation": drop}
    else:
        atol = recipe.atol(art)
        entry["tolerance"] = {"atol": atol}
        if parity["max_abs_diff"] > atol:
            failures.append(f"max abs diff {parity['max_abs_diff']:.3g} > atol {atol:g}")
    # 4. a second batch size wherever the batch is dynamic
    if runner.batch is None:
        n = min(recipe.verify.second_batch, len(ref.x))
        small = runner.run(ref.x[:n], chunk=n)[0]
        diff = float(np.max(np.abs(small - out[:n])))
        parity["second_batch"] = {"size": n, "max_abs_diff_vs_full_batch": diff}
        if quantized:
            same = np.array_equal(predicted_classes(ref.head, small), predicted_classes(ref.head, out[:n])) \
                if ref.head != "regression" else diff <= 1e-3
            if not same:
                failures.append(f"batch {n} disagrees with the full batch")
        else:
            vs_ref = float(np.max(np.abs(small - ref.outputs[:n])))
            if vs_ref > recipe.atol(art):
                failures.append(f"batch {n}: max abs diff {vs_ref:.3g} > atol {recipe.atol(art):g}")
    # 5. runtime facts
    entry["latency_ms"] = runner.latency_ms(ref.x, recipe.verify.latency_runs, recipe.verify.warmup_runs)
    if art.format == "tflite":
        ops = runner.ops()
        entry["ops"] = ops
        entry["flex_ops"] = [o for o in ops if o.startswith("Flex")]
        if entry["flex_ops"] and not art.allow_flex:
            failures.append(f"Flex ops present without allow_flex: {entry['flex_ops']}")
        if art.precision == "int8":
            entry["float_ops"] = runner.float_ops()
    if art.format == "onnx":
        entry["onnx_metadata"] = runner.metadata()
    if art.format in ("tflite", "onnx"):
        entry["sparsity"] = weight_sparsity(runner.weights())
    entry["gzip_bytes"] = gzip_size(p)
    entry["status"] = "failed" if failures else "verified"
    entry["failure_reason"] = "; ".join(failures) or None
    return entry
