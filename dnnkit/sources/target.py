"""What a command is pointed at: a run directory (its model and spec) or a bare model file (with the
minimal spec it gets from its signature, for loading its data)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dnnkit.core.tensors import is_multi, output_activation
from dnnkit.errors import DataError, ModelLoadError
from dnnkit.sources.keras_file import load_model
from dnnkit.config.model import HEADS, NUM_CLASSES_HEADS, OUTPUT_UNITS_HEADS, STEP_HEADS, DataConfig, MLPConfig, ModelConfig, Spec, TransformerConfig, load_spec


def spec_for_model(model: Any, task: str | None, source: str, label_column: str | None = None) -> Spec:
    """A minimal spec describing a model brought without one (for loading its data).

    The head is ``task`` if given, else inferred: more than one output unit means
    multiclass, one sigmoid output binary, anything else regression. ``label_column`` names a ``.csv``
    source's label column.

    Raises:
        DataError: a label column for a source that is not a ``.csv`` file, or an unknown task.
    """
    if label_column is not None and not str(source).lower().endswith(".csv"):
        raise DataError(f"label_column: names the label column of a .csv data source, got {label_column!r} "
                        f"for data {source!r}")
    data = DataConfig(source=source, label_column=label_column)
    if is_multi(model) or any(d is None for d in model.inputs[0].shape[1:]):
        # Several inputs or outputs: the data is read per name (dnnkit.data.load_model_data) and
        # each output's head inferred there; the spec only carries the data source.
        return Spec(name=model.name, model=ModelConfig(family="mlp", input_shape=(1,), head="multi",
                                                       options=MLPConfig()),
                    data=data)
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    out_shape = tuple(model.outputs[0].shape[1:])
    units = int(out_shape[-1])
    act = None
    if task is None:
        act = output_activation(model, 0) or (
            getattr(getattr(model.layers[-1], "activation", None), "__name__", "") if model.layers else "")
    dense = tuple(int(d) for d in out_shape) if len(out_shape) >= 2 and all(d is not None for d in out_shape) \
        else None
    return _flat_spec(model.name, shape, units, act, "int" in str(model.inputs[0].dtype), task, data, dense)


def _flat_spec(name: str, shape: tuple[int, ...], units: int, activation: str | None, tokens: bool,
               task: str | None, data: DataConfig, dense: tuple[int, ...] | None = None) -> Spec:
    """The spec of a one-input, one-output model: its head ``task``, or inferred from units and activation
    (a class or a value per element where the output has one per element: ``dense`` is its shape)."""
    if task is None and dense:
        task = "tagging" if units > 1 else "sequence_regression"
    elif task is None:
        task = "multiclass" if units > 1 else ("binary" if activation == "sigmoid" else "regression")
    if task not in HEADS:
        raise DataError(f"task: expected one of {', '.join(HEADS)}, got {task!r}")
    if dense and task not in STEP_HEADS:
        raise DataError(f"task: the model's output has shape {list(dense)}, an answer per element; expected "
                        f"tagging (a class per element) or sequence_regression (a value per element), got {task!r}")
    if not dense and task in STEP_HEADS:
        raise DataError(f"task: {task} needs an output with an answer per element (shape [elements..., units]), "
                        f"got one answer per sample")
    options = TransformerConfig(input="tokens", vocab_size=2**31 - 1) if tokens else MLPConfig()
    cfg = ModelConfig(family="transformer" if tokens else "mlp", input_shape=shape, head=task,
                      num_classes=units if task in NUM_CLASSES_HEADS else None,
                      output_units=units if task in OUTPUT_UNITS_HEADS else 1, options=options, output_shape=dense)
    return Spec(name=name, model=cfg, data=data)


def spec_from_config(config: dict[str, Any], task: str | None, source: str,
                     label_column: str | None = None) -> Spec | None:
    """The spec :func:`spec_for_model` would give, read from a ``.keras`` file's ``config.json`` alone (no Keras,
    no TensorFlow), or ``None`` where the config does not say it plainly: one float input of a fixed shape
    and one Dense output layer, in a Sequential or Functional model.

    Raises:
        DataError: as :func:`spec_for_model`.
    """
    body = config.get("config") if isinstance(config.get("config"), dict) else {}
    layers = [layer for layer in body.get("layers") or [] if isinstance(layer, dict)]
    by_name = {(layer.get("config") or {}).get("name"): layer for layer in layers}
    if config.get("class_name") == "Sequential":
        first, last = (layers[0], layers[-1]) if len(layers) > 1 else (None, None)
    elif config.get("class_name") == "Functional":
        ins, outs = body.get("input_layers"), body.get("output_layers")
        single = lambda refs: refs[0] if isinstance(refs, list) and len(refs) == 3 and isinstance(refs[0], str) \
            else refs[0][0] if isinstance(refs, list) and len(refs) == 1 and isinstance(refs[0], list) else None
        first, last = by_name.get(single(ins)), by_name.get(single(outs))
    else:
        return None
    if not first or not last or first.get("class_name") != "InputLayer" or last.get("class_name") != "Dense":
        return None
    shape, dtype = first["config"].get("batch_shape"), first["config"].get("dtype")
    units, activation = last["config"].get("units"), last["config"].get("activation")
    if (not isinstance(shape, list) or len(shape) < 2 or not all(isinstance(d, int) for d in shape[1:])
            or dtype != "float32" or not isinstance(units, int) or not isinstance(activation, str)):
        return None
    if label_column is not None and not str(source).lower().endswith(".csv"):
        raise DataError(f"label_column: names the label column of a .csv data source, got {label_column!r} "
                        f"for data {source!r}")
    return _flat_spec(str(body.get("name") or "model"), tuple(shape[1:]), units, activation, False, task,
                      DataConfig(source=source, label_column=label_column))


def resolve_target(target: str | os.PathLike[str], *, unsafe: bool = False,
                   task: str | None = None, data: str | None = None,
                   label_column: str | None = None) -> tuple[Any, Spec]:
    """Load the model and spec behind a run directory or a ``.keras`` file."""
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
    return model, spec_for_model(model, task, data, label_column)
