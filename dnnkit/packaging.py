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
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from dnnkit.errors import SpecError

LAYOUTS = {"triton": "onnx", "tf-serving": "saved_model"}
TRITON_TYPES = {1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 4: "TYPE_UINT16", 5: "TYPE_INT16", 6: "TYPE_INT32",
                7: "TYPE_INT64", 8: "TYPE_STRING", 9: "TYPE_BOOL", 10: "TYPE_FP16", 11: "TYPE_FP64",
                12: "TYPE_UINT32", 13: "TYPE_UINT64", 16: "TYPE_BF16"}
LABELS_FILE = "labels.txt"
NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"  # a model folder name


def package(out_dir: str | Path, layouts: str | list[str], *, dest: str | Path | None = None,
            model_name: str | None = None, version: int = 1, max_batch_size: int = 8, artifact: str | None = None,
            unsafe: bool = False) -> dict[str, Any]:
    """Lay out verified artifacts of ``out_dir`` for model servers and verify each there.

    Args:
        out_dir: an export folder (``dnnkit run|export|compress|optimize`` output).
        layouts: ``triton`` (an ONNX artifact) and/or ``tf-serving`` (the SavedModel).
        dest: the repository / base folder (``DEST/LAYOUT`` for several layouts); ``OUT/serving/LAYOUT``
            by default.
        model_name: the model's folder name; the spec or model name by default.
        version: the version folder (a positive integer).
        max_batch_size: Triton's ``max_batch_size`` for a model with a dynamic batch (0 turns
            batching off); a model with a fixed batch gets 0 and the batch in its dims.
        artifact: which ONNX artifact Triton gets; by default ``optimize``'s choice, else the first
            verified ONNX artifact in the manifest.

    Returns:
        The updated manifest (``package[layout]``: path, artifact, sha256, files, status).

    Raises:
        SpecError: a bad layout, name, version or batch size, or no verified artifact of the format.
        ModelLoadError: the folder is not an export folder.
    """
    layouts = [layouts] if isinstance(layouts, str) else list(layouts)
    for layout in layouts:
        if layout not in LAYOUTS:
            raise SpecError(f"package.layout: expected one of {', '.join(LAYOUTS)}, got {layout!r}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SpecError(f"package.version: expected a positive integer, got {version!r}")
    if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 0:
        raise SpecError(f"package.max_batch_size: expected an integer >= 0, got {max_batch_size!r}")
    if model_name is not None:
        _model_name(model_name)
    return _package(Path(out_dir), layouts, dict(dest=dest, model_name=model_name, version=version,
                                                 max_batch_size=max_batch_size, artifact=artifact),
                    unsafe=unsafe, record_errors=False)


def _package(out: Path, layouts: list[str], keywords: dict[str, Any], *, unsafe: bool,
             record_errors: bool) -> dict[str, Any]:
    """Every layout from one reverification (the reference model loaded and run once), then one
    verdict and write. With ``record_errors`` a layout that cannot be made is recorded as failed
    instead of raising."""
    from dnnkit.pipeline import _finish, reverification

    manifest, ref, recipe = reverification(out, unsafe=unsafe)
    for layout in layouts:
        try:
            record = _lay_out(out, manifest, ref, recipe, layout, len(layouts), **keywords)
        except SpecError as exc:
            if not record_errors:
                raise
            record = {"layout": layout, "status": "failed", "artifact": None, "path": None,
                      "version": keywords.get("version", 1), "failure_reason": str(exc)}
        manifest.setdefault("package", {})[layout] = record
    return _finish(manifest, out)


def _lay_out(out: Path, manifest: dict[str, Any], ref: Any, recipe: Any, layout: str, count: int, *,
             dest: str | Path | None, model_name: str | None, version: int, max_batch_size: int,
             artifact: str | None) -> dict[str, Any]:
    """One layout written (staged beside its place, moved in when done) and verified: its record."""
    from dnnkit.verification import file_digest, verify_artifacts

    entry = _pick(manifest, LAYOUTS[layout], artifact if layout == "triton" else None)
    name = model_name or _model_name(re.sub(r"[^A-Za-z0-9_.-]", "_", manifest["reference"].get("spec")
                                            or out.resolve().name).lstrip("_.-") or "model")
    base = (Path(dest) / layout if count > 1 else Path(dest)) if dest is not None else out / "serving" / layout
    source = out / entry["path"]
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=base))
    record: dict[str, Any] = {}
    try:
        model_dir = staging / name
        if layout == "triton":
            files, record["max_batch_size"] = _triton(source, model_dir, name, version, max_batch_size, entry)
            packaged = model_dir / str(version) / "model.onnx"
        else:
            packaged = model_dir / str(version)
            shutil.copytree(source, packaged)
            files = [str(version)]
        same_bytes = file_digest(packaged)[0] == entry.get("sha256")
        item = {"name": entry["name"], "path": str(packaged), "options": entry["options"],
                "expected_sha256": entry.get("sha256") if same_bytes else None,
                "fake_quant": bool(manifest["reference"].get("fake_quant"))}
        (out / "logs").mkdir(exist_ok=True)
        fresh = verify_artifacts([item], ref, recipe, log_path=out / "logs" / "package.log")[entry["name"]]
        final = base / name
        if final.exists():
            shutil.rmtree(final)
        model_dir.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"layout": layout, "path": str(final.relative_to(out) if out.resolve() in final.resolve().parents
                                          else final.resolve()),
            "model_name": name, "version": version, "artifact": entry["name"], "files": files,
            "sha256": fresh.get("sha256"), "same_bytes_as_artifact": same_bytes,
            "status": fresh["status"], "failure_reason": fresh.get("failure_reason"),
            "parity": fresh.get("parity"), "metrics": fresh.get("metrics"), **record}


