"""A Triton model folder for an ONNX artifact (``onnxruntime_onnx`` platform: Triton's TensorFlow backend is gone
since 2025): the model, its ``config.pbtxt`` (inputs and outputs with Triton's types and dims, batching)
and a labels file."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from dnnkit.errors import SpecError

TRITON_TYPES = {1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 4: "TYPE_UINT16", 5: "TYPE_INT16", 6: "TYPE_INT32",
                7: "TYPE_INT64", 8: "TYPE_STRING", 9: "TYPE_BOOL", 10: "TYPE_FP16", 11: "TYPE_FP64",
                12: "TYPE_UINT32", 13: "TYPE_UINT64", 16: "TYPE_BF16"}


LABELS_FILE = "labels.txt"


def write_triton(source: Path, model_dir: Path, name: str, version: int, max_batch_size: int,
                 entry: dict[str, Any]) -> tuple[list[str], int]:
    """Write the model, its config and its labels under ``model_dir``; return the files written and
    the ``max_batch_size`` the config got."""
    import onnx

    target = model_dir / str(version) / "model.onnx"
    target.parent.mkdir(parents=True)
    side = source.with_name(source.name + ".data")
    proto = onnx.load(str(source), load_external_data=False)
    files = [f"{version}/model.onnx"]
    if side.is_file():  # external data: the copy's data file is named after the copy
        for tensor in proto.graph.initializer:
            for kv in tensor.external_data:
                if kv.key == "location":
                    kv.value = "model.onnx.data"
        onnx.save(proto, str(target))
        shutil.copyfile(side, target.with_name("model.onnx.data"))
        files.append(f"{version}/model.onnx.data")
    else:
        shutil.copyfile(source, target)
    labels = (entry.get("metadata") or {}).get("labels")
    text = triton_config(proto, name, max_batch_size, labels=labels)
    (model_dir / "config.pbtxt").write_text(text, encoding="utf-8")
    files.insert(0, "config.pbtxt")
    if labels and LABELS_FILE in text:
        (model_dir / LABELS_FILE).write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
        files.insert(1, LABELS_FILE)
    return files, _served_batch(proto, max_batch_size)


def triton_config(proto: Any, name: str, max_batch_size: int, *, labels: list[str] | None = None) -> str:
    """A Triton ``config.pbtxt`` for an ONNX model: its inputs and outputs with Triton's data types
    and dims (the batch left out when the graph's batch is dynamic and ``max_batch_size > 0``; a
    fixed batch turns batching off); ``label_filename`` on each output whose last dim is the
    number of labels."""
    tensors = {"input": list(proto.graph.input), "output": list(proto.graph.output)}
    dims = {t.name: _dims(t) for t in tensors["input"] + tensors["output"]}
    batch = _served_batch(proto, max_batch_size)
    lines = [f'name: "{name}"', 'platform: "onnxruntime_onnx"', f"max_batch_size: {batch}"]
    for kind, items in tensors.items():
        for t in items:
            elem = t.type.tensor_type.elem_type
            if elem not in TRITON_TYPES:
                raise SpecError(f"package.layout: tensor {t.name!r} has ONNX type {elem}, which Triton has no type for")
            shape = dims[t.name][1:] if batch else dims[t.name]
            body = [f'name: "{t.name}"', f"data_type: {TRITON_TYPES[elem]}", f"dims: [ {', '.join(map(str, shape))} ]"]
            if kind == "output" and labels and shape and shape[-1] == len(labels):
                body.append(f'label_filename: "{LABELS_FILE}"')
            lines.append(f"{kind} [\n  {{\n" + "".join(f"    {b}\n" for b in body) + "  }\n]")
    if batch:
        lines.append("dynamic_batching { }")
    lines.append('instance_group [ { kind: KIND_CPU } ]')
    return "\n".join(lines) + "\n"


def _dims(tensor: Any) -> list[int]:
    return [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.type.tensor_type.shape.dim]


def _served_batch(proto: Any, max_batch_size: int) -> int:
    """Triton's ``max_batch_size``: as asked when every input's batch is dynamic, else 0 (no batching)."""
    dynamic = all((dims := _dims(t)) and dims[0] == -1 for t in proto.graph.input)
    return max_batch_size if dynamic else 0
