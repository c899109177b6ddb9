"""Choosing among verified candidates: one row per candidate (and per all-int8 first attempt), the goals
each meets, the Pareto front of (degradation, size, latency), the pick per target by the objective, and
the files of the rest removed."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

from dnnkit.core.metrics import degradation, within
from dnnkit.config.goals import Goals
from dnnkit.verification.budget import arena_bytes, budget

CLOSEST = 3  # candidates listed when none meets every goal


def _degradation(head: str, ref_metrics: dict[str, float], entry: dict[str, Any]) -> float | None:
    """How much the task metric dropped, as :func:`dnnkit.core.metrics.degradation`; from the value
    checks where the entry has no metrics (a fallback's all-int8 first attempt)."""
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
         vs_original: float | None = None, fit: dict[str, Any] | None = None,
         device: Any = None) -> dict[str, Any]:
    arena, source = arena_bytes(fit) if fit else (None, "unknown")
    row = {"name": f"{folder}/{name}" if folder else name, "target": target, "precision": precision,
           "status": status, "bytes": bytes_, "latency_p50_ms": p50, "degradation": degradation,
           "top1_agreement": agreement, "float_layers": float_layers, "reason": reason, "entry": entry,
           "folder": folder, "path": path, "vs_original": vs_original, "arena_bytes": arena,
           "arena_source": source}
    if device is not None and target == "tflite":
        b = budget(fit, device) if fit else {"verdict": "unknown", "reason": "not measured"}
        row["budget"] = {"verdict": b["verdict"], "reason": b["reason"]}
    return row


def candidate_rows(manifest: dict[str, Any], folder: str = "", device: Any = None) -> list[dict[str, Any]]:
    """One row per candidate from an export manifest: each artifact, and for an int8 artifact
    repaired by the selective fallback, its all-int8 first attempt too.

    Args:
        manifest: the manifest of ``OUT`` (the model as given) or of ``OUT/FOLDER`` (the model after
            the recipe's passes: its artifacts are verified against the compressed model, and their
            degradation is the drop from the original model, ``degradation_vs_original``).
        folder: ``""`` or the folder's name, which prefixes the rows' names and paths.
        device: a :class:`~dnnkit.config.device.Device` whose budget judges the TFLite rows (``row["budget"]``).
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
                             agreement=first.get("top1_agreement"), reason=first.get("reason"), folder=folder,
                             device=device))
        k = len(fb["float_layers"]) if fb.get("chosen") else 0
        vs_original = e.get("degradation_vs_original") if folder else None
        rows.append(_row(f"{e['name']}~float{k}" if k else e["name"], e["format"], e["precision"], e["status"],
                         bytes_=e.get("bytes"), p50=(e.get("latency_ms") or {}).get("p50"),
                         degradation=vs_original if folder else _degradation(head, ref_metrics, e),
                         agreement=parity.get("top1_agreement"), reason=e.get("failure_reason"), float_layers=k,
                         entry=e["name"], folder=folder, path=f"{folder}/{e['path']}" if folder else e["path"],
                         vs_original=vs_original, fit=e.get("device_fit"), device=device))
    return rows


def judge(rows: list[dict[str, Any]], goals: Goals) -> None:
    """Set each row's ``goals`` (met or not, per goal set; ``None`` for a goal not set) and ``meets``."""
    for r in rows:
        # verified against its own reference; after passes, also within the goal of the original model
        drop = r.get("vs_original")
        met: dict[str, bool | None] = {"degradation": r["status"] == "verified" and (
            drop is None or within(drop, goals.max_degradation))}
        met["size"] = None if goals.max_size_kb is None else (
            r["bytes"] is not None and r["bytes"] <= goals.max_size_kb * 1024)
        met["latency"] = None if goals.max_latency_ms is None else (
            r["latency_p50_ms"] is not None and r["latency_p50_ms"] <= goals.max_latency_ms)
        tflite = r["target"] == "tflite"  # the microcontroller goals judge TFLite candidates only
        if goals.max_arena_kb is not None:
            met["arena"] = None if not tflite else (
                r.get("arena_bytes") is not None and r["arena_bytes"] <= goals.max_arena_kb * 1024)
        if goals.device is not None:
            met["device"] = None if not tflite else (r.get("budget") or {}).get("verdict") == "fits"
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
                             ("latency", "latency_p50_ms", goals.max_latency_ms),
                             ("arena", "arena_bytes", (goals.max_arena_kb or 0) * 1024)):
        if r["goals"].get(goal) is False:
            misses += 1
            total += 1.0 if r.get(key) is None else r[key] / limit - 1.0
    if r["goals"].get("device") is False:
        misses += 1
        total += 1.0
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


def keep_only(folder: Path, manifest: dict[str, Any], names: set[str]) -> None:
    """Remove every artifact of ``manifest`` (written in ``folder``) not in ``names``."""
    for e in manifest["artifacts"]:
        if e["name"] not in names and e.get("path"):
            _remove(folder, e)
    manifest["artifacts"] = [e for e in manifest["artifacts"] if e["name"] in names]
