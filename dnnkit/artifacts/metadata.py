"""What an app needs to use an artifact, stored inside it (issue 11): labels, task, input
normalization, the reference model's weights digest (the manifest's ``reference.weights_sha256``)
and the dnnkit version.

ONNX keeps it in ``metadata_props`` (strings; lists and dicts as JSON), beside ``doc_string``,
``model_version``, ``producer_name`` and ``producer_version``; onnxruntime's ``get_modelmeta()``
reads it back. TFLite keeps it as one JSON buffer named :data:`TFLITE_NAME` in the model's
``metadata`` table, written with the flatbuffer utilities that ship in ``ai_edge_litert`` (the
``tflite-support`` metadata writer needs protobuf < 4); the interpreter ignores unknown metadata,
so the file loads and runs as before.

Each file also carries its own verdict under :data:`VERDICT` (``status``: ``unchecked`` when written, then
``verified``, ``failed`` or ``inconclusive``, with the reason and the criteria), in a slot of fixed size
(:data:`SLOT` bytes of JSON, padded with spaces): :func:`stamp_verdict` rewrites those bytes and no others,
so the tensors and the graph a verification ran stay byte for byte the ones it ran.
"""

from __future__ import annotations

import json
import os
from typing import Any

from dnnkit.artifacts import tflite_schema

TFLITE_NAME = "dnnkit"
VERDICT = "verification"
SLOT = 512
UNCHECKED = {"status": "unchecked"}


def _slot(verdict: dict[str, Any]) -> str:
    """``verdict`` as JSON padded to :data:`SLOT` characters (ASCII: one byte each); a long reason is cut."""
    text = json.dumps(verdict, sort_keys=True)
    if len(text) > SLOT and verdict.get("reason"):
        reason = verdict["reason"]
        text = json.dumps({**verdict, "reason": reason[:max(0, len(reason) - (len(text) - SLOT) - 3)] + "..."},
                          sort_keys=True)
    if len(text) > SLOT:
        raise ValueError(f"a verdict of {len(text)} bytes does not fit its {SLOT}-byte slot")
    return text.ljust(SLOT)


def as_stored(verdict: dict[str, Any]) -> dict[str, Any]:
    """``verdict`` as its slot holds it (a long reason cut to fit)."""
    return json.loads(_slot(verdict))


def _fields_json(fields: dict[str, Any]) -> str:
    """The TFLite metadata buffer's JSON: the fields, and the verdict in its fixed-size slot."""
    rest = {k: v for k, v in fields.items() if k != VERDICT}
    text = json.dumps(rest, sort_keys=True)
    if VERDICT not in fields:
        return text
    return text[:-1] + (", " if rest else "") + f'"{VERDICT}": ' + _slot(fields[VERDICT]) + "}"


def weights_sha256(model: Any) -> str:
    """sha256 over the model's weights (``get_weights()``) in order (dtype, shape, bytes). Unlike the ``.keras`` file's
    digest it does not change with the save time, so identical runs keep writing identical
    artifacts with it inside."""
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    for w in model.get_weights():  # a keras.Model, or a SavedModel / .h5 source's variables
        a = np.ascontiguousarray(np.asarray(w))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def input_normalization(model: Any, source: str | None) -> dict[str, Any]:
    """How raw inputs become what the model takes: the data pipeline's scale (``model_input = raw *
    scale + offset``) where dnnkit's loader applies one, and the preprocessing layers at the start of
    the model (which an app must not apply again).

    Args:
        model: the reference ``keras.Model``.
        source: the data source (``"digits"``, an image folder, a file) or ``None`` when unknown.

    Returns:
        ``{"pipeline": {"scale", "offset", "raw_range"} | None, "in_model": [{"layer", "class", ...}]}``.
    """
    pipeline = None
    if source == "digits":  # dnnkit.data divides the 0..16 pixel counts by 16
        pipeline = {"scale": 1 / 16, "offset": 0.0, "raw_range": [0, 16]}
    elif source and os.path.isdir(source):  # image folders load 0..255 pixels as they are
        pipeline = {"scale": 1.0, "offset": 0.0, "raw_range": [0, 255]}
    return {"pipeline": pipeline, "in_model": _preprocessing_layers(model)}


def _preprocessing_layers(model: Any) -> list[dict[str, Any]]:
    """Rescaling and Normalization layers among the model's top-level layers (keras.applications and
    keras-io models keep theirs there; a layer nested in a sub-model is not looked for)."""
    import numpy as np

    found = []
    for layer in getattr(model, "layers", []):  # a SavedModel source has no Keras layers
        kind = type(layer).__name__
        if kind == "Rescaling":
            found.append({"layer": layer.name, "class": kind, "scale": _plain(layer.scale),
                          "offset": _plain(layer.offset)})
        elif kind == "Normalization" and getattr(layer, "built", False) and hasattr(layer, "mean"):
            mean, var = np.asarray(layer.mean).ravel(), np.asarray(layer.variance).ravel()
            found.append({"layer": layer.name, "class": kind, "mean": [float(v) for v in mean[:64]],
                          "variance": [float(v) for v in var[:64]], "invert": bool(getattr(layer, "invert", False))})
    return found


def _plain(value: Any) -> Any:
    import numpy as np

    array = np.asarray(value, dtype=np.float64)
    return float(array) if array.ndim == 0 else [float(v) for v in array.ravel()]


