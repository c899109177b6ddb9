"""Verification: every artifact run in its runtime and compared with the Keras reference.

Checks go names → shapes → values, and every failure is collected before the verdict
(as Hugging Face Optimum's ``validate_model_outputs`` does). The numeric criteria live in
:mod:`dnnkit.criteria`: float artifacts must match within ``atol + rtol * max|reference|``
element-wise and agree on the top-1 class; quantized ones must agree on the top-1 class and
not lose more than ``max_degradation`` of the task metric (accuracy; RMSE ratio for
regression), each decided from a confidence interval (pass, fail or inconclusive).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dnnkit.criteria import (FAIL, INCONCLUSIVE, agreement_check, degradation_check, failure, float_parity,
                             rmse_ratio_check)
from dnnkit.metrics import predicted_classes, task_metrics
from dnnkit.recipe import ArtifactConfig, Recipe


@dataclass
class Reference:
    """The Keras model's outputs on every input artifacts are run on.

    ``x`` holds the labelled test split first (``n_test`` rows, labels ``y``), then the other
    inputs available (train, validation): agreement needs no labels, so it uses them all.
    """

    x: np.ndarray
    y: np.ndarray
    outputs: np.ndarray
    head: str
    input_name: str
    output_name: str
    metrics: dict[str, float]
    n_test: int = -1
    fp16_weight_error: float | None = None

    def __post_init__(self) -> None:
        if self.n_test < 0:
            self.n_test = len(self.y)


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


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _status(failures: list[dict[str, Any]], inconclusive: list[dict[str, Any]]) -> str:
    if failures:
        return "failed"
    return "inconclusive" if inconclusive else "verified"


def calibration(ref: Reference, art: ArtifactConfig, recipe: Recipe) -> float:
    """The model-calibrated allowance of a float artifact: fp16_factor x the fp16-weight error (fp16 only)."""
    if art.precision != "fp16" or art.quantized or ref.fp16_weight_error is None:
        return 0.0
    return recipe.verify.fp16_factor * ref.fp16_weight_error


def _values(ref: Reference, out: np.ndarray, art: ArtifactConfig, recipe: Recipe, quantized: bool,
            failures: list[dict[str, Any]], inconclusive: list[dict[str, Any]]) -> dict[str, Any]:
    """The value checks; returns the manifest's ``checks`` section."""
    checks: dict[str, Any] = {}
    classifier = ref.head != "regression"
    atol, rtol = recipe.atol(art), recipe.rtol(art)
    calibrated = calibration(ref, art, recipe)
    parity = float_parity(ref.outputs, out, atol, rtol, calibrated)
    checks["float_parity"] = {**parity, "atol": atol, "rtol": rtol, "calibrated": calibrated, "n": int(len(out)),
                              "verdict": ("pass" if parity["ok"] else "fail") if not quantized else "not_applied"}
    if not quantized and not parity["ok"]:
        extra = f", fp16-weight allowance {calibrated:.3g}" if calibrated else ""
        failures.append(failure("float_parity", f"max abs diff {parity['max_abs_diff']:.3g} > atol {atol:g} + "
                                f"rtol {rtol:g} x output scale {parity['scale']:.3g}{extra} = {parity['allowed']:.3g}",
                                parity["max_abs_diff"], parity["allowed"]))

    def judge(name: str, result: dict[str, Any], what: str) -> None:
        checks[name] = result
        lo, hi = result["ci"]
        text = (f"{what} {result['value']:.4f} (n={result['n']}, 95% CI {lo:.4f}..{hi:.4f}) vs limit "
                f"{result['limit']:g}")
        if result["verdict"] == FAIL:
            failures.append(failure(name, text, result["value"], result["limit"], n=result["n"], ci=result["ci"]))
        elif result["verdict"] == INCONCLUSIVE:
            inconclusive.append(failure(name, f"inconclusive (n too small): {text}", result["value"],
                                        result["limit"], n=result["n"], ci=result["ci"]))

    if classifier:
        ref_cls = predicted_classes(ref.head, ref.outputs)
        art_cls = predicted_classes(ref.head, out)
        judge("top1_agreement", agreement_check(ref_cls, art_cls, recipe.min_agreement(art)), "top-1 agreement")
        if quantized:
            n = ref.n_test
            y = np.asarray(ref.y).reshape(-1)
            drop = degradation_check(checks["top1_agreement"], ref_cls[:n] == y, art_cls[:n] == y,
                                     recipe.max_degradation(art))
            judge("accuracy_drop", drop, "accuracy drop")
    elif quantized:
        n = ref.n_test
        judge("rmse_ratio", rmse_ratio_check(ref.y, ref.outputs[:n], out[:n], recipe.max_degradation(art)),
              "RMSE ratio")
    return checks


