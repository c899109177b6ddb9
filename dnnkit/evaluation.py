"""Scoring a trained model (a run directory or a ``.keras`` file) on a data split."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dnnkit.config import (HEADS, DataConfig, MLPConfig, ModelConfig, Spec, TransformerConfig,
                           load_spec)
from dnnkit.errors import DataError, ModelLoadError


def spec_for_model(model: Any, task: str | None, source: str) -> Spec:
    """A minimal spec describing a model brought without one (for loading its data).

    The head is ``task`` if given, else inferred: more than one output unit means
    multiclass, one sigmoid output binary, anything else regression.
    """
    from dnnkit.signature import is_multi

    if is_multi(model) or any(d is None for d in model.inputs[0].shape[1:]):
        # Several inputs or outputs: the data is read per name (dnnkit.data.load_model_data) and
        # each output's head inferred there; the spec only carries the data source.
        return Spec(name=model.name, model=ModelConfig(family="mlp", input_shape=(1,), head="multi",
                                                       options=MLPConfig()),
                    data=DataConfig(source=source))
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    units = int(model.outputs[0].shape[-1])
    if task is None:
        from dnnkit.signature import output_activation

        act = output_activation(model, 0) or (
            getattr(getattr(model.layers[-1], "activation", None), "__name__", "") if model.layers else "")
        task = "multiclass" if units > 1 else ("binary" if act == "sigmoid" else "regression")
    if task not in HEADS:
        raise DataError(f"task: expected one of {', '.join(HEADS)}, got {task!r}")
    tokens = "int" in str(model.inputs[0].dtype)
    options = TransformerConfig(input="tokens", vocab_size=2**31 - 1) if tokens else MLPConfig()
    cfg = ModelConfig(family="transformer" if tokens else "mlp", input_shape=shape, head=task,
                      num_classes=units if task == "multiclass" else None,
                      output_units=units if task == "regression" else 1, options=options)
    return Spec(name=model.name, model=cfg, data=DataConfig(source=source))


def resolve_target(target: str | os.PathLike[str], *, unsafe: bool = False,
                   task: str | None = None, data: str | None = None) -> tuple[Any, Spec]:
    """Load the model and spec behind a run directory or a ``.keras`` file."""
    from dnnkit.modelio import load_model

    path = Path(target)
    if path.is_dir():
        if not (path / "model.keras").is_file() or not (path / "spec.toml").is_file():
            raise ModelLoadError(f"model: {target} is not a run directory "
                                 "(expected model.keras and spec.toml in it)")
        spec = load_spec(path / "spec.toml")
        return load_model(path / "model.keras", unsafe=unsafe), spec
    model = load_model(path, unsafe=unsafe)
    if data is None:
        raise DataError(f"data: a bare model file needs --data (\"digits\" or a .npz/.csv "
                        f"path), got none for {target}")
    return model, spec_for_model(model, task, data)


def evaluate(target: str | os.PathLike[str], data: str | None = None, *, split: str = "test",
             task: str | None = None, unsafe: bool = False) -> dict[str, float]:
    """Score a run directory or ``.keras`` model on a split of its data.

    Args:
        target: a run directory (uses its spec) or a ``.keras`` file.
        data: ``"digits"`` or a ``.npz``/``.csv`` path; defaults to the run's own data.
        split: ``train``, ``val`` or ``test``.
        task: head type for a bare model file (inferred when omitted).
        unsafe: allow Lambda layers when loading.

    Returns:
        The task metrics (see :func:`dnnkit.metrics.task_metrics`).

    Raises:
        ModelLoadError, DataError, SpecError: on bad input.
    """
    from dnnkit.data import load_data
    from dnnkit.metrics import task_metrics
    from dnnkit.training import predict

    model, spec = resolve_target(target, unsafe=unsafe, task=task, data=data)
    if data is not None and Path(data).suffix.lower() == ".csv" and spec.data.label_column is None:
        raise DataError("data: a CSV file needs a label column; evaluate a run directory whose "
                        "spec names data.label_column, or use .npz")
    x, y = load_data(spec, source=data).split(split)
    return task_metrics(spec.model.head, y, predict(model, x))
