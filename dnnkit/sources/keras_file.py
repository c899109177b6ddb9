"""Loading Keras 3 ``.keras`` files safely, with clear errors: the archive and its ``config.json``
checked before Keras sees them, Keras safe mode, custom classes from a file the user trusts."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import zipfile
from pathlib import Path
from typing import Any, Iterator

from dnnkit.errors import ModelLoadError, one_line


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
    config = check_archive(p)
    import keras

    # dnnkit's own serializable classes registered (these modules define Keras classes: they import Keras)
    import dnnkit.builders.layers  # noqa: F401
    import dnnkit.passes.qat  # noqa: F401
    import dnnkit.training.keras_metrics  # noqa: F401

    if os.environ.get(CUSTOM_OBJECTS_ENV) and os.environ[CUSTOM_OBJECTS_ENV] not in _IMPORTED:
        use_custom_objects(os.environ[CUSTOM_OBJECTS_ENV])  # a worker process of a command given the option
    missing = missing_classes(config)
    if missing:
        raise ModelLoadError(f"model: {path} needs custom classes that are not registered here: "
                             f"{', '.join(missing)}; pass --custom-objects FILE.py, a Python file that defines "
                             "and registers them (it runs code: only files you trust)")
    try:
        return keras.saving.load_model(p, safe_mode=not unsafe, compile=False, custom_objects=dict(_CUSTOM))
    except Exception as exc:  # noqa: BLE001 - any failure to load a file is bad input, not a crash
        text = one_line(exc, None)
        if "Lambda" in text or "safe_mode" in text:
            raise ModelLoadError(f"model: {path} contains a Lambda layer (arbitrary code); "
                                 "Keras safe mode refuses it; pass --unsafe only if you trust "
                                 "the file") from None
        raise ModelLoadError(f"model: cannot load {path}: {type(exc).__name__}: {text[:300]}") from None


# Sizes above this in config.json (units, filters, shapes, vocabularies) cannot be a model that fits a machine:
# a Dense of 2**24 units on 64 inputs already holds 4 GB of weights.
MAX_CONFIG_INT = 2 ** 24
# config.json beyond this is not a model's architecture (a 1000-layer keras-hub backbone's is under 2 MB);
# checked before it is read, so a padded file costs nothing.
MAX_CONFIG_BYTES = 64 << 20


_NOT_SIZES = ("seed", "shared_object_id")  # large by nature (random seeds, Python object ids)


_ALLOWED_MEMBERS = ("config.json", "metadata.json", "model.weights.h5", "model.weights.npz")


def check_archive(path: Path) -> dict[str, Any]:
    """Refuse a ``.keras`` archive whose members or ``config.json`` cannot belong to a model.

    Checked before Keras sees the file: member names (no paths out of the archive, nothing but
    config, metadata, weights and assets), archive integrity (CRCs), a JSON object for the config,
    and no absurd integer (a layer of 10**12 units would make TensorFlow try to allocate it).

    Returns:
        The parsed ``config.json``.

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
            if "config.json" in names and z.getinfo("config.json").file_size > MAX_CONFIG_BYTES:
                raise ModelLoadError(f"model: cannot load {path}: config.json: expected at most {MAX_CONFIG_BYTES} "
                                     f"bytes, got {z.getinfo('config.json').file_size}")
            bad = z.testzip()
            if bad is not None:
                raise ModelLoadError(f"model: cannot load {path}: archive member {bad!r} is corrupt (bad CRC)")
            if "config.json" not in names:
                raise ModelLoadError(f"model: cannot load {path}: the archive has no config.json")
            raw = z.read("config.json")
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        if isinstance(exc, ModelLoadError):
            raise
        raise ModelLoadError(f"model: cannot load {path}: {one_line(exc)}") from None
    try:
        config = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ModelLoadError(f"model: cannot load {path}: config.json is not JSON ({str(exc)[:200]})") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"model: cannot load {path}: config.json: expected an object, got "
                             f"{type(config).__name__}")
    absurd = next(((where, value) for where, value in _nodes(config, skip=_NOT_SIZES)
                   if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= MAX_CONFIG_INT), None)
    if absurd:
        where, value = absurd
        raise ModelLoadError(f"model: cannot load {path}: config.json: {where}: expected a size below "
                             f"{MAX_CONFIG_INT}, got {value}")
    return config


CUSTOM_OBJECTS_ENV = "DNNKIT_CUSTOM_OBJECTS"


_CUSTOM: dict[str, Any] = {}


_IMPORTED: set[str] = set()


def use_custom_objects(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Import a Python file that defines (and registers) a model's custom classes.

    This runs the file's code: it is a trust decision, like ``--unsafe``. The file's path is
    also put in the environment, so the conversion workers import it too.

    Returns:
        The classes the file defines, by name (also passed to Keras as ``custom_objects``).

    Raises:
        ModelLoadError: if the file is missing, not ``.py``, or fails to import.
    """
    p = Path(path)
    if not p.is_file() or p.suffix != ".py":
        raise ModelLoadError(f"custom_objects: expected a Python file (.py) that defines the model's custom "
                             f"classes, got {path}")
    resolved = str(p.resolve())
    name = "dnnkit_custom_objects_" + "".join(c if c.isalnum() else "_" for c in p.stem)
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"custom_objects: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's code: report it in one line
        raise ModelLoadError(f"custom_objects: importing {path} failed: {type(exc).__name__}: "
                             f"{one_line(exc)}") from None
    classes = {k: v for k, v in vars(module).items() if isinstance(v, type) and v.__module__ == name}
    _CUSTOM.update(classes)
    _IMPORTED.add(resolved)
    os.environ[CUSTOM_OBJECTS_ENV] = resolved
    return classes


# Installed libraries whose layers and models register themselves with Keras when imported.
# Importing them runs no code from the model file, so a model that names their classes loads
# without --custom-objects (keras-hub backbones, for one).
KNOWN_LIBRARIES = ("keras_hub",)


def _import_known_libraries(config: dict[str, Any]) -> None:
    wanted = {node["module"].split(".")[0] for _, node in _nodes(config)
              if isinstance(node, dict) and isinstance(node.get("module"), str)}
    for name in sorted(wanted & set(KNOWN_LIBRARIES)):
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # not installed: its classes are reported missing


def missing_classes(config: dict[str, Any]) -> list[str]:
    """Classes in ``config.json`` from outside Keras that are neither registered nor given."""
    import keras

    _import_known_libraries(config)
    found: list[str] = []
    for _, node in _nodes(config):
        if not isinstance(node, dict):
            continue
        module, cls = node.get("module"), node.get("class_name")
        if isinstance(module, str) and isinstance(cls, str) and module.split(".")[0] not in ("keras", "builtins"):
            key = node.get("registered_name") or cls
            if (keras.saving.get_registered_object(key, custom_objects=_CUSTOM) is None
                    and cls not in _CUSTOM and key not in found):
                found.append(str(key))
    return found


def _nodes(node: Any, where: str = "", skip: tuple[str, ...] = (), depth: int = 0) -> Iterator[tuple[str, Any]]:
    """Every value of a parsed JSON document with its dotted path, depth-first (200 levels at most),
    not descending under the keys in ``skip``."""
    if depth > 200:
        return
    yield where, node
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in skip:
                yield from _nodes(value, f"{where}.{key}" if where else str(key), skip, depth + 1)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _nodes(value, f"{where}[{i}]", skip, depth + 1)
