"""Features and labels checked against what a model takes, one line naming the array when they do not fit."""

from __future__ import annotations

import numpy as np

from dnnkit.errors import DataError
from dnnkit.core.heads import PAD_LABEL, STEP_HEADS
from dnnkit.config.model import ModelConfig


def _one_hot(y: np.ndarray) -> bool:
    """Whether every row holds one 1 and zeros elsewhere."""
    return bool(np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1))


def check_labels(y: np.ndarray, model: ModelConfig, where: str) -> np.ndarray:
    y = np.asarray(y)
    if y.dtype.kind not in "iufb":
        raise DataError(f"{where}: expected numeric labels, got dtype {y.dtype}")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise DataError(f"{where}: labels contain NaN or infinity")
    if model.head in STEP_HEADS:
        return _step_labels(y, model, where)
    if model.head == "regression":
        y = y.astype(np.float32)
        want = model.output_units
        if y.ndim == 1 and want == 1:
            return y
        if y.ndim == 2 and y.shape[1] == want:
            return y
        raise DataError(f"{where}: regression targets have shape {y.shape[1:]}, "
                        f"expected model.output_units = {want}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    elif y.ndim == 2 and model.head == "multiclass" and y.shape[1] == model.num_classes and _one_hot(y):
        y = np.argmax(y, axis=1)  # keras.utils.to_categorical's labels: the class of each row's one
    if y.ndim != 1:
        hint = "; one-hot rows (keras.utils.to_categorical) are read when each has one 1 and zeros elsewhere" \
            if y.ndim == 2 else ""
        raise DataError(f"{where}: expected one integer class label per sample, got shape {y.shape}{hint}")
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        raise DataError(f"{where}: expected integer class labels, got non-integer values")
    y = y.astype(np.int32)
    high = model.num_classes if model.head == "multiclass" else 2
    if y.min(initial=0) < 0 or y.max(initial=0) >= high:
        field = "model.num_classes" if model.head == "multiclass" else "a binary head (0 or 1)"
        raise DataError(f"{where}: labels range {int(y.min())}..{int(y.max())}, "
                        f"expected 0..{high - 1} for {field} = {high}"
                        if model.head == "multiclass" else
                        f"{where}: labels range {int(y.min())}..{int(y.max())}, expected 0 or 1 for {field}")
    return y


def _step_labels(y: np.ndarray, model: ModelConfig, where: str) -> np.ndarray:
    """A tag or a value per element (a time step, a pixel): (samples, *elements) or (samples, *elements, units);
    a tag below 0 is padding. A spec's model has one element per input step; a brought model's output says."""
    shape = getattr(model, "output_shape", None)
    elements = tuple(shape[:-1]) if shape else (model.output_steps,)
    what = "output's elements" if shape else "target steps" if model.source_steps else "input steps"
    if model.head == "sequence_regression":
        want = model.output_units
        if y.shape[1:] == elements and want == 1:
            y = y[..., None]
        if y.shape[1:] != (*elements, want):
            raise DataError(f"{where}: per-element targets have shape {list(y.shape[1:])}, expected "
                            f"{list((*elements, want))} (the model's {list(elements)} {what}, {want} value(s) each)")
        return y.astype(np.float32)
    if y.shape[1:] == (*elements, 1):
        y = y[..., 0]
    if y.shape[1:] != elements:
        raise DataError(f"{where}: per-element tags have shape {list(y.shape[1:])}, expected {list(elements)} (one "
                        f"integer class per element of the model's {what}, below 0 for padding)")
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        raise DataError(f"{where}: expected integer tags, got non-integer values")
    y = np.where(y < 0, PAD_LABEL, y).astype(np.int32)
    high = model.num_classes
    if y.max(initial=0) >= high:
        raise DataError(f"{where}: tags range up to {int(y.max())}, expected 0..{high - 1} for model.num_classes = "
                        f"{high} (below 0 for padding)")
    if not np.any(y >= 0):
        raise DataError(f"{where}: every step is padding (tags below 0): nothing to learn or score")
    return y


def check_features(x: np.ndarray, model: ModelConfig, where: str) -> np.ndarray:
    x = np.asarray(x)
    tokens = getattr(model.options, "input", None) == "tokens"
    if x.dtype.kind not in "iuf":
        raise DataError(f"{where}: expected numeric features, got dtype {x.dtype}")
    want = tuple(model.input_shape)
    got = tuple(x.shape[1:])
    if got != want:
        if int(np.prod(got)) == int(np.prod(want)) and len(got) == 1:
            x = x.reshape((-1, *want))
        else:
            raise DataError(f"{where}: per-sample shape {list(got)} does not match "
                            f"model.input_shape {list(want)}")
    if tokens:
        if x.dtype.kind == "f" and not np.all(x == np.round(x)):
            raise DataError(f"{where}: token input needs integer ids, got non-integer values")
        x = x.astype(np.int32)
        vocab = model.options.vocab_size
        if x.min(initial=0) < 0 or x.max(initial=0) >= vocab:
            raise DataError(f"{where}: token ids range {int(x.min())}..{int(x.max())}, "
                            f"expected 0..{vocab - 1} for model.vocab_size = {vocab}")
        return x
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise DataError(f"{where}: features contain NaN or infinity")
    return x


def check_input(x: np.ndarray, shape: tuple[int | None, ...], dtype: str, where: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "iufb":
        raise DataError(f"{where}: expected numeric values, got dtype {x.dtype}")
    got = tuple(x.shape[1:])
    if len(got) != len(shape) or any(w is not None and g != w for g, w in zip(got, shape)):
        want = ["any" if w is None else w for w in shape]
        raise DataError(f"{where}: per-sample shape {list(got)} does not match the model input's {want}")
    if "int" in dtype:
        if x.dtype.kind == "f" and not np.all(x == np.round(x)):
            raise DataError(f"{where}: the model input takes integers ({dtype}), got non-integer values")
        return x.astype(dtype)
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise DataError(f"{where}: values contain NaN or infinity")
    return x
