"""``dnnkit verify``: an export folder checked again, as it lies: every artifact's sha256 and its runtime checks
against the reference model (whose own sha256 must match), its packaged copies, its goals; the folders
``optimize`` kept too.

The criteria are the defaults or those of a recipe the caller names, never the ones the folder's manifest
records (a folder cannot loosen its own check); the manifest's ``verified_with`` says which were used. A folder
whose reference model is gone or changed is marked failed (its artifacts cannot be checked)."""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from dnnkit.artifacts.files import file_digest
from dnnkit.errors import ModelLoadError, one_line
from dnnkit.handoff.layouts import reverify_packages
from dnnkit.jobs.generation import recheck_generation
from dnnkit.jobs.finish import finish
from dnnkit.jobs.outfolder import updated_output
from dnnkit.jobs.reference import has_fp16, reference
from dnnkit.jobs.timing import job
from dnnkit.manifest.record import MANIFEST, apply_check
from dnnkit.sources.open import load_reference_model
from dnnkit.sources.target import spec_for_model
from dnnkit.config.model import BUILTIN_SOURCES, load_spec
from dnnkit.config.recipe import ArtifactConfig, Recipe, VerifyConfig, as_recipe
from dnnkit.verification.criteria import failure
from dnnkit.verification.reference import Reference
from dnnkit.workers.checks import check_item, verify_artifacts


def verify_dir(out_dir: str | os.PathLike[str], *, recipe: Recipe | str | os.PathLike[str] | None = None,
               unsafe: bool = False, verbose: bool = False) -> dict[str, Any]:
    """Re-verify every artifact an export wrote (checksums, then the runtime checks), and the goals.

    Args:
        out_dir: the export folder.
        recipe: whose ``[verify]`` criteria (and per-artifact tolerances, by artifact name) judge the
            artifacts; ``None``: the defaults. The folder's own recorded criteria are never used.
        unsafe: allow Lambda layers (trusted files only).
        verbose: say which criteria judge the folder.

    Returns:
        The updated manifest (written back to ``OUT/manifest.json``, with the report, in one step).

    Raises:
        ModelLoadError: if the folder has no manifest, or it is damaged.
        FolderError: the folder is being written by another command.
    """
    criteria = as_recipe(recipe) if recipe is not None else None
    with updated_output(out_dir) as out, job(convert=False):
        if verbose:
            said = "dnnkit's default criteria (name a recipe with --recipe for its own)" if criteria is None else \
                f"the criteria of {criteria_name(criteria)}"
            print(f"verifying {out_dir} with {said}", flush=True)
        return _verify_dir(out, criteria, unsafe=unsafe)


def criteria_name(criteria: Recipe | None) -> str:
    """How ``verified_with`` names the criteria: the recipe's path (or name), or ``defaults``."""
    return "defaults" if criteria is None else f"recipe {criteria.path or criteria.name}"


