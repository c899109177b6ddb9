"""Arrays per input and output name (``x_train/NAME``, ``y_train/NAME``), for models with several inputs or
outputs, and for data that labels none of a model's outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dnnkit.core.heads import HEADS
from dnnkit.core.tensors import infer_head, inputs_info, output_activation, outputs_info, rows, take
from dnnkit.data.checks import check_input, check_labels
from dnnkit.data.dataset import Dataset, split
from dnnkit.data.files import NPZ_ERRORS, class_names, read_npz
from dnnkit.errors import DataError


def named_arrays(source: str) -> bool:
    """Whether ``source`` is an ``.npz`` file in the per-name layout (``x_train/NAME``), or one
    without labels (``x_train`` alone): both are read by :func:`load_model_data`."""
    path = Path(source)
    if path.suffix.lower() != ".npz" or not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as f:
            names = list(f.files)
    except NPZ_ERRORS:
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
        cfg: the :class:`~dnnkit.config.model.DataConfig` (fractions, seed).
        task: the head of every labelled output (inferred per output when omitted).
        heads: the heads to use, one per output (as recorded by an earlier export).

    Returns:
        The dataset (``x_*`` dicts by input name, ``y_*`` dicts by labelled output name) and one
        head per output.

    Raises:
        DataError: on a missing file or array, a shape, dtype or label that does not fit.
    """
    path = Path(source)
    ins, outs = inputs_info(model), outputs_info(model)
    want = ", ".join(f"x_train/{i.name}" for i in ins)
    if source == "digits" or path.suffix.lower() != ".npz":
        raise DataError(f"data: a model with {len(ins)} inputs and {len(outs)} outputs needs a .npz file with "
                        f"{want} (and y_train/OUTPUT per labelled output), got {source!r}")
    if not path.is_file():
        raise DataError(f"data.source: file not found: {source}")
    arrays = read_npz(path)
    name = path.stem
    label_names = class_names(arrays, str(path), None)
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
        x = {i.name: check_input(arrays[f"x_{part}/{i.name}"], i.shape, i.dtype, f"{name}: x_{part}/{i.name}")
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
        if task is not None and task not in HEADS:
            raise DataError(f"task: expected one of {', '.join(HEADS)}, got {task!r}")
        heads = [task if (task and o.name in labelled) else
                 infer_head(o.shape[-1] if o.shape else 1, output_activation(model, k), o.name in labelled,
                            dense=len(o.shape or ()) >= 2)
                 for k, o in enumerate(outs)]
    for part, (x, ys) in splits.items():
        for k, o in enumerate(outs):
            if o.name in ys:
                units = o.shape[-1] if o.shape else 1
                shim = type("Head", (), {"head": heads[k], "output_units": units, "num_classes": units,
                                         "output_shape": tuple(o.shape or ())})
                ys[o.name] = check_labels(ys[o.name], shim, f"{name}: y_{part}/{o.name}")
    x_train, y_train = splits["train"]
    n = rows(x_train)
    strat_name = next((o.name for o, h in zip(outs, heads) if h == "multiclass" and o.name in labelled), None)
    index = np.arange(n)

    def cut(idx: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        labels = y_train[strat_name][idx] if strat_name else idx
        keep, held, _, _ = split(idx, labels, fraction, seed, stratify=strat_name is not None)
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
                      y_val=parts["val"][1], x_test=parts["test"][0], y_test=parts["test"][1], labels=label_names)
    return dataset, heads
