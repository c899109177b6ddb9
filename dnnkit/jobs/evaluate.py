"""Scoring a trained model (a run directory or a ``.keras`` file) on a data split."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from dnnkit.core.metrics import task_metrics
from dnnkit.data.load import load_data
from dnnkit.errors import DataError
from dnnkit.sources.target import resolve_target
from dnnkit.training.fit import predict


def evaluate(target: str | os.PathLike[str], data: str | None = None, *, split: str = "test",
             task: str | None = None, unsafe: bool = False, label_column: str | None = None) -> dict[str, float]:
    """Score a run directory or ``.keras`` model on a split of its data.

    Args:
        target: a run directory (uses its spec) or a ``.keras`` file.
        data: ``"digits"`` or a ``.npz``/``.csv`` path; defaults to the run's own data.
        split: ``train``, ``val`` or ``test``.
        task: head type for a bare model file (inferred when omitted).
        unsafe: allow Lambda layers when loading.
        label_column: the label column of a ``.csv`` ``data`` (a run directory's spec may name it instead).

    Returns:
        The task metrics (see :func:`dnnkit.core.metrics.task_metrics`).

    Raises:
        ModelLoadError, DataError, SpecError: on bad input.
    """
    model, spec = resolve_target(target, unsafe=unsafe, task=task, data=data, label_column=label_column)
    if label_column is not None and spec.data.label_column != label_column:  # a run directory's own spec
        spec = replace(spec, data=replace(spec.data, label_column=label_column))
    if data is not None and Path(data).suffix.lower() == ".csv" and spec.data.label_column is None:
        raise DataError(f"label_column: a .csv data source needs its label column's name (--label-column NAME), "
                        f"got none for {data}")
    x, y = load_data(spec, source=data).split(split)
    return task_metrics(spec.model.head, y, predict(model, x))
