"""Reading data: the built-in digits (scikit-learn ships them), ``.npz`` and ``.csv`` files, image
folders (one sub-folder per class)."""

from __future__ import annotations

import csv
import zipfile
import zlib
from pathlib import Path

import numpy as np

from dnnkit.core.heads import PAD_LABEL
from dnnkit.errors import DataError, one_line
from dnnkit.config.model import ModelConfig

NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)  # what numpy.load raises of a bad file

DIGITS_LAYOUTS = {"flat": (64,), "image": (8, 8, 1), "sequence": (8, 8), "tokens": (64,)}


DIGITS_LABELS = [str(i) for i in range(10)]


def digits(layout: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    raw, y = load_digits(return_X_y=True)
    if layout == "tokens":
        return raw.astype(np.int32), y.astype(np.int32)
    x = (raw / 16.0).astype(np.float32).reshape((-1, *DIGITS_LAYOUTS[layout]))
    return x, y.astype(np.int32)


def infer_layout(model: ModelConfig) -> str | None:
    shape = tuple(model.input_shape)
    tokens = getattr(model.options, "input", None) == "tokens"
    if tokens:
        return "tokens" if shape == (64,) else None
    for layout, s in DIGITS_LAYOUTS.items():
        if s == shape and layout != "tokens":
            return layout
    return None


def read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except NPZ_ERRORS as exc:  # a truncated file fails as a zip (BadZipFile, EOFError, zlib.error)
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc}); expected a file "
                        "written by numpy.savez") from None


def class_names(arrays: dict[str, np.ndarray], where: str, classes: int | None) -> list[str] | None:
    """The optional ``class_names`` member (removed from ``arrays``): one string per class, stored as
    the artifacts' labels (Triton's labels file, the metadata inside ONNX and TFLite files)."""
    names = arrays.pop("class_names", None)
    if names is None:
        return None
    if names.ndim != 1 or names.dtype.kind != "U":
        raise DataError(f"{where}: class_names: expected a 1-D array of strings, got dtype {names.dtype} "
                        f"shape {list(names.shape)}")
    if classes is not None and len(names) != classes:
        raise DataError(f"{where}: class_names: {len(names)} names, expected one per class ({classes})")
    return [str(n) for n in names]


def next_token_labels(arrays: dict[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    """A language model's labels made from its token sequences where the file gives none: each step's label
    is the next token; the last step, and a step whose next token is the padding id (``pad_id``, default 0),
    are padding (-1). ``pad_id`` is removed from ``arrays``."""
    pad = arrays.pop("pad_id", np.array(0))
    if pad.ndim != 0 or pad.dtype.kind not in "iu":
        raise DataError(f"{where}: pad_id: expected one integer token id, got dtype {pad.dtype} shape "
                        f"{list(pad.shape)}")
    for part in ("train", "val", "test"):
        x = arrays.get(f"x_{part}")
        if x is None or f"y_{part}" in arrays:
            continue
        if x.ndim != 2 or x.dtype.kind not in "iu":
            raise DataError(f"{where}: x_{part}: a language model's token sequences, expected a 2-D integer array "
                            f"(sequences, steps), got dtype {x.dtype} shape {list(x.shape)}")
        y = np.full(x.shape, PAD_LABEL, np.int32)
        y[:, :-1] = np.where(x[:, 1:] == int(pad), PAD_LABEL, x[:, 1:])
        arrays[f"y_{part}"] = y
    return arrays


def load_npz(path: Path, derive_labels: bool = False) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` data file, checked: ``x_train``/``y_train`` and optional val/test pairs (with
    ``derive_labels``, a language model's: labels made from the token sequences where none are given)."""
    arrays = read_npz(path)
    if derive_labels:
        arrays = next_token_labels(arrays, str(path))
    for key in ("x_train", "y_train"):
        if key not in arrays:
            raise DataError(f"{path}: array {key!r} is missing; expected x_train and y_train "
                            f"(optional x_val/y_val, x_test/y_test), got {sorted(arrays)}")
    for part in ("val", "test"):
        if (f"x_{part}" in arrays) != (f"y_{part}" in arrays):
            raise DataError(f"{path}: x_{part} and y_{part} must be given together, "
                            f"got only {'x' if f'x_{part}' in arrays else 'y'}_{part}")
    return arrays


def load_csv(path: Path, label_column: str) -> dict[str, np.ndarray]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read CSV ({exc})") from None
    if len(rows) < 2:
        raise DataError(f"{path}: expected a header row and at least one data row, got {len(rows)} rows")
    header = [h.strip() for h in rows[0]]
    if label_column not in header:
        raise DataError(f"{path}: data.label_column: column {label_column!r} not found; "
                        f"columns are {header}")
    col = header.index(label_column)
    values = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(f"{path}: line {line}: expected {len(header)} columns, got {len(row)}")
        try:
            values.append([float(v) for v in row])
        except ValueError:
            bad = next(v for v in row if not is_float(v))
            raise DataError(f"{path}: line {line}: expected numbers, got {bad!r}") from None
    table = np.asarray(values, dtype=np.float64)
    y = table[:, col]
    x = np.delete(table, col, axis=1).astype(np.float32)
    return {"x_train": x, "y_train": y}


def is_float(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def load_image_folder(path: Path, model: ModelConfig) -> tuple[dict[str, np.ndarray], list[str]]:
    """Images in one sub-folder per class (``keras.utils.image_dataset_from_directory``'s layout),
    resized to the model's input with Keras's loader (bilinear), pixel values 0-255 as Keras gives them.

    Returns:
        ``{"x_train", "y_train"}`` (classes numbered in sorted folder-name order) and the class names.
    """
    import keras

    shape = tuple(model.input_shape)
    if len(shape) != 3 or shape[-1] not in (1, 3, 4):
        raise DataError(f"data.source: an image folder needs a model input of (height, width, 1|3|4 channels), "
                        f"got model.input_shape {list(shape)}")
    classes = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"data.source: {path}: expected one sub-folder per class (at least 2), got {len(classes)}")
    mode = {1: "grayscale", 3: "rgb", 4: "rgba"}[shape[-1]]
    images, labels = [], []
    for index, cls in enumerate(classes):
        files = sorted(f for f in (path / cls).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"data.source: {path / cls}: no images (expected {', '.join(IMAGE_SUFFIXES)} files)")
        for f in files:
            try:
                img = keras.utils.load_img(f, color_mode=mode, target_size=shape[:2], interpolation="bilinear")
            except Exception as exc:  # noqa: BLE001 - PIL raises several types
                raise DataError(f"data.source: {f}: not a readable image ({one_line(exc, 200)})") \
                    from None
            images.append(np.asarray(keras.utils.img_to_array(img), dtype=np.float32).reshape(shape))
            labels.append(index)
    return {"x_train": np.stack(images), "y_train": np.asarray(labels, dtype=np.int32)}, classes
