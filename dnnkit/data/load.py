"""A spec's data (or another source for it): read, checked against the model and split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dnnkit.data.checks import check_features, check_labels
from dnnkit.data.dataset import Dataset, split
from dnnkit.data.files import (DIGITS_LABELS, DIGITS_LAYOUTS, class_names, digits, infer_layout, load_csv,
                               load_image_folder, load_npz)
from dnnkit.data.tasks import TASKS, task_data
from dnnkit.errors import DataError
from dnnkit.config.model import Spec
from dnnkit.core.heads import GENERATIVE_HEADS


def load_data(spec: Spec, source: str | None = None) -> Dataset:
    """Load, split and check the data a spec names (or ``source`` instead).

    Args:
        spec: the validated spec; its model section fixes the shapes and labels expected.
        source: overrides ``spec.data.source`` (``"digits"``, a built-in task of
            :mod:`dnnkit.data.tasks`, or a ``.npz``/``.csv`` path).

    Returns:
        The :class:`Dataset` with train/val/test splits in the model's input layout.

    Raises:
        DataError: if the file is missing or unreadable, or shapes/labels do not match.
    """
    cfg = spec.data
    model = spec.model
    src = source or cfg.source
    stratify = model.head in ("multiclass", "binary")
    if src == "digits":
        layout = cfg.layout or infer_layout(model)
        if layout is None or (layout != "tokens" and DIGITS_LAYOUTS[layout] != tuple(model.input_shape)):
            raise DataError(
                f"data.layout: digits cannot be laid out for model.input_shape "
                f"{list(model.input_shape)}; expected one of " +
                ", ".join(f"{k} {list(v)}" for k, v in DIGITS_LAYOUTS.items()))
        if model.head != "multiclass" or model.num_classes != 10:
            raise DataError("model.num_classes: digits has 10 classes, expected a multiclass "
                            f"head with num_classes = 10, got head {model.head!r} with "
                            f"num_classes = {model.num_classes}")
        x, y = digits(layout)
        arrays = {"x_train": x, "y_train": y}
        name, labels = "digits", DIGITS_LABELS
    elif src in TASKS:
        arrays, name = task_data(src, model, cfg.seed, cfg.samples), src
        labels = class_names(arrays, src, None)
    else:
        path = Path(src)
        if not path.is_absolute():
            # An explicit override is the caller's path (relative to the working
            # directory); the spec's own source is relative to the spec file.
            path = (Path.cwd() if source else spec.base_dir) / path
        if path.is_dir():
            arrays, labels = load_image_folder(path, model)
        elif not path.is_file():
            raise DataError(f"data.source: file not found: {src}")
        elif path.suffix.lower() == ".npz":
            arrays = load_npz(path, derive_labels=model.head == "causal_lm")
            labels = class_names(arrays, str(path), model.num_classes if model.head in ("multiclass", *GENERATIVE_HEADS) else
                                 2 if model.head == "binary" else None)
        elif path.suffix.lower() == ".csv":
            if not cfg.label_column:
                raise DataError(f"data.label_column: a .csv source needs its label column's name (a spec's "
                                f"data.label_column, --label-column NAME), got none for {src}")
            arrays, labels = load_csv(path, cfg.label_column), None
        else:
            raise DataError(f"data.source: expected \"digits\", a .npz/.csv file or an image folder, got {src!r}")
        name = path.name if path.is_dir() else path.stem

    checked: dict[str, np.ndarray] = {}
    for part in ("train", "val", "test"):
        if f"x_{part}" not in arrays:
            continue
        where = f"{name}: x_{part}"
        x = check_features(arrays[f"x_{part}"], model, where)
        y = check_labels(arrays[f"y_{part}"], model, f"{name}: y_{part}")
        if len(x) != len(y):
            raise DataError(f"{name}: x_{part} has {len(x)} samples but y_{part} has {len(y)}")
        if len(x) == 0:
            raise DataError(f"{name}: x_{part} is empty")
        checked[f"x_{part}"], checked[f"y_{part}"] = x, y

    x, y = checked["x_train"], checked["y_train"]
    if "x_test" not in checked:
        x, checked["x_test"], y, checked["y_test"] = split(x, y, cfg.test_fraction, cfg.seed, stratify)
    if "x_val" not in checked:
        if cfg.val_fraction <= 0:
            raise DataError("data.val_fraction: expected a fraction > 0 when the data has no "
                            "x_val/y_val, got 0")
        frac = cfg.val_fraction / (1.0 - (cfg.test_fraction if "x_test" not in arrays else 0.0))
        x, checked["x_val"], y, checked["y_val"] = split(x, y, min(frac, 0.5), cfg.seed + 1, stratify)
    if len(x) < 2:
        raise DataError(f"{name}: only {len(x)} training samples left after splitting")
    return Dataset(name=name, x_train=x, y_train=y, x_val=checked["x_val"], y_val=checked["y_val"],
                   x_test=checked["x_test"], y_test=checked["y_test"], labels=labels)
