"""Verification: every artifact run in its runtime and compared with the Keras reference.

Checks go names → shapes → values, and every failure is collected before the verdict
(as Hugging Face Optimum's ``validate_model_outputs`` does). The numeric criteria live in
:mod:`dnnkit.criteria`: float artifacts must match within ``atol + rtol * max|reference|``
element-wise and agree on the top-1 class; quantized ones must agree on the top-1 class and
not lose more than ``max_degradation`` of the task metric (accuracy; RMSE ratio for
regression), each decided from a confidence interval (pass, fail or inconclusive).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from dnnkit.child import run_job
from dnnkit.criteria import (FAIL, INCONCLUSIVE, VALUE_CHECKS, agreement_check, degradation_check, failure,
                             float_parity, rmse_ratio_check, sqnr_check, z_for)
from dnnkit.metrics import predicted_classes, task_metrics
from dnnkit.recipe import ArtifactConfig, Recipe
from dnnkit.signature import HEAD_FEATURES, Inputs, rows, take, to_arrays


@dataclass
class Reference:
    """The Keras model's outputs on every input artifacts are run on.

    ``x`` (one array, or a dict per input name) holds the labelled test split first
    (``n_test`` rows), then the other inputs available (train, validation): agreement needs no
    labels, so it uses them all. ``outputs``, ``heads`` and ``labels`` have one entry per model
    output, in ``output_names`` order; ``labels[k]`` is the test split's labels for output
    ``k`` (``None`` where the data has none).
    """

    x: Inputs
    outputs: list[np.ndarray]
    heads: list[str]
    labels: list[np.ndarray | None]
    input_names: list[str]
    output_names: list[str]
    metrics: dict[str, float]
    n_test: int
    fp16_weight_error: float | list[float | None] | None = None

    @property
    def multi_output(self) -> bool:
        return len(self.outputs) > 1

    @property
    def head(self) -> str:
        """The task of a single-output model (``multi`` when there are several outputs)."""
        return self.heads[0] if not self.multi_output else "multi"


def reference_metrics(heads: list[str], labels: list[np.ndarray | None], outputs: list[np.ndarray],
                      names: list[str], n_test: int) -> dict[str, float]:
    """Task metrics of every labelled output; keys ``NAME/metric`` when there are several outputs."""
    out: dict[str, float] = {}
    for name, head, y, o in zip(names, heads, labels, outputs):
        if y is None or head == HEAD_FEATURES:
            continue
        m = task_metrics(head, y, o[:n_test])
        out.update(m if len(outputs) == 1 else {f"{name}/{k}": v for k, v in m.items()})
    return out


def external_data(path: str | os.PathLike[str]) -> Path | None:
    """The external-data file beside an ONNX model (``NAME.onnx.data``), if there is one."""
    p = Path(path)
    side = p.with_name(p.name + ".data")
    return side if p.suffix == ".onnx" and side.is_file() else None


def file_digest(path: str | os.PathLike[str]) -> tuple[str, int]:
    """sha256 and size in bytes of a file (with its ONNX external data), or of a folder's files
    (names and contents)."""
    p = Path(path)
    h = hashlib.sha256()
    side = external_data(p)
    if side is not None:
        main_digest, main_bytes = file_digest_plain(p)
        data_digest, data_bytes = file_digest_plain(side)
        h.update(main_digest.encode())
        h.update(data_digest.encode())
        return h.hexdigest(), main_bytes + data_bytes
    if p.is_dir():
        total = 0
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(str(f.relative_to(p)).encode())
            data = f.read_bytes()
            h.update(data)
            total += len(data)
        return h.hexdigest(), total
    return file_digest_plain(p)


def file_digest_plain(path: Path) -> tuple[str, int]:
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), len(data)


def gzip_size(path: str | os.PathLike[str]) -> int:
    """Bytes after gzip (level 9) of a file, or of a folder's files concatenated."""
    import gzip

    p = Path(path)
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p, *filter(None, [external_data(p)])]
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


def calibration(ref: Reference, art: ArtifactConfig, recipe: Recipe, k: int = 0) -> float:
    """The model-calibrated allowance of a float artifact's output ``k``: fp16_factor x the
    fp16-weight error (fp16 only; one figure per output when there are several)."""
    error = ref.fp16_weight_error
    if isinstance(error, list):
        error = error[k]
    if art.precision != "fp16" or art.quantized or error is None:
        return 0.0
    return recipe.verify.fp16_factor * error


