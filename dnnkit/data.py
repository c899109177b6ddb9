"""Data: the built-in ``digits`` set, user ``.npz``/``.csv`` files, splits and checks.

Everything here is NumPy and scikit-learn; the ``tf.data`` pipeline lives in
:mod:`dnnkit.train`. All checks run before training starts and raise :class:`DataError`
with one line naming the file, the field and what was expected.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dnnkit.config import ModelConfig, Spec
from dnnkit.errors import DataError

DIGITS_LAYOUTS = {"flat": (64,), "image": (8, 8, 1), "sequence": (8, 8), "tokens": (64,)}
DIGITS_LABELS = [str(i) for i in range(10)]


@dataclass
class Dataset:
    """A split data set, ready for a model of the spec it was loaded for."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels: list[str] | None = None

    def split(self, which: str) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(x, y)`` of ``train``, ``val`` or ``test``."""
        if which not in ("train", "val", "test"):
            raise DataError(f"split: expected 'train', 'val' or 'test', got {which!r}")
        return getattr(self, f"x_{which}"), getattr(self, f"y_{which}")

    def sizes(self) -> dict[str, int]:
        from dnnkit.signature import rows

        return {"train": rows(self.x_train), "val": rows(self.x_val), "test": rows(self.x_test)}


def _split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int, stratify: bool):
    from sklearn.model_selection import train_test_split

    strat = y if stratify and len(np.unique(y)) > 1 and np.min(np.bincount(y)) >= 2 else None
    return train_test_split(x, y, test_size=fraction, random_state=seed, stratify=strat)


def _digits(layout: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    raw, y = load_digits(return_X_y=True)
    if layout == "tokens":
        return raw.astype(np.int32), y.astype(np.int32)
    x = (raw / 16.0).astype(np.float32).reshape((-1, *DIGITS_LAYOUTS[layout]))
    return x, y.astype(np.int32)


def _infer_layout(model: ModelConfig) -> str | None:
    shape = tuple(model.input_shape)
    tokens = getattr(model.options, "input", None) == "tokens"
    if tokens:
        return "tokens" if shape == (64,) else None
    for layout, s in DIGITS_LAYOUTS.items():
        if s == shape and layout != "tokens":
            return layout
    return None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None


def _class_names(arrays: dict[str, np.ndarray], where: str, classes: int | None) -> list[str] | None:
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


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    arrays = _read_npz(path)
    for key in ("x_train", "y_train"):
        if key not in arrays:
            raise DataError(f"{path}: array {key!r} is missing; expected x_train and y_train "
                            f"(optional x_val/y_val, x_test/y_test), got {sorted(arrays)}")
    for part in ("val", "test"):
        if (f"x_{part}" in arrays) != (f"y_{part}" in arrays):
            raise DataError(f"{path}: x_{part} and y_{part} must be given together, "
                            f"got only {'x' if f'x_{part}' in arrays else 'y'}_{part}")
    return arrays


def _load_csv(path: Path, label_column: str) -> dict[str, np.ndarray]:
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
            bad = next(v for v in row if not _is_float(v))
            raise DataError(f"{path}: line {line}: expected numbers, got {bad!r}") from None
    table = np.asarray(values, dtype=np.float64)
    y = table[:, col]
    x = np.delete(table, col, axis=1).astype(np.float32)
    return {"x_train": x, "y_train": y}


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def _load_image_folder(path: Path, model: ModelConfig) -> tuple[dict[str, np.ndarray], list[str]]:
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
                raise DataError(f"data.source: {f}: not a readable image ({' '.join(str(exc).split())[:200]})") \
                    from None
            images.append(np.asarray(keras.utils.img_to_array(img), dtype=np.float32).reshape(shape))
            labels.append(index)
    return {"x_train": np.stack(images), "y_train": np.asarray(labels, dtype=np.int32)}, classes


def _is_float(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _labels(y: np.ndarray, model: ModelConfig, where: str) -> np.ndarray:
    y = np.asarray(y)
    if y.dtype.kind not in "iufb":
        raise DataError(f"{where}: expected numeric labels, got dtype {y.dtype}")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise DataError(f"{where}: labels contain NaN or infinity")
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
    if y.ndim != 1:
        raise DataError(f"{where}: expected one integer class label per sample, got shape {y.shape}")
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


def _features(x: np.ndarray, model: ModelConfig, where: str) -> np.ndarray:
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


def load_data(spec: Spec, source: str | None = None) -> Dataset:
    """Load, split and check the data a spec names (or ``source`` instead).

    Args:
        spec: the validated spec; its model section fixes the shapes and labels expected.
        source: overrides ``spec.data.source`` (``"digits"`` or a ``.npz``/``.csv`` path).

    Returns:
        The :class:`Dataset` with train/val/test splits in the model's input layout.

    Raises:
        DataError: if the file is missing or unreadable, or shapes/labels do not match.
    """
    cfg = spec.data
    model = spec.model
    src = source or cfg.source
    stratify = model.head != "regression"
    if src == "digits":
        layout = cfg.layout or _infer_layout(model)
        if layout is None or (layout != "tokens" and DIGITS_LAYOUTS[layout] != tuple(model.input_shape)):
            raise DataError(
                f"data.layout: digits cannot be laid out for model.input_shape "
                f"{list(model.input_shape)}; expected one of " +
                ", ".join(f"{k} {list(v)}" for k, v in DIGITS_LAYOUTS.items()))
        if model.head != "multiclass" or model.num_classes != 10:
            raise DataError("model.num_classes: digits has 10 classes, expected a multiclass "
                            f"head with num_classes = 10, got head {model.head!r} with "
                            f"num_classes = {model.num_classes}")
        x, y = _digits(layout)
        arrays = {"x_train": x, "y_train": y}
        name, labels = "digits", DIGITS_LABELS
    else:
        path = Path(src)
        if not path.is_absolute():
            # An explicit override is the caller's path (relative to the working
            # directory); the spec's own source is relative to the spec file.
            path = (Path.cwd() if source else spec.base_dir) / path
        if path.is_dir():
            arrays, labels = _load_image_folder(path, model)
        elif not path.is_file():
            raise DataError(f"data.source: file not found: {src}")
        elif path.suffix.lower() == ".npz":
            arrays = _load_npz(path)
            labels = _class_names(arrays, str(path), model.num_classes if model.head == "multiclass" else
                                  2 if model.head == "binary" else None)
        elif path.suffix.lower() == ".csv":
            if not cfg.label_column:
                raise DataError(f"data.label_column: a CSV source needs the label column's "
                                f"name, got none for {src}")
            arrays, labels = _load_csv(path, cfg.label_column), None
        else:
            raise DataError(f"data.source: expected \"digits\", a .npz/.csv file or an image folder, got {src!r}")
        name = path.name if path.is_dir() else path.stem

    checked: dict[str, np.ndarray] = {}
    for part in ("train", "val", "test"):
        if f"x_{part}" not in arrays:
            continue
        where = f"{name}: x_{part}"
        x = _features(arrays[f"x_{part}"], model, where)
        y = _labels(arrays[f"y_{part}"], model, f"{name}: y_{part}")
        if len(x) != len(y):
            raise DataError(f"{name}: x_{part} has {len(x)} samples but y_{part} has {len(y)}")
        if len(x) == 0:
            raise DataError(f"{name}: x_{part} is empty")
        checked[f"x_{part}"], checked[f"y_{part}"] = x, y

    x, y = checked["x_train"], checked["y_train"]
    if "x_test" not in checked:
        x, checked["x_test"], y, checked["y_test"] = _split(x, y, cfg.test_fraction, cfg.seed, stratify)
    if "x_val" not in checked:
        if cfg.val_fraction <= 0:
            raise DataError("data.val_fraction: expected a fraction > 0 when the data has no "
                            "x_val/y_val, got 0")
        frac = cfg.val_fraction / (1.0 - (cfg.test_fraction if "x_test" not in arrays else 0.0))
        x, checked["x_val"], y, checked["y_val"] = _split(x, y, min(frac, 0.5), cfg.seed + 1, stratify)
    if len(x) < 2:
        raise DataError(f"{name}: only {len(x)} training samples left after splitting")
    return Dataset(name=name, x_train=x, y_train=y, x_val=checked["x_val"], y_val=checked["y_val"],
                   x_test=checked["x_test"], y_test=checked["y_test"], labels=labels)


def _check_input(x: np.ndarray, shape: tuple[int | None, ...], dtype: str, where: str) -> np.ndarray:
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


def named_arrays(source: str) -> bool:
    """Whether ``source`` is an ``.npz`` file in the per-name layout (``x_train/NAME``), or one
    without labels (``x_train`` alone): both are read by :func:`load_model_data`."""
    path = Path(source)
    if path.suffix.lower() != ".npz" or not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as f:
            names = list(f.files)
    except (OSError, ValueError):
        return False  # load_data reports it
    return any("/" in n for n in names) or ("x_train" in names and "y_train" not in names)


def load_model_data(model: Any, source: str, cfg: Any, *, task: str | None = None,
                    heads: list[str] | None = None) -> tuple[Dataset, list[str]]:
    """Load, split and check ``.npz`` data for a model with several inputs or outputs.

    The file holds ``x_train/NAME`` per model input and ``y_train/NAME`` per labelled output
    (``y_train`` alone for a model with one output), and optionally the same for ``val`` and
    ``test``. Outputs without labels are checked against the reference by value only.

    Args:
        model: the Keras model (its input and output names, shapes and dtypes).
        source: the ``.npz`` path.
        cfg: the :class:`~dnnkit.config.DataConfig` (fractions, seed).
        task: the head of every labelled output (inferred per output when omitted).
        heads: the heads to use, one per output (as recorded by an earlier export).

    Returns:
        The dataset (``x_*`` dicts by input name, ``y_*`` dicts by labelled output name) and one
        head per output.

    Raises:
        DataError: on a missing file or array, a shape, dtype or label that does not fit.
    """
    from dnnkit.signature import (infer_head, inputs_info, output_activation, outputs_info, rows, take)

    path = Path(source)
    ins, outs = inputs_info(model), outputs_info(model)
    want = ", ".join(f"x_train/{i.name}" for i in ins)
    if source == "digits" or path.suffix.lower() != ".npz":
        raise DataError(f"data: a model with {len(ins)} inputs and {len(outs)} outputs needs a .npz file with "
                        f"{want} (and y_train/OUTPUT per labelled output), got {source!r}")
    if not path.is_file():
        raise DataError(f"data.source: file not found: {source}")
    arrays = _read_npz(path)
    name = path.stem
    class_names = _class_names(arrays, str(path), None)
    out_names = [o.name for o in outs]
    splits: dict[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = {}
    for part in ("train", "val", "test"):
        if len(ins) == 1 and f"x_{part}" in arrays:
            arrays[f"x_{part}/{ins[0].name}"] = arrays.pop(f"x_{part}")
        have = [i.name for i in ins if f"x_{part}/{i.name}" in arrays]
        if not have:
            continue
        if len(have) != len(ins):
            missing = [f"x_{part}/{i.name}" for i in ins if i.name not in have]
            raise DataError(f"{path}: arrays {missing} are missing; expected one per model input ({want})")
        x = {i.name: _check_input(arrays[f"x_{part}/{i.name}"], i.shape, i.dtype, f"{name}: x_{part}/{i.name}")
             for i in ins}
        ys = {o: arrays[f"y_{part}/{o}"] for o in out_names if f"y_{part}/{o}" in arrays}
        if f"y_{part}" in arrays:
            if len(outs) != 1:
                raise DataError(f"{path}: y_{part}: the model has {len(outs)} outputs; expected y_{part}/NAME "
                                f"for each labelled output ({', '.join(out_names)})")
            ys[out_names[0]] = arrays[f"y_{part}"]
        unknown = sorted(k for k in arrays if k.startswith(f"y_{part}/") and k[len(f"y_{part}/"):] not in out_names)
        if unknown:
            raise DataError(f"{path}: {unknown[0]}: no model output of that name; outputs are {out_names}")
        counts = {rows(x)} | {len(v) for v in ys.values()}
        if len(counts) != 1:
            raise DataError(f"{path}: the {part} arrays have different sample counts {sorted(counts)}")
        if rows(x) == 0:
            raise DataError(f"{path}: x_{part} is empty")
        splits[part] = (x, ys)
    if "train" not in splits:
        raise DataError(f"{path}: expected {want} (one array per model input), got {sorted(arrays)}")
    labelled = set(splits["train"][1])
    for part, (_, ys) in splits.items():
        if set(ys) != labelled:
            raise DataError(f"{path}: y_{part} labels outputs {sorted(ys)} but y_train labels {sorted(labelled)}")
    if heads is None:
        if task is not None and task not in ("multiclass", "binary", "regression"):
            raise DataError(f"task: expected multiclass, binary or regression, got {task!r}")
        heads = [task if (task and o.name in labelled) else
                 infer_head(o.shape[-1] if o.shape else 1, output_activation(model, k), o.name in labelled)
                 for k, o in enumerate(outs)]
    for part, (x, ys) in splits.items():
        for k, o in enumerate(outs):
            if o.name in ys:
                units = o.shape[-1] if o.shape else 1
                shim = type("Head", (), {"head": heads[k], "output_units": units, "num_classes": units})
                ys[o.name] = _labels(ys[o.name], shim, f"{name}: y_{part}/{o.name}")
    x_train, y_train = splits["train"]
    n = rows(x_train)
    strat_name = next((o.name for o, h in zip(outs, heads) if h == "multiclass" and o.name in labelled), None)
    index = np.arange(n)

    def cut(idx: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        labels = y_train[strat_name][idx] if strat_name else idx
        keep, held, _, _ = _split(idx, labels, fraction, seed, stratify=strat_name is not None)
        return keep, held

    parts: dict[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = {}
    if "test" in splits:
        parts["test"] = splits["test"]
    else:
        index, test_idx = cut(index, cfg.test_fraction, cfg.seed)
        parts["test"] = (take(x_train, test_idx), {k: v[test_idx] for k, v in y_train.items()})
    if "val" in splits:
        parts["val"] = splits["val"]
    else:
        frac = cfg.val_fraction / (1.0 - (cfg.test_fraction if "test" not in splits else 0.0))
        index, val_idx = cut(index, min(frac, 0.5), cfg.seed + 1)
        parts["val"] = (take(x_train, val_idx), {k: v[val_idx] for k, v in y_train.items()})
    if len(index) < 2:
        raise DataError(f"{name}: only {len(index)} training samples left after splitting")
    parts["train"] = (take(x_train, index), {k: v[index] for k, v in y_train.items()})
    dataset = Dataset(name=name, x_train=parts["train"][0], y_train=parts["train"][1], x_val=parts["val"][0],
                      y_val=parts["val"][1], x_test=parts["test"][0], y_test=parts["test"][1], labels=class_names)
    return dataset, heads
