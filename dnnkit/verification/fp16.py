"""How much a model's outputs move when its weights are rounded to fp16 (compute kept in fp32).

This is the error every fp16 artifact starts from; fp16 arithmetic on top of it (XNNPACK on ARM
or AVX512-FP16 CPUs) rounds every activation as well and was measured at 2.6-4.9x this figure on
the shipped specs (``benchmarks/tolerance_study.py``). An fp16 artifact's tolerance is therefore
``atol + max(rtol * max|reference|, fp16_factor * this error)``: it follows the model's own
sensitivity to rounding, which is what a fixed tolerance on logits could not.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dnnkit.core.tensors import fp16_round, predict, set_weights


def fp16_outputs(model: Any, x: np.ndarray) -> np.ndarray:
    """The model's outputs in true fp16 arithmetic, on any CPU: a copy whose every layer has the Keras
    ``float16`` dtype policy (weights, activations and each op's result in fp16).

    dnnkit's builders give each layer an explicit dtype, so a global policy would not reach them;
    the copy sets it layer by layer.
    """
    import keras

    half = keras.models.clone_model(
        model, clone_function=lambda layer: layer.__class__.from_config({**layer.get_config(), "dtype": "float16"}))
    set_weights(half, [w.astype(np.float16) if w.dtype == np.float32 else w for w in model.get_weights()])
    if not all(w.dtype == np.float16 for w in half.get_weights() if w.dtype.kind == "f"):
        raise ValueError("some weights stayed out of fp16")
    inputs = x.astype(np.float16) if x.dtype.kind == "f" else x
    return np.asarray(half.predict(inputs, batch_size=256, verbose=0)).astype(np.float32)


def fp16_weight_error(model: Any, x: Any, reference: Any) -> Any:
    """Max abs change of the outputs on ``x`` when every float weight is rounded to fp16 (:func:`fp16_round`).

    Args:
        model: the Keras reference model.
        x: inputs (the same rows ``reference`` was computed on; a dict per input name for several).
        reference: the model's outputs on ``x`` (a list, one per output, for several outputs).

    Returns:
        The max abs difference (a list, one per output, when ``reference`` is a list), or ``None``
        when the model cannot be cloned (it is then left out of the tolerance, which falls back to
        ``atol + rtol * max|reference|``).
    """
    import keras

    if hasattr(model, "fp16_rounded"):  # a SavedModel's signature: round its variables in place
        with model.fp16_rounded():
            outputs = predict(model, x)
    else:
        try:
            clone = keras.models.clone_model(model)
            set_weights(clone, [fp16_round(w) for w in model.get_weights()])
        except Exception:  # noqa: BLE001 - subclassed or unusual models: no calibration
            return None
        outputs = predict(clone, x)
    refs = reference if isinstance(reference, list) else [reference]
    errors: list[float | None] = []
    for out, ref in zip(outputs, refs):
        diff = np.abs(np.asarray(out, np.float64) - np.asarray(ref, np.float64))
        errors.append(float(diff.max()) if diff.size and np.all(np.isfinite(diff)) else None)
    return errors if isinstance(reference, list) else errors[0]
