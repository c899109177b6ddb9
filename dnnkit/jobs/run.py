"""The main job: a spec trained, then compressed and exported with a recipe (the built-in default: the digits
CNN and every artifact of the shipped recipe ``all``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dnnkit.builders import build
from dnnkit.data.load import load_data
from dnnkit.jobs.compress import compress
from dnnkit.jobs.outfolder import new_output, source_of
from dnnkit.jobs.timing import job, stage
from dnnkit.passes.registry import check_selectors
from dnnkit.config.model import Spec, as_spec
from dnnkit.config.shipped import PACKAGE
from dnnkit.config.recipe import Recipe, as_recipe
from dnnkit.training.run import train

DEFAULT_SPEC = "models/digits_cnn.toml"
DEFAULT_RECIPE = "recipes/all.toml"


def default_path(relative: str) -> Path:
    """A shipped spec/recipe, inside the installed package (the same file from any working directory)."""
    return PACKAGE / relative


def run(spec: Spec | str | os.PathLike[str] | None = None, recipe: Recipe | str | os.PathLike[str] | None = None,
        out_dir: str | os.PathLike[str] | None = None, *, verbose: bool = False,
        epochs: int | None = None, overwrite: bool = False) -> dict[str, Any]:
    """The main job: train a spec, export every artifact of a recipe, verify, write the manifest.

    Args:
        spec: the model spec (default: the digits CNN).
        recipe: the export recipe (default: the shipped ``all``).
        out_dir: the output folder (default: ``runs/<spec>-<recipe>`` under the working directory).
        verbose: print progress lines.
        epochs: override the spec's epochs.
        overwrite: replace a folder that holds something other than an earlier run of this spec.

    Returns:
        The manifest.
    """
    spec = as_spec(spec if spec is not None else default_path(DEFAULT_SPEC))
    recipe = as_recipe(recipe if recipe is not None else default_path(DEFAULT_RECIPE))
    out_dir = Path(out_dir) if out_dir is not None else Path("runs") / f"{spec.name}-{recipe.name}"
    source = source_of(spec.path) if spec.path else f"spec {spec.name!r}"
    # a killed run's staged training backup is kept: the same command resumes it
    with new_output(out_dir, command="run", source=source, overwrite=overwrite, carry=("run",)) as out, \
            job():  # the converter and verifier processes start now, importing while this one trains
        if any(p.type == "prune" and p.options.layers for p in recipe.passes):
            check_selectors(build(spec), recipe.passes, recipe.path or "recipe")  # the trained model has these
        with stage("data_s"):
            load_data(spec)  # bad data fails here, before anything is written
        with stage("import_s"):
            import keras  # noqa: F401 - TensorFlow and Keras, timed on their own
        if verbose:
            print(f"training {spec.name} ...", flush=True)
        with stage("train_s"):
            result = train(spec, out / "run", epochs=epochs, progress=verbose)
        if verbose:
            print(f"  test accuracy {result.metrics.get('accuracy', float('nan')):.4f} "
                  f"in {result.train_seconds:.1f} s", flush=True)
        return compress(result.model_path, recipe, out, spec=spec, verbose=verbose,
                        extra={"training": {"run_dir": "run", "seconds": round(result.train_seconds, 3),
                                            "strategy": result.strategy, "metrics": result.metrics}})