def _values(ref: Reference, k: int, out: np.ndarray, art: ArtifactConfig, recipe: Recipe, quantized: bool,
            failures: list[dict[str, Any]], inconclusive: list[dict[str, Any]]) -> dict[str, Any]:
    """The value checks of output ``k``; returns its ``checks`` section."""
    checks: dict[str, Any] = {}
    head, expected, y = ref.heads[k], ref.outputs[k], ref.labels[k]
    where = f"output {ref.output_names[k]}: " if ref.multi_output else ""
    extra = {"output": ref.output_names[k]} if ref.multi_output else {}
    classifier = head in ("multiclass", "binary")
    atol, rtol = recipe.atol(art), recipe.rtol(art)
    calibrated = calibration(ref, art, recipe, k)
    parity = float_parity(expected, out, atol, rtol, calibrated)
    checks["float_parity"] = {**parity, "atol": atol, "rtol": rtol, "calibrated": calibrated, "n": int(len(out)),
                              "verdict": ("pass" if parity["ok"] else "fail") if not quantized else "not_applied"}
    if not quantized and not parity["ok"]:
        more = f", fp16-weight allowance {calibrated:.3g}" if calibrated else ""
        failures.append(failure("float_parity", f"{where}max abs diff {parity['max_abs_diff']:.3g} > atol {atol:g} + "
                                f"rtol {rtol:g} x output scale {parity['scale']:.3g}{more} = {parity['allowed']:.3g}",
                                parity["max_abs_diff"], parity["allowed"], **extra))

    def judge(name: str, result: dict[str, Any], what: str) -> None:
        if art.candidates > 1:
            result["confidence"] = round(1.0 - 0.05 / art.candidates, 5)  # one-sided, per verdict
        checks[name] = result
        lo, hi = result["ci"]
        text = (f"{where}{what} {result['value']:.4f} (n={result['n']}, 95% CI {lo:.4f}..{hi:.4f}) vs limit "
                f"{result['limit']:g}")
        if result["verdict"] == FAIL:
            failures.append(failure(name, text, result["value"], result["limit"], n=result["n"], ci=result["ci"],
                                    **extra))
        elif result["verdict"] == INCONCLUSIVE:
            inconclusive.append(failure(name, f"inconclusive (n too small): {text}", result["value"],
                                        result["limit"], n=result["n"], ci=result["ci"], **extra))

    n = ref.n_test
    z = z_for(art.candidates)  # stricter when the artifact is the pick of several candidates
    if classifier:
        ref_cls = predicted_classes(head, expected)
        art_cls = predicted_classes(head, out)
        judge("top1_agreement", agreement_check(ref_cls, art_cls, recipe.min_agreement(art), z), "top-1 agreement")
        if quantized and y is not None:
            y = np.asarray(y).reshape(-1)
            drop = degradation_check(checks["top1_agreement"], ref_cls[:n] == y, art_cls[:n] == y,
                                     recipe.max_degradation(art), z)
            judge("accuracy_drop", drop, "accuracy drop")
    elif quantized and head == "regression" and y is not None:
        judge("rmse_ratio", rmse_ratio_check(y, expected[:n], out[:n], recipe.max_degradation(art), z=z),
              "RMSE ratio")
    elif quantized:
        judge("sqnr_db", sqnr_check(expected, out, recipe.verify.min_sqnr_db), "SQNR (dB)")
    return checks


def parity_scale(out: np.ndarray) -> float:
    """max |out| (0 for an empty array)."""
    return float(np.max(np.abs(out))) if out.size else 0.0


