"""Artifact checks seen from the parent: each artifact verified (or timed) in a worker process with a
time limit, the verifier (``python -m dnnkit.workers.verifier``) unless the caller names another; one
reference file written for every item of a job."""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Iterator

from dnnkit.artifacts.files import file_digest
from dnnkit.child.items import run_job
from dnnkit.config.recipe import ArtifactConfig, Recipe
from dnnkit.verification.criteria import failure
from dnnkit.verification.reference import Reference, save_reference

VERIFIER = "dnnkit.workers.verifier"


def check_item(name: str, path: str | os.PathLike[str], options: dict[str, Any], *, fake_quant: bool = False,
               expected_sha256: str | None = None) -> dict[str, Any]:
    """What :func:`verify_artifacts` and :func:`measure_latencies` take per artifact: its name, where the file
    is, its recipe options (``ArtifactConfig`` fields), whether the reference is a QAT model, and the sha256
    the file must still have (``None``: not checked)."""
    return {"name": name, "path": str(path), "options": options, "expected_sha256": expected_sha256,
            "fake_quant": bool(fake_quant)}


VERIFY_STARTUP_TIMEOUT_S = 120.0


def verify_artifacts(items: list[dict[str, Any]] | dict[str, dict[str, Any]], ref: Reference, recipe: Recipe, *,
                     log_path: str | os.PathLike[str] | None = None, names: Iterable[str] | None = None,
                     latency: bool = True, stats: list[dict[str, Any]] | None = None,
                     job: dict[str, Any] | None = None, module: str | None = None) -> dict[str, dict[str, Any]]:
    """Verify artifacts in a child process with a time limit each (:mod:`dnnkit.workers.verifier`).

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
        stats: filled with the worker processes' start-up figures (see :func:`dnnkit.child.items.run_items`).
        job: an open :func:`reference_job` for ``ref`` and ``recipe`` to use (default: one written now).
        module: the worker module (default :data:`VERIFIER`; the converter's, ``dnnkit.workers.converter``,
            checks too: an export's SavedModel is checked by its converter process, whose TensorFlow
            is loaded already, unless the verifier takes it first:
            :func:`dnnkit.jobs.conversions.verifier_takes_saved_models`).

    Returns:
        The manifest fields of :func:`verify_artifact`, by name.
    """
    by_name = items if isinstance(items, dict) else {i["name"]: i for i in items}
    order = names if names is not None else list(by_name)
    if not by_name and names is None:
        return {}
    with reference_job(ref, recipe, job) as job:
        results = run_job(module or VERIFIER, order, _Timeouts(by_name, recipe),
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
            expected = by_name[name].get("expected_sha256")
            if expected and entry["sha256"] != expected:  # a damaged file: say so first, as verify_artifact does
                entry["failures"].insert(0, failure("sha256", "sha256 mismatch: the file changed after export",
                                                    entry["sha256"], expected))
                entry["failure_reason"] = f"sha256 mismatch: the file changed after export; {reason}"
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
        results = run_job(module or VERIFIER, list(by_name), _Timeouts(by_name, recipe),
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
    meta = {"heads": ref.heads, "input_names": ref.input_names, "output_names": ref.output_names,
            "metrics": ref.metrics, "n_test": ref.n_test, "fp16_weight_error": ref.fp16_weight_error}
    with tempfile.TemporaryDirectory(prefix="dnnkit-verify-") as tmp:
        ref_path = os.path.join(tmp, "reference.npz")
        save_reference(ref_path, ref)
        yield {"reference": ref_path, "reference_meta": meta, "verify": asdict(recipe.verify)}
