"""Serving layouts of an export folder: ``dnnkit package`` (the folder verified again first, its reference
model run once for every layout), and a recipe's ``[package]`` table after its export (with the reference the
export computed). Either way the manifest and report are written once, at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dnnkit.core.staging import owned_staging
from dnnkit.errors import SpecError
from dnnkit.handoff.layouts import lay_out
from dnnkit.jobs.finish import finish, stamp_verdicts
from dnnkit.jobs.outfolder import updated_output
from dnnkit.jobs.reverify import reverification
from dnnkit.config.package import check_options
from dnnkit.config.recipe import Recipe, as_recipe
from dnnkit.verification.reference import Reference


def package(out_dir: str | Path, layouts: str | list[str], *, dest: str | Path | None = None,
            model_name: str | None = None, version: int = 1, max_batch_size: int = 8, artifact: str | None = None,
            tflite_artifact: str | None = None, unsafe: bool = False,
            recipe: Recipe | str | Path | None = None) -> dict[str, Any]:
    """Lay out verified artifacts of ``out_dir`` for model servers (or a TFLite Micro firmware) and verify each
    there.

    Args:
        out_dir: an export folder (``dnnkit run|export|compress|optimize`` output).
        layouts: ``triton`` (an ONNX artifact), ``tf-serving`` (the SavedModel) and/or ``tflm`` (a TFLite
            artifact as ``model_data.h/.cc`` and ``micro_op_resolver.h``; ``OUT/firmware/tflm`` by default).
        dest: the repository / base folder (``DEST/LAYOUT`` for several layouts); ``OUT/serving/LAYOUT``
            by default.
        model_name: the model's folder name; the spec or model name by default.
        version: the version folder (a positive integer).
        max_batch_size: Triton's ``max_batch_size`` for a model with a dynamic batch (0 turns
            batching off); a model with a fixed batch gets 0 and the batch in its dims.
        artifact: which ONNX artifact Triton gets (or, naming a TFLite artifact, which one tflm gets); by
            default ``optimize``'s choice, else the first verified one in the manifest (for tflm: one that ran
            in TFLite Micro first).
        tflite_artifact: which TFLite artifact tflm gets.
        unsafe: allow Lambda layers (trusted files only).
        recipe: whose ``[verify]`` criteria judge the layouts (the defaults when ``None``; never the ones the
            folder records).

    Returns:
        The updated manifest (``package[layout]``: path, artifact, sha256, files, status).

    Raises:
        SpecError: a bad layout, name, version or batch size, or no verified artifact of the format.
        ModelLoadError: the folder is not an export folder.
    """
    layouts = [layouts] if isinstance(layouts, str) else list(layouts)
    check_options(layouts, version=version, max_batch_size=max_batch_size, model_name=model_name)
    criteria = as_recipe(recipe) if recipe is not None else None
    with updated_output(out_dir) as out:
        if dest is not None:
            dest = owned_staging(Path(dest)) or dest  # a layout inside the folder is published with it
        manifest, ref, judged = reverification(out, criteria=criteria, unsafe=unsafe)  # the reference run once
        _lay_out_all(out, manifest, ref, judged, layouts, dict(dest=dest, model_name=model_name, version=version,
                                                               max_batch_size=max_batch_size, artifact=artifact,
                                                               tflite_artifact=tflite_artifact),
                     record_errors=False)
        return finish(manifest, out)


def with_packages(manifest: dict[str, Any], options: dict[str, Any] | None, out: Path, *, ref: Reference,
                  recipe: Recipe) -> dict[str, Any]:
    """The layouts a recipe's ``[package]`` table asks for, after its export, checked against the reference
    the export's artifacts were checked against; a layout that cannot be made (no verified artifact of its
    format) is recorded as failed, which fails the manifest.

    Returns:
        ``manifest``, with a ``package`` section when the table asked for layouts (not yet written).
    """
    if not options:
        return manifest
    keywords = {"dest": None, "model_name": None, "artifact": None,
                **{k: v for k, v in options.items() if k != "layouts"}}
    stamp_verdicts(manifest, out)  # the copies carry the verdict the folder's files do
    _lay_out_all(out, manifest, ref, recipe, options["layouts"], keywords, record_errors=True)
    return manifest


def _lay_out_all(out: Path, manifest: dict[str, Any], ref: Reference, recipe: Recipe, layouts: list[str],
                 keywords: dict[str, Any], *, record_errors: bool) -> None:
    """Every layout into ``manifest["package"]``. With ``record_errors`` a layout that cannot be made is
    recorded as failed instead of raising."""
    for layout in layouts:
        try:
            record = lay_out(out, manifest, ref, recipe, layout, len(layouts), **keywords)
        except SpecError as exc:
            if not record_errors:
                raise
            record = {"layout": layout, "status": "failed", "artifact": None, "path": None,
                      "version": keywords.get("version", 1), "failure_reason": str(exc)}
        manifest.setdefault("package", {})[layout] = record
