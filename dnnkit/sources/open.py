"""A model source opened: for export (a ``.keras`` file, a SavedModel folder, a tf_keras ``.h5``), and an
export folder's reference model (a ``.keras`` file or a SavedModel folder)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

from dnnkit.errors import ModelLoadError
from dnnkit.sources.h5 import h5_to_saved_model
from dnnkit.sources.keras_file import load_model
from dnnkit.sources.saved_model import SignatureModel, is_saved_model


def load_reference_model(path: str | os.PathLike[str], *, unsafe: bool = False) -> Any:
    """A ``.keras`` model, or a SavedModel folder's serving signature
    (:class:`~dnnkit.sources.saved_model.SignatureModel`)."""
    if is_saved_model(path):
        return SignatureModel(path)
    return load_model(path, unsafe=unsafe)


@contextlib.contextmanager
def open_source(model: str | os.PathLike[str], unsafe: bool) -> Any:
    """The model to export, loaded: a ``.keras`` file in Keras 3; a SavedModel folder, or a tf_keras
    ``.h5`` written as one by tf_keras (in a temporary folder), as its serving signature.

    Yields:
        ``(model, saved_model_dir or None, what the manifest records about the source)``.
    """
    path = Path(model)
    if path.suffix.lower() == ".h5":
        if not path.is_file():
            raise ModelLoadError(f"model: file not found: {model}")
        with tempfile.TemporaryDirectory(prefix="dnnkit-h5-") as tmp:
            info, tfk_model = h5_to_saved_model(path, Path(tmp) / "saved_model")
            loaded = SignatureModel(Path(tmp) / "saved_model")
            yield loaded, Path(tmp) / "saved_model", {**info, "tf_keras_model": tfk_model}
        return
    if path.is_dir() and not (path / "model.keras").is_file():
        if not is_saved_model(path):
            raise ModelLoadError(f"model: {model} is a folder but not a SavedModel (no saved_model.pb) or a run "
                                 "directory; expected a .keras file, a tf_keras .h5 file or a SavedModel folder")
        yield SignatureModel(path), path, {"source": "SavedModel folder"}
        return
    yield load_model(model, unsafe=unsafe), None, None
