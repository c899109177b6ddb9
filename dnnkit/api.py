"""The Python API with objects: a ``keras.Model`` and NumPy arrays in, a verified export out.

``dnnkit.export``, ``dnnkit.compress``, ``dnnkit.optimize`` and ``dnnkit.verify`` take what a Keras user holds —
a model object (or a ``.keras`` path), arrays (or a data source name or file), a recipe object
(or a path) — and return the manifest, as the command line does::

    import dnnkit
    manifest = dnnkit.export(model, "export/all.toml", "out/", data=(x, y))

A model object is saved into the export folder's ``reference/`` (the reference every artifact is
checked against); arrays are saved beside it as ``reference/data.npz``, so ``dnnkit verify``
can check the folder again later.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from dnnkit.child import items
from dnnkit.core.tensors import to_arrays
from dnnkit.core.staging import FolderError
from dnnkit.errors import DataError, ModelLoadError
from dnnkit.jobs import compress as compress_job, export as export_job, optimize as optimize_job
from dnnkit.jobs.outfolder import new_output, source_of
from dnnkit.jobs.reverify import verify_dir
from dnnkit.config.goals import goals_from
from dnnkit.config.recipe import Recipe, as_recipe
from dnnkit.config.shipped import RECIPES, names
from dnnkit.manifest.table import table

ModelLike = Any  # a keras.Model or a path to a .keras file (run directory for compress)
Verbose = Any  # "auto", 0, 1, 2 (or a bool), as for keras.Model.fit
DataLike = Any  # "digits", a .npz/.csv path, (x, y), or a dict of x_train/y_train[/x_val/y_val/x_test/y_test]

_SPLIT_KEYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def _split_arrays(split: str, x: Any, y: Any) -> dict[str, np.ndarray]:
    """``.npz`` members of one split: ``x_SPLIT``/``y_SPLIT``, or per name for dicts of arrays."""
    out = to_arrays(f"x_{split}", {k: np.asarray(v) for k, v in x.items()} if isinstance(x, dict) else np.asarray(x))
    if y is not None:
        out.update(to_arrays(f"y_{split}", {k: np.asarray(v) for k, v in y.items()} if isinstance(y, dict)
                             else np.asarray(y)))
    return out


def _arrays(data: DataLike) -> dict[str, np.ndarray] | None:
    """The data as ``.npz`` arrays, or ``None`` when it names a source (a string or path).

    ``x`` may be a dict of arrays by input name and ``y`` a dict by output name (models with
    several inputs or outputs); ``y`` may be ``None`` (no labels: values are checked only).
    """
    if data is None or isinstance(data, (str, os.PathLike)):
        return None
    if isinstance(data, tuple) and len(data) == 2:
        return _split_arrays("train", *data)
    if isinstance(data, dict):
        unknown = sorted(set(data) - set(_SPLIT_KEYS) - {"class_names"})
        if unknown or "x_train" not in data:
            raise DataError(f"data: expected a dict with x_train and y_train (and optionally x_val/y_val, "
                            f"x_test/y_test, class_names), got keys {sorted(data)}")
        out: dict[str, np.ndarray] = {}
        if "class_names" in data:
            out["class_names"] = np.asarray([str(n) for n in data["class_names"]])
        for split in ("train", "val", "test"):
            if f"x_{split}" in data:
                out.update(_split_arrays(split, data[f"x_{split}"], data.get(f"y_{split}")))
        return out
    hint = "; for inputs without labels pass (x, None): values are then checked against the model" \
        if hasattr(data, "shape") else ""
    raise DataError(f"data: expected \"digits\", a .npz/.csv path, (x, y) arrays or a dict of splits, "
                    f"got {type(data).__name__}{hint}")


def _model_file(model: ModelLike, tmp: Path) -> str:
    """A path for the model: the one given, or the model object saved into ``tmp``."""
    if isinstance(model, (str, os.PathLike)):
        return str(model)
    if not hasattr(model, "save") or not hasattr(model, "inputs"):
        raise ModelLoadError(f"model: expected a keras.Model or a .keras path, got {type(model).__name__}")
    path = tmp / "model.keras"
    model.save(path)
    return str(path)


def export(model: ModelLike, recipe: Any, out_dir: str | os.PathLike[str], *, data: DataLike = None,
           spec: Any = None, task: str | None = None, unsafe: bool = False, verbose: Verbose = "auto",
           overwrite: bool = False, label_column: str | None = None) -> dict[str, Any]:
    """Convert a model into every artifact of a recipe, verify each, and return the manifest.

    Args:
        model: a ``keras.Model`` or a ``.keras`` file.
        recipe: a :class:`~dnnkit.config.recipe.Recipe` or a recipe path.
        out_dir: the output folder.
        data: ``"digits"``, a ``.npz``/``.csv`` path, ``(x, y)`` arrays, or a dict of splits
            (``x_train``/``y_train``, optionally ``x_val``/``y_val``, ``x_test``/``y_test``);
            without test arrays, 20 % of the training arrays are held out as the test split.
            For several inputs ``x`` is a dict by input name, for several outputs ``y`` a dict by
            output name (labelled outputs only); ``y = None`` checks values only.
        spec: the model's spec, if it has one (then ``data`` may be omitted).
        task: ``multiclass``, ``binary``, ``regression``, or per element (a step, a pixel) ``tagging`` or
            ``sequence_regression`` (inferred from the output when omitted).
        unsafe: allow Lambda layers (trusted models only).
        verbose: as for ``keras.Model.fit``: ``"auto"`` or 1 prints what the command line prints (a line per
            stage and per conversion and check, with its time, then the table of artifacts and where the folder
            is), 2 the same without the per-item lines, 0 nothing.
        overwrite: replace a folder that holds anything but an earlier export of this model (refused otherwise:
            an export never leaves an earlier one's files beside its own).
        label_column: the label column of a ``.csv`` ``data``.

    Returns:
        The manifest (also in ``OUT/manifest.json``).

    Raises:
        DnnkitError: on bad input, with nothing written.
    """
    return _run("export", model, recipe, out_dir, data=data, spec=spec, task=task, unsafe=unsafe, verbose=verbose,
                overwrite=overwrite, label_column=label_column)


def compress(model: ModelLike, recipe: Any, out_dir: str | os.PathLike[str], *, data: DataLike = None,
             spec: Any = None, task: str | None = None, unsafe: bool = False, verbose: Verbose = "auto",
             overwrite: bool = False, label_column: str | None = None) -> dict[str, Any]:
    """Run a recipe's compression passes on a model, then export and verify; return the manifest.

    Arguments as for :func:`export`; ``model`` may also be a run directory.
    """
    return _run("compress", model, recipe, out_dir, data=data, spec=spec, task=task, unsafe=unsafe,
                verbose=verbose, overwrite=overwrite, label_column=label_column)


def verify(out_dir: str | os.PathLike[str], *, recipe: Any = None, unsafe: bool = False,
           verbose: Verbose = "auto") -> dict[str, Any]:
    """Verify an export folder again (checksums, every artifact in its runtime, goals).

    Args:
        out_dir: the export folder.
        recipe: whose ``[verify]`` criteria judge it (a Recipe or path); the defaults when ``None``, never
            the criteria the folder records.
        unsafe: allow Lambda layers (trusted models only).
        verbose: as for :func:`export`.

    Returns:
        The updated manifest; its ``status`` is the verdict, ``verified_with`` the criteria.
    """
    lines, per_item = _levels(verbose)
    with _progress(per_item):
        manifest = verify_dir(out_dir, recipe=recipe, unsafe=unsafe, verbose=lines)
    if lines:
        _print_end(manifest, out_dir)
    return manifest


def optimize(model: ModelLike, recipe: Any = None, out_dir: str | os.PathLike[str] | None = None, *,
             data: DataLike = None, target: str | None = None, max_degradation: float | None = None,
             max_size_kb: float | None = None, max_latency_ms: float | None = None, objective: str | None = None,
             max_arena_kb: float | None = None, device: Any = None, task: str | None = None, unsafe: bool = False,
             verbose: Verbose = "auto",
             overwrite: bool = False, label_column: str | None = None) -> dict[str, Any]:
    """Verify every candidate conversion of a model and keep the best one that meets the goals.

    Args:
        model: a ``keras.Model``, a ``.keras`` file or a run directory.
        recipe: a recipe (object, path or shipped name) with an ``[optimize]`` table (goals the arguments
            override) and ``[verify]`` settings, or ``None``. The order is export's: model, recipe, out_dir
            (the earlier ``optimize(model, out_dir, ...)`` still works, with a DeprecationWarning).
        out_dir: the output folder.
        data: as for :func:`export`.
        target: ``tflite``, ``onnx`` or ``both`` (default: ``both``, or the recipe's).
        max_degradation: the most the task metric may drop (accuracy as a fraction, or RMSE
            ratio - 1); default 0.01.
        max_size_kb: the largest file, in KiB.
        max_latency_ms: the slowest batch-1 latency (p50 on this machine), in ms.
        objective: ``smallest`` (default) or ``fastest``, among the candidates meeting every goal.
        max_arena_kb: the largest tensor arena of a TFLite candidate, in KiB (TFLite Micro's measured one).
        device: a microcontroller budget for the TFLite candidates: a profile name (``"cortex-m4"``), a dict as
            a ``[device]`` table, or a :class:`~dnnkit.config.device.Device` (default: the recipe's).
        task, unsafe, verbose, overwrite, label_column: as for :func:`export`.

    Returns:
        The manifest; ``manifest["optimize"]`` lists every candidate, the Pareto front and the
        chosen artifact per target, and ``status`` is ``verified`` only when every target has one.

    Raises:
        DnnkitError: on bad goals or input, with nothing written.
    """
    if out_dir is None and recipe is not None and not _recipe_like(recipe):
        warnings.warn("dnnkit.optimize(model, out_dir, ...) is deprecated: the arguments go as for export, "
                      "optimize(model, recipe, out_dir, ...) (recipe may be None)", DeprecationWarning, stacklevel=2)
        recipe, out_dir = None, recipe
    if out_dir is None:
        raise FolderError("out_dir: expected the output folder, got none")
    base = as_recipe(recipe) if recipe is not None else None
    goals = goals_from({"target": target, "max_degradation": max_degradation, "max_size_kb": max_size_kb,
                        "max_latency_ms": max_latency_ms, "objective": objective, "max_arena_kb": max_arena_kb,
                        "device": device},
                       base=base.optimize if base is not None else None)
    return _run("optimize", model, base, out_dir, data=data, goals=goals, task=task, unsafe=unsafe,
                verbose=verbose, overwrite=overwrite, label_column=label_column)


def _recipe_like(value: Any) -> bool:
    """Whether ``value`` names a recipe (an object, a ``.toml`` path or a shipped recipe's name)."""
    if isinstance(value, (Recipe, dict)):
        return True
    return Path(str(value)).suffix == ".toml" or str(value) in names(RECIPES)


def _levels(verbose: Verbose) -> tuple[bool, bool]:
    """(stage lines and the table, per-item lines) for a ``fit``-style ``verbose``."""
    if verbose == "auto" or verbose is True:
        verbose = 1
    if verbose in (0, False, None):
        return False, False
    if verbose not in (1, 2):
        raise DataError(f"verbose: expected \"auto\", 0, 1 or 2 (as for keras.Model.fit), got {verbose!r}")
    return True, verbose == 1


def _run(kind: str, model: ModelLike, recipe: Any, out_dir: str | os.PathLike[str], *, data: DataLike,
         overwrite: bool = False, **kw: Any) -> dict[str, Any]:
    arrays = _arrays(data)  # a bad data object fails before anything is written
    lines, per_item = _levels(kw.pop("verbose", "auto"))
    tmp = Path(tempfile.mkdtemp(prefix="dnnkit-api-"))
    try:
        with _progress(per_item):
            manifest = _job(kind, model, recipe, out_dir, data, arrays, tmp, overwrite, verbose=lines, **kw)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if lines:
        _print_end(manifest, out_dir)
    return manifest


@contextlib.contextmanager
def _progress(per_item: bool) -> Iterator[None]:
    """A line per settled conversion and check while inside, where ``per_item``."""
    before = items.PROGRESS
    items.PROGRESS = items.print_progress if per_item else None
    try:
        yield
    finally:
        items.PROGRESS = before


def _print_end(manifest: dict[str, Any], out_dir: str | os.PathLike[str]) -> None:
    """The table of artifacts and where the folder is, as the command line ends."""
    print(table(manifest), flush=True)
    print(f"output: {out_dir}  manifest: {Path(out_dir) / 'manifest.json'}  status: {manifest['status']}", flush=True)


def _job(kind: str, model: ModelLike, recipe: Any, out_dir: str | os.PathLike[str], data: DataLike,
         arrays: dict[str, np.ndarray] | None, tmp: Path, overwrite: bool, **kw: Any) -> dict[str, Any]:
    """The job itself, its model saved in ``tmp`` and its arrays into the folder's ``reference/``."""
    with new_output(out_dir, command=kind, source=source_of(model), overwrite=overwrite, field="out_dir") as out:
        path = _model_file(model, tmp)
        if arrays is not None:
            # the arrays go where the manifest can keep pointing, before the export reads them
            data = out / "reference" / "data.npz"
            data.parent.mkdir(parents=True, exist_ok=True)
            np.savez(data, **arrays)
        data = None if data is None else str(data)
        if kind == "optimize":
            return optimize_job.optimize(path, out, recipe=recipe, data=data, **kw)
        function = compress_job.compress if kind == "compress" else export_job.export
        return function(path, recipe, out, data=data, **kw)
