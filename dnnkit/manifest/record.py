"""The manifest's shape: the top level an export writes (reference, recipe, versions, resources), the
artifact entries in recipe order, and a fresh check applied to an entry. Other sections are added by who
makes them: ``passes`` and ``goals`` (compression), ``optimize``, ``package``, and the verdict
(:func:`dnnkit.manifest.verdict.decide`)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

from dnnkit import __version__
from dnnkit.artifacts.files import file_digest
from dnnkit.child.memory import peak_rss_mb
from dnnkit.core.metrics import near_constant, per_class
from dnnkit.core.tensors import inputs_info, outputs_info, rows
from dnnkit.formats.convert import REPRODUCIBLE
from dnnkit.config.model import BUILTIN_SOURCES
from dnnkit.config.recipe import ArtifactConfig, Recipe
from dnnkit.verification.artifact import VERIFICATION_FIELDS
from dnnkit.verification.criteria import failure
from dnnkit.verification.reference import Reference

MANIFEST = "manifest.json"
KERAS_FILE_REPRODUCIBLE = {"bytes": False, "why": "a .keras archive stores its save time (metadata.json "
                                                  "date_saved, the weights member's timestamp)"}


def versions() -> dict[str, str | None]:
    """Installed versions of the converters and runtimes that made and checked artifacts."""
    out: dict[str, str | None] = {"dnnkit": __version__}
    for pkg in ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert"):
        try:
            out[pkg] = _metadata.version(pkg)
        except _metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def artifact_entries(recipe: Recipe, effective: dict[str, ArtifactConfig], results: dict[str, Any],
                     first_attempts: dict[str, Any], verified: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest's artifact entries, in recipe order: how each was converted, and its checks."""
    entries = []
    for art in recipe.artifacts:
        result = results.get(art.name, {"status": "failed", "reason": "not converted", "info": {}})
        entry: dict[str, Any] = {"name": art.name, "format": art.format, "precision": art.precision,
                                 "path": f"artifacts/{art.filename}", "options": effective[art.name].to_dict(),
                                 "conversion": {"seconds": result.get("seconds"),
                                                "peak_rss_mb": result.get("peak_rss_mb"),
                                                **({"first_attempt": first_attempts[art.name]}
                                                   if art.name in first_attempts else {}),
                                                **result["info"]},
                                 "fallbacks": result["info"].get("fallbacks", []),
                                 "transforms": result["info"].get("transforms"),
                                 "converted": result["status"] == "done",
                                 "reproducible": dict(zip(("bytes", "why"), REPRODUCIBLE[art.format]))}
        if result["status"] != "done":
            message = f"conversion failed: {result['reason']}"
            entry.update(status="failed", failure_reason=message, inconclusive=[],
                         failures=[failure("conversion", message)])
        elif art.name in verified:
            entry.update(verified[art.name])
        entries.append(entry)
    return entries


def export_manifest(*, recipe: Recipe, ref: Reference, ref_model: Path, out: Path, model: Any, weights_digest: str,
                    source: dict[str, Any] | None, spec_name: str | None, data: str, fake_quant: bool,
                    entries: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of an export, before its verdict.

    Args:
        recipe: the recipe the artifacts were made and checked with.
        ref: the reference outputs they were checked against.
        ref_model: the reference model in ``out`` (``reference/model.keras`` or ``reference/saved_model``).
        out: the export folder.
        model: the reference model, loaded (its inputs, outputs and parameter count).
        weights_digest: sha256 of its weights (the one inside every artifact's metadata).
        source: what is recorded about a SavedModel or tf_keras source, or ``None``.
        spec_name: the spec's name; ``None`` for a model with several inputs or outputs (its signature
            describes it).
        data: the data the reference was scored on (an absolute path, or ``"digits"``); recorded relative to
            ``out`` when it lies inside it (the Python API's arrays, ``reference/data.npz``).
        fake_quant: the reference carries QAT fake-quant layers.
        entries: the artifact entries (:func:`artifact_entries`).
        extra: more top-level fields (the training run, the compression passes), before ``artifacts``.
    """
    multi = spec_name is None
    ref_digest, ref_bytes = file_digest(ref_model)
    return {
        "dnnkit_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "recipe": {"name": recipe.name, "path": recipe.path, "verify": asdict(recipe.verify)},
        "reference": {"model": str(ref_model.relative_to(out)), "sha256": ref_digest, "bytes": ref_bytes,
                      "weights_sha256": weights_digest,
                      **({"source": source} if source else {}),
                      "reproducible": dict(KERAS_FILE_REPRODUCIBLE),
                      "spec": spec_name, "head": ref.head,
                      "data": _inside(data, out),
                      "params": int(model.count_params()), "metrics": ref.metrics,
                      **({} if multi else {"input_name": ref.input_names[0], "output_name": ref.output_names[0]}),
                      "inputs": [i.to_dict() for i in inputs_info(model)],
                      "outputs": [{**o.to_dict(), "head": h, "labelled": y is not None}
                                  for o, h, y in zip(outputs_info(model), ref.heads, ref.labels)],
                      "test_samples": int(ref.n_test), "inputs_checked": int(rows(ref.x)),
                      "fp16_weight_error": ref.fp16_weight_error,
                      "fake_quant": fake_quant,
                      "warnings": reference_warnings(ref),
                      **({} if multi else {"per_class": per_class(ref.head, ref.labels[0], ref.outputs[0])})},
        "versions": versions(),
        # this process's peak (the reference outputs; training too under `run`); each conversion's and
        # verification's own peak is in its artifact entry (they run in child processes)
        "resources": {"parent_peak_rss_mb": peak_rss_mb()},
        **({"device": {**asdict(recipe.device), "required": True}} if recipe.device is not None else {}),
        **(extra or {}),
        "artifacts": entries,
    }


def reference_warnings(ref: Reference) -> list[str]:
    """What makes the reference a weak yardstick (a near-constant model: :func:`near_constant`), per output."""
    found = []
    for name, head, out, y in zip(ref.output_names, ref.heads, ref.outputs, ref.labels):
        why = near_constant(head, out, y)
        if why:
            found.append(f"output {name}: {why}" if ref.multi_output else why)
    return found


def _inside(data: str, out: Path) -> str:
    """``data`` relative to ``out`` when it lies inside it (the folder may be moved, or published from its
    staged copy), else as given."""
    if data in BUILTIN_SOURCES:
        return data
    path, folder = Path(data).resolve(), out.resolve()
    return path.relative_to(folder).as_posix() if folder in path.parents else data


def apply_check(entry: dict[str, Any], result: dict[str, Any]) -> None:
    """Put a fresh check's fields into an artifact entry, dropping first every field an earlier check wrote
    (so nothing from it survives a result that lacks one)."""
    for stale in VERIFICATION_FIELDS:
        entry.pop(stale, None)
    entry.update(result)
