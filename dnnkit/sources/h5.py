"""tf_keras (Keras 2) ``.h5`` models: loaded by tf_keras (one loader for export and compression), written
as a SavedModel by tf_keras itself, and that SavedModel checked against the ``.h5`` model's own outputs."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from dnnkit.core.parity import float_parity
from dnnkit.core.tensors import batch_for, rows, take
from dnnkit.errors import ModelLoadError, one_line


def load_h5(path: str | os.PathLike[str]) -> Any:
    """The tf_keras model in an ``.h5`` file (not compiled).

    Raises:
        ModelLoadError: if tf_keras cannot load the file.
    """
    import tf_keras

    try:
        return tf_keras.models.load_model(str(path), compile=False)
    except Exception as exc:  # noqa: BLE001 - any failure to load a file is bad input
        raise ModelLoadError(f"model: cannot load {path} with tf_keras: {one_line(exc)}") from None


def h5_to_saved_model(path: str | os.PathLike[str], out: str | os.PathLike[str]) -> tuple[dict[str, Any], Any]:
    """Load a tf_keras (Keras 2) ``.h5`` model with tf_keras and write it as a SavedModel folder.

    Returns:
        What the manifest records about the step (the tf_keras version, layer count), and the
        tf_keras model (its own outputs check the SavedModel's).

    Raises:
        ModelLoadError: if tf_keras cannot load the file.
    """
    import tf_keras

    model = load_h5(path)
    model.save(str(out), save_format="tf", include_optimizer=False)
    return {"source": "tf_keras .h5", "tf_keras": tf_keras.__version__, "layers": len(model.layers)}, model


def source_record(info: dict[str, Any] | None, model: Any, ref: Any) -> dict[str, Any] | None:
    """What the manifest says about a SavedModel or tf_keras source; for ``.h5``, the SavedModel's
    outputs checked against tf_keras's own on the reference inputs.

    Raises:
        ModelLoadError: if the SavedModel tf_keras wrote does not reproduce the tf_keras model.
    """
    if info is None:
        return None
    info = dict(info)
    tfk_model = info.pop("tf_keras_model", None)
    if tfk_model is not None:
        x = take(ref.x, slice(0, min(256, rows(ref.x), batch_for(ref.x))))
        want = tfk_model(x, training=False)
        want = [np.asarray(w) for w in (want if isinstance(want, (list, tuple)) else [want])]
        got = [o[:len(w)] for o, w in zip(ref.outputs, want)]
        parity = float_parity(np.concatenate([w.ravel() for w in want]), np.concatenate([g.ravel() for g in got]),
                              1e-5, 1e-5)
        diff, allowed = parity["max_abs_diff"], parity["allowed"]
        if not parity["ok"]:
            raise ModelLoadError(f"model: the SavedModel written by tf_keras differs from the .h5 model "
                                 f"(max abs diff {diff:.3g} > {allowed:.3g})")
        info["check"] = {"against": "tf_keras predict on the .h5 model", "inputs": int(rows(x)),
                         "max_abs_diff": diff}
    return info
