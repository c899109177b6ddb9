"""Will a ``.tflite`` file fit the device? Flash (the file's bytes), a peak-RAM estimate of the
activation arena planned the way TensorFlow Lite Micro's ``GreedyMemoryPlanner`` plans it, what the
LiteRT interpreter itself laid out for the same tensors, and whether every op has a TFLM kernel.

The estimate takes every tensor an op writes, and the graph inputs, at batch 1 with its lifetime
(from the op that writes it, or the start, to the last op that reads it, or the end for an output),
sorts them by size (largest first) and gives each the lowest 16-byte-aligned offset at which it
overlaps no placed tensor alive at the same time; the arena is the highest end. Scratch buffers
that kernels ask for at run time (im2col and the like) are not in the file, so neither TFLM's plan
nor this one can count them: on a microcontroller add the kernels' scratch to it. The interpreter's
figure is the span of addresses its own arena planner gave the same tensors, read with the default
delegate off (XNNPACK keeps intermediate tensors to itself).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from dnnkit.verification.tflm_ops import SOURCE, TFLM_BUILTIN_OPS

ALIGN = 16  # TFLM's kBufferAlignment

# TFLite Micro's persistent allocations (its arena's tail), per item, as its RecordingMicroAllocator reports them on
# x86-64 (tflite-micro 0.dev20261023; a 32-bit microcontroller's structs are smaller): a TfLiteEvalTensor per
# tensor, a NodeAndRegistration per op, a TfLiteTensor per graph input/output; the kernels' own data ("persistent
# buffer data") is dominated by int8 convolutions' and fully-connected layers' per-channel requantization tables
# (a 32-bit multiplier and shift per output channel) plus some bytes per op (measured: 37-77 per op on 11 of the
# matrix's files, 60 taken); while it plans, TFLM needs scratch per tensor (measured 58-68 B) where the activation
# plan will lie, so the head is the larger of the two; and ~512 B the interpreter needs whatever the model (the
# smallest MLPs' remainder). Fitted on 13 of the matrix's int8 files: the model's figure is 0.94-1.08 of the
# smallest arena TFLM allocates (the activation plan alone: 0.01-0.89); benchmarks/tflm_breadth.py prints both.
TFLM_EVAL_TENSOR, TFLM_NODE, TFLM_IO_TENSOR, TFLM_OP_DATA, TFLM_CHANNEL, TFLM_PLANNER = 24, 64, 80, 60, 8, 68
TFLM_BASE = 512
PER_CHANNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


def greedy_arena(buffers: list[tuple[int, int, int]]) -> int:
    """Bytes of an arena holding ``buffers`` (``(size, first_op, last_op)``, lifetimes inclusive)
    placed largest first at the lowest aligned offset free for their whole lifetime."""
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last)
    high = 0
    for size, first, last in sorted(buffers, key=lambda b: (-b[0], b[1])):
        size = -(-size // ALIGN) * ALIGN
        live = sorted((o, s) for o, s, f, l in placed if f <= last and first <= l)
        offset = 0
        for o, s in live:
            if offset + size <= o:
                break
            offset = max(offset, -(-(o + s) // ALIGN) * ALIGN)
        placed.append((offset, size, first, last))
        high = max(high, offset + size)
    return high


def device_fit(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Flash, RAM and TFLM op coverage of one ``.tflite`` file (batch 1).

    Returns:
        ``{"flash_bytes", "arena_estimate_bytes" (the activation plan: TFLM's head), "tflm_arena_estimate_bytes"
        (the plan + TFLM's persistent tail, modelled: what a firmware's arena needs where TFLM cannot run the
        file here), "interpreter_arena_bytes", "estimate_over_interpreter",
        "activation_tensors", "largest_activation_bytes", "activation_bytes_total" (no reuse at all), "io_bytes"
        (one input and one output at batch 1), "ops",
        "tflm_unsupported_ops", "tflm_source"}``.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(path), num_threads=1,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    for d in interpreter.get_input_details():
        signature = d.get("shape_signature", d["shape"])
        if len(signature) and signature[0] == -1:
            interpreter.resize_tensor_input(d["index"], [1, *d["shape"][1:]])
    interpreter.allocate_tensors()
    for d in interpreter.get_input_details():
        interpreter.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    interpreter.invoke()  # the arena is laid out; every tensor has its address
    ops = interpreter._get_ops_details()
    inputs = [int(d["index"]) for d in interpreter.get_input_details()]
    outputs = {int(d["index"]) for d in interpreter.get_output_details()}
    first: dict[int, int] = {i: 0 for i in inputs}
    last: dict[int, int] = {i: 0 for i in inputs}
    for k, op in enumerate(ops):
        if not any(int(t) in first for t in op["inputs"]):
            continue  # computed from constants only (an fp16 weight's DEQUANTIZE): persistent, not arena
        for t in op["outputs"]:
            first.setdefault(int(t), k)
            last[int(t)] = max(last.get(int(t), k), k)
        for t in op["inputs"]:
            if int(t) in first:
                last[int(t)] = max(last[int(t)], k)
    end = max(len(ops) - 1, 0)
    buffers, spans = [], []
    for t in first:
        try:
            view = interpreter.tensor(t)()
        except ValueError:  # a tensor the planner left without memory
            continue
        if not isinstance(view, np.ndarray) or view.nbytes == 0:
            continue  # a 0-d tensor comes back as a scalar copy: a few bytes, no address
        buffers.append((int(view.nbytes), first[t], end if t in outputs else last[t]))
        spans.append((int(view.ctypes.data), int(view.nbytes)))
    estimate = greedy_arena(buffers)
    measured = _arena_span(spans)
    details = {int(t["index"]): t for t in interpreter.get_tensor_details()}
    channels = 0
    for op in ops:  # int8 weights: a multiplier and a shift per output channel in the kernel's persistent data
        if op["op_name"] in PER_CHANNEL_OPS and len(op["inputs"]) > 1 and int(op["inputs"][1]) in details and \
                np.dtype(details[int(op["inputs"][1])]["dtype"]) == np.int8:
            shape = details[int(op["outputs"][0])]["shape"]
            channels += int(shape[-1]) if len(shape) else 1
    tail = (TFLM_BASE + TFLM_EVAL_TENSOR * len(details) + (TFLM_NODE + TFLM_OP_DATA) * len(ops)
            + TFLM_CHANNEL * channels + TFLM_IO_TENSOR * (len(inputs) + len(outputs)))
    tflm_estimate = tail + max(estimate, TFLM_PLANNER * len(details))
    names = sorted({str(op["op_name"]) for op in ops})
    io = sum(int(np.prod(d["shape"])) * np.dtype(d["dtype"]).itemsize
             for d in interpreter.get_input_details() + interpreter.get_output_details())
    return {"flash_bytes": os.path.getsize(path), "arena_estimate_bytes": estimate,
            "tflm_arena_estimate_bytes": -(-tflm_estimate // ALIGN) * ALIGN,
            "interpreter_arena_bytes": measured,
            "estimate_over_interpreter": round(estimate / measured, 3) if measured else None,
            "activation_tensors": len(buffers), "largest_activation_bytes": max((b[0] for b in buffers), default=0),
            "activation_bytes_total": sum(b[0] for b in buffers), "io_bytes": io,
            "ops": names, "tflm_unsupported_ops": [n for n in names if n not in TFLM_BUILTIN_OPS],
            "tflm_source": f"{SOURCE[0]}@{SOURCE[2][:12]}:{SOURCE[1]}"}


def _arena_span(spans: list[tuple[int, int]]) -> int:
    """The extent of the interpreter's arena: the run of addresses holding the most tensor bytes, cut
    where a gap exceeds every tensor's bytes together (a tensor the interpreter allocated on its own,
    e.g. a 0-d or dynamic one, lies elsewhere in the heap)."""
    if not spans:
        return 0
    total = sum(n for _, n in spans)
    clusters: list[list[int]] = []  # [start, end, bytes] of each run of addresses
    for addr, size in sorted(spans):
        if clusters and addr - clusters[-1][1] <= total:
            clusters[-1][1] = max(clusters[-1][1], addr + size)
            clusters[-1][2] += size
        else:
            clusters.append([addr, addr + size, size])
    start, end, _ = max(clusters, key=lambda c: c[2])
    return end - start
