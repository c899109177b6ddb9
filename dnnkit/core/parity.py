"""Element-wise closeness of two outputs, scaled by the reference: the one formula behind every float
check (verification's float criterion, and the self-checks of a frozen graph and of a tf_keras source).
NumPy only."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def float_parity(reference: np.ndarray, outputs: np.ndarray, atol: float, rtol: float,
                 calibrated: float = 0.0) -> dict[str, Any]:
    """Element-wise closeness of an artifact's outputs to the reference, scaled by the reference.

    The allowed error is ``atol + max(rtol * max|reference|, calibrated)``.

    Args:
        reference: the Keras model's outputs.
        outputs: the artifact's outputs (same shape).
        atol: absolute floor of the tolerance.
        rtol: tolerance relative to ``max |reference|``.
        calibrated: an absolute allowance measured on this model (fp16: a multiple of the error
            its weights' fp16 rounding alone causes), 0 for none.

    Returns:
        ``max_abs_diff``, ``scale`` (max |reference|), ``max_rel_diff`` (max_abs_diff / scale),
        ``allowed`` (atol + rtol * scale), ``norm_rel_diff`` (||a - r|| / ||r||) and ``ok``.
    """
    r = np.asarray(reference, dtype=np.float64)
    a = np.asarray(outputs, dtype=np.float64)
    diff = np.abs(a - r)
    if not np.all(np.isfinite(a)):
        max_diff = math.inf
    else:
        max_diff = float(diff.max()) if diff.size else 0.0
    scale = float(np.max(np.abs(r))) if r.size else 0.0
    allowed = atol + max(rtol * scale, calibrated)
    norm_r = float(np.linalg.norm(r))
    norm_rel = float(np.linalg.norm(a - r) / norm_r) if norm_r > 0 and math.isfinite(max_diff) else math.inf
    return {"max_abs_diff": max_diff, "scale": scale,
            "max_rel_diff": max_diff / scale if scale > 0 else max_diff,
            "allowed": allowed, "norm_rel_diff": norm_rel, "ok": bool(max_diff <= allowed)}
