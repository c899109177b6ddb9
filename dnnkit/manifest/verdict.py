"""One verdict for a manifest, from its artifacts and its goals together.

``export``, ``compress``, ``run``, ``optimize`` and ``verify`` all end with :func:`decide`, so a folder that
missed a goal when it was made still fails when it is verified again. The verdict is
``verified`` (exit 0), ``failed`` or ``inconclusive`` (both exit 1; an inconclusive artifact
counts as passed only where the recipe sets ``[verify] accept_inconclusive = true``).
"""

from __future__ import annotations

from typing import Any

from dnnkit.core.metrics import degradation, within
from dnnkit.verification.budget import apply_budgets
from dnnkit.verification.criteria import failure


def _artifact_goals(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Each artifact's metric against the original (pre-compression) model, where a goal is set."""
    goals = manifest.get("goals") or {}
    limit = goals.get("max_degradation")
    original = (manifest.get("original") or {}).get("metrics")
    if limit is None or not original:
        return []
    head = manifest["reference"]["head"]
    out = []
    for entry in manifest["artifacts"]:
        if not entry.get("metrics"):
            continue
        drop = degradation(head, original, entry["metrics"])
        entry["degradation_vs_original"] = drop
        out.append({"artifact": entry["name"], "degradation": drop, "limit": limit,
                    "met": within(drop, limit)})
    return out


def decide(manifest: dict[str, Any]) -> dict[str, Any]:
    """Set ``status``, ``failures`` and ``inconclusive`` of a manifest (and its goals' ``met``).

    Args:
        manifest: a manifest with ``artifacts`` (each with a status), optionally ``passes``,
            ``goals`` and ``original`` (compress).

    Returns:
        The same manifest, updated in place.
    """
    judged = manifest.get("verified_with") or manifest.get("recipe") or {}  # verify's criteria, else the export's
    accept = bool((judged.get("verify") or {}).get("accept_inconclusive", False))
    failures: list[dict[str, Any]] = []
    inconclusive: list[dict[str, Any]] = []
    for entry in manifest["artifacts"]:
        reason = entry.get("failure_reason")
        if entry.get("status") == "verified":
            continue
        if entry.get("status") == "inconclusive":
            if not accept:
                inconclusive.append(failure("artifact", f"{entry['name']}: {reason}", "inconclusive", "verified",
                                            artifact=entry["name"]))
            continue
        failures.append(failure("artifact", f"{entry['name']}: {reason}", entry.get("status"), "verified",
                                artifact=entry["name"]))
    for name, entry in ((manifest.get("generation") or {}).get("artifacts") or {}).items():
        if entry.get("status") != "verified":
            failures.append(failure("generation", f"{name}: " + "; ".join(entry.get("failures") or ["failed"]),
                                    entry.get("status"), "verified", artifact=name))
    goals = manifest.get("goals")
    if goals is not None:
        missed = []
        for i, p in enumerate(manifest.get("passes", []), start=1):
            if not p.get("goal_met", True):
                missed.append(failure("goal", f"after pass {i} ({p['type']}): metric dropped {p['degradation']:.4f} "
                                      f"> max_degradation {p['max_degradation']:g}", p["degradation"],
                                      p["max_degradation"], stage=f"pass {i}"))
        goals["artifacts"] = _artifact_goals(manifest)
        for g in goals["artifacts"]:
            if not g["met"]:
                missed.append(failure("goal", f"artifact {g['artifact']}: metric dropped {g['degradation']:.4f} from "
                                      f"the original model > max_degradation {g['limit']:g}", g["degradation"],
                                      g["limit"], artifact=g["artifact"]))
        goals["met"] = not missed
        goals["missed"] = [m["message"] for m in missed]
        failures.extend(missed)
    opt = manifest.get("optimize")
    for folder, status in ((opt or {}).get("folders") or {}).items():
        if status != "verified":
            failures.append(failure("artifact", f"optimize: the chosen artifacts in {folder}/ are {status}", status,
                                    "verified", folder=folder))
    if opt is not None and not opt.get("met"):
        for target, names in opt.get("closest", {}).items():  # targets without a chosen candidate
            closest = ", ".join(names) or "none converted"
            failures.append(failure("goal", f"optimize: no {target} candidate meets every goal (closest: {closest})",
                                    "no candidate", "a candidate meeting every goal", target=target))
    device = apply_budgets(manifest)
    if device is not None and device.get("required") and not device["fits"]:  # optimize's goals judge its own
        failures.append(failure("device", f"device {device['name']}: {_no_fit(manifest)}", "no artifact fits",
                                "a verified TFLite artifact that fits", device=device["name"]))
    for layout, record in (manifest.get("package") or {}).items():
        if record.get("status") != "verified":
            failures.append(failure("package", f"package {layout}: {record.get('artifact')} in {record.get('path')} is "
                                    f"{record.get('status')}: {record.get('failure_reason')}", record.get("status"),
                                    "verified", layout=layout))
    manifest["failures"] = failures
    manifest["inconclusive"] = inconclusive
    manifest["status"] = "failed" if failures else "inconclusive" if inconclusive else "verified"
    return manifest


def _no_fit(manifest: dict[str, Any]) -> str:
    """Why no verified TFLite artifact fits the device: each TFLite artifact's budget verdict."""
    reasons = [f"{e['name']} {e['status']}" + (f", {b['verdict'].replace('_', ' ')}: {b['reason']}" if b else "")
               for e in manifest["artifacts"] if e.get("format") == "tflite"
               for b in [(e.get("device_fit") or {}).get("budget")]]
    return "no verified TFLite artifact fits (" + ("; ".join(reasons) or "the recipe makes none") + ")"
