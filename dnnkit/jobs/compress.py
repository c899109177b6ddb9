"""The compress job: a recipe's passes run on a model (pruning, QAT, distillation; tfmot for tf_keras
models), each pass's degradation goal checked against the model it got, then the export of the result."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dnnkit.core.fileio import save_keras
from dnnkit.core.metrics import degradation, within
from dnnkit.core.tensors import is_multi
from dnnkit.data.load import load_data
from dnnkit.errors import CompressionError, ModelLoadError
from dnnkit.jobs.export import check_data_early, Exported, exported, finish_export
from dnnkit.jobs.outfolder import new_output, source_of
from dnnkit.jobs.timing import job, stage
from dnnkit.passes.context import PassContext, multi_output_context
from dnnkit.passes.registry import check_selectors, resolve_engine, run_pass
from dnnkit.passes.tfmot_engine import is_tf_keras_model, to_keras3
from dnnkit.sources.h5 import load_h5
from dnnkit.sources.keras_file import load_model
from dnnkit.sources.saved_model import is_saved_model
from dnnkit.sources.target import resolve_target, spec_for_model
from dnnkit.config.model import Spec, as_spec
from dnnkit.config.recipe import Recipe, as_recipe, require_artifacts


def compress(model: str | os.PathLike[str], recipe: Recipe | str | os.PathLike[str],
             out_dir: str | os.PathLike[str], *, spec: Spec | str | os.PathLike[str] | None = None,
             data: str | None = None, task: str | None = None, unsafe: bool = False,
             verbose: bool = False, extra: dict[str, Any] | None = None, overwrite: bool = False,
             label_column: str | None = None) -> dict[str, Any]:
    """Run a recipe's compression passes on a model, then export and verify the result.

    Goals (``[goals] max_degradation``, or a pass's own ``max_degradation``) are checked
    after each pass against the incoming model, and for every artifact at the end; a missed
    goal makes the manifest's status ``failed`` (exit 1).

    Args:
        model: a run directory or a ``.keras`` file.
        recipe: a Recipe or recipe path (passes + artifacts).
        out_dir: the output folder; the compressed model goes to ``OUT/compressed/model.keras``.
        spec, data, task, unsafe, verbose, extra, overwrite, label_column: as for :func:`export`.

    Returns:
        The manifest, with ``passes`` and ``goals`` sections.
    """
    recipe = require_artifacts(as_recipe(recipe))
    with new_output(out_dir, command="compress", source=source_of(model), overwrite=overwrite) as out, job():
        made = compressed(model, recipe, out, spec=spec, data=data, task=task, unsafe=unsafe, verbose=verbose,
                          extra=extra, label_column=label_column)
        return finish_export(made, recipe, out)


def compressed(model: str | os.PathLike[str], recipe: Recipe | str | os.PathLike[str],
               out_dir: str | os.PathLike[str], *, spec: Spec | str | os.PathLike[str] | None = None,
               data: str | None = None, task: str | None = None, unsafe: bool = False,
               verbose: bool = False, extra: dict[str, Any] | None = None,
               label_column: str | None = None) -> Exported:
    """:func:`compress` without its recipe's layouts, the verdict and the write (``optimize`` chooses among
    the artifacts first); arguments as for :func:`compress`."""
    recipe = require_artifacts(as_recipe(recipe))
    if not recipe.passes and (Path(model).suffix.lower() == ".h5" or is_saved_model(model)):
        return exported(model, recipe, out_dir, spec=spec, data=data, task=task, unsafe=unsafe, verbose=verbose,
                        extra=extra, label_column=label_column)  # nothing to compress: exported from the model's own runtime
    tf_keras_input = Path(model).suffix == ".h5"
    if spec is None:
        check_data_early(model, data, task, label_column)
    if tf_keras_input:
        keras_model, resolved = _load_tf_keras(model, task, data, label_column)
    elif spec is not None and not Path(model).is_dir():
        keras_model, resolved = load_model(model, unsafe=unsafe), as_spec(spec)
    else:
        keras_model, resolved = resolve_target(model, unsafe=unsafe, task=task, data=data, label_column=label_column)
    spec = as_spec(spec) if spec is not None else resolved
    multi = is_multi(keras_model)
    unsupported = [p.type for p in recipe.passes if p.type != "prune" or getattr(p.options, "engine", "") == "tfmot"]
    if multi and unsupported:
        raise CompressionError(f"passes: a model with {len(keras_model.inputs)} inputs and {len(keras_model.outputs)} "
                               f"outputs takes native prune passes only, got {unsupported[0]!r}"
                               + (" (engine tfmot)" if unsupported[0] == "prune" else ""))
    check_selectors(keras_model, recipe.passes, recipe.path or "recipe")  # before any data is loaded
    model_file = Path(model) / "model.keras" if Path(model).is_dir() else Path(model)
    if not recipe.passes:  # (a tf_keras .h5 without passes was exported above)
        return exported(model_file, recipe, out_dir, spec=spec, data=data, unsafe=unsafe, verbose=verbose,
                        extra=extra)
    if multi:
        ctx = multi_output_context(keras_model, spec, data, task, recipe.base_dir, verbose)
    else:
        ctx = PassContext(spec=spec, dataset=load_data(spec, source=data), base_dir=recipe.base_dir,
                          seed=spec.train.seed, verbose=verbose)
    head = "multi" if multi else spec.model.head
    baseline = ctx.score(keras_model)
    current, records = keras_model, []
    for i, p in enumerate(recipe.passes):
        p = resolve_engine(p, tf_keras_input)
        if getattr(p.options, "engine", "native") != "tfmot" and is_tf_keras_model(current):
            current = to_keras3(current)  # a native pass needs a Keras 3 model
        if verbose:
            print(f"pass {i + 1}/{len(recipe.passes)}: {p.type} ...", flush=True)
        with stage("passes_s"):
            result = run_pass(current, p, ctx)
        after = ctx.score(result.model)
        drop = degradation(head, baseline, after)
        limit = p.max_degradation if p.max_degradation is not None else recipe.goal_degradation
        met = limit is None or within(drop, limit)
        records.append({"type": p.type, "options": asdict(p.options), "metrics_after": after,
                        "degradation": drop, "max_degradation": limit, "goal_met": met,
                        "params": int(result.model.count_params()), **result.report})
        if verbose:
            print(f"  {p.type}: " + "  ".join(f"{k}={v:.4f}" for k, v in after.items()), flush=True)
        current = result.model
    if is_tf_keras_model(current):
        current = to_keras3(current)
    out = Path(out_dir)
    (out / "compressed").mkdir(parents=True, exist_ok=True)
    compressed_model = out / "compressed" / "model.keras"
    save_keras(current, compressed_model)
    return exported(compressed_model, recipe, out, spec=spec, data=data, task=task, verbose=verbose,
                    extra={**(extra or {}), "original": {"metrics": baseline,
                                                         "params": int(keras_model.count_params())},
                           "passes": records, "goals": {"max_degradation": recipe.goal_degradation}})


def _load_tf_keras(path: str | os.PathLike[str], task: str | None, data: str | None,
                   label_column: str | None = None) -> tuple[Any, Spec]:
    """A tf_keras (Keras 2) ``.h5`` model and a minimal spec for its data."""
    if not Path(path).is_file():
        raise ModelLoadError(f"model: file not found: {path}")
    if data is None:
        raise ModelLoadError(f"data: a tf_keras model file needs --data, got none for {path}")
    model = load_h5(path)
    return model, spec_for_model(model, task, data, label_column)
