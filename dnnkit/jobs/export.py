"""The export job: a model and a recipe -> artifacts -> verification -> manifest.

Output folder::

    OUT/manifest.json          every artifact, how it was verified, versions
    OUT/reference/model.keras  the Keras model the artifacts are checked against
    OUT/reference/spec.toml    its spec (when known)
    OUT/artifacts/             the SavedModel folder, .tflite and .onnx files
    OUT/logs/convert.log       the converter processes' stderr
    OUT/run/                   the training run (``dnnkit run`` only)
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dnnkit import __version__
from dnnkit.artifacts.metadata import UNCHECKED, VERDICT, input_normalization, weights_sha256
from dnnkit.child.pool import POOL
from dnnkit.core.fileio import atomic_path, write_text
from dnnkit.core.tensors import is_multi, predict, take
from dnnkit.errors import ModelLoadError
from dnnkit.jobs.conversions import Conversions, time_artifacts
from dnnkit.jobs.fallback import selective_fallback
from dnnkit.jobs.ladder import quantization_ladder
from dnnkit.jobs.finish import finish
from dnnkit.jobs.generation import generation_section
from dnnkit.jobs.outfolder import new_output, origin_record, source_of
from dnnkit.jobs.package import with_packages
from dnnkit.jobs.reference import data_source, has_fp16, reference_inputs, reference_outputs, representative
from dnnkit.jobs.timing import job, stage
from dnnkit.manifest.record import artifact_entries, export_manifest
from dnnkit.data.load import load_data
from dnnkit.sources.h5 import source_record
from dnnkit.sources.keras_file import check_archive
from dnnkit.sources.open import open_source
from dnnkit.sources.target import spec_for_model, spec_from_config
from dnnkit.config.model import Spec, as_spec, spec_to_dict
from dnnkit.core.heads import GENERATIVE_HEADS
from dnnkit.config.recipe import Recipe, as_recipe, require_artifacts, with_samples
from dnnkit.config.toml import dump_toml
from dnnkit.verification.reference import Reference
from dnnkit.workers.checks import reference_job


@dataclass
class Exported:
    """What an export made, before its verdict: the manifest, the reference its artifacts were checked
    against and the recipe they were made with (a recipe's ``[package]`` layouts are checked with both)."""

    manifest: dict[str, Any]
    ref: Reference
    recipe: Recipe


def export(model: str | os.PathLike[str], recipe: Recipe | str | os.PathLike[str],
           out_dir: str | os.PathLike[str], *, spec: Spec | str | os.PathLike[str] | None = None,
           data: str | None = None, task: str | None = None, unsafe: bool = False,
           verbose: bool = False, extra: dict[str, Any] | None = None, overwrite: bool = False,
           label_column: str | None = None) -> dict[str, Any]:
    """Convert a Keras model into every artifact of a recipe, verify each, write the manifest.

    Args:
        model: a ``.keras`` file.
        recipe: a Recipe or a recipe path.
        out_dir: the output folder.
        spec: the model's spec (its data section names the data); optional.
        data: ``"digits"`` or a ``.npz``/``.csv`` path (required without a spec).
        task: the head type of a model without a spec (inferred when omitted).
        unsafe: allow Lambda layers (trusted files only).
        verbose: print progress lines.
        extra: more top-level manifest fields (e.g. the training run).
        overwrite: replace a folder that holds something other than an earlier export of ``model``.
        label_column: the label column of a ``.csv`` ``data``.

    Returns:
        The manifest (also written to ``OUT/manifest.json``; the folder's files appear together, at the end).

    Raises:
        RecipeError, ModelLoadError, DataError, FolderError: on bad input, before anything is written.
    """
    recipe = as_recipe(recipe)
    with new_output(out_dir, command="export", source=source_of(model), overwrite=overwrite) as out, job():
        made = exported(model, recipe, out, spec=spec, data=data, task=task, unsafe=unsafe, verbose=verbose,
                        extra=extra, label_column=label_column)
        return finish_export(made, recipe, out)


def finish_export(made: Exported, recipe: Recipe, out: Path) -> dict[str, Any]:
    """An export's end: the layouts its recipe's ``[package]`` table asks for, then the verdict and the one
    write of the manifest and report."""
    return finish(with_packages(made.manifest, recipe.package, out, ref=made.ref, recipe=made.recipe), out)


def exported(model: str | os.PathLike[str], recipe: Recipe | str | os.PathLike[str],
             out_dir: str | os.PathLike[str], *, spec: Spec | str | os.PathLike[str] | None = None,
             data: str | None = None, task: str | None = None, unsafe: bool = False,
             verbose: bool = False, extra: dict[str, Any] | None = None,
             label_column: str | None = None) -> Exported:
    """:func:`export` without the verdict and the write (``compress`` adds its passes first, ``optimize``
    chooses among the artifacts); arguments as for :func:`export`, ``model`` may also be a SavedModel folder
    or a tf_keras ``.h5`` file."""
    recipe = require_artifacts(as_recipe(recipe))
    if spec is None:
        check_data_early(model, data, task, label_column)
    with open_source(model, unsafe) as (keras_model, source_dir, source_info):
        if spec is not None:
            spec = as_spec(spec)
        else:
            if data is None:
                raise ModelLoadError(f"data: exporting {model} needs --data (\"digits\" or a .npz/.csv "
                                     "path) to verify against, got none")
            spec = spec_for_model(keras_model, task, data, label_column)
        return _export_loaded(model, keras_model, source_dir, source_info, recipe, Path(out_dir), spec=spec,
                              data=data, task=task, unsafe=unsafe, verbose=verbose, extra=extra)


EARLY_MAX_BYTES = 256 * 2**20  # data files past this are read once, after the model loads


def check_data_early(model: str | os.PathLike[str], data: str | None, task: str | None,
                     label_column: str | None) -> None:
    """Data errors (missing arrays, wrong shapes, labels out of range, a CSV's label column) found before Keras
    and TensorFlow load, from the ``.keras`` file's config alone, where it says plainly what the model takes
    (one float input, one Dense output); otherwise, and for other sources, they are found after loading.

    Raises:
        ModelLoadError: a damaged archive; DataError: the data does not fit the model.
    """
    path = Path(model)
    if data is None or path.suffix != ".keras" or not path.is_file() or Path(data).suffix.lower() not in (
            ".npz", ".csv") or not Path(data).is_file() or Path(data).stat().st_size > EARLY_MAX_BYTES:
        return
    spec = spec_from_config(check_archive(path), task, data, label_column)
    if spec is not None:
        load_data(spec, source=data)


def _export_loaded(model: str | os.PathLike[str], keras_model: Any, source_dir: Path | None,
                   source_info: dict[str, Any] | None, recipe: Recipe, out: Path, *, spec: Spec,
                   data: str | None, task: str | None, unsafe: bool, verbose: bool,
                   extra: dict[str, Any] | None) -> Exported:
    multi = is_multi(keras_model) or spec.model.head == "multi"  # described by its signature, not a spec
    POOL.warm_rest()  # training is over: the verifier imports its runtimes from now on
    # The reference outputs are computed while the first artifacts convert (they need only the model
    # file); one input goes through the model first, so that bad data fails before anything is written.
    # A tf_keras model's SavedModel is checked against them first (a mismatch is a ModelLoadError).
    ref = None
    with stage("reference_s"):
        inputs, dataset = reference_inputs(keras_model, spec, data, recipe.verify.max_inputs, task=task)
        if source_info and "tf_keras_model" in source_info:
            ref = reference_outputs(keras_model, inputs, fp16=has_fp16(recipe))
        else:
            predict(keras_model, take(inputs["x"], slice(0, 1)))
    fake_quant = is_fake_quant(keras_model)

    (out / "reference").mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    source = source_record(source_info, keras_model, ref)  # no tf_keras model to check where ref is None
    ref_model = _write_reference(out, model, source_dir, None if multi else spec)

    recipe = with_samples(recipe, inputs["heads"])
    samples = max([a.samples for a in recipe.artifacts if a.quantized] or [1])
    rep = representative(dataset, samples, spec.data.seed)
    if verbose:
        print(f"converting {len(recipe.artifacts)} artifacts in child processes, each verified as soon as it "
              "is written ...", flush=True)
    weights_digest = weights_sha256(keras_model)
    metadata = {"dnnkit_version": __version__, "name": spec.name,
                "task": inputs["heads"][0] if not multi else inputs["heads"],
                "labels": dataset.labels or None, "reference_weights_sha256": weights_digest,
                "input_normalization": input_normalization(keras_model, data_source(spec, data)),
                VERDICT: UNCHECKED}  # the slot finish() stores each file's verdict in
    effective = {a.name: a for a in recipe.artifacts}
    conversions = Conversions(recipe, effective, ref_model, out, rep, metadata, unsafe=unsafe,
                              fake_quant=fake_quant, keras_model=keras_model, verbose=verbose)
    if ref is None:
        try:
            with stage("reference_s"):
                ref = reference_outputs(keras_model, inputs, fp16=has_fp16(recipe))
        except BaseException:
            conversions.cancel()
            raise
    with reference_job(ref, recipe) as reference:  # one reference file for the checks and the timing
        results, first_attempts, verified = conversions.verify(ref, recipe, reference)
        entries = artifact_entries(recipe, effective, results, first_attempts, verified)
        with stage("ladder_s"):
            quantization_ladder(entries, effective, recipe, ref, model_path=ref_model, out=out, representative=rep,
                                metadata=metadata, unsafe=unsafe, fake_quant=fake_quant, verbose=verbose)
        with stage("selective_fallback_s"):
            selective_fallback(entries, effective, recipe, ref, model_path=ref_model, out=out, representative=rep,
                               metadata=metadata, unsafe=unsafe, fake_quant=fake_quant, verbose=verbose)
        with stage("latency_s"):
            time_artifacts(entries, out, ref, recipe, verbose, reference)
    generation = None
    # a spec's language model or encoder-decoder, or a keras-hub causal LM a user brings
    if not multi and spec.model.head in GENERATIVE_HEADS or hasattr(keras_model, "call_with_cache"):
        with stage("generation_s"):
            generation = generation_section(keras_model, ref_model, dataset, out, recipe, verbose)
    origin = origin_record(out)
    manifest = export_manifest(recipe=recipe, ref=ref, ref_model=ref_model, out=out, model=keras_model,
                               weights_digest=weights_digest, source=source, spec_name=None if multi else spec.name,
                               data=data_source(spec, data), fake_quant=fake_quant, entries=entries,
                               extra={**({"origin": origin} if origin else {}),
                                      **({"generation": generation} if generation else {}), **(extra or {})})
    return Exported(manifest, ref, recipe)


def _write_reference(out: Path, model: str | os.PathLike[str], source_dir: Path | None, spec: Spec | None) -> Path:
    """The reference model written into ``OUT/reference`` (and its spec, for a model a spec describes).

    Returns:
        Its path: ``reference/saved_model`` for a SavedModel source (its own runtime computed the reference),
        else ``reference/model.keras``.
    """
    if source_dir is not None:
        ref_model = out / "reference" / "saved_model"
        if ref_model.exists():
            shutil.rmtree(ref_model)
        with atomic_path(ref_model) as tmp:
            shutil.copytree(source_dir, tmp)
    else:
        ref_model = out / "reference" / "model.keras"
        if Path(model).resolve() != ref_model.resolve():
            with atomic_path(ref_model) as tmp:
                shutil.copyfile(model, tmp)
    if spec is not None:  # a model with several inputs/outputs is described by its signature, not a spec
        write_text(out / "reference" / "spec.toml", dump_toml(spec_to_dict(spec)))
    return ref_model


def is_fake_quant(model: Any) -> bool:
    """Whether a model carries dnnkit's QAT fake-quant layers."""
    return any(type(layer).__name__.startswith("Quant") for layer in model.layers)
