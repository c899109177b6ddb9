"""The ``qat`` pass: fake-quantize the model, fine-tune it, hand on the QAT model (whose
full-integer TFLite conversion then matches it)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from dnnkit.passes.context import PassContext
from dnnkit.passes.pruning import MaskConstraint, sparsity_row
from dnnkit.passes.qat import quantize_model
from dnnkit.passes.registry import PassResult
from dnnkit.config.passes import QATOptions


def run_qat(model: Any, opts: QATOptions, ctx: PassContext) -> PassResult:
    """Quantization-aware fine-tuning.

    With ``preserve_sparsity``, the zeros each kernel has when QAT starts (from a pruning
    pass) are held by a mask constraint through the fine-tuning, as in pruning.

    Returns:
        The QAT Keras model (fake-quant layers in place) and a report.
    """
    qat, report = quantize_model(model)
    kernels = [layer for layer in qat.layers if layer.name in report["quantized_layers"] and hasattr(layer, "kernel")]
    masked = []
    if opts.preserve_sparsity:
        for layer in kernels:
            mask = (np.asarray(layer.kernel.numpy()) != 0).astype(np.float32)
            if not mask.all():
                layer.kernel.constraint = MaskConstraint(mask)
                masked.append((layer, mask))
    start = time.perf_counter()
    ctx.fine_tune(qat, epochs=opts.epochs, learning_rate=opts.learning_rate, batch_size=opts.batch_size)
    seconds = time.perf_counter() - start
    for layer, mask in masked:
        layer.kernel.constraint = None
        layer.kernel.assign(np.asarray(layer.kernel.numpy()) * mask)  # JAX: the jitted step may not re-mask
    report.update(engine="native", fine_tune_seconds=round(seconds, 3))
    if opts.preserve_sparsity:
        report["layers"] = [sparsity_row(layer.name, "kernel", layer.kernel.numpy()) for layer in kernels]
    return PassResult(model=qat, report=report)
