"""TensorFlow SavedModel with a named serving signature."""

from __future__ import annotations

import os
from typing import Any

from dnnkit.formats.common import atomic_path, input_spec, io_names


def write_saved_model(model: Any, path: str | os.PathLike[str], *, batch: int | None = None) -> None:
    """Write ``model`` as a SavedModel without atomicity (callers wrap it).

    The ``serving_default`` signature takes the model's input name and returns a dict
    keyed by the model's output name.
    """
    import keras

    _, out_name = io_names(model)
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(inputs: Any) -> dict[str, Any]:
        return {out_name: model(inputs, training=False)}

    archive.add_endpoint(name="serving_default", fn=serve, input_signature=[input_spec(model, batch)])
    archive.write_out(str(path), verbose=False)


def export_saved_model(model: Any, path: str | os.PathLike[str], *,
                       batch: int | None = None) -> dict[str, Any]:
    """Export a Keras model as a SavedModel folder, atomically.

    Args:
        model: a single-input, single-output ``keras.Model``.
        path: the folder to create.
        batch: a static batch size, or ``None`` for a dynamic batch (the default).

    Returns:
        What the manifest records about the conversion.
    """
    with atomic_path(path) as tmp:
        write_saved_model(model, tmp, batch=batch)
    return {"batch": batch}
