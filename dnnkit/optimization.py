"""``dnnkit optimize``: the smallest (or fastest) verified artifact that meets an accuracy goal.

Candidates come from one registry (:data:`CANDIDATES`, per target runtime): fp32, fp16,
dynamic-range int8, full int8 (per-channel) with a selective float fallback, and TFLite 16x8.
Each is converted in its own process and verified exactly as every artifact is, with
``[verify] max_degradation`` set to the goal, at a confidence corrected for the number of
candidates (Bonferroni, :func:`dnnkit.criteria.z_for`): choosing the best of several that pass a
95 % test must not pass a bad one more often than 5 %. A full-int8 candidate that misses the goal
keeps its most harmful layers float, most harmful first, until it meets it
(:mod:`dnnkit.fallback`); both the all-int8 attempt and the repaired one are candidates.

Every candidate is recorded in the manifest's ``optimize`` section with its size, batch-1
latency, metric, degradation, which goals it met and whether it is on the Pareto front of
(degradation, size, latency). The chosen artifact (one per target) stays in ``OUT/artifacts``
and in ``artifacts``; the other candidates' files are removed. When no candidate meets every
goal, the closest ones are kept and listed, and the status is ``failed`` (exit 1).

A recipe's ``[[passes]]`` (pruning, QAT, ...) make a second set of candidates, built from the
compressed model in ``OUT/passes`` (an export folder of its own, kept when a candidate from it is
chosen or closest); the manifest's ``optimize.folders`` names it, and ``dnnkit verify OUT`` verifies
it too.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dnnkit.config import TableReader

TARGETS = ("tflite", "onnx", "both")
OBJECTIVES = ("smallest", "fastest")
CLOSEST = 3  # candidates listed when none meets every goal
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


@dataclass(frozen=True)
class Goals:
    """What ``optimize`` must meet: the most the task metric may drop (accuracy points, or RMSE
    ratio - 1 for regression), optionally a file size and a batch-1 latency (p50 on this machine)."""

    target: str = "both"
    max_degradation: float = 0.01
    max_size_kb: float | None = None
    max_latency_ms: float | None = None
    objective: str = "smallest"

    @property
    def targets(self) -> tuple[str, ...]:
        return ("tflite", "onnx") if self.target == "both" else (self.target,)

    @property
    def min_agreement(self) -> float:
        """Top-1 agreement the verification asks for: ``1 - 2 x max_degradation`` (0.98 at one
        point, the recipes' default), so the agreement check does not overrule the goal."""
        return max(0.0, 1.0 - 2.0 * self.max_degradation)


def read_goals(t: TableReader, base: Goals | None = None) -> Goals:
    """Goals from a recipe's ``[optimize]`` table (or command-line values), over ``base``.

    Raises:
        SpecError: naming the field, the value and what was expected.
    """
    d = base or Goals()
    goals = Goals(
        target=t.choice("target", TARGETS, d.target),
        max_degradation=t.number("max_degradation", d.max_degradation, low=0.0),
        max_size_kb=t.number("max_size_kb", d.max_size_kb, low=0.0, low_open=True),
        max_latency_ms=t.number("max_latency_ms", d.max_latency_ms, low=0.0, low_open=True),
        objective=t.choice("objective", OBJECTIVES, d.objective))
    t.done()
    return goals


def goals_from(values: dict[str, Any], base: Goals | None = None, origin: str = "optimize") -> Goals:
    """:func:`read_goals` over plain values (``None`` = not given); numbers may be strings."""
    def number(v: Any) -> Any:
        if isinstance(v, str):
            try:
                return float(v)
            except ValueError:
                return v
        return v

    raw = {k: number(v) if k.startswith("max_") else v for k, v in values.items() if v is not None}
    return read_goals(TableReader(raw, "", origin), base)


def candidate_recipe(goals: Goals, base: Any = None, sets: int = 1) -> Any:
    """The recipe of every candidate for ``goals``: the registry's artifacts for each target,
    verified with ``base``'s ``[verify]`` settings and the goal's ``max_degradation``, each verdict
    at the confidence of a pick among ``sets`` x the target's candidates (``sets`` = 2 with passes)."""
    from dnnkit.recipe import ArtifactConfig, Recipe, VerifyConfig

    verify = base.verify if base is not None else VerifyConfig()
    verify = dataclasses.replace(verify, max_degradation=goals.max_degradation,
                                 min_agreement=min(verify.min_agreement, goals.min_agreement))
    fields = [c for t in goals.targets for c in CANDIDATES[t]]
    artifacts = tuple(ArtifactConfig(**{**f, "candidates": sets * len(CANDIDATES[f["format"]])}) for f in fields)
    return Recipe(name=f"optimize-{goals.target}", description="dnnkit optimize candidates", artifacts=artifacts,
                  verify=verify, path=base.path if base is not None else None)


def _degradation(head: str, ref_metrics: dict[str, float], entry: dict[str, Any]) -> float | None:
    """How much the task metric dropped, as :func:`dnnkit.verdict.degradation`; from the value
    checks where the entry has no metrics (a fallback's all-int8 first attempt)."""
    from dnnkit.verdict import degradation

    metrics = entry.get("metrics")
    if metrics and ref_metrics:
        try:
            return float(degradation(head, ref_metrics, metrics))
        except KeyError:
            pass
    if "accuracy_drop" in entry:
        return float(entry["accuracy_drop"])
    if "rmse_ratio" in entry:
        return float(entry["rmse_ratio"]) - 1.0
    return None


def _row(name: str, target: str, precision: str, status: str, *, bytes_: int | None, p50: float | None,
         degradation: float | None, agreement: float | None, reason: str | None, float_layers: int = 0,
         entry: str | None = None, folder: str = "", path: str | None = None,
         vs_original: float | None = None) -> dict[str, Any]:
    return {"name": f"{folder}/{name}" if folder else name, "target": target, "precision": precision,
            "status": status, "bytes": bytes_, "latency_p50_ms": p50, "degradation": degradation,
            "top1_agreement": agreement, "float_layers": float_layers, "reason": reason, "entry": entry,
            "folder": folder, "path": path, "vs_original": vs_original}


def candidate_rows(manifest: dict[str, Any], folder: str = "") -> list[dict[str, Any]]:
    """One row per candidate from an export manifest: each artifact, and for an int8 artifact
    repaired by the selective fallback, its all-int8 first attempt too.

    Args:
        manifest: the manifest of ``OUT`` (the model as given) or of ``OUT/FOLDER`` (the model after
            the recipe's passes: its artifacts are verified against the compressed model, and their
            degradation is the drop from the original model, ``degradation_vs_original``).
        folder: ``""`` or the folder's name, which prefixes the rows' names and paths.
    """
    ref = manifest["reference"]
    head, ref_metrics = ref["head"], ref.get("metrics") or {}
    rows = []
    for e in manifest["artifacts"]:
        fb = (e.get("conversion") or {}).get("selective_fallback") or {}
        parity = e.get("parity") or {}
        if fb.get("chosen"):
            first = fb["first_attempt"]
            rows.append(_row(e["name"], e["format"], e["precision"], first["status"], bytes_=first.get("bytes"),
                             p50=first.get("latency_p50_ms"),
                             degradation=None if folder else _degradation(head, {}, first),
                             agreement=first.get("top1_agreement"), reason=first.get("reason"), folder=folder))
        k = len(fb["float_layers"]) if fb.get("chosen") else 0
        vs_original = e.get("degradation_vs_original") if folder else None
        rows.append(_row(f"{e['name']}~float{k}" if k else e["name"], e["format"], e["precision"], e["status"],
                         bytes_=e.get("bytes"), p50=(e.get("latency_ms") or {}).get("p50"),
                         degradation=vs_original if folder else _degradation(head, ref_metrics, e),
                         agreement=parity.get("top1_agreement"), reason=e.get("failure_reason"), float_layers=k,
                         entry=e["name"], folder=folder, path=f"{folder}/{e['path']}" if folder else e["path"],
                         vs_original=vs_original))
    return rows


def judge(rows: list[dict[str, Any]], goals: Goals) -> None:
    """Set each row's ``goals`` (met or not, per goal set; ``None`` for a goal not set) and ``meets``."""
    for r in rows:
        # verified against its own reference; after passes, also within the goal of the original model
        drop = r.get("vs_original")
        met: dict[str, bool | None] = {"degradation": r["status"] == "verified" and (
            drop is None or drop <= goals.max_degradation + 1e-12)}
        met["size"] = None if goals.max_size_kb is None else (
            r["bytes"] is not None and r["bytes"] <= goals.max_size_kb * 1024)
        met["latency"] = None if goals.max_latency_ms is None else (
            r["latency_p50_ms"] is not None and r["latency_p50_ms"] <= goals.max_latency_ms)
        r["goals"] = met
        r["meets"] = all(v is not False for v in met.values())


def pareto(rows: list[dict[str, Any]]) -> list[str]:
    """Names of the rows no other row dominates on (degradation, bytes, latency), all smaller-is-better.

    Rows missing a figure are not compared (``pareto`` is ``None`` on them); a row dominates another
    when it is no worse on all three and better on one.
    """
    keys = ("degradation", "bytes", "latency_p50_ms")
    measured = [r for r in rows if all(r.get(k) is not None for k in keys)]
    front = []
    for r in rows:
        r["pareto"] = None
    for r in measured:
        dominated = any(all(o[k] <= r[k] for k in keys) and any(o[k] < r[k] for k in keys)
                        for o in measured if o is not r)
        r["pareto"] = not dominated
        if not dominated:
            front.append(r["name"])
    return front


def _objective_key(goals: Goals) -> Any:
    first, second = ("bytes", "latency_p50_ms") if goals.objective == "smallest" else ("latency_p50_ms", "bytes")
    return lambda r: (r[first], r[second] if r[second] is not None else math.inf, r["degradation"] or 0.0)


def _excess(r: dict[str, Any], goals: Goals) -> tuple[int, float]:
    """How far a row is from every goal: (goals missed, summed relative excess)."""
    misses, total = 0, 0.0
    if not r["goals"]["degradation"]:
        misses += 1
        d = r["degradation"]
        total += 1.0 if d is None else max(0.0, d - goals.max_degradation) / max(goals.max_degradation, 1e-3)
    for goal, key, limit in (("size", "bytes", (goals.max_size_kb or 0) * 1024),
                             ("latency", "latency_p50_ms", goals.max_latency_ms)):
        if r["goals"][goal] is False:
            misses += 1
            total += 1.0 if r[key] is None else r[key] / limit - 1.0
    return misses, total


def choose(rows: list[dict[str, Any]], goals: Goals) -> dict[str, Any]:
    """Per target: the best row meeting every goal (by the objective), or the closest rows.

    Returns:
        ``{"chosen": {target: name}, "closest": {target: [names]}, "met": bool}``.
    """
    chosen: dict[str, str] = {}
    closest: dict[str, list[str]] = {}
    for target in goals.targets:
        mine = [r for r in rows if r["target"] == target]
        good = [r for r in mine if r["meets"] and r["entry"] and r["bytes"] is not None
                and r["latency_p50_ms"] is not None]
        if good:
            best = min(good, key=_objective_key(goals))
            best["chosen"] = True
            chosen[target] = best["name"]
            continue
        ranked = sorted((r for r in mine if r["bytes"] is not None), key=lambda r: _excess(r, goals))
        closest[target] = [r["name"] for r in ranked[:CLOSEST]]
    for r in rows:
        r.setdefault("chosen", False)
    return {"chosen": chosen, "closest": closest, "met": len(chosen) == len(goals.targets)}


def _remove(out: Path, entry: dict[str, Any]) -> None:
    path = out / entry["path"]
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".data").unlink(missing_ok=True)