def _parity(checks: dict[str, Any], samples: int) -> dict[str, Any]:
    parity: dict[str, Any] = {"max_abs_diff": checks["float_parity"]["max_abs_diff"],
                              "max_rel_diff": checks["float_parity"]["max_rel_diff"],
                              "top1_agreement": checks.get("top1_agreement", {}).get("value"),
                              "samples": samples}
    for key in ("rmse_ratio", "sqnr_db"):
        if key in checks:
            parity[key] = checks[key]["value"]
    return parity


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
    from dnnkit.runtimes import open_artifact

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
    per_output = {name: _values(ref, k, out, art, recipe, quantized, failures, inconclusive)
                  for k, (name, out) in enumerate(zip(ref.output_names, outputs))}
    entry["metrics"] = reference_metrics(ref.heads, ref.labels, outputs, ref.output_names, ref.n_test)
    if ref.multi_output:
        entry["outputs"] = {name: {"head": head, "checks": c, "parity": _parity(c, samples)}
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
        parity = _parity(entry["checks"], samples)
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
                        if head in ("multiclass", "binary") else diff <= 1e-3 * max(1.0, parity_scale(out)))
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
        from dnnkit.device_fit import device_fit

        try:
            entry["device_fit"] = device_fit(p)
        except Exception as exc:  # noqa: BLE001 - a fact about the file, not a check of it
            entry["device_fit"] = {"flash_bytes": os.path.getsize(p), "error": _one_line(exc)}
    if art.format in ("tflite", "onnx"):
        entry["metadata"] = runner.metadata()
        entry["sparsity"] = weight_sparsity(runner.weights())
    entry["gzip_bytes"] = gzip_size(p)
    return finish()


def measure_latency(path: str | os.PathLike[str], art: ArtifactConfig, recipe: Recipe,
                    ref: Reference) -> dict[str, Any]:
    """An artifact's timing alone: ``{"latency_ms": ...}`` as :meth:`Runner.latency_ms` gives it,
    with the batch-N throughput on one core and on all of them (``cores``)."""
    from dnnkit.runtimes import open_artifact

    runner = open_artifact(art.format, path)
    result = runner.latency_ms(ref.x, recipe.verify.latency_runs, recipe.verify.warmup_runs)
    result["cores"] = runner.throughput_by_cores(ref.x, result.get("throughput_per_s"))
    return {"latency_ms": result}


VERIFY_STARTUP_TIMEOUT_S = 120.0
WORKER = "dnnkit.verify_worker"
INPUT_SQNR_NOTE_DB = 20.0  # an int8 input feature below this (noise RMS over a tenth of its spread) is named

# what a verification writes into a manifest entry beside status and failures: an entry verified again
# drops these first, so nothing from the earlier run survives a result that lacks them
VERIFICATION_FIELDS = ("checks", "parity", "metrics", "latency_ms", "ops", "flex_ops", "float_ops", "sparsity",
                       "outputs", "verification", "input_quantization", "metadata", "device_fit")


def save_reference(path: str | os.PathLike[str], ref: Reference) -> None:
    """The reference's arrays as one ``.npz`` (inputs, then per output its values and labels)."""
    arrays = to_arrays("x", ref.x)
    for k, (out, y) in enumerate(zip(ref.outputs, ref.labels)):
        arrays[f"out/{k}"] = out
        if y is not None:
            arrays[f"y/{k}"] = y
    np.savez(path, **arrays)


def load_reference(path: str | os.PathLike[str], meta: dict[str, Any]) -> Reference:
    """The inverse of :func:`save_reference`, with the fields in ``meta``."""
    from dnnkit.signature import from_arrays

    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    count = len(meta["output_names"])
    return Reference(x=from_arrays("x", arrays), outputs=[arrays[f"out/{k}"] for k in range(count)],
                     heads=meta["heads"], labels=[arrays.get(f"y/{k}") for k in range(count)],
                     input_names=meta["input_names"], output_names=meta["output_names"], metrics=meta["metrics"],
                     n_test=meta["n_test"], fp16_weight_error=meta.get("fp16_weight_error"))