def onnx_props(fields: dict[str, Any]) -> dict[str, str]:
    """``metadata_props`` entries: strings as they are, everything else as JSON."""
    return {k: _slot(v) if k == VERDICT else v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}


def set_onnx_metadata(proto: Any, fields: dict[str, Any]) -> None:
    """Replace ``proto``'s ``metadata_props`` with ``fields`` and describe the model in its header."""
    del proto.metadata_props[:]
    for key, value in onnx_props(fields).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    if "dnnkit_version" in fields:
        proto.producer_name, proto.producer_version = "dnnkit", str(fields["dnnkit_version"])
        proto.model_version = 1
        proto.doc_string = _doc(fields)


def _doc(fields: dict[str, Any]) -> str:
    labels = fields.get("labels")
    return (f"{fields.get('name', 'model')}: {fields.get('task', '?')} model exported and verified by dnnkit "
            f"{fields.get('dnnkit_version')} ({fields.get('precision', '?')})"
            + (f"; {len(labels)} labels in metadata_props['labels']" if isinstance(labels, list) else ""))


def add_tflite_metadata(content: bytes, fields: dict[str, Any]) -> bytes:
    """``content`` (a ``.tflite`` flatbuffer) with ``fields`` as a JSON metadata buffer named
    :data:`TFLITE_NAME` and as the TFLite Metadata schema's ``ModelMetadata`` (:mod:`dnnkit.artifacts.tflite_schema`,
    its labels file zipped onto the end), replacing earlier ones; tensors, signatures and other metadata unchanged."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    inputs, outputs = _io_names(model)
    entries = []
    for name, blob in ((TFLITE_NAME, _fields_json(fields).encode("utf-8")),
                       (tflite_schema.NAME, tflite_schema.model_metadata(fields, inputs, outputs))):
        buffer = schema.BufferT()
        buffer.data = list(blob)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name, entry.buffer = name, len(model.buffers) - 1
        entries.append(entry)
    kept = (TFLITE_NAME, tflite_schema.NAME)
    model.metadata = [m for m in (model.metadata or []) if _text(m.name) not in kept] + entries
    return tflite_schema.with_associated_files(bytes(flatbuffer_utils.convert_object_to_bytearray(model)), fields)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _io_names(model: Any) -> tuple[list[str], list[str]]:
    """The first subgraph's inputs and outputs in its order, named as its signature names them."""
    graph = model.subgraphs[0]
    by_tensor: dict[int, str] = {}
    for signature in model.signatureDefs or []:
        for item in (signature.inputs or []) + (signature.outputs or []):
            by_tensor[item.tensorIndex] = _text(item.name)
    return ([by_tensor.get(i, _text(graph.tensors[i].name)) for i in graph.inputs],
            [by_tensor.get(i, _text(graph.tensors[i].name)) for i in graph.outputs])


def read_tflite_metadata(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The JSON metadata :func:`add_tflite_metadata` wrote, or ``None`` when the file has none."""
    from ai_edge_litert import schema_py_generated as schema

    with open(path, "rb") as f:
        data = f.read()
    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() is not None and entry.Name().decode() == TFLITE_NAME:
            buffer = model.Buffers(entry.Buffer())
            if buffer.Offset() > 1:  # stored after the flatbuffer (models over 2 GB)
                raw = data[buffer.Offset():buffer.Offset() + buffer.Size()]
            else:
                raw = buffer.DataAsNumpy().tobytes()
            return json.loads(raw.decode("utf-8"))
    return None


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """An ONNX file's ``metadata_props`` (JSON values decoded), read without its external data."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    decoded: dict[str, Any] = {}
    for key, value in props.items():
        try:
            decoded[key] = json.loads(value)
        except ValueError:
            decoded[key] = value
    return decoded


def read_verdict(path: str | os.PathLike[str], fmt: str) -> dict[str, Any] | None:
    """The verdict stored in an artifact (``None`` for a file without a slot, or a format without metadata)."""
    if fmt == "tflite":
        return (read_tflite_metadata(path) or {}).get(VERDICT)
    if fmt == "onnx":
        value = read_onnx_metadata(path).get(VERDICT)
        return value if isinstance(value, dict) else None
    return None


def stamp_verdict(path: str | os.PathLike[str], fmt: str, verdict: dict[str, Any]) -> bool:
    """Store ``verdict`` in the artifact's slot, changing only the slot's bytes.

    The file is rewritten beside itself and renamed into place (a hard-linked copy elsewhere keeps its bytes).

    Returns:
        Whether the file changed (``False``: no slot, or the same verdict already there).

    Raises:
        ValueError: the slot is not found exactly once, or does not read back as ``verdict``.
    """
    current = read_verdict(path, fmt)
    verdict = as_stored(verdict)
    if current is None or current == verdict:
        return False
    old, new = _slot(current).encode("ascii"), _slot(verdict).encode("ascii")
    data = open(path, "rb").read()
    if data.count(old) != 1:
        raise ValueError(f"{os.path.basename(path)}: its verdict slot found {data.count(old)} times, expected once")
    tmp = f"{path}.stamp"
    with open(tmp, "wb") as f:
        f.write(data.replace(old, new))
    os.replace(tmp, path)
    if read_verdict(path, fmt) != verdict:
        raise ValueError(f"{os.path.basename(path)}: the verdict stored does not read back")
    return True

