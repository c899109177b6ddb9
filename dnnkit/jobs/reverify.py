"""``dnnkit verify``: an export folder checked again, as it lies: every artifact's sha256 and its runtime checks
against the reference model (whose own sha256 must match), its packaged copies, its goals; the folders
``optimize`` kept too."""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

from dnnkit.artifacts.files import file_digest
from dnnkit.errors import ModelLoadError, one_line
from dnnkit.handoff.layouts import reverify_packages
from dnnkit.jobs.finish import finish
from dnnkit.jobs.reference import has_fp16, reference
from dnnkit.jobs.timing import job
from dnnkit.manifest.record import MANIFEST, apply_check
from dnnkit.sources.open import load_reference_model
from dnnkit.sources.target import spec_for_model
from dnnkit.config.model import load_spec
from dnnkit.config.recipe import ArtifactConfig, Recipe, VerifyConfig
from dnnkit.verification.reference import Reference
from dnnkit.workers.checks import check_item, verify_artifacts


def verify_dir(out_dir: str | os.PathLike[str], *, unsafe: bool = False) -> dict[str, Any]:
    """Re-verify every artifact an export wrote (checksums, then the runtime checks), and the goals.

    Returns:
        The updated manifest (written back to ``OUT/manifest.json``).

    Raises:
        ModelLoadError: if the folder has no manifest or reference model.
    """
    with job(convert=False):
        return _verify_dir(out_dir, unsafe=unsafe)


def _verify_dir(out_dir: str | os.PathLike[str], *, unsafe: bool = False) -> dict[str, Any]:
    out = Path(out_dir)
    manifest, ref, recipe = reverification(out, unsafe=unsafe)
    ref_info = manifest["reference"]
    items = []
    for entry in manifest["artifacts"]:
        if not entry.get("converted"):
            continue  # nothing was produced; it stays failed
        target = (out / entry["path"]).resolve()
        if out.resolve() not in target.parents:
            raise ModelLoadError(f"verify: artifact path {entry['path']!r} leaves the export folder")
        items.append(check_item(entry["name"], target, entry["options"], expected_sha256=entry.get("sha256"),
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
    reverify_packages(manifest, out, ref, recipe)
    opt = manifest.get("optimize") or {}
    for folder in opt.get("folders") or {}:  # dnnkit optimize: chosen artifacts of the compressed model
        opt["folders"][folder] = _verify_dir(out / folder, unsafe=unsafe)["status"]
    manifest["verified_again"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return finish(manifest, out)


def reverification(out: Path, *, unsafe: bool = False) -> tuple[dict[str, Any], Reference, Recipe]:
    """What re-verifying an export folder needs: its manifest, the reference (outputs recomputed
    from the reference model, whose sha256 must match) and the recipe's verification settings.

    Raises:
        ModelLoadError: if the folder has no manifest or reference model, or either is damaged.
    """
    path = out / MANIFEST
    if not path.is_file():
        raise ModelLoadError(f"verify: {out} has no {MANIFEST}; expected an export folder")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        ref_info = manifest["reference"]
        verify_cfg = VerifyConfig(**manifest["recipe"]["verify"])
        arts = [ArtifactConfig(**e["options"]) for e in manifest["artifacts"]]
        if not all(isinstance(e["path"], str) and isinstance(e["name"], str) for e in manifest["artifacts"]):
            raise TypeError("artifact name/path not a string")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelLoadError(f"verify: {path} is not a dnnkit manifest ({one_line(exc, 200)})") from None
    ref_model = out / ref_info["model"]
    digest, _ = file_digest(ref_model) if ref_model.exists() else ("", 0)
    if digest != ref_info["sha256"]:
        raise ModelLoadError(f"verify: {ref_model} is missing or changed since export (sha256 mismatch)")
    model = load_reference_model(ref_model, unsafe=unsafe)
    spec_file = out / "reference" / "spec.toml"
    data = ref_info["data"]
    heads = [o["head"] for o in ref_info.get("outputs") or []] or None
    spec = (load_spec(spec_file) if spec_file.is_file()
            else spec_for_model(model, None if ref_info["head"] == "multi" else ref_info["head"], data))
    recipe = Recipe(name=manifest["recipe"]["name"], artifacts=tuple(arts), verify=verify_cfg)
    ref, _ = reference(model, spec, data, verify_cfg.max_inputs, fp16=has_fp16(recipe), heads=heads)
    return manifest, ref, recipe
