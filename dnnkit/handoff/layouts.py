"""Serving layouts from an export folder (issue 11): a Triton model repository for an ONNX artifact,
a TF Serving base folder for the SavedModel. The packaged copy is verified again, in its new place,
exactly as the artifact was (runtime checks against the reference model), and the manifest records
the layout under ``package``.

Triton (``onnxruntime_onnx`` platform; Triton's TensorFlow backend is gone since 2025)::

    DEST/MODEL/config.pbtxt        name, platform, max_batch_size, input/output (name, data_type, dims
                                   without the batch when max_batch_size > 0), dynamic_batching
    DEST/MODEL/labels.txt          class names, named by the classifier output's label_filename
    DEST/MODEL/VERSION/model.onnx

TF Serving::

    DEST/MODEL/VERSION/            the SavedModel (signature serving_default)

TensorFlow Lite Micro (a firmware's C source, :mod:`dnnkit.handoff.tflm`; ``OUT/firmware/tflm`` by default)::

    DEST/MODEL/model_data.h, model_data.cc, micro_op_resolver.h

    Its copy is the array the compiler reads back: those bytes must be the artifact's, and they are verified
    again like the others.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from dnnkit.artifacts.files import file_digest
from dnnkit.errors import SpecError
from dnnkit.handoff.tflm import read_back, write_tflm
from dnnkit.handoff.triton import write_triton
from dnnkit.config.package import LAYOUTS, check_model_name
from dnnkit.config.recipe import Recipe
from dnnkit.verification.reference import Reference
from dnnkit.workers.checks import check_item, verify_artifacts


def lay_out(out: Path, manifest: dict[str, Any], ref: Reference, recipe: Recipe, layout: str, count: int, *,
            dest: str | Path | None, model_name: str | None, version: int, max_batch_size: int,
            artifact: str | None, tflite_artifact: str | None = None) -> dict[str, Any]:
    """One layout written (staged beside its place, moved in when done) and verified: its record."""
    entry = pick(manifest, LAYOUTS[layout], _wanted(manifest, layout, artifact, tflite_artifact, alone=count == 1))
    name = model_name or check_model_name(re.sub(r"[^A-Za-z0-9_.-]", "_", manifest["reference"].get("spec")
                                                 or out.resolve().name).lstrip("_.-") or "model")
    home = "firmware" if layout == "tflm" else "serving"
    base = (Path(dest) / layout if count > 1 else Path(dest)) if dest is not None else out / home / layout
    source = out / entry["path"]
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=base))
    record: dict[str, Any] = {}
    try:
        model_dir = staging / name
        if layout == "triton":
            files, record["max_batch_size"] = write_triton(source, model_dir, name, version, max_batch_size, entry)
            packaged = model_dir / str(version) / "model.onnx"
        elif layout == "tflm":
            files, record["firmware"] = write_tflm(source, model_dir, entry)
            packaged = staging / "read_back.tflite"  # what the compiled array holds, checked as the artifact was
            try:
                data, record["read_back"] = read_back(model_dir)
            except (OSError, ValueError) as exc:
                record["read_back"] = f"failed: {exc}"
                data = b""
            packaged.write_bytes(data)
        else:
            packaged = model_dir / str(version)
            shutil.copytree(source, packaged)
            files = [str(version)]
        same_bytes = file_digest(packaged)[0] == entry.get("sha256")
        item = check_item(entry["name"], packaged, entry["options"],  # a firmware's bytes must be the artifact's
                          expected_sha256=entry.get("sha256") if same_bytes or layout == "tflm" else None,
                          fake_quant=manifest["reference"].get("fake_quant"))
        (out / "logs").mkdir(exist_ok=True)
        if layout == "tflm" and not data:
            fresh = {"status": "failed", "failure_reason": f"the C array could not be read back: {record['read_back']}"}
        else:
            fresh = verify_artifacts([item], ref, recipe, log_path=out / "logs" / "package.log")[entry["name"]]
        final = base / name
        if final.exists():
            shutil.rmtree(final)
        model_dir.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"layout": layout, "path": str(final.relative_to(out) if out.resolve() in final.resolve().parents
                                          else final.resolve()),
            "model_name": name, "version": None if layout == "tflm" else version, "artifact": entry["name"],
            "files": files,
            "sha256": fresh.get("sha256"), "same_bytes_as_artifact": same_bytes,
            "status": fresh["status"], "failure_reason": fresh.get("failure_reason"),
            "parity": fresh.get("parity"), "metrics": fresh.get("metrics"), **record}


def _wanted(manifest: dict[str, Any], layout: str, artifact: str | None, tflite_artifact: str | None, *,
            alone: bool) -> str | None:
    """The artifact a layout was asked for: ``artifact`` for triton; for tflm ``tflite_artifact``, or ``artifact``
    where it names a TFLite one or tflm is the only layout asked for (``dnnkit package --layout tflm --artifact
    NAME``: a name of another format is then refused by :func:`pick`)."""
    if layout == "triton":
        return artifact
    if layout != "tflm":
        return None
    if tflite_artifact is not None:
        return tflite_artifact
    formats = {e["name"]: e["format"] for e in manifest["artifacts"]}
    return artifact if alone or formats.get(artifact) == "tflite" else None


def _tflm_first(entry: dict[str, Any]) -> tuple[bool, bool]:
    """TFLite files for a firmware: those that ran in TFLite Micro first, full-integer ones first among them."""
    ran = ((entry.get("device_fit") or {}).get("tflm") or {}).get("status") == "ran"
    return not ran, entry.get("precision") not in ("int8", "int16x8")


def pick(manifest: dict[str, Any], fmt: str, artifact: str | None) -> dict[str, Any]:
    entries = {e["name"]: e for e in manifest["artifacts"]}
    if artifact is not None:
        entry = entries.get(artifact)
        if entry is None or entry["format"] != fmt:
            have = [n for n, e in entries.items() if e["format"] == fmt]
            raise SpecError(f"package.artifact: expected one of the {fmt} artifacts {have}, got {artifact!r}")
        if entry["status"] != "verified":
            raise SpecError(f"package.artifact: {artifact!r} is {entry['status']}; expected a verified artifact")
        return entry
    chosen = ((manifest.get("optimize") or {}).get("chosen") or {}).get(fmt)
    if chosen in entries and entries[chosen]["status"] == "verified":
        return entries[chosen]
    ordered = manifest["artifacts"] if fmt != "tflite" else sorted(manifest["artifacts"], key=_tflm_first)
    for entry in ordered:
        if entry["format"] == fmt and entry["status"] == "verified":
            return entry
    raise SpecError(f"package.artifact: no verified {fmt} artifact in the export folder "
                    f"(artifacts: {', '.join(n + ' ' + e['status'] for n, e in entries.items())})")


def reverify_packages(manifest: dict[str, Any], out: Path, ref: Reference, recipe: Recipe) -> None:
    """``dnnkit verify``: run each packaged model where it lies again (its sha256 must be the one
    recorded when it was packaged); a missing one fails. Updates ``manifest["package"]`` in place."""
    entries = {e["name"]: e for e in manifest["artifacts"]}
    for layout, rec in (manifest.get("package") or {}).items():
        if not rec.get("path") or rec.get("artifact") not in entries:
            continue  # a layout that was never made stays failed
        folder = Path(rec["path"]) if Path(rec["path"]).is_absolute() else out / rec["path"]
        where = (folder if layout == "tflm" else
                 folder / str(rec["version"]) / ("model.onnx" if layout == "triton" else ""))
        if not where.exists():
            rec.update(status="failed", failure_reason=f"{where} is missing")
            continue
        entry = entries[rec["artifact"]]
        with tempfile.TemporaryDirectory(prefix="dnnkit-package-") as tmp:
            if layout == "tflm":
                try:
                    data, rec["read_back"] = read_back(folder)
                except (OSError, ValueError) as exc:
                    rec.update(status="failed", failure_reason=f"{folder}: {exc}")
                    continue
                where = Path(tmp) / "read_back.tflite"
                where.write_bytes(data)
            item = check_item(entry["name"], where, entry["options"], expected_sha256=rec.get("sha256"),
                              fake_quant=manifest["reference"].get("fake_quant"))
            fresh = verify_artifacts([item], ref, recipe, log_path=out / "logs" / "package.log")[entry["name"]]
        rec.update(status=fresh["status"], failure_reason=fresh.get("failure_reason"), parity=fresh.get("parity"),
                   metrics=fresh.get("metrics"))
