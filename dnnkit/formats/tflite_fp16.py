"""Small constants of an fp16 TFLite file kept in fp32.

TFLite's fp16 conversion rounds every float constant to fp16 and dequantizes it at load time, so the
CPU still computes in fp32 and the rounding is the file's only error. For large weights that halves the
file; for a constant of a few elements it saves nothing and can cost much: ConvNeXt's built-in input
Normalization (ImageNet mean 123.675 -> 123.6875 in fp16) is applied to every pixel, and that one
rounding moved the logits by 0.034 of the file's 0.035 error (docs/field-notes.md). Here such constants
get their fp32 values back (taken from an fp32 conversion of the same SavedModel, matched by tensor
name, shape, and by rounding exactly to the fp16 value stored) and their DEQUANTIZE op is dropped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# the dynamic-range quantizer's own threshold: weights under 1024 elements stay float there too
MAX_FP32_ELEMENTS = 1024


def _fp32_constants(model: Any, schema: Any) -> dict[bytes, np.ndarray]:
    """Tensor name -> value of the fp32 constants of a flatbuffer model's subgraphs."""
    out: dict[bytes, np.ndarray] = {}
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            data = model.buffers[tensor.buffer].data
            if tensor.type == schema.TensorType.FLOAT32 and data is not None and len(data):
                out[tensor.name] = np.frombuffer(bytes(data), np.float32).reshape(tensor.shape)
    return out


# operands that hold a layer's weights: their fp16 rounding averages out over a dot product and halves the file
WEIGHT_OPERANDS = {"CONV_2D": (1,), "DEPTHWISE_CONV_2D": (1,), "FULLY_CONNECTED": (1,), "TRANSPOSE_CONV": (1,),
                   "CONV_3D": (1,), "BATCH_MATMUL": (0, 1), "EMBEDDING_LOOKUP": (1,), "GATHER": (0,)}


def keep_small_constants_fp32(fp16: bytes, fp32: bytes,
                              max_elements: int = MAX_FP32_ELEMENTS) -> tuple[bytes, int]:
    """The fp16 file ``fp16`` with its constants of at most ``max_elements`` elements that are not a layer's
    weights (biases, normalization constants, scales: :data:`WEIGHT_OPERANDS` stay fp16) in fp32.

    Each such constant becomes an fp32 tensor read directly by the ops that read its DEQUANTIZE, which is
    dropped; the file keeps one copy of it.

    Args:
        fp16: an fp16 TFLite flatbuffer.
        fp32: an fp32 flatbuffer of the same SavedModel (its constants give the exact values).
        max_elements: the largest constant restored to fp32.

    Returns:
        ``(flatbuffer, constants restored)``; a constant with no exact fp32 twin stays fp16.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(fp16))
    exact = _fp32_constants(flatbuffer_utils.read_model_from_bytearray(bytearray(fp32)), schema)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    kinds = [names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "?") for c in model.operatorCodes]
    buffer_users: dict[int, int] = {}
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            buffer_users[tensor.buffer] = buffer_users.get(tensor.buffer, 0) + 1
    restored = 0
    for graph in model.subgraphs:
        # a weight operand stays fp16, and a graph output stays the DEQUANTIZE's
        kept_fp16 = {int(op.inputs[i]) for op in graph.operators
                     for i in WEIGHT_OPERANDS.get(kinds[op.opcodeIndex], ()) if i < len(op.inputs)}
        kept_fp16 |= {int(i) for i in graph.outputs}
        kept_ops, renamed = [], {}
        for op in graph.operators:
            value, source_index = None, None
            if kinds[op.opcodeIndex] == "DEQUANTIZE" and int(op.outputs[0]) not in kept_fp16:
                source_index = int(op.inputs[0])
                source = graph.tensors[source_index]
                data = model.buffers[source.buffer].data
                value = exact.get(source.name)
                if (source.type != schema.TensorType.FLOAT16 or data is None or not len(data) or value is None
                        or value.size > max_elements
                        or not np.array_equal(value.astype(np.float16).ravel(),
                                              np.frombuffer(bytes(data), np.float16))):
                    value = None
            if value is None:
                kept_ops.append(op)
                continue
            data = np.frombuffer(np.ascontiguousarray(value, np.float32).tobytes(), np.uint8)
            if buffer_users.get(source.buffer, 0) > 1:  # a buffer shared with another tensor keeps its fp16 bytes
                model.buffers.append(schema.BufferT())
                source.buffer = len(model.buffers) - 1
            model.buffers[source.buffer].data = data
            source.type = schema.TensorType.FLOAT32
            renamed[int(op.outputs[0])] = source_index  # readers of the DEQUANTIZE read the constant itself
            restored += 1
        for op in kept_ops:
            op.inputs = [renamed.get(int(i), int(i)) for i in op.inputs]
        graph.operators = kept_ops
    if not restored:
        return fp16, 0
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), restored
