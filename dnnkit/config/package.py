"""``[package]`` tables (and ``dnnkit package``'s flags): which serving layouts, their model name,
version and batching."""

from __future__ import annotations

import re
from typing import Any

from dnnkit.errors import SpecError
from dnnkit.config.tables import TableReader

# layout -> the artifact format it hands off (tflm: C source for a TensorFlow Lite Micro firmware)
LAYOUTS = {"triton": "onnx", "tf-serving": "saved_model", "tflm": "tflite"}
SERVING = ("triton", "tf-serving")  # a [package] table's layouts when it names none
NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"  # a model folder name


def read_package(t: TableReader) -> dict[str, Any]:
    """A recipe's ``[package]`` table as ``{"layouts": [...], **package() keywords}``: ``layouts`` (default
    both serving layouts; ``tflm`` too on request), ``model_name``, ``version``, ``max_batch_size``,
    ``onnx_artifact`` (Triton's artifact), ``tflite_artifact`` (the firmware's).

    Raises:
        SpecError: unknown keys or bad values, naming the field.
    """
    options = {"layouts": list(t.str_list("layouts", tuple(LAYOUTS), SERVING)),
               "version": t.integer("version", 1), "max_batch_size": t.integer("max_batch_size", 8, minimum=0)}
    if t.has("model_name"):
        options["model_name"] = t.string("model_name")
        if not re.fullmatch(NAME, options["model_name"]):
            t.fail("model_name", options["model_name"], "letters, digits, '_', '-' or '.' (a folder name)")
    if t.has("onnx_artifact"):
        options["artifact"] = t.string("onnx_artifact")
    if t.has("tflite_artifact"):
        options["tflite_artifact"] = t.string("tflite_artifact")
    t.done(("layouts", "model_name", "version", "max_batch_size", "onnx_artifact", "tflite_artifact"))
    if not options["layouts"]:
        t.fail("layouts", [], f"one or more of {', '.join(LAYOUTS)}")
    return options


def check_model_name(name: str) -> str:
    if not re.fullmatch(NAME, name):
        raise SpecError(f"package.model_name: expected letters, digits, '_', '-' or '.' (a folder name), got {name!r}")
    return name


def check_options(layouts: list[str], *, version: Any, max_batch_size: Any, model_name: str | None) -> None:
    """``dnnkit package``'s options (the command line's, or a caller's).

    Raises:
        SpecError: a layout, version, batch size or model name that is not one, naming it.
    """
    for layout in layouts:
        if layout not in LAYOUTS:
            raise SpecError(f"package.layout: expected one of {', '.join(LAYOUTS)}, got {layout!r}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SpecError(f"package.version: expected a positive integer, got {version!r}")
    if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 0:
        raise SpecError(f"package.max_batch_size: expected an integer >= 0, got {max_batch_size!r}")
    if model_name is not None:
        check_model_name(model_name)
