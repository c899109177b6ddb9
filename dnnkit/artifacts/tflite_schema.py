"""The TFLite Metadata schema (``ModelMetadata``, file identifier ``M001``) that Android Studio's ML Model Binding
and the TFLite Task Library read: the model's name and description, one ``TensorMetadata`` per input (with
``NormalizationOptions`` where dnnkit's loader scales raw inputs) and per output (with an associated
``labels.txt`` of type ``TENSOR_AXIS_LABELS`` for a classifier), stored under the metadata name
``TFLITE_METADATA``; the labels file is zipped onto the end of the model, as tflite-support's
``MetadataPopulator`` does (the interpreter reads the flatbuffer and ignores what follows it).

Written with the ``flatbuffers`` builder against the tables of ``metadata_schema.fbs`` (tflite-support 0.4.4,
the schema's field order is its wire format); ``tests/tflite_metadata_schema.py``, that release's generated reader,
reads it back in the tests. tflite-support's own writer needs protobuf < 4, which TensorFlow 2.21 does not allow.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

NAME = "TFLITE_METADATA"
IDENTIFIER = b"M001"
MIN_PARSER_VERSION = "1.0.0"  # NormalizationOptions and TENSOR_AXIS_LABELS files are in the schema's first version
LABELS_FILE = "labels.txt"
TENSOR_AXIS_LABELS = 2  # AssociatedFileType
NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions union tag


def _table(b: Any, fields: list[tuple[int, str, Any]]) -> int:
    """A table from ``(slot, kind, value)``: kind ``offset`` (a string, vector or table already built) or ``int8``."""
    b.StartObject(max(slot for slot, _, _ in fields) + 1 if fields else 0)
    for slot, kind, value in fields:
        if value is None:
            continue
        if kind == "offset":
            b.PrependUOffsetTRelativeSlot(slot, value, 0)
        else:
            b.PrependInt8Slot(slot, value, 0) if kind == "int8" else b.PrependUint8Slot(slot, value, 0)
    return b.EndObject()


def _vector(b: Any, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        b.PrependUOffsetTRelative(offset)
    return b.EndVector()


def _floats(b: Any, values: list[float]) -> int:
    import numpy as np

    return b.CreateNumpyVector(np.asarray(values, dtype=np.float32))


def model_metadata(fields: dict[str, Any], inputs: list[str], outputs: list[str]) -> bytes:
    """The ``ModelMetadata`` flatbuffer for dnnkit's metadata ``fields`` and the subgraph's input and output
    names (in its order)."""
    import flatbuffers

    b = flatbuffers.Builder(1024)
    pipeline = (fields.get("input_normalization") or {}).get("pipeline")
    labels = fields.get("labels")
    classifier = fields.get("task") in ("multiclass", "binary") and isinstance(labels, list)
    tensors = []
    for name in inputs:
        units = None
        if pipeline and pipeline.get("scale"):
            # dnnkit's loader: model_input = raw * scale + offset; the schema: (raw - mean) / std
            std, mean = 1 / pipeline["scale"], -pipeline.get("offset", 0.0) / pipeline["scale"]
            norm = _table(b, [(0, "offset", _floats(b, [mean])), (1, "offset", _floats(b, [std]))])
            unit = _table(b, [(0, "uint8", NORMALIZATION_OPTIONS), (1, "offset", norm)])
            units = _vector(b, [unit])
        tensors.append(_table(b, [(0, "offset", b.CreateString(name)), (4, "offset", units)]))
    outs = []
    for i, name in enumerate(outputs):
        files = None
        if classifier and i == 0:
            entry = _table(b, [(0, "offset", b.CreateString(LABELS_FILE)),
                               (1, "offset", b.CreateString("class names, one per line, in output order")),
                               (2, "int8", TENSOR_AXIS_LABELS)])
            files = _vector(b, [entry])
        outs.append(_table(b, [(0, "offset", b.CreateString(name)), (6, "offset", files)]))
    subgraph = _table(b, [(2, "offset", _vector(b, tensors)), (3, "offset", _vector(b, outs))])
    description = (f"{fields.get('task', 'model')} model exported and verified by dnnkit "
                   f"{fields.get('dnnkit_version')} ({fields.get('precision', '?')})")
    root = _table(b, [(0, "offset", b.CreateString(str(fields.get("name") or "model"))),
                      (1, "offset", b.CreateString(description)),
                      (2, "offset", b.CreateString(str(fields.get("dnnkit_version")))),
                      (3, "offset", _vector(b, [subgraph])), (4, "offset", b.CreateString("dnnkit")),
                      (7, "offset", b.CreateString(MIN_PARSER_VERSION))])
    b.Finish(root, file_identifier=IDENTIFIER)
    return bytes(b.Output())


def with_associated_files(content: bytes, fields: dict[str, Any]) -> bytes:
    """``content`` with ``labels.txt`` zipped onto its end (stored, not compressed) for a classifier."""
    labels = fields.get("labels")
    if fields.get("task") not in ("multiclass", "binary") or not isinstance(labels, list):
        return content
    buffer = io.BytesIO(content)
    buffer.seek(0, io.SEEK_END)
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_STORED) as z:
        info = zipfile.ZipInfo(LABELS_FILE, date_time=(1980, 1, 1, 0, 0, 0))  # the same bytes every run
        z.writestr(info, "\n".join(str(label) for label in labels) + "\n")
    return buffer.getvalue()
