"""The reference every artifact is checked against: the model's outputs on the labelled test split and
every other input the data has, its task metrics, and for fp16 artifacts the fp16-weight error; computed
once per command and handed to every check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dnnkit.core.metrics import reference_metrics
from dnnkit.core.tensors import Inputs, concat, input_names, is_multi, output_names, predict, rows, take
from dnnkit.data.dataset import Dataset
from dnnkit.data.load import load_data
from dnnkit.data.named import load_model_data, named_arrays
from dnnkit.config.model import BUILTIN_SOURCES, Spec
from dnnkit.config.recipe import Recipe
from dnnkit.verification.fp16 import fp16_weight_error
from dnnkit.verification.reference import Reference


def reference(model: Any, spec: Spec, data: str | None, max_inputs: int = 5000,
              fp16: bool = False, heads: list[str] | None = None, task: str | None = None) -> tuple[Reference, Dataset]:
    """The reference outputs on the test split, then on the train and validation inputs.

    Agreement needs no labels, so artifacts are checked on every input available (up to
    ``max_inputs``, the labelled test split always first and whole). With ``fp16``, also the
    output error of the model's weights rounded to fp16 (the fp16 artifacts' calibration).
    A model with several inputs or outputs reads its data with
    :func:`dnnkit.data.named.load_model_data` (arrays per input and output name).
    """
    inputs, dataset = reference_inputs(model, spec, data, max_inputs, heads=heads, task=task)
    return reference_outputs(model, inputs, fp16=fp16), dataset


def reference_inputs(model: Any, spec: Spec, data: str | None, max_inputs: int = 5000,
                     heads: list[str] | None = None, task: str | None = None) -> tuple[dict[str, Any], Dataset]:
    """What :func:`reference` computes outputs on: ``({x, heads, labels, input_names, output_names,
    n_test}, dataset)``."""
    source = data or spec.data.source
    if is_multi(model) or spec.model.head == "multi" or (data is not None and named_arrays(source)):
        dataset, heads = load_model_data(model, source, spec.data, task=task, heads=heads)
        labels = [dataset.y_test.get(n) for n in output_names(model)]
    else:
        dataset = load_data(spec, source=data)
        heads, labels = [spec.model.head], [dataset.y_test]
    n_test = rows(dataset.x_test)
    x_all = take(concat([dataset.x_test, dataset.x_train, dataset.x_val]), slice(0, max(max_inputs, n_test)))
    return {"x": x_all, "heads": heads, "labels": labels, "input_names": input_names(model),
            "output_names": output_names(model), "n_test": n_test}, dataset


def reference_outputs(model: Any, inputs: dict[str, Any], fp16: bool = False) -> Reference:
    """The :class:`~dnnkit.verification.reference.Reference`: the model's outputs on ``inputs`` (from
    :func:`reference_inputs`), its task metrics, and with ``fp16`` its fp16-weight error."""
    outputs = predict(model, inputs["x"])
    ref = Reference(outputs=outputs, metrics=reference_metrics(inputs["heads"], inputs["labels"], outputs,
                                                                inputs["output_names"], inputs["n_test"]), **inputs)
    if fp16:
        errors = fp16_weight_error(model, inputs["x"], outputs)
        ref.fp16_weight_error = errors[0] if isinstance(errors, list) and len(errors) == 1 else errors
    return ref


def has_fp16(recipe: Recipe) -> bool:
    """Whether the recipe makes an fp16 artifact (its tolerance needs the fp16-weight error)."""
    return any(a.precision == "fp16" for a in recipe.artifacts)


def representative(dataset: Dataset, count: int, seed: int) -> Inputs:
    """``count`` training inputs in a seeded random order: the calibration samples of quantized artifacts."""
    order = np.random.default_rng(seed).permutation(rows(dataset.x_train))
    return take(dataset.x_train, order[:count])


def data_source(spec: Spec, data: str | None) -> str:
    """The data the reference was scored on, as an absolute path (or "digits")."""
    src = data or spec.data.source
    if src in BUILTIN_SOURCES:
        return src
    base = Path.cwd() if data else spec.base_dir  # as dnnkit.data resolves it
    return str((base / src).resolve())
