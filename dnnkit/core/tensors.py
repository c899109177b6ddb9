"""A Keras model's inputs and outputs by name, and NumPy data shaped for them.

A single-input model takes one array; a model with several inputs takes a dict keyed by
input name (the names every artifact's signature carries). Outputs are always a list in
:func:`output_names` order: a model returning a dict (keras-hub backbones) is flattened the
way ``keras.tree`` flattens it, by sorted key, and named by those keys.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Callable, Union

import numpy as np

Inputs = Union[np.ndarray, dict[str, np.ndarray]]

HEAD_FEATURES = "features"  # an output with no labels and no class scores: checked by values only


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output: its name, per-sample shape (``None`` for unknown) and dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


def _shape(tensor: Any) -> tuple[int | None, ...]:
    return tuple(None if d is None else int(d) for d in tensor.shape[1:])


def input_names(model: Any) -> list[str]:
    """The model's input names, in ``model.inputs`` order."""
    return [getattr(t, "name", None) or f"input_{i}" for i, t in enumerate(model.inputs)]


def output_names(model: Any) -> list[str]:
    """The model's output names, in ``model.outputs`` order (dict keys for dict outputs)."""
    struct = getattr(model, "_outputs_struct", None)
    if isinstance(struct, dict):
        return sorted(struct)
    count = len(model.outputs)
    names = list(getattr(model, "output_names", None) or [])  # a Sequential has none: its layers name them
    if len(names) != count or len(set(names)) != count:
        names = [_producer(t) for t in model.outputs]
    if len(set(names)) != count or not all(names):
        names = [f"output_{i}" for i in range(count)] if count > 1 else ["outputs"]
    return names


def _producer(tensor: Any) -> str:
    """The name of the layer that makes a symbolic tensor (``""`` where it is not known)."""
    history = getattr(tensor, "_keras_history", None)
    return str(getattr(history[0], "name", "") or "") if history else ""


def inputs_info(model: Any) -> list[TensorInfo]:
    return [TensorInfo(n, _shape(t), str(t.dtype)) for n, t in zip(input_names(model), model.inputs)]


def outputs_info(model: Any) -> list[TensorInfo]:
    return [TensorInfo(n, _shape(t), str(t.dtype)) for n, t in zip(output_names(model), model.outputs)]


def is_multi(model: Any) -> bool:
    """Whether the model has more than one input or output."""
    return len(model.inputs) != 1 or len(model.outputs) != 1


def output_activation(model: Any, index: int) -> str:
    """The activation that produces output ``index`` (``""`` when unknown)."""
    history = getattr(model.outputs[index], "_keras_history", None)
    layer = history[0] if history else None
    if layer is None:
        return ""
    name = type(layer).__name__
    if name in ("Softmax", "Sigmoid"):
        return name.lower()
    if name == "Activation":
        act = getattr(layer, "activation", None)
        return getattr(act, "__name__", str(act))
    return getattr(getattr(layer, "activation", None), "__name__", "")


def infer_head(units: int | None, activation: str, labelled: bool, dense: bool = False) -> str:
    """The task of one output: from its units and activation, and whether labels exist.

    Labelled outputs: more than one unit is multiclass, one sigmoid unit binary, else regression; with an
    answer per element (``dense``: a step, a pixel) more than one unit is tagging, else sequence_regression.
    Unlabelled outputs: class scores (softmax) are multiclass (top-1 agreement is checked);
    anything else is ``features`` (hidden states, embeddings), checked by values only.
    """
    if labelled and dense:
        return "tagging" if units is not None and units > 1 else "sequence_regression"
    if labelled:
        if units is not None and units > 1:
            return "multiclass"
        return "binary" if activation == "sigmoid" else "regression"
    return "multiclass" if activation == "softmax" else HEAD_FEATURES


def rows(x: Inputs) -> int:
    """The number of samples."""
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def take(x: Inputs, index: Any) -> Inputs:
    """Rows ``index`` (a slice or an index array) of every input."""
    return {k: v[index] for k, v in x.items()} if isinstance(x, dict) else x[index]


def concat(parts: list[Inputs]) -> Inputs:
    """Samples of several parts, one after another."""
    if isinstance(parts[0], dict):
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return np.concatenate(parts)


def cast(x: Inputs, model: Any) -> Inputs:
    """The data in the dtypes the model's inputs take."""
    return cast_to(x, {i.name: i.dtype for i in inputs_info(model)})


def cast_to(x: Inputs, dtypes: dict[str, Any]) -> Inputs:
    """The data in ``dtypes`` (by input name, in input order): each named array in its own, one array in
    the first input's."""
    if isinstance(x, dict):
        return {k: np.asarray(v, dtype=dtypes.get(k, v.dtype)) for k, v in x.items()}
    return np.asarray(x, dtype=next(iter(dtypes.values())))


def model_input(model: Any, x: Inputs) -> Any:
    """What to call the model with: the array, or a dict (or list) keyed/ordered like its inputs."""
    if not isinstance(x, dict):
        return x
    struct = getattr(model, "_inputs_struct", None)
    if isinstance(struct, dict):
        return x
    return [x[n] for n in input_names(model)]


def call(model: Any, x: Any) -> list[Any]:
    """The model's outputs as a flat list in :func:`output_names` order (inference mode)."""
    import keras

    return list(keras.tree.flatten(model(model_input(model, x), training=False)))


