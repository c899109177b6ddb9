"""Verification: every artifact run in its runtime and compared with the Keras reference.

Checks go names → shapes → values, and every failure is collected before the verdict
(as Hugging Face Optimum's ``validate_model_outputs`` does). The numeric criteria live in
:mod:`dnnkit.verification.criteria`: float artifacts must match within ``atol + rtol * max|reference|``
element-wise and agree on the top-1 class; quantized ones must agree on the top-1 class and
not lose more than ``max_degradation`` of the task metric (accuracy; RMSE ratio for
regression), each decided from a confidence interval (pass, fail or inconclusive).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from dnnkit.artifacts.files import file_digest, gzip_size
from dnnkit.core.heads import is_class
from dnnkit.core.metrics import predicted_classes, reference_metrics
from dnnkit.core.tensors import rows, take
from dnnkit.errors import one_line
from dnnkit.config.recipe import ArtifactConfig, Recipe
from dnnkit.verification.criteria import VALUE_CHECKS, failure, z_for
from dnnkit.verification.device_fit import device_fit
from dnnkit.verification.reference import Reference
from dnnkit.verification.runtimes import open_artifact
from dnnkit.verification.tflm import tflm_facts
from dnnkit.verification.values import check_values, parity_scale, parity_summary

INPUT_SQNR_NOTE_DB = 20.0  # an int8 input feature below this (noise RMS over a tenth of its spread) is named


# what a verification writes into a manifest entry beside status and failures: an entry verified again
# drops these first, so nothing from the earlier run survives a result that lacks them
VERIFICATION_FIELDS = ("checks", "parity", "metrics", "latency_ms", "ops", "flex_ops", "float_ops", "sparsity",
                       "outputs", "verification", "input_quantization", "metadata", "device_fit", "signature")


def weight_sparsity(weights: dict[str, np.ndarray]) -> dict[str, Any]:
    """Fraction of exact zeros per kernel tensor and over all of them (size-weighted)."""
    per = {name: float(np.mean(w == 0)) for name, w in weights.items()}
    total = sum(w.size for w in weights.values())
    overall = sum(float(np.sum(w == 0)) for w in weights.values()) / total if total else 0.0
    return {"overall": overall, "tensors": per}


def _one_line(exc: BaseException) -> str:
    return one_line(exc) or type(exc).__name__


def _status(failures: list[dict[str, Any]], inconclusive: list[dict[str, Any]]) -> str:
    if failures:
        return "failed"
    return "inconclusive" if inconclusive else "verified"


def verify_artifact(path: str | os.PathLike[str], art: ArtifactConfig, recipe: Recipe,
                    ref: Reference, *, expected_sha256: str | None = None,
                    fake_quant: bool = False, latency: bool = True) -> dict[str, Any]:
    """Load one artifact in its runtime and check it against the Keras reference.

    Checks go names, then shapes, then values; every failure is collected as
    ``{check, observed, limit, message}``.

    Args:
        path: the artifact file (or SavedModel folder).
        art: its recipe entry (format, precision, per-artifact tolerances).
        recipe: the recipe (default tolerances, latency settings).
        ref: the reference outputs on every input (the labelled test split first).
        expected_sha256: the digest recorded at export; a mismatch fails the artifact.
        fake_quant: the reference is a QAT model; its "fp32" exports carry the fake-quant
            (QDQ) nodes and are checked like quantized artifacts.
        latency: also time it (:meth:`Runner.latency_ms`); ``False`` where the timing runs later, on
            a machine no conversion is keeping busy (:func:`measure_latency`).

    Returns:
        Manifest fields: status (verified, failed, inconclusive), failures, inconclusive,
        failure_reason, sha256, bytes, checks, parity, metrics, latency_ms, and for TFLite
        ops / flex_ops / float_ops.
    """
    failures: list[dict[str, Any]] = []
    inconclusive: list[dict[str, Any]] = []
    entry: dict[str, Any] = {"status": "failed", "failures": failures, "inconclusive": inconclusive,
                             "failure_reason": None}

    def finish() -> dict[str, Any]:
        entry["status"] = _status(failures, inconclusive)
        reasons = [f["message"] for f in failures + inconclusive]
        if reasons and any(f["check"] in VALUE_CHECKS for f in failures + inconclusive):
            reasons += [f"int8 input {n}: one scale ({q['scale']:.3g}) leaves its feature {q['worst_feature']} at "
                        f"{q['worst_feature_sqnr_db']:.1f} dB SQNR (normalize the input outside the model, or "
                        f"io = \"float\")" for n, q in (entry.get("input_quantization") or {}).items()
                        if q["worst_feature_sqnr_db"] < INPUT_SQNR_NOTE_DB]
        entry["failure_reason"] = "; ".join(reasons) or None
        return entry

    p = Path(path)
    if not p.exists():
        failures.append(failure("exists", f"artifact missing: {p}", None, None))
        return finish()
    entry["sha256"], entry["bytes"] = file_digest(p)
    if expected_sha256 and entry["sha256"] != expected_sha256:
        failures.append(failure("sha256", "sha256 mismatch: the file changed after export",
                                entry["sha256"], expected_sha256))
    try:
        runner = open_artifact(art.format, p)
    except Exception as exc:  # noqa: BLE001 - any loader error fails the artifact
        failures.append(failure("load", f"cannot load in its runtime: {_one_line(exc)}"))
        return finish()

    # 1. names (artifacts are fed and read by name, so the order may differ)
    if sorted(runner.input_names) != sorted(ref.input_names):
        failures.append(failure("input_names", f"input names {runner.input_names}, expected {ref.input_names}",
                                runner.input_names, ref.input_names))
    if sorted(runner.output_names) != sorted(ref.output_names):
        failures.append(failure("output_names", f"output names {runner.output_names}, "
                                f"expected {ref.output_names}", runner.output_names, ref.output_names))
    if any(f["check"] == "output_names" for f in failures) and ref.multi_output:
        return finish()  # outputs cannot be matched by name
    try:
        raw = runner.run(ref.x)
    except Exception as exc:  # noqa: BLE001
        failures.append(failure("inference", f"inference failed: {_one_line(exc)}"))
        return finish()
    # 2. shapes
    if len(raw) != len(ref.outputs):
        failures.append(failure("output_count", f"{len(raw)} outputs, expected {len(ref.outputs)}",
                                len(raw), len(ref.outputs)))
        return finish()
    order = ([runner.output_names.index(n) for n in ref.output_names]
             if sorted(runner.output_names) == sorted(ref.output_names) else list(range(len(raw))))
    outputs = [raw[i] for i in order]
    entry["batch"] = runner.batch
    for name, out, expected in zip(ref.output_names, outputs, ref.outputs):
        if out.shape != expected.shape:
            where = f"output {name}: " if ref.multi_output else ""
            failures.append(failure("output_shape", f"{where}output shape {list(out.shape)}, expected "
                                    f"{list(expected.shape)}", list(out.shape), list(expected.shape)))
    if failures and any(f["check"] == "output_shape" for f in failures):
        return finish()
    # 3. values, per output
    quantized = art.quantized or fake_quant
    if art.format == "tflite" and art.io == "int8":
        entry["input_quantization"] = runner.input_quantization(ref.x)
    entry["checked_as"] = "quantized" if quantized else "float"
    samples = int(rows(ref.x))
    per_output = {name: check_values(ref, k, out, art, recipe, quantized, failures, inconclusive)
                  for k, (name, out) in enumerate(zip(ref.output_names, outputs))}
    entry["metrics"] = reference_metrics(ref.heads, ref.labels, outputs, ref.output_names, ref.n_test)
    if ref.multi_output:
        entry["outputs"] = {name: {"head": head, "checks": c, "parity": parity_summary(c, samples)}
                            for (name, c), head in zip(per_output.items(), ref.heads)}
        entry["checks"] = {f"{name}/{key}": v for name, c in per_output.items() for key, v in c.items()}
        parts = [o["parity"] for o in entry["outputs"].values()]
        agreements = [p["top1_agreement"] for p in parts if p["top1_agreement"] is not None]
        parity: dict[str, Any] = {"max_abs_diff": max(p["max_abs_diff"] for p in parts),
                                  "max_rel_diff": max(p["max_rel_diff"] for p in parts),
                                  "top1_agreement": min(agreements) if agreements else None, "samples": samples}
        for key in ("rmse_ratio", "sqnr_db"):  # the worst output's figure
            values = [p[key] for p in parts if key in p]
            if values:
                parity[key] = max(values) if key == "rmse_ratio" else min(values)
    else:
        entry["checks"] = per_output[ref.output_names[0]]
        parity = parity_summary(entry["checks"], samples)
    entry["parity"] = parity
    entry["tolerance"] = ({"min_agreement": recipe.min_agreement(art), "max_degradation": recipe.max_degradation(art)}
                          if quantized else {"atol": recipe.atol(art), "rtol": recipe.rtol(art),
                                             "min_agreement": recipe.min_agreement(art)})
    # 4. a second batch size wherever the batch is dynamic
    if runner.batch is None:
        n = min(recipe.verify.second_batch, samples)
        try:
            small_raw = runner.run(take(ref.x, slice(0, n)), chunk=n)
        except Exception as exc:  # noqa: BLE001
            failures.append(failure("second_batch", f"batch {n} failed: {_one_line(exc)}"))
            return finish()
        small_all = [small_raw[i] for i in order]
        diffs = [float(np.max(np.abs(s_ - o[:n]))) for s_, o in zip(small_all, outputs)]
        parity["second_batch"] = {"size": n, "max_abs_diff_vs_full_batch": max(diffs)}
        for k, (small, out, diff) in enumerate(zip(small_all, outputs, diffs)):
            head = ref.heads[k]
            where = f"output {ref.output_names[k]}: " if ref.multi_output else ""
            extra = {"output": ref.output_names[k]} if ref.multi_output else {}
            if quantized:
                same = (np.array_equal(predicted_classes(head, small), predicted_classes(head, out[:n]))
                        if is_class(head) else diff <= 1e-3 * max(1.0, parity_scale(out)))
                if not same:
                    failures.append(failure("second_batch", f"{where}batch {n} disagrees with the full batch",
                                            diff, None, **extra))
            else:
                vs_ref = float(np.max(np.abs(small - ref.outputs[k][:n])))
                allowed = per_output[ref.output_names[k]]["float_parity"]["allowed"]  # whole reference's scale
                if not vs_ref <= allowed:  # NaN fails too
                    failures.append(failure("second_batch", f"{where}batch {n}: max abs diff {vs_ref:.3g} "
                                            f"> allowed {allowed:.3g}", vs_ref, allowed, **extra))
    # 5. runtime facts
    if latency:
        entry["latency_ms"] = runner.latency_ms(ref.x, recipe.verify.latency_runs, recipe.verify.warmup_runs)
    else:
        entry["latency_pending"] = True  # timed later by measure_latency
    if art.format == "tflite":
        ops = runner.ops()
        entry["ops"] = ops
        entry["flex_ops"] = [o for o in ops if o.startswith("Flex")]
        if entry["flex_ops"] and not art.allow_flex:
            failures.append(failure("flex_ops", f"Flex ops present without allow_flex: {entry['flex_ops']}",
                                    entry["flex_ops"], []))
        if art.full_integer:
            entry["float_ops"] = runner.float_ops()
        try:
            entry["device_fit"] = device_fit(p)
        except Exception as exc:  # noqa: BLE001 - a fact about the file, not a check of it
            entry["device_fit"] = {"flash_bytes": os.path.getsize(p), "error": _one_line(exc)}
        if "error" not in entry["device_fit"]:  # the fourth runtime: TensorFlow Lite Micro, a child process of its own
            tflm = entry["device_fit"]["tflm"] = tflm_facts(p, ref, entry["device_fit"], recipe.min_agreement(art),
                                                           z_for(art.candidates), full_integer=art.full_integer,
                                                           timeout=recipe.timeout(art))
            judged = tflm.get("agreement_with_keras") or {}
            if judged.get("verdict") == "fail":
                failures.append(failure("tflm_agreement", f"TFLite Micro's top-1 agreement with Keras "
                                        f"{judged['value']:.4f} (n={judged['n']}, 95% CI {judged['ci'][0]:.4f}.."
                                        f"{judged['ci'][1]:.4f}) vs limit {judged['limit']}", judged["value"],
                                        judged["limit"]))
    try:
        entry["signature"] = runner.signature()
    except Exception as exc:  # noqa: BLE001 - a description of the file, not a check of it
        entry["signature"] = {"error": _one_line(exc)}
    if art.format in ("tflite", "onnx"):
        try:
            entry["metadata"] = runner.metadata()
        except Exception as exc:  # noqa: BLE001 - unreadable metadata (a damaged file): the digest has failed it
            entry["metadata"] = {"error": _one_line(exc)}
        try:
            entry["sparsity"] = weight_sparsity(runner.weights())
        except Exception as exc:  # noqa: BLE001 - a fact about the file, not a check of it
            entry["sparsity"] = {"error": _one_line(exc)}
    entry["gzip_bytes"] = gzip_size(p)
    return finish()


def measure_latency(path: str | os.PathLike[str], art: ArtifactConfig, recipe: Recipe,
                    ref: Reference) -> dict[str, Any]:
    """An artifact's timing alone: ``{"latency_ms": ...}`` as :meth:`Runner.latency_ms` gives it,
    with the batch-N throughput on one core and on all of them (``cores``)."""
    runner = open_artifact(art.format, path)
    result = runner.latency_ms(ref.x, recipe.verify.latency_runs, recipe.verify.warmup_runs)
    result["cores"] = runner.throughput_by_cores(ref.x, result.get("throughput_per_s"))
    return {"latency_ms": result}
