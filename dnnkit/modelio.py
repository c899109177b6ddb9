"""Loading Keras model files safely, with clear errors."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

from dnnkit.errors import ModelLoadError


def load_model(path: str | os.PathLike[str], *, unsafe: bool = False) -> Any:
    """Load a ``.keras`` model in Keras safe mode.

    dnnkit's own layers are registered first, so models built by dnnkit load anywhere.

    Args:
        path: a ``.keras`` file.
        unsafe: allow arbitrary code (Lambda layers); only for files you trust.

    Returns:
        The ``keras.Model``.

    Raises:
        ModelLoadError: if the file is missing, not a Keras archive, or refused by safe mode.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"model: file not found: {path}")
    if p.suffix != ".keras" or not zipfile.is_zipfile(p):
        raise ModelLoadError(f"model: expected a Keras 3 .keras archive, got {path}")
    import keras

    import dnnkit.builders.layers  # noqa: F401  (registers dnnkit's serializables)
    import dnnkit.compress.qat  # noqa: F401
    import dnnkit.keras_metrics  # noqa: F401

    try:
        return keras.saving.load_model(p, safe_mode=not unsafe, compile=False)
    except ValueError as exc:
        text = " ".join(str(exc).split())
        if "Lambda" in text or "safe_mode" in text:
            raise ModelLoadError(f"model: {path} contains a Lambda layer (arbitrary code); "
                                 "Keras safe mode refuses it; pass --unsafe only if you trust "
                                 "the file") from None
        raise ModelLoadError(f"model: cannot load {path}: {text[:300]}") from None
    except (OSError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        text = " ".join(str(exc).split())
        raise ModelLoadError(f"model: cannot load {path}: {text[:300]}") from None