# Input bytes per eager batch: 256 digits (256 B each) fit in one batch, 224x224x3 images go 13 at a time.
# A batch of 164 such images through ResNet50 held 24 GB of activations (killed for memory).
BATCH_INPUT_BYTES = 8 * 2**20


COMPILED_SAMPLE_BYTES = 64 * 2**10  # 128x128x1 float32 and larger samples are predicted by a tf.function
_COMPILED: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


def _sample_bytes(x: Inputs) -> int:
    """Input bytes of one sample (every input's first row)."""
    return sum(a[:1].nbytes for a in (x.values() if isinstance(x, dict) else [x]))


def _compiled(model: Any) -> Callable[[Any], list[Any]] | None:
    """:func:`call` as a ``tf.function`` (one per model, kept while the model lives), or ``None``
    off the TensorFlow backend or for what is not a Keras model (a SavedModel's signature is a graph)."""
    import keras

    if keras.backend.backend() != "tensorflow" or not isinstance(model, keras.Model):
        return None
    if model not in _COMPILED:
        import tensorflow as tf

        held = weakref.ref(model)  # the function must not keep its model (the cache's key) alive
        _COMPILED[model] = tf.function(lambda inputs: call(held(), inputs), reduce_retracing=True)
    return _COMPILED[model]


def batch_for(x: Inputs, batch_size: int = 256, max_bytes: int | None = None) -> int:
    """``batch_size``, or fewer samples so that one batch's inputs stay within ``max_bytes``
    (default :data:`BATCH_INPUT_BYTES`)."""
    return max(1, min(batch_size, (max_bytes or BATCH_INPUT_BYTES) // (_sample_bytes(x) or 1)))


def predict(model: Any, x: Inputs, batch_size: int = 256) -> list[np.ndarray]:
    """Every output over all of ``x``, in batches (see :func:`batch_for`), as float32 NumPy arrays.

    Eagerly, except for large samples on TensorFlow (:data:`COMPILED_SAMPLE_BYTES`), which go through a
    ``tf.function`` of the same call: eager execution keeps every layer's output of a batch alive until
    the call returns (a 224x224 ResNet50 at batch 13: 2.9 GB resident against 1.1 GB, and slower), while
    for small models tracing would cost more than it saves."""
    import keras

    batch_size = batch_for(x, batch_size)
    run = _compiled(model) if _sample_bytes(x) >= COMPILED_SAMPLE_BYTES else None
    if run is None:
        def run(part: Any) -> list[Any]:
            return call(model, part)
    parts = [[keras.ops.convert_to_numpy(o) for o in run(take(x, slice(i, i + batch_size)))]
             for i in range(0, rows(x), batch_size)]
    return [np.concatenate([p[k] for p in parts], axis=0).astype(np.float32) for k in range(len(parts[0]))]


def to_arrays(prefix: str, x: Inputs) -> dict[str, np.ndarray]:
    """``.npz`` members for ``x``: ``prefix`` for one array, ``prefix/NAME`` per input for a dict."""
    return {f"{prefix}/{k}": v for k, v in x.items()} if isinstance(x, dict) else {prefix: x}


def from_arrays(prefix: str, arrays: dict[str, np.ndarray]) -> Inputs | None:
    """The inverse of :func:`to_arrays` (``None`` when neither form is there)."""
    if prefix in arrays:
        return arrays[prefix]
    found = {k[len(prefix) + 1:]: v for k, v in arrays.items() if k.startswith(prefix + "/")}
    return found or None


def input_specs(model: Any, batch: int | None) -> list[Any]:
    """One ``tf.TensorSpec`` per model input, named as the input, with the given batch size."""
    import tensorflow as tf

    return [tf.TensorSpec((batch, *info.shape), tf.as_dtype(info.dtype), name=info.name)
            for info in inputs_info(model)]


FP16_MAX = float(np.finfo(np.float16).max)


def fp16_round(w: np.ndarray) -> np.ndarray:
    """``w`` with each float value rounded to the nearest fp16, in its own dtype; values beyond fp16's range
    (|w| > 65504) are left as they are: fp16 cannot hold them, so an fp16 file that works has kept or folded
    them (a Normalization layer's variance of features in the thousands), and rounding them to inf would
    measure a model that no converter makes."""
    if w.dtype.kind != "f":
        return w
    with np.errstate(over="ignore"):
        half = w.astype(np.float16).astype(w.dtype)
    return np.where(np.abs(w) > FP16_MAX, w, half) if half.shape else (w if abs(w) > FP16_MAX else half)


def all_layers(model: Any) -> Any:
    """Every layer of ``model``, those of nested models included."""
    for layer in getattr(model, "layers", []):
        yield layer
        yield from all_layers(layer)


def set_weights(model: Any, weights: list[np.ndarray]) -> None:
    """``model.set_weights(weights)``, then each adapted layer's derived state refreshed: set_weights leaves a
    Normalization layer's mean and variance as they were adapted (Keras's loader calls ``finalize_state``
    after loading for this reason), so a clone given new weights computed with none of them."""
    model.set_weights(weights)
    for layer in all_layers(model):
        if hasattr(layer, "finalize_state"):
            layer.finalize_state()