def _verify_dir(out: Path, criteria: Recipe | None, *, unsafe: bool = False) -> dict[str, Any]:
    gone = reference_gone(out)
    if gone is not None:
        return _reference_gone(out, gone)
    manifest, ref, recipe = reverification(out, criteria=criteria, unsafe=unsafe)
    ref_info = manifest["reference"]
    by_name = {a.name: a for a in recipe.artifacts}
    items = []
    for entry in manifest["artifacts"]:
        if not entry.get("converted"):
            continue  # nothing was produced; it stays failed
        target = (out / entry["path"]).resolve()
        if out.resolve() not in target.parents:
            raise ModelLoadError(f"verify: artifact path {entry['path']!r} leaves the export folder")
        items.append(check_item(entry["name"], target, by_name[entry["name"]].to_dict(),
                                expected_sha256=entry.get("sha256"),
                                fake_quant=ref_info.get("fake_quant")))
    (out / "logs").mkdir(exist_ok=True)
    fresh_all = verify_artifacts(items, ref, recipe, log_path=out / "logs" / "verify.log")
    for entry in manifest["artifacts"]:
        if entry["name"] not in fresh_all:
            continue
        expected = entry.get("sha256")
        fresh = fresh_all[entry["name"]]
        fresh["sha256_recorded"] = expected
        apply_check(entry, fresh)
        entry["sha256"] = expected  # the manifest keeps the digest recorded at export
        entry["options"] = by_name[entry["name"]].to_dict()  # the tolerances it was judged with
    reverify_packages(manifest, out, ref, recipe)
    if (manifest.get("generation") or {}).get("artifacts"):  # a generative model's step files, token for token
        manifest["generation"] = recheck_generation(out, manifest["generation"], recipe.verify)
    opt = manifest.get("optimize") or {}
    for folder in opt.get("folders") or {}:  # dnnkit optimize: chosen artifacts of the compressed model
        opt["folders"][folder] = _verify_dir(out / folder, criteria, unsafe=unsafe)["status"]
    manifest["verified_again"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    manifest["verified_with"] = {"criteria": criteria_name(criteria), "verify": asdict(recipe.verify)}
    return finish(manifest, out)


def reference_gone(out: Path) -> str | None:
    """Why a folder's reference model cannot be used (missing or changed since export), or ``None``."""
    path = out / MANIFEST
    try:
        ref_info = json.loads(path.read_text(encoding="utf-8"))["reference"]
        ref_model = out / ref_info["model"]
        recorded = ref_info["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # reverification reports what is wrong with the manifest
    if not ref_model.exists():
        return f"the reference model {ref_info['model']} is missing"
    if file_digest(ref_model)[0] != recorded:
        return f"the reference model {ref_info['model']} changed since export (sha256 mismatch)"
    return None


def _reference_gone(out: Path, why: str) -> dict[str, Any]:
    """A folder whose reference is gone: every artifact failed (nothing can be checked against it)."""
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    for entry in manifest.get("artifacts") or []:
        entry["status"] = "failed"
        entry["failure_reason"] = f"not checked: {why}"
        entry["failures"] = [failure("reference", f"not checked: {why}", "missing", "present")]
    for record in (manifest.get("package") or {}).values():
        if isinstance(record, dict):
            record["status"] = "failed"
    manifest["verified_again"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return finish(manifest, out)


def reverification(out: Path, *, criteria: Recipe | None = None,
                   unsafe: bool = False) -> tuple[dict[str, Any], Reference, Recipe]:
    """What re-verifying an export folder needs: its manifest, the reference (outputs recomputed
    from the reference model, whose sha256 must match) and the recipe to judge with: each artifact's
    options as recorded (what it is), its tolerances and the ``[verify]`` settings from ``criteria``
    (the defaults when ``None``), never from the manifest.

    Raises:
        ModelLoadError: if the folder has no manifest or reference model, or either is damaged.
    """
    path = out / MANIFEST
    if not path.is_file():
        raise ModelLoadError(f"verify: {out} has no {MANIFEST}; expected an export folder")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        ref_info = manifest["reference"]
        arts = [judged_by(ArtifactConfig(**e["options"]), criteria) for e in manifest["artifacts"]]
        if not all(isinstance(e["path"], str) and isinstance(e["name"], str) for e in manifest["artifacts"]):
            raise TypeError("artifact name/path not a string")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelLoadError(f"verify: {path} is not a dnnkit manifest ({one_line(exc, 200)})") from None
    verify_cfg = criteria.verify if criteria is not None else replace(VerifyConfig(), **measurement(manifest))
    ref_model = out / ref_info["model"]
    digest, _ = file_digest(ref_model) if ref_model.exists() else ("", 0)
    if digest != ref_info["sha256"]:
        raise ModelLoadError(f"verify: {ref_model} is missing or changed since export (sha256 mismatch)")
    model = load_reference_model(ref_model, unsafe=unsafe)
    spec_file = out / "reference" / "spec.toml"
    data = ref_info["data"]
    if data not in BUILTIN_SOURCES and not os.path.isabs(data):
        data = str(out / data)  # data saved inside the folder (the Python API's arrays)
    heads = [o["head"] for o in ref_info.get("outputs") or []] or None
    spec = (load_spec(spec_file) if spec_file.is_file()
            else spec_for_model(model, None if ref_info["head"] == "multi" else ref_info["head"], data))
    recipe = Recipe(name=manifest["recipe"]["name"], artifacts=tuple(arts), verify=verify_cfg)
    ref, _ = reference(model, spec, data, verify_cfg.max_inputs, fp16=has_fp16(recipe), heads=heads)
    return manifest, ref, recipe


TOLERANCES = ("atol", "rtol", "min_agreement", "max_degradation")
# How a folder is measured, not judged: kept from its manifest where in range (a hang is still caught at the
# recorded timeout; nothing here can turn a failed check into a pass).
MEASUREMENT = {"latency_runs": (1, 10_000), "warmup_runs": (0, 1_000), "timeout_s": (1e-3, 3600.0)}


def measurement(manifest: dict[str, Any]) -> dict[str, Any]:
    """The recorded measurement settings of ``[verify]`` that are numbers in range."""
    recorded = ((manifest.get("recipe") or {}).get("verify") or {}) if isinstance(manifest.get("recipe"), dict) else {}
    kept = {}
    for key, (low, high) in MEASUREMENT.items():
        value = recorded.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high:
            kept[key] = type(getattr(VerifyConfig, key))(value)
    return kept


def judged_by(art: ArtifactConfig, criteria: Recipe | None) -> ArtifactConfig:
    """An artifact as recorded, its tolerances those of ``criteria``'s artifact of the same name (none
    where it has none: the ``[verify]`` values apply)."""
    named = {a.name: a for a in criteria.artifacts} if criteria is not None else {}
    source = named.get(art.name)
    return replace(art, **{k: getattr(source, k) if source is not None else None for k in TOLERANCES})