def verify_artifact(path: str | os.PathLike[str], art: ArtifactConfig, recipe: Recipe,
                    ref: Reference, *, expected_sha256: str | None = None,
                    fake_quant: bool = False) -> dict[str, Any]:
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

    Returns:
        Manifest fields: status (verified, failed, inconclusive), failures, inconclusive,
        failure_reason, sha256, bytes, checks, parity, metrics, latency_ms, and for TFLite
        ops / flex_ops / float_ops.
    """
    from dnnkit.runtimes import open_artifact

    failures: list[dict[str, Any]] = []
    inconclusive: list[dict[str, Any]] = []
    entry: dict[str, Any] = {"status": "failed", "failures": failures, "inconclusive": inconclusive,
                             "failure_reason": None}

    def finish() -> dict[str, Any]:
        entry["status"] = _status(failures, inconclusive)
        reasons = [f["message"] for f in failures + inconclusive]
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

    # 1. names
    if runner.input_names != [ref.input_name]:
        failures.append(failure("input_names", f"input names {runner.input_names}, expected [{ref.input_name!r}]",
                                runner.input_names, [ref.input_name]))
    if runner.output_names != [ref.output_name]:
        failures.append(failure("output_names", f"output names {runner.output_names}, "
                                f"expected [{ref.output_name!r}]", runner.output_names, [ref.output_name]))
    try:
        outputs = runner.run(ref.x)
    except Exception as exc:  # noqa: BLE001
        failures.append(failure("inference", f"inference failed: {_one_line(exc)}"))
        return finish()
    # 2. shapes
    if len(outputs) != 1:
        failures.append(failure("output_count", f"{len(outputs)} outputs, expected 1", len(outputs), 1))
    out = outputs[0]
    entry["batch"] = runner.batch
    if out.shape != ref.outputs.shape:
        failures.append(failure("output_shape", f"output shape {list(out.shape)}, expected "
                                f"{list(ref.outputs.shape)}", list(out.shape), list(ref.outputs.shape)))
        return finish()
    # 3. values
    quantized = art.quantized or fake_quant
    entry["checked_as"] = "quantized" if quantized else "float"
    checks = _values(ref, out, art, recipe, quantized, failures, inconclusive)
    entry["checks"] = checks
    entry["metrics"] = task_metrics(ref.head, ref.y, out[:ref.n_test])
    parity: dict[str, Any] = {"max_abs_diff": checks["float_parity"]["max_abs_diff"],
                              "max_rel_diff": checks["float_parity"]["max_rel_diff"],
                              "top1_agreement": checks.get("top1_agreement", {}).get("value"),
                              "samples": int(len(out))}
    if "rmse_ratio" in checks:
        parity["rmse_ratio"] = checks["rmse_ratio"]["value"]
    entry["parity"] = parity
    entry["tolerance"] = ({"min_agreement": recipe.min_agreement(art), "max_degradation": recipe.max_degradation(art)}
                          if quantized else {"atol": recipe.atol(art), "rtol": recipe.rtol(art),
                                             "min_agreement": recipe.min_agreement(art)})
    # 4. a second batch size wherever the batch is dynamic
    if runner.batch is None:
        n = min(recipe.verify.second_batch, len(ref.x))
        try:
            small = runner.run(ref.x[:n], chunk=n)[0]
        except Exception as exc:  # noqa: BLE001
            failures.append(failure("second_batch", f"batch {n} failed: {_one_line(exc)}"))
            return finish()
        diff = float(np.max(np.abs(small - out[:n])))
        parity["second_batch"] = {"size": n, "max_abs_diff_vs_full_batch": diff}
        if quantized:
            same = np.array_equal(predicted_classes(ref.head, small), predicted_classes(ref.head, out[:n])) \
                if ref.head != "regression" else diff <= 1e-3
            if not same:
                failures.append(failure("second_batch", f"batch {n} disagrees with the full batch", diff, None))
        else:
            vs_ref = float(np.max(np.abs(small - ref.outputs[:n])))
            allowed = checks["float_parity"]["allowed"]  # from the whole reference's scale, not n rows
            if not vs_ref <= allowed:  # NaN fails too
                failures.append(failure("second_batch", f"batch {n}: max abs diff {vs_ref:.3g} "
                                        f"> allowed {allowed:.3g}", vs_ref, allowed))
    # 5. runtime facts
    entry["latency_ms"] = runner.latency_ms(ref.x, recipe.verify.latency_runs, recipe.verify.warmup_runs)
    if art.format == "tflite":
        ops = runner.ops()
        entry["ops"] = ops
        entry["flex_ops"] = [o for o in ops if o.startswith("Flex")]
        if entry["flex_ops"] and not art.allow_flex:
            failures.append(failure("flex_ops", f"Flex ops present without allow_flex: {entry['flex_ops']}",
                                    entry["flex_ops"], []))
        if art.precision == "int8":
            entry["float_ops"] = runner.float_ops()
    if art.format == "onnx":
        entry["onnx_metadata"] = runner.metadata()
    if art.format in ("tflite", "onnx"):
        entry["sparsity"] = weight_sparsity(runner.weights())
    entry["gzip_bytes"] = gzip_size(p)
    return finish()


VERIFY_STARTUP_TIMEOUT_S = 120.0


def verify_artifacts(items: list[dict[str, Any]], ref: Reference, recipe: Recipe, *,
                     log_path: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Any]]:
    """Verify artifacts in a child process with a time limit each (:mod:`dnnkit.verify_worker`).

    A runtime that crashes or hangs on a damaged or crafted file fails that artifact only.

    Args:
        items: per artifact ``{"name", "path", "options" (ArtifactConfig fields),
            "expected_sha256" (optional), "fake_quant"}``.
        ref: the reference.
        recipe: tolerances (``[verify]``) and time limits.
        log_path: where the workers' stderr goes.

    Returns:
        The manifest fields of :func:`verify_artifact`, by name.
    """
    import tempfile
    from dataclasses import asdict

    from dnnkit.child import run_job

    if not items:
        return {}
    by_name = {i["name"]: i for i in items}
    timeouts = {name: recipe.timeout(ArtifactConfig(**i["options"])) for name, i in by_name.items()}
    meta = {"head": ref.head, "input_name": ref.input_name, "output_name": ref.output_name,
            "metrics": ref.metrics, "n_test": ref.n_test, "fp16_weight_error": ref.fp16_weight_error}
    with tempfile.TemporaryDirectory(prefix="dnnkit-verify-") as tmp:
        ref_path = os.path.join(tmp, "reference.npz")
        np.savez(ref_path, x=ref.x, y=ref.y, outputs=ref.outputs)
        results = run_job(
            "dnnkit.verify_worker", list(by_name), timeouts,
            lambda pending: {"reference": ref_path, "reference_meta": meta, "verify": asdict(recipe.verify),
                             "items": [{**by_name[n], "path": str(by_name[n]["path"])} for n in pending]},
            workdir=tmp, log_path=log_path, startup_timeout=VERIFY_STARTUP_TIMEOUT_S, action="verification",
            process="verification process")
    out: dict[str, dict[str, Any]] = {}
    for name, result in results.items():
        if result["status"] == "done":
            out[name] = result["info"]
            continue
        reason = result["reason"] or "verification failed"
        entry: dict[str, Any] = {"status": "failed", "failures": [failure("runtime", reason)], "inconclusive": [],
                                 "failure_reason": reason}
        path = Path(by_name[name]["path"])
        if path.exists():
            entry["sha256"], entry["bytes"] = file_digest(path)
        out[name] = entry
    return out
