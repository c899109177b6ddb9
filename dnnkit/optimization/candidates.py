"""The candidates ``dnnkit optimize`` tries, per target runtime, and the recipe that makes them."""

from __future__ import annotations

import dataclasses
from typing import Any

from dnnkit.config.goals import Goals
from dnnkit.config.recipe import ArtifactConfig, Recipe, VerifyConfig

PASSES_FOLDER = "passes"  # OUT/passes: the candidates built from the model after the recipe's passes


# target runtime -> candidate artifacts (recipe [[artifacts]] fields), cheapest to search first
CANDIDATES: dict[str, tuple[dict[str, Any], ...]] = {
    "tflite": (
        {"name": "tflite_fp32", "format": "tflite", "precision": "fp32"},
        {"name": "tflite_fp16", "format": "tflite", "precision": "fp16"},
        {"name": "tflite_dynamic_int8", "format": "tflite", "precision": "dynamic_int8"},
        {"name": "tflite_int8", "format": "tflite", "precision": "int8", "unroll_recurrent": True,
         "selective_fallback": True},
        {"name": "tflite_int16x8", "format": "tflite", "precision": "int16x8", "unroll_recurrent": True},
    ),
    "onnx": (
        {"name": "onnx_fp32", "format": "onnx", "precision": "fp32"},
        {"name": "onnx_int8", "format": "onnx", "precision": "int8", "selective_fallback": True},
    ),
}


def candidate_recipe(goals: Goals, base: Recipe | None = None, sets: int = 1) -> Recipe:
    """The recipe of every candidate for ``goals``: the registry's artifacts for each target,
    verified with ``base``'s ``[verify]`` settings and the goal's ``max_degradation``, each verdict
    at the confidence of a pick among ``sets`` x the target's candidates (``sets`` = 2 with passes)."""
    verify = base.verify if base is not None else VerifyConfig()
    verify = dataclasses.replace(verify, max_degradation=goals.max_degradation,
                                 min_agreement=min(verify.min_agreement, goals.min_agreement))
    fields = [c for t in goals.targets for c in CANDIDATES[t]]
    artifacts = tuple(ArtifactConfig(**{**f, "candidates": sets * len(CANDIDATES[f["format"]])}) for f in fields)
    return Recipe(name=f"optimize-{goals.target}", description="dnnkit optimize candidates", artifacts=artifacts,
                  verify=verify, path=base.path if base is not None else None)
