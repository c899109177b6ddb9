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
    check_archive(p)
    import keras

    import dnnkit.builders.layers  # noqa: F401  (registers dnnkit's serializables)
    import dnnkit.compress.qat  # noqa: F401
    import dnnkit.keras_metrics  # noqa: F401

    try:
        return keras.saving.load_model(p, safe_mode=not unsafe, compile=False)
    except Exception as exc:  # noqa: BLE001 - any failure to load a file is bad input, not a crash
        text = " ".join(str(exc).split())
        if "Lambda" in text or "safe_mode" in text:
            raise ModelLoadError(f"model: {path} contains a Lambda layer (arbitrary code); "
                                 "Keras safe mode refuses it; pass --unsafe only if you trust "
                                 "the file") from None
        raise ModelLoadError(f"model: cannot load {path}: {type(exc).__name__}: {text[:300]}") from None


# Sizes above this in config.json (units, filters, shapes) cannot be a model that fits a machine.
MAX_CONFIG_INT = 2 ** 31
_NOT_SIZES = ("seed", "shared_object_id")  # large by nature (random seeds, Python object ids)
_ALLOWED_MEMBERS = ("config.json", "metadata.json", "model.weights.h5", "model.weights.npz")


def check_archive(path: Path) -> None:
    """Refuse a ``.keras`` archive whose members or ``config.json`` cannot belong to a model.

    Checked before Keras sees the file: member names (no paths out of the archive, nothing but
    config, metadata, weights and assets), archive integrity (CRCs), a JSON object for the config,
    and no absurd integer (a layer of 10**12 units would make TensorFlow try to allocate it).

    Raises:
        ModelLoadError: naming the member or value.
    """
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            for name in names:
                if name.startswith(("/", "\\")) or ".." in Path(name).parts or not (
                        name in _ALLOWED_MEMBERS or name.startswith("assets/")):
                    raise ModelLoadError(f"model: {path}: archive member {name!r} is not part of a Keras model "
                                         f"(expected {', '.join(_ALLOWED_MEMBERS[:3])} and assets/)")
            bad = z.testzip()
            if bad is not None:
                raise ModelLoadError(f"model: cannot load {path}: archive member {bad!r} is corrupt (bad CRC)")
            if "config.json" not in names:
                raise ModelLoadError(f"model: cannot load {path}: the archive has no config.json")
            raw = z.read("config.json")
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        if isinstance(exc, ModelLoadError):
            raise
        raise ModelLoadError(f"model: cannot load {path}: {' '.join(str(exc).split())[:300]}") from None
    import json

    try:
        config = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ModelLoadError(f"model: cannot load {path}: config.json is not JSON ({str(exc)[:200]})") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"model: cannot load {path}: config.json: expected an object, got "
                             f"{type(config).__name__}")
    found = _absurd_int(config, "")
    if found:
        where, value = found
        raise ModelLoadError(f"model: cannot load {path}: config.json: {where}: expected a size below "
                             f"{MAX_CONFIG_INT}, got {value}")


def _absurd_int(node: Any, where: str, depth: int = 0) -> tuple[str, int] | None:
    if depth > 200:
        return None
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _NOT_SIZES:
                continue
            hit = _absurd_int(value, f"{where}.{key}" if where else str(key), depth + 1)
            if hit:
                return hit
    elif isinstance(node, list):
        for i, value in enumerate(node):
            hit = _absurd_int(value, f"{where}[{i}]", depth + 1)
            if hit:
                return hit
    elif isinstance(node, int) and not isinstance(node, bool) and abs(node) >= MAX_CONFIG_INT:
        return where, node
    return None