def reverify_packages(manifest: dict[str, Any], out: Path, ref: Any, recipe: Any) -> None:
    """``dnnkit verify``: run each packaged model where it lies again (its sha256 must be the one
    recorded when it was packaged); a missing one fails. Updates ``manifest["package"]`` in place."""
    from dnnkit.verification import verify_artifacts

    entries = {e["name"]: e for e in manifest["artifacts"]}
    for layout, rec in (manifest.get("package") or {}).items():
        if not rec.get("path") or rec.get("artifact") not in entries:
            continue  # a layout that was never made stays failed
        folder = Path(rec["path"]) if Path(rec["path"]).is_absolute() else out / rec["path"]
        where = folder / str(rec["version"]) / ("model.onnx" if layout == "triton" else "")
        if not where.exists():
            rec.update(status="failed", failure_reason=f"{where} is missing")
            continue
        entry = entries[rec["artifact"]]
        item = {"name": entry["name"], "path": str(where), "options": entry["options"],
                "expected_sha256": rec.get("sha256"), "fake_quant": bool(manifest["reference"].get("fake_quant"))}
        fresh = verify_artifacts([item], ref, recipe, log_path=out / "logs" / "package.log")[entry["name"]]
        rec.update(status=fresh["status"], failure_reason=fresh.get("failure_reason"), parity=fresh.get("parity"),
                   metrics=fresh.get("metrics"))


def _model_name(name: str) -> str:
    if not re.fullmatch(NAME, name):
        raise SpecError(f"package.model_name: expected letters, digits, '_', '-' or '.' (a folder name), got {name!r}")
    return name


def _pick(manifest: dict[str, Any], fmt: str, artifact: str | None) -> dict[str, Any]:
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
    for entry in manifest["artifacts"]:
        if entry["format"] == fmt and entry["status"] == "verified":
            return entry
    raise SpecError(f"package.artifact: no verified {fmt} artifact in the export folder "
                    f"(artifacts: {', '.join(n + ' ' + e['status'] for n, e in entries.items())})")


def _triton(source: Path, model_dir: Path, name: str, version: int, max_batch_size: int,
            entry: dict[str, Any]) -> tuple[list[str], int]:
    """Write the model, its config and its labels under ``model_dir``; return the files written and
    the ``max_batch_size`` the config got."""
    import onnx

    target = model_dir / str(version) / "model.onnx"
    target.parent.mkdir(parents=True)
    side = source.with_name(source.name + ".data")
    proto = onnx.load(str(source), load_external_data=False)
    files = [f"{version}/model.onnx"]
    if side.is_file():  # external data: the copy's data file is named after the copy
        for tensor in proto.graph.initializer:
            for kv in tensor.external_data:
                if kv.key == "location":
                    kv.value = "model.onnx.data"
        onnx.save(proto, str(target))
        shutil.copyfile(side, target.with_name("model.onnx.data"))
        files.append(f"{version}/model.onnx.data")
    else:
        shutil.copyfile(source, target)
    labels = (entry.get("metadata") or {}).get("labels")
    text = triton_config(proto, name, max_batch_size, labels=labels)
    (model_dir / "config.pbtxt").write_text(text, encoding="utf-8")
    files.insert(0, "config.pbtxt")
    if labels and LABELS_FILE in text:
        (model_dir / LABELS_FILE).write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
        files.insert(1, LABELS_FILE)
    return files, _served_batch(proto, max_batch_size)


