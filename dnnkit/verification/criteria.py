"""The numeric criteria an artifact is judged by (NumPy only, no runtime, no TensorFlow).

Float artifacts: every output element must satisfy ``|a - r| <= atol + max(rtol * S, C)``,
where ``S = max |r|`` is the scale of the reference's outputs and ``C`` an allowance calibrated
on the model itself (fp16: ``fp16_factor`` times the error that rounding its weights to fp16
causes, see :mod:`dnnkit.verification.fp16`). Errors of reduced-precision arithmetic grow with the magnitudes
computed and with the model's sensitivity, not with a fixed number, so an absolute tolerance
on logits held for one model on one CPU only (``benchmarks/tolerance_study.py`` measures the
figures behind the defaults). That element-wise test is :func:`dnnkit.core.parity.float_parity`, which
the converters' self-checks share.

Quantized artifacts (and the top-1 check of float ones): a rate measured on ``n`` samples
is a noisy figure; one changed prediction moves it by ``1/n``. Each rate is recorded with a
one-sided 95 % confidence interval, and a limit is

- ``pass`` when the whole interval is on the good side,
- ``fail`` when the whole interval is on the bad side,
- ``inconclusive`` otherwise (the data cannot decide; n too small).

The accuracy an artifact loses against its reference cannot exceed its disagreement rate
with the reference, which needs no labels and is measured on every input available, so that
larger sample decides most degradation limits; only when it cannot does a paired comparison
on the labelled test split (Agresti-Min interval) decide.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np

Z_ONE_SIDED_95 = 1.6448536269514722


# the value checks of a quantized artifact: what quantization noise fails (not names, shapes or loading);
# tflm_agreement is the same agreement measured in TensorFlow Lite Micro (dnnkit.verification.tflm)
VALUE_CHECKS = frozenset({"top1_agreement", "accuracy_drop", "rmse_ratio", "sqnr_db", "tflm_agreement"})


PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"


def failure(check: str, message: str, observed: Any = None, limit: Any = None, **extra: Any) -> dict[str, Any]:
    """One structured failure: what was checked, what was seen, what was allowed, and a message."""
    return {"check": check, "observed": observed, "limit": limit, "message": message, **extra}


def wilson(successes: int, n: int, z: float = Z_ONE_SIDED_95) -> tuple[float, float]:
    """Wilson score interval of a proportion (each side a one-sided 95 % bound by default)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_drop(ref_correct: np.ndarray, art_correct: np.ndarray,
                z: float = Z_ONE_SIDED_95) -> dict[str, Any]:
    """Accuracy lost by an artifact against its reference on the same labelled samples.

    Agresti-Min adjusted interval for a difference of paired proportions: with ``b`` samples
    the reference gets right and the artifact wrong, ``c`` the other way round,
    ``drop = (b - c) / n`` and the interval adds half a count to ``b`` and ``c``.
    """
    ref_correct = np.asarray(ref_correct, dtype=bool)
    art_correct = np.asarray(art_correct, dtype=bool)
    n = int(ref_correct.size)
    b = int(np.sum(ref_correct & ~art_correct))
    c = int(np.sum(~ref_correct & art_correct))
    if n == 0:
        return {"value": 0.0, "n": 0, "ci": [-1.0, 1.0], "lost": 0, "gained": 0}
    bb, cc, nn = b + 0.5, c + 0.5, n + 2
    centre = (bb - cc) / nn
    var = ((bb + cc) / nn - centre * centre) / nn
    half = z * math.sqrt(max(var, 0.0))
    return {"value": (b - c) / n, "n": n, "ci": [centre - half, centre + half], "lost": b, "gained": c}


def decide_at_least(value_ci: tuple[float, float], limit: float) -> str:
    """A rate that must be at least ``limit``: pass, fail, or inconclusive from its interval."""
    lo, hi = value_ci
    if lo >= limit:
        return PASS
    if hi < limit:
        return FAIL
    return INCONCLUSIVE


def decide_at_most(value_ci: tuple[float, float], limit: float) -> str:
    """A quantity that must be at most ``limit``: pass, fail, or inconclusive from its interval."""
    lo, hi = value_ci
    if hi <= limit + 1e-12:
        return PASS
    if lo > limit + 1e-12:
        return FAIL
    return INCONCLUSIVE


def z_for(candidates: int = 1) -> float:
    """The one-sided z of a 95 % verdict taken on the best of ``candidates`` (Bonferroni: each at
    confidence ``1 - 0.05 / candidates``), so choosing the first candidate that passes does not
    make passing by chance more likely than 5 %."""
    if candidates <= 1:
        return Z_ONE_SIDED_95
    return NormalDist().inv_cdf(1.0 - 0.05 / candidates)