def _keep(folder: Path, manifest: dict[str, Any], names: set[str]) -> None:
    """Remove every artifact of ``manifest`` (written in ``folder``) not in ``names``."""
    for e in manifest["artifacts"]:
        if e["name"] not in names and e.get("path"):
            _remove(folder, e)
    manifest["artifacts"] = [e for e in manifest["artifacts"] if e["name"] in names]


def optimize(model: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, goals: Goals,
             recipe: Any = None, data: str | None = None, task: str | None = None, unsafe: bool = False,
             verbose: bool = False) -> dict[str, Any]:
    """Build, verify and rank every candidate for ``goals``; keep the chosen artifact(s).

    When ``recipe`` lists ``[[passes]]`` (pruning, QAT, ...), they run on the model and every
    candidate is built from the compressed model too, in ``OUT/passes`` (its own export folder,
    whose reference is the compressed model); those candidates meet the goal when they verify
    against the compressed model and their metric is within ``max_degradation`` of the original's.

    Args:
        model: a run directory, a ``.keras`` file, a tf_keras ``.h5`` or a SavedModel folder.
        out_dir: the output folder.
        goals: what the chosen artifact must meet (:class:`Goals`).
        recipe: a recipe (or path): its ``[verify]`` settings verify the candidates; its passes,
            if any, make the second set of candidates.
        data, task, unsafe, verbose: as for :func:`dnnkit.pipeline.export`.

    Returns:
        The manifest, with an ``optimize`` section; ``status`` is ``verified`` when every target
        has a chosen artifact.

    Raises:
        DnnkitError: on bad input, before anything is written.
    """
    from dnnkit import pipeline
    from dnnkit.fileio import write_json
    from dnnkit.verdict import decide

    base = pipeline.as_recipe(recipe) if recipe is not None else None
    candidates = candidate_recipe(goals, base, sets=2 if base is not None and base.passes else 1)
    out = Path(out_dir)
    manifest = pipeline.compress(model, candidates, out, data=data, task=task, unsafe=unsafe, verbose=verbose)
    runs = {"": (out, manifest)}
    if base is not None and base.passes:
        if verbose:
            print(f"the recipe's {len(base.passes)} passes, then every candidate again -> {out / PASSES_FOLDER}",
                  flush=True)
        variant = dataclasses.replace(candidates, passes=base.passes, goal_degradation=goals.max_degradation)
        runs[PASSES_FOLDER] = (out / PASSES_FOLDER, pipeline.compress(
            model, variant, out / PASSES_FOLDER, data=data, task=task, unsafe=unsafe, verbose=verbose))
    rows = [r for folder, (_, m) in runs.items() for r in candidate_rows(m, folder)]
    judge(rows, goals)
    front = pareto(rows)
    picked = choose(rows, goals)
    by_name = {r["name"]: r for r in rows}
    kept = [r for r in rows if r["chosen"]]
    if not picked["met"]:  # the closest candidate per target stays, to look at
        kept += [by_name[names[0]] for names in picked["closest"].values() if names and by_name[names[0]]["entry"]]
    folders: dict[str, str] = {}
    for folder, (where, m) in runs.items():
        _keep(where, m, {r["entry"] for r in kept if r["folder"] == folder})
        if folder and m["artifacts"]:
            decide(m)
            write_json(where / pipeline.MANIFEST, m, sort_keys=False)
            folders[folder] = m["status"]
        elif folder:
            shutil.rmtree(where, ignore_errors=True)  # nothing chosen from the compressed model
    manifest["optimize"] = {"goals": dataclasses.asdict(goals), "candidates": rows, "pareto": front, **picked,
                            "folders": folders}  # folder -> its verdict (dnnkit verify re-checks it)
    if PASSES_FOLDER in runs:
        passes = runs[PASSES_FOLDER][1]
        manifest["optimize"]["passes"] = {"records": passes.get("passes", []),
                                          "metrics_after": (passes.get("reference") or {}).get("metrics")}
    from dnnkit.packaging import package_all

    return package_all(out, base.package if base is not None else None, pipeline._finish(manifest, out),
                       unsafe=unsafe)