def verify_artifacts(items: list[dict[str, Any]] | dict[str, dict[str, Any]], ref: Reference, recipe: Recipe, *,
                     log_path: str | os.PathLike[str] | None = None, names: Iterable[str] | None = None,
                     latency: bool = True, stats: list[dict[str, Any]] | None = None,
                     job: dict[str, Any] | None = None, module: str | None = None) -> dict[str, dict[str, Any]]:
    """Verify artifacts in a child process with a time limit each (:mod:`dnnkit.verify_worker`).

    A runtime that crashes or hangs on a damaged or crafted file fails that artifact only.

    Args:
        items: per artifact ``{"name", "path", "options" (ArtifactConfig fields),
            "expected_sha256" (optional), "fake_quant"}``: a list, or a dict by name that another
            thread fills while ``names`` yields them.
        ref: the reference.
        recipe: tolerances (``[verify]``) and time limits.
        log_path: where the workers' stderr goes.
        names: the order to verify in, possibly a generator that blocks until the next artifact is
            converted (default: the items' order).
        latency: time each artifact too; ``False`` leaves ``latency_ms`` to :func:`measure_latencies`.
        stats: filled with the worker processes' start-up figures (see :func:`dnnkit.child.run_items`).
        job: an open :func:`reference_job` for ``ref`` and ``recipe`` to use (default: one written now).
        module: the worker module (default :data:`WORKER`; the converter's, ``dnnkit.formats.worker``,
            checks too: an export's SavedModel is checked by its converter process, whose TensorFlow
            is loaded already, unless the verifier takes it first: ``pipeline.verifier_takes_saved_models``).

    Returns:
        The manifest fields of :func:`verify_artifact`, by name.
    """
    by_name = items if isinstance(items, dict) else {i["name"]: i for i in items}
    order = names if names is not None else list(by_name)
    if not by_name and names is None:
        return {}
    with reference_job(ref, recipe, job) as job:
        results = run_job(module or WORKER, order, _Timeouts(by_name, recipe),
                          lambda n: {**by_name[n], "path": str(by_name[n]["path"]), "latency": latency, "job": job,
                                     "task": "verify"},
                          log_path=log_path, startup_timeout=VERIFY_STARTUP_TIMEOUT_S, action="verification",
                          process="verification process", stats=stats)
    out: dict[str, dict[str, Any]] = {}
    for name, result in results.items():
        if result["status"] == "done":
            out[name] = {**result["info"], "verification": {"seconds": result.get("seconds"),
                                                            "peak_rss_mb": result.get("peak_rss_mb")}}
            continue
        reason = result["reason"] or "verification failed"
        entry: dict[str, Any] = {"status": "failed", "failures": [failure("runtime", reason)], "inconclusive": [],
                                 "failure_reason": reason}
        path = Path(by_name[name]["path"])
        if path.exists():
            entry["sha256"], entry["bytes"] = file_digest(path)
        out[name] = entry
    return out


def measure_latencies(items: list[dict[str, Any]], ref: Reference, recipe: Recipe, *,
                      log_path: str | os.PathLike[str] | None = None,
                      job: dict[str, Any] | None = None, module: str | None = None) -> dict[str, dict[str, Any]]:
    """Time verified artifacts one after another, nothing else running (:func:`measure_latency`);
    ``job`` and ``module`` as for :func:`verify_artifacts`.

    Returns:
        Per name: ``{"status": "done", "latency_ms": ..., "seconds": ...}`` or ``{"status": "failed",
        "reason": ...}`` (a runtime that crashed or hung while being timed).
    """
    if not items:
        return {}
    by_name = {i["name"]: i for i in items}
    with reference_job(ref, recipe, job) as job:
        results = run_job(module or WORKER, list(by_name), _Timeouts(by_name, recipe),
                          lambda n: {**by_name[n], "path": str(by_name[n]["path"]), "task": "latency",
                                     "attempt": "latency", "job": job},
                          log_path=log_path, startup_timeout=VERIFY_STARTUP_TIMEOUT_S, action="latency",
                          process="verification process")
    return {name: {"status": r["status"], "reason": r["reason"], "seconds": r["seconds"], **r["info"]}
            for name, r in results.items()}


class _Timeouts(dict):
    """Time limits by artifact name, looked up when the item is sent (items may arrive later)."""

    def __init__(self, by_name: dict[str, dict[str, Any]], recipe: Recipe) -> None:
        super().__init__()
        self.by_name, self.recipe = by_name, recipe

    def __missing__(self, name: str) -> float:
        return self.recipe.timeout(ArtifactConfig(**self.by_name[name]["options"]))


@contextlib.contextmanager
def reference_job(ref: Reference, recipe: Recipe, job: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """The reference written once for verification jobs, and the job fields their items carry (the
    verifier reads the file once for all of them); ``job``, when given, is that of an open one."""
    if job is not None:
        yield job
        return
    import tempfile
    from dataclasses import asdict

    meta = {"heads": ref.heads, "input_names": ref.input_names, "output_names": ref.output_names,
            "metrics": ref.metrics, "n_test": ref.n_test, "fp16_weight_error": ref.fp16_weight_error}
    with tempfile.TemporaryDirectory(prefix="dnnkit-verify-") as tmp:
        ref_path = os.path.join(tmp, "reference.npz")
        save_reference(ref_path, ref)
        yield {"reference": ref_path, "reference_meta": meta, "verify": asdict(recipe.verify)}
