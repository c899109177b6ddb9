"""The quantization ladder: an int8 artifact that converts but fails its value checks is quantized again in
better ways, cheapest change first, before any layer is left float (:mod:`dnnkit.jobs.fallback` comes after).

Rungs, per format (each one an :class:`~dnnkit.config.recipe.ArtifactConfig` variant, converted and verified as
every artifact is):

- ONNX ``graph_prep``: onnxruntime's ``quant_pre_process`` (shape inference, graph fusions) before calibration
  (measured on a briefly trained EfficientNetB0: agreement 0.585 -> 0.731);
- ONNX ``percentile``: the same with percentile (99.999 %) ranges instead of min/max, which cut outliers;
- ``equalized``: int8 as before, converted from a copy whose channel ranges are equalized across layers joined by
  an identity or ReLU (:mod:`dnnkit.passes.equalization`; a model with no such pair fails this rung at once);
- ``int16_activations``: int8 weights, int16 activations where int8 ones cannot hold the range (TFLite: its 16x8
  kernels, float I/O, ops without a 16x8 kernel left float; ONNX: int16 QDQ, weights at 8 bits). The file keeps
  int8 weights: about the all-int8 size
  (EfficientNetB0 TFLite 0.743 -> 0.986, ONNX 0.731 -> 0.9855; MobileNetV2 ONNX 0.9605 -> 0.993);
- ``int16_bias_corrected``: the same, converted from a copy of the model whose biases absorb the mean error of its
  weights rounded to 8 bits (:mod:`dnnkit.passes.bias_correction`), where what is left is the weights' error
  (EfficientNetB0 ONNX int16 activations: 0.985 with 8-bit weights, 0.9995 with 16-bit ones; bias-corrected 0.989).

All rungs are tried at once, each verdict at confidence ``1 - 0.05 / m`` for the ``m`` artifacts the pick is made
from (the float fallback's candidates count the ladder's too); the first rung in order that verifies at no more than
:data:`MAX_SIZE_GROWTH` times the all-int8 file's size replaces the artifact. ``conversion.quantization_ladder``
records every rung tried with its verdict and figures, and the one chosen.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from dnnkit.config.recipe import ArtifactConfig, Recipe
from dnnkit.jobs.fallback import adopt, main_values, needs_fallback
from dnnkit.verification.reference import Reference
from dnnkit.workers.checks import check_item, verify_artifacts
from dnnkit.workers.convert import convert_artifacts

LADDER_DIR = ".ladder"

# a rung must stay an int8 artifact: int8 weights, at most this much over the all-int8 file
MAX_SIZE_GROWTH = 1.25

# (rung, what changes): in the order tried; the first that verifies is taken
RUNGS: dict[str, tuple[tuple[str, dict[str, Any]], ...]] = {
    "onnx": (("graph_prep", {"graph_prep": True}),
             ("percentile", {"graph_prep": True, "calibration": "percentile"}),
             ("equalized", {"graph_prep": True, "equalization": True}),
             ("int16_activations", {"graph_prep": True, "activations": "int16"}),
             ("int16_bias_corrected", {"graph_prep": True, "activations": "int16", "bias_correction": True})),
    # ops without a 16x8 kernel (ConvNeXt's GELU: NEG) stay float, as TFLite's 16x8 mode documents
    "tflite": (("equalized", {"equalization": True}),
               ("int16_activations", {"activations": "int16", "io": "float", "float_fallback": True}),
               ("int16_bias_corrected", {"activations": "int16", "io": "float", "float_fallback": True,
                                         "bias_correction": True})),
}


def rungs_for(art: ArtifactConfig) -> list[tuple[str, ArtifactConfig]]:
    """The ladder's variants of ``art`` (none for an artifact that already takes a rung's settings)."""
    out = []
    for rung, changes in RUNGS.get(art.format, ()):
        if all(getattr(art, k) == v for k, v in changes.items()):
            continue
        out.append((rung, dataclasses.replace(art, selective_fallback=False, **changes)))
    return out


def quantization_ladder(entries: list[dict[str, Any]], artifacts: dict[str, ArtifactConfig], recipe: Recipe,
                        ref: Reference, *, model_path: Path, out: Path, representative: Any,
                        metadata: dict[str, Any], unsafe: bool, fake_quant: bool, verbose: bool = False) -> None:
    """Climb the ladder for every entry that :func:`~dnnkit.jobs.fallback.needs_fallback`; updates in place.

    An adopted rung keeps the artifact's name, path and precision; ``options`` says what changed, ``fallbacks``
    gains the rung's name. An artifact no rung repairs stays as it was, and ``artifacts[name].candidates`` grows by
    the rungs tried (the float fallback's verdicts account for them).
    """
    todo = {e["name"]: e for e in entries if needs_fallback(e, artifacts[e["name"]])}
    plans = {name: rungs_for(artifacts[name]) for name in todo}
    plans = {name: plan for name, plan in plans.items() if plan}
    if not plans:
        return
    variants: dict[str, ArtifactConfig] = {}  # by candidate name, NAME~RUNG
    files: dict[str, dict[str, Any]] = {}
    for name, plan in plans.items():
        art = artifacts[name]
        for rung, variant in plan:
            v = dataclasses.replace(variant, name=f"{name}~{rung}", candidates=art.candidates + len(plan))
            variants[v.name] = v
            files[v.name] = {"filename": f"{LADDER_DIR}/{name}/{rung}/{art.filename}"}
    if verbose:
        print(f"quantization ladder: {len(variants)} candidates for {len(plans)} int8 artifacts ...", flush=True)
    converted = convert_artifacts(model_path, list(variants.values()), out / "artifacts", representative,
                                  timeouts={n: recipe.timeout(v) for n, v in variants.items()}, metadata=metadata,
                                  unsafe=unsafe, log_path=out / "logs" / "convert.log", item_extra=files)
    checked = verify_artifacts(
        [check_item(n, out / "artifacts" / files[n]["filename"], v.to_dict(), fake_quant=fake_quant)
         for n, v in variants.items() if converted.get(n, {}).get("status") == "done"],
        ref, recipe, log_path=out / "logs" / "verify.log")
    for name, plan in plans.items():
        entry, art = todo[name], artifacts[name]
        first = {"status": entry["status"], "bytes": entry.get("bytes"), **main_values(entry)}
        record: dict[str, Any] = {"first_attempt": first, "tried": [], "chosen": None}
        limit = MAX_SIZE_GROWTH * (entry.get("bytes") or 0)
        for rung, _ in plan:
            vname = f"{name}~{rung}"
            conv, result = converted.get(vname, {}), checked.get(vname)
            row: dict[str, Any] = {"rung": rung, "changes": dict(RUNGS[art.format])[rung],
                                   "conversion_seconds": conv.get("seconds")}
            if result is None:
                row.update(status="failed", reason=f"conversion failed: {conv.get('reason')}")
            else:
                row.update(status=result["status"], bytes=result.get("bytes"), **main_values(result))
                if result["status"] != "verified":
                    row["reason"] = result.get("failure_reason")
                elif limit and (result.get("bytes") or 0) > limit:
                    row.update(status="too_large", reason=f"verified, but {result['bytes']} bytes > "
                                                          f"{MAX_SIZE_GROWTH:g} x the all-int8 file ({int(limit)})")
            record["tried"].append(row)
            if record["chosen"] is None and row["status"] == "verified":
                record["chosen"] = rung
                adopt(entry, art, variants[vname], conv, result, out / "artifacts" / files[vname]["filename"], out,
                      rung)
        entry.setdefault("conversion", {})["quantization_ladder"] = record
        if record["chosen"] is None:
            artifacts[name] = dataclasses.replace(art, candidates=art.candidates + len(plan))
            tried = ", ".join(f"{r['rung']} {r.get('top1_agreement', r['status'])}" for r in record["tried"])
            entry["failure_reason"] = f"{entry.get('failure_reason')}; quantization ladder: {tried}"
    shutil.rmtree(out / "artifacts" / LADDER_DIR, ignore_errors=True)
