"""The ``qat`` pass: fake-quantize the model, fine-tune it, hand on the QAT model (whose
full-integer TFLite conversion then matches it)."""

from __future__ import annotations

import time
from typing import Any

from dnnkit.compress import PassResult, QATOptions
from dnnkit.compress.context import PassContext


def run_qat(model: Any, opts: QATOptions, ctx: PassContext) -> PassResult:
    """Quantization-aware fine-tuning.

    Returns:
        The QAT Keras model (fake-quant layers in place) and a report.
    """
    from dnnkit.compress.qat import quantize_model

    qat, report = quantize_model(model)
    start = time.perf_counter()
    ctx.fine_tune(qat, epochs=opts.epochs, learning_rate=opts.learning_rate, batch_size=opts.batch_size)
    report.update(engine="native", fine_tune_seconds=round(time.perf_counter() - start, 3))
    return PassResult(model=qat, report=report)