def triton_config(proto: Any, name: str, max_batch_size: int, *, labels: list[str] | None = None) -> str:
    """A Triton ``config.pbtxt`` for an ONNX model: its inputs and outputs with Triton's data types
    and dims (the batch left out when the graph's batch is dynamic and ``max_batch_size > 0``; a
    fixed batch turns batching off); ``label_filename`` on each output whose last dim is the
    number of labels."""
    tensors = {"input": list(proto.graph.input), "output": list(proto.graph.output)}
    dims = {t.name: _dims(t) for t in tensors["input"] + tensors["output"]}
    batch = _served_batch(proto, max_batch_size)
    lines = [f'name: "{name}"', 'platform: "onnxruntime_onnx"', f"max_batch_size: {batch}"]
    for kind, items in tensors.items():
        for t in items:
            elem = t.type.tensor_type.elem_type
            if elem not in TRITON_TYPES:
                raise SpecError(f"package.layout: tensor {t.name!r} has ONNX type {elem}, which Triton has no type for")
            shape = dims[t.name][1:] if batch else dims[t.name]
            body = [f'name: "{t.name}"', f"data_type: {TRITON_TYPES[elem]}", f"dims: [ {', '.join(map(str, shape))} ]"]
            if kind == "output" and labels and shape and shape[-1] == len(labels):
                body.append(f'label_filename: "{LABELS_FILE}"')
            lines.append(f"{kind} [\n  {{\n" + "".join(f"    {b}\n" for b in body) + "  }\n]")
    if batch:
        lines.append("dynamic_batching { }")
    lines.append('instance_group [ { kind: KIND_CPU } ]')
    return "\n".join(lines) + "\n"


def _dims(tensor: Any) -> list[int]:
    return [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.type.tensor_type.shape.dim]


def _served_batch(proto: Any, max_batch_size: int) -> int:
    """Triton's ``max_batch_size``: as asked when every input's batch is dynamic, else 0 (no batching)."""
    dynamic = all((dims := _dims(t)) and dims[0] == -1 for t in proto.graph.input)
    return max_batch_size if dynamic else 0


def read_package(t: Any) -> dict[str, Any]:
    """A recipe's ``[package]`` table (a :class:`dnnkit.config.TableReader`) as ``{"layouts": [...],
    **package() keywords}``: ``layouts`` (default both), ``model_name``, ``version``,
    ``max_batch_size``, ``onnx_artifact`` (Triton's artifact).

    Raises:
        SpecError: unknown keys or bad values, naming the field.
    """
    options = {"layouts": list(t.str_list("layouts", tuple(LAYOUTS), tuple(LAYOUTS))),
               "version": t.integer("version", 1), "max_batch_size": t.integer("max_batch_size", 8, minimum=0)}
    if t.has("model_name"):
        options["model_name"] = t.string("model_name")
        if not re.fullmatch(NAME, options["model_name"]):
            t.fail("model_name", options["model_name"], "letters, digits, '_', '-' or '.' (a folder name)")
    if t.has("onnx_artifact"):
        options["artifact"] = t.string("onnx_artifact")
    t.done(("layouts", "model_name", "version", "max_batch_size", "onnx_artifact"))
    if not options["layouts"]:
        t.fail("layouts", [], f"one or more of {', '.join(LAYOUTS)}")
    return options


def package_all(out_dir: str | Path, options: dict[str, Any] | None, manifest: dict[str, Any], *,
                unsafe: bool = False) -> dict[str, Any]:
    """The layouts a recipe's ``[package]`` table asks for, after its export; a layout that cannot be
    made (no verified artifact of its format) is recorded as failed, which fails the manifest.

    Returns:
        The manifest (updated and rewritten when the table asked for layouts).
    """
    if not options:
        return manifest
    keywords = {"dest": None, "model_name": None, "artifact": None,
                **{k: v for k, v in options.items() if k != "layouts"}}
    return _package(Path(out_dir), options["layouts"], keywords, unsafe=unsafe, record_errors=True)
