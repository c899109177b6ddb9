"""The optimize job: every candidate for the goals made and verified as any artifact is (and again from the
model after a recipe's passes, in ``OUT/passes``), the best one per target kept, the rest removed; each
folder's manifest and report written once, when the choice is made (:mod:`dnnkit.optimization` ranks)."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

from dnnkit.jobs.compress import compressed
from dnnkit.jobs.finish import finish
from dnnkit.jobs.outfolder import new_output, source_of
from dnnkit.jobs.package import with_packages
from dnnkit.jobs.timing import job
from dnnkit.manifest.verdict import decide
from dnnkit.optimization.candidates import PASSES_FOLDER, candidate_recipe
from dnnkit.optimization.choice import candidate_rows, choose, judge, keep_only, pareto
from dnnkit.config.goals import Goals
from dnnkit.config.recipe import Recipe, as_recipe


def optimize(model: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, goals: Goals,
             recipe: Recipe | str | os.PathLike[str] | None = None, data: str | None = None,
             task: str | None = None, unsafe: bool = False,
             verbose: bool = False, overwrite: bool = False, label_column: str | None = None) -> dict[str, Any]:
    """Build, verify and rank every candidate for ``goals``; keep the chosen artifact(s).

    When ``recipe`` lists ``[[passes]]`` (pruning, QAT, ...), they run on the model and every
    candidate is built from the compressed model too, in ``OUT/passes`` (its own export folder,
    whose reference is the compressed model); those candidates meet the goal when they verify
    against the compressed model and their metric is within ``max_degradation`` of the original's.

    Args:
        model: a run directory, a ``.keras`` file, a tf_keras ``.h5`` or a SavedModel folder.
        out_dir: the output folder.
        goals: what the chosen artifact must meet (:class:`Goals`).
        recipe: a recipe (or path): its ``[verify]`` settings verify the candidates; its passes,
            if any, make the second set of candidates.
        data, task, unsafe, verbose, overwrite, label_column: as for :func:`dnnkit.jobs.export.export`.

    Returns:
        The manifest, with an ``optimize`` section; ``status`` is ``verified`` when every target
        has a chosen artifact.

    Raises:
        DnnkitError: on bad input, before anything is written.
    """
    base = as_recipe(recipe) if recipe is not None else None
    with new_output(out_dir, command="optimize", source=source_of(model), overwrite=overwrite) as out, \
            job():  # both sets of candidates on the same worker processes
        return _optimize(model, out, goals, base, data=data, task=task, unsafe=unsafe, verbose=verbose,
                         label_column=label_column)


def _optimize(model: str | os.PathLike[str], out: Path, goals: Goals, base: Recipe | None, *, data: str | None,
              task: str | None, unsafe: bool, verbose: bool, label_column: str | None) -> dict[str, Any]:
    if goals.device is None and base is not None and base.device is not None:  # the recipe's [device] table
        goals = dataclasses.replace(goals, device=base.device)
    candidates = candidate_recipe(goals, base, sets=2 if base is not None and base.passes else 1)
    made = compressed(model, candidates, out, data=data, task=task, unsafe=unsafe, verbose=verbose,
                      label_column=label_column)
    manifest = made.manifest
    runs = {"": (out, manifest)}
    if base is not None and base.passes:
        if verbose:
            print(f"the recipe's {len(base.passes)} passes, then every candidate again -> {out / PASSES_FOLDER}",
                  flush=True)
        variant = dataclasses.replace(candidates, passes=base.passes, goal_degradation=goals.max_degradation)
        runs[PASSES_FOLDER] = (out / PASSES_FOLDER, compressed(
            model, variant, out / PASSES_FOLDER, data=data, task=task, unsafe=unsafe, verbose=verbose,
            label_column=label_column).manifest)
    # each folder's verdict first: its goal figures (the drop from the original model, after passes) are what
    # the rows rank; the manifests are written once, below, when the choice is made
    for _, m in runs.values():
        decide(m)
    rows = [r for folder, (_, m) in runs.items() for r in candidate_rows(m, folder, goals.device)]
    judge(rows, goals)
    front = pareto(rows)
    picked = choose(rows, goals)
    by_name = {r["name"]: r for r in rows}
    kept = [r for r in rows if r["chosen"]]
    if not picked["met"]:  # the closest candidate per target stays, to look at
        kept += [by_name[names[0]] for names in picked["closest"].values() if names and by_name[names[0]]["entry"]]
    folders: dict[str, str] = {}
    for folder, (where, m) in runs.items():
        keep_only(where, m, {r["entry"] for r in kept if r["folder"] == folder})
        if folder and m["artifacts"]:
            folders[folder] = finish(m, where)["status"]
        elif folder:
            shutil.rmtree(where, ignore_errors=True)  # nothing chosen from the compressed model
    if goals.device is not None:  # each TFLite artifact's budget in the report; the goals above judge them
        manifest["device"] = {**dataclasses.asdict(goals.device), "required": False}
    manifest["optimize"] = {"goals": dataclasses.asdict(goals), "candidates": rows, "pareto": front, **picked,
                            "folders": folders}  # folder -> its verdict (dnnkit verify re-checks it)
    if PASSES_FOLDER in runs:
        passes = runs[PASSES_FOLDER][1]
        manifest["optimize"]["passes"] = {"records": passes.get("passes", []),
                                          "metrics_after": (passes.get("reference") or {}).get("metrics")}
    return finish(with_packages(manifest, base.package if base is not None else None, out, ref=made.ref,
                                recipe=made.recipe), out)