def inputs_needed(rate: float, limit: float, z: float = Z_ONE_SIDED_95, cap: int = 10 ** 7) -> int | None:
    """How many inputs, at the observed ``rate``, put the Wilson interval wholly on one side of ``limit``
    (what an inconclusive verdict needs); ``None`` where no count would (the rate is the limit) or over ``cap``."""
    if abs(rate - limit) < 1e-12:
        return None

    def decided(n: int) -> bool:
        lo, hi = wilson(round(rate * n), n, z)
        return lo >= limit if rate > limit else hi < limit

    n = 8
    while not decided(n):
        n *= 2
        if n > cap:
            return None
    low = n // 2
    while low + 1 < n:  # the smallest decided count (decided() is monotone in n at a fixed rate)
        mid = (low + n) // 2
        low, n = (low, mid) if decided(mid) else (mid, n)
    return n


def agreement_check(ref_classes: np.ndarray, art_classes: np.ndarray, min_agreement: float,
                    z: float = Z_ONE_SIDED_95) -> dict[str, Any]:
    """Top-1 agreement on every input available, with its interval and verdict."""
    n = int(len(ref_classes))
    agree = int(np.sum(np.asarray(ref_classes) == np.asarray(art_classes)))
    lo, hi = wilson(agree, n, z)
    return {"value": agree / n if n else 0.0, "n": n, "disagreements": n - agree, "ci": [lo, hi],
            "limit": min_agreement, "verdict": decide_at_least((lo, hi), min_agreement)}


def degradation_check(agreement: dict[str, Any], ref_correct: np.ndarray, art_correct: np.ndarray,
                      max_degradation: float, z: float = Z_ONE_SIDED_95) -> dict[str, Any]:
    """Accuracy lost against the reference, decided by the disagreement bound or the paired test.

    Args:
        agreement: the result of :func:`agreement_check` (all inputs).
        ref_correct, art_correct: per labelled test sample, whether each model was right.
        max_degradation: the most accuracy the artifact may lose.
        z: the one-sided z of both intervals (:func:`z_for`).
    """
    paired = paired_drop(ref_correct, art_correct, z)
    dis_hi = wilson(agreement["disagreements"], agreement["n"], z)[1]
    out = {**paired, "limit": max_degradation, "disagreement_bound": dis_hi,
           "disagreement_rate": agreement["disagreements"] / agreement["n"] if agreement["n"] else 0.0}
    if dis_hi <= max_degradation + 1e-12:
        out.update(verdict=PASS, decided_by="disagreement_bound")
    else:
        out.update(verdict=decide_at_most(tuple(paired["ci"]), max_degradation), decided_by="paired_test")
    return out


def rmse_ratio_check(y: np.ndarray, ref: np.ndarray, art: np.ndarray, max_degradation: float,
                     resamples: int = 1000, seed: int = 0, z: float = Z_ONE_SIDED_95) -> dict[str, Any]:
    """RMSE of the artifact over the reference's, with a paired bootstrap interval (regression)."""
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    e_ref = np.mean((np.asarray(ref, np.float64).reshape(y.shape) - y) ** 2, axis=1)
    e_art = np.mean((np.asarray(art, np.float64).reshape(y.shape) - y) ** 2, axis=1)
    n = len(y)

    def ratio(idx: Any) -> float:
        return math.sqrt(float(np.mean(e_art[idx]))) / max(math.sqrt(float(np.mean(e_ref[idx]))), 1e-12)

    value = ratio(slice(None))
    rng = np.random.default_rng(seed)
    boots = np.array([ratio(rng.integers(0, n, n)) for _ in range(resamples)]) if n else np.array([value])
    tail = 1.0 - NormalDist().cdf(z)  # 0.05 at the default z
    lo, hi = float(np.quantile(boots, tail)), float(np.quantile(boots, 1.0 - tail))
    limit = 1.0 + max_degradation
    return {"value": value, "n": n, "ci": [lo, hi], "limit": limit,
            "verdict": decide_at_most((lo, hi), limit)}


def sqnr_check(reference: np.ndarray, outputs: np.ndarray, min_db: float) -> dict[str, Any]:
    """Signal-to-quantization-noise ratio of an output, in dB, over every element and input.

    ``10 log10(sum r^2 / sum (a - r)^2)`` (as onnxruntime's ``qdq_loss_debug`` computes it per
    tensor): for outputs with no labels and no classes (features), where neither agreement nor
    a task metric applies. Deterministic over all inputs, so pass or fail.
    """
    r = np.asarray(reference, dtype=np.float64)
    a = np.asarray(outputs, dtype=np.float64)
    noise = float(np.sum((a - r) ** 2)) if np.all(np.isfinite(a)) else math.inf
    signal = float(np.sum(r * r))
    if noise == 0.0:
        value = math.inf
    elif signal == 0.0 or not math.isfinite(noise):
        value = -math.inf
    else:
        value = 10.0 * math.log10(signal / noise)
    return {"value": value, "n": int(r.shape[0]) if r.ndim else 1, "ci": [value, value], "limit": min_db,
            "verdict": PASS if value >= min_db else FAIL}
