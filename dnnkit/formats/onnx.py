"""ONNX: fp32 through tf2onnx (Keras's exporter), int8 QDQ through onnxruntime.quantization."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import numpy as np

from dnnkit.formats.common import atomic_path, io_names
from dnnkit.formats.tflite import ConversionError
from dnnkit.signature import Inputs, cast, rows, take


def _tidy(path: str, model: Any, metadata: dict[str, Any]) -> None:
    """Give the graph the model's input/output names, drop initializers listed as inputs
    (they break calibration: "Required inputs ... are missing"), add metadata."""
    import onnx

    proto = onnx.load(path)
    graph = proto.graph
    inits = {i.name for i in graph.initializer}
    keep = [i for i in graph.input if i.name not in inits]
    del graph.input[:]
    graph.input.extend(keep)
    want_in, want_out = io_names(model)
    if len(graph.input) != len(want_in) or len(graph.output) != len(want_out):
        raise ConversionError(f"ONNX graph has {len(graph.input)} inputs and {len(graph.output)} outputs, "
                              f"expected {len(want_in)} and {len(want_out)}")
    renames = {t.name: n for t, n in zip(list(graph.input) + list(graph.output), want_in + want_out)}
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for t in list(graph.input) + list(graph.output):
        t.name = renames[t.name]
        dims = t.type.tensor_type.shape.dim
        if len(dims):
            dims[0].dim_param = "batch"
    _set_metadata(proto, metadata)
    onnx.checker.check_model(proto)
    onnx.save(proto, path)


def _set_metadata(proto: Any, metadata: dict[str, Any]) -> None:
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)


def write_onnx(model: Any, path: str, *, opset: int, metadata: dict[str, Any],
               check_inputs: Inputs | None = None) -> dict[str, Any]:
    """Write the fp32 ONNX graph (dynamic batch axis named ``batch``) without atomicity.

    The model is frozen in inference mode first (:mod:`dnnkit.formats.frozen`), so constants stay
    constants and augmentation/dropout layers vanish; tf2onnx converts that graph.

    Returns:
        The rewrites made before conversion and the check of the frozen graph (``transforms``).
    """
    import onnx
    import tf2onnx

    from dnnkit.formats.frozen import frozen_graph

    try:  # Keras's tf2onnx shim for NumPy 2 (np.object, np.cast)
        from keras.src.export.tf2onnx_lib import patch_tf2onnx

        patch_tf2onnx()
    except ImportError:  # pragma: no cover - older or newer Keras
        pass
    graph_def, inputs, outputs, transforms = frozen_graph(model, None, check_inputs)
    proto, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=inputs, output_names=outputs, opset=opset)
    onnx.save(proto, path)
    _tidy(path, model, metadata)
    return transforms


def export_onnx(model: Any, path: str | os.PathLike[str], *, opset: int = 17,
                metadata: dict[str, Any] | None = None, check_inputs: Inputs | None = None) -> dict[str, Any]:
    """Export a Keras model to fp32 ONNX, atomically.

    Args:
        model: a ``keras.Model`` (any number of inputs and outputs).
        path: the ``.onnx`` file to write.
        opset: ONNX opset (>= 13; default 17).
        metadata: key/value pairs stored in the model's metadata_props.
        check_inputs: samples on which the frozen graph must reproduce the model first.

    Returns:
        What the manifest records: opset, and the rewrites made before conversion (``transforms``).

    Raises:
        ConversionError: if tf2onnx fails.
    """
    try:
        with atomic_path(path) as tmp:
            transforms = write_onnx(model, str(tmp), opset=opset, metadata=metadata or {},
                                    check_inputs=check_inputs)
    except ConversionError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ConversionError(f"ONNX export failed: {' '.join(str(exc).split())[:400]}") from None
    return {"opset": opset, "transforms": transforms}


def export_onnx_int8(model: Any, path: str | os.PathLike[str], *, calibration: Inputs,
                     opset: int = 17, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export static int8 ONNX (QDQ, per-channel weights) calibrated on ``calibration``.

    Conv, MatMul and Gemm are quantized (the ops that hold weights); the rest stays float,
    which keeps LayerNorm/Softmax in transformers accurate. Weights use 7 bits
    (``reduce_range``): with full 8-bit per-channel weights onnxruntime's x86 (AVX2/AVX-512
    without VNNI) int8 kernels can saturate, as its docs warn; measured on the 80 %-pruned
    digits CNN: 0.975 with 8 bits, 0.992 (= fp32) with 7.

    Raises:
        ConversionError: if export or calibration fails.
    """
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    import onnx

    in_names, _ = io_names(model)
    samples = cast(calibration, model)

    def feed(i: int) -> dict[str, np.ndarray]:
        piece = take(samples, slice(i, i + 1))
        return piece if isinstance(piece, dict) else {in_names[0]: piece}

    class Reader(CalibrationDataReader):  # every input of the graph, one sample at a time
        def __init__(self) -> None:
            self.items = iter([feed(i) for i in range(rows(samples))])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    try:
        with tempfile.TemporaryDirectory(prefix="dnnkit-onnx-") as tmp_dir:
            fp32 = os.path.join(tmp_dir, "fp32.onnx")
            transforms = write_onnx(model, fp32, opset=opset, metadata=metadata or {}, check_inputs=samples)
            with atomic_path(path) as tmp:
                quantize_static(fp32, str(tmp), Reader(), quant_format=QuantFormat.QDQ,
                                per_channel=True, reduce_range=True, activation_type=QuantType.QInt8,
                                weight_type=QuantType.QInt8,
                                op_types_to_quantize=["Conv", "MatMul", "Gemm"])
                proto = onnx.load(str(tmp))
                _set_metadata(proto, {**(metadata or {}), "dnnkit_precision": "int8"})
                onnx.save(proto, str(tmp))
    except Exception as exc:  # noqa: BLE001
        raise ConversionError(f"ONNX int8 quantization failed: {' '.join(str(exc).split())[:400]}") from None
    return {"opset": opset, "transforms": transforms, "calibration_samples": int(rows(samples)),
            "quantized_ops": ["Conv", "MatMul", "Gemm"], "weight_bits": 7}
