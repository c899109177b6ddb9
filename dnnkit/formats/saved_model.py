"""TensorFlow SavedModel with a named serving signature."""

from __future__ import annotations

import os
from typing import Any

from dnnkit.core.fileio import atomic_path
from dnnkit.core.tensors import input_specs
from dnnkit.formats.common import io_names, serving_fn


def write_saved_model(model: Any, path: str | os.PathLike[str], *, batch: int | None = None) -> None:
    """Write ``model`` as a SavedModel without atomicity (callers wrap it).

    The ``serving_default`` signature takes the model's inputs by name and returns a dict
    keyed by the model's output names.
    """
    import keras

    # a SavedModel's signature (dnnkit.sources.saved_model.SignatureModel): re-signed, not re-traced by Keras
    if hasattr(model, "save_as"):
        model.save_as(path, batch)
        return
    _, out_names = io_names(model)
    archive = keras.export.ExportArchive()
    archive.track(model)
    fn = serving_fn(model)

    def serve(*inputs: Any) -> dict[str, Any]:
        return dict(zip(out_names, fn(*inputs)))

    archive.add_endpoint(name="serving_default", fn=serve, input_signature=input_specs(model, batch))
    archive.write_out(str(path), verbose=False)


def export_saved_model(model: Any, path: str | os.PathLike[str], *,
                       batch: int | None = None) -> dict[str, Any]:
    """Export a Keras model as a SavedModel folder, atomically.

    Args:
        model: a ``keras.Model`` (any number of inputs and outputs).
        path: the folder to create.
        batch: a static batch size, or ``None`` for a dynamic batch (the default).

    Returns:
        What the manifest records about the conversion.
    """
    with atomic_path(path) as tmp:
        write_saved_model(model, tmp, batch=batch)
    return {"batch": batch}
